/* backend.h - the one interface the CPU and CUDA backends implement.
 *
 * A backend owns the device copy of the weights and the KV caches of up to
 * max_sequences sequences ("slots"). Sliding-window layers keep a ring of
 * window + BACKEND_MAX_CHUNK positions per slot (so a prefill chunk never
 * overwrites keys it still needs, and a slot can roll back up to
 * BACKEND_MAX_CHUNK tokens); full-attention layers keep max_context positions.
 */
#ifndef GPTOSS_BACKEND_H
#define GPTOSS_BACKEND_H

#include "model.h"
#include "sampler_internal.h"

#define BACKEND_MAX_CHUNK 512 /* tokens per forward call of one sequence */

typedef struct backend backend;

typedef struct {
    int n_threads;       /* CPU threads (0 = all cores) */
    int max_context;     /* positions per slot */
    int max_sequences;   /* slots */
    int gpu_index;
    void (*progress)(void *user, uint64_t done, uint64_t total);
    void *progress_user;
} backend_params;

/* One sequence's part of a forward call: tokens[0..n) go to positions
 * pos..pos+n-1 of `slot`, whose cache must hold exactly pos tokens.
 * n <= BACKEND_MAX_CHUNK. */
typedef struct {
    int slot;
    int pos;
    int n;
    const int32_t *tokens;
    int logits_all;      /* 1: a logits row per token; 0: only the last token's row */
} backend_item;

typedef struct {
    const char *name;                /* "cpu" / "cuda" */
    gptoss_status (*create)(const model_weights *w, const backend_params *p, backend **out);
    void (*destroy)(backend *b);
    /* Describes the kernels in use ("avx512", "sm_90a ..."). */
    const char *(*kernels)(const backend *b);
    /* Runs the items (different slots) together. logits receives, in item
     * order, n rows (logits_all) or 1 row per item, each [vocab] float32. */
    gptoss_status (*forward)(backend *b, const backend_item *items, int n_items, float *logits);
    /* The slot now holds only its first n positions (n <= current length). */
    gptoss_status (*truncate)(backend *b, int slot, int n, int cur_len);
    /* Optional (NULL: not measurable by the backend): the device's memory
     * bandwidth in GB/s (1e9 bytes/s), bytes read plus bytes written by a
     * large device-to-device copy, best of a few. */
    gptoss_status (*mem_bandwidth)(backend *b, double *gb_s);
    /* Optional (NULL: the engine runs forward and samples on the host): the
     * same forward for decode items (n == 1, logits_all == 0, one row each),
     * but row i is reduced on the device as reqs[i] asks (sampler_internal.h)
     * into res[i], so only small results cross to the host. Pointers in res
     * stay valid until the next call. GPTOSS_ERR_UNSUPPORTED before any work
     * when the shape is not covered (the engine then uses forward). */
    gptoss_status (*forward_pick)(backend *b, const backend_item *items, int n_items,
                                  const pick_request *reqs, pick_result *res);
} backend_ops;

extern const backend_ops cpu_backend_ops;
#ifdef GPTOSS_CUDA
extern const backend_ops cuda_backend_ops;
int cuda_device_available(void);
#endif

#endif
