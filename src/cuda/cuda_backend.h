/* cuda_backend.h - the CUDA backend's state (C++ only), shared by
 * cuda_backend.cu (create/destroy/upload) and cuda_forward.cu (forward). */
#ifndef GPTOSS_CUDA_BACKEND_H
#define GPTOSS_CUDA_BACKEND_H

extern "C" {
#include "backend.h"
}
#include "cuda/cuda_internal.h"

#include <cublas_v2.h>

#define LOGIT_ROWS 32    /* lm_head rows per chunk (device logits buffer) */
#define PIN_LOGIT_ROWS 4 /* rows copied back through pinned memory */
#define CU_PICK_ROWS LOGIT_ROWS /* rows one device-sampling launch reduces */

/* Device sampling (cuda_sample.cu): buffers for vocabulary V and the
 * candidates of `rows` rows per call; cu_pick_run reduces R <= CU_PICK_ROWS
 * device rows (logits_d, [R, V]) as rq asks into res (host rows row0..). */
struct cu_pick;
gptoss_status cu_pick_reserve(cu_pick **p, int V, int rows);
gptoss_status cu_pick_run(cu_pick *p, const float *logits_d, const pick_request *rq, pick_result *res,
                          int R, int row0, cudaStream_t s);
void cu_pick_free(cu_pick *p);

typedef struct {
    float *attn_norm, *mlp_norm;          /* [H] */
    bf16 *qkv_w; float *qkv_b;            /* [Q+2KV, H], [Q+2KV] (q, k, v rows stacked) */
    bf16 *o_w; float *o_b;                /* [H, Q], [H] */
    float *sinks;                         /* [nh] */
    bf16 *router_w; float *router_w32;    /* [E, H] bf16 (decode) and fp32 (prefill routing) */
    float *router_b;                      /* [E] */
    uint8_t *gu_blocks, *gu_scales;       /* [E, 2I, H/32, 16], [E, 2I, H/32] */
    float *gu_bias;                       /* [E, 2I] */
    uint8_t *dn_blocks, *dn_scales;       /* [E, H, I/32, 16], [E, H, I/32] */
    float *dn_bias;                       /* [E, H] */
    kv_t *kc, *vc;                        /* [slots, cap, nkv*hd] */
    int cap;                              /* positions per slot (ring on sliding layers) */
} cu_layer;

struct backend {
    gptoss_config cfg;   /* copy (layer_is_sliding owned) */
    int dev, max_ctx, max_seq;
    cudaStream_t stream;
    cublasHandle_t blas;
    void *blas_ws;
    void *warena, *kvarena, *aarena;
    size_t wbytes, kvbytes, abytes;
    cu_layer *L;
    bf16 *embed, *lm_head;  /* [V, H]; embed may point into embed_host */
    void *embed_host;       /* pinned, mapped host copy of the embedding table (GPTOSS_CUDA_EMBED
                             * != device): saves V*H*2 bytes (1.16 GB for gpt-oss) of GPU
                             * memory for one 5.8 KB row read per token */
    float *final_norm, *inv_freq;
    float conc;
    /* activations, sized for CU_PASS_MAX_T tokens */
    float *x, *hf, *qkv, *attn, *rlog, *sel_w, *act_dec, *part, *logits_d;
    float *moe_y;        /* [CU_DECODE_MAX_T * K * H] v11 down's per-expert rows */
    unsigned *moe_cnt;   /* [CU_DECODE_MAX_T * CU_V11_MAX_RANGES] its counters (zeroed once) */
    bf16 *hb, *hb_lo, *attn_b, *attn_lo; /* bf16 hi + lo parts of GEMM inputs */
    int *sel_e, *params_d;
    size_t part_floats;
    cu_moe_scratch moe;
    int *params_h;       /* pinned */
    float *logits_h;     /* pinned */
    cudaGraphExec_t graph_exec;  /* decode graph and its key */
    int graph_T, graph_R, graph_bucket;
    int use_graph;               /* 0 when GPTOSS_CUDA_GRAPH=0 */
    int time_exp;                /* GPTOSS_CUDA_TIME (timing experiment, wrong results): one
                                  * decode kernel launched a second time per layer on the next
                                  * layer's weights, so that a step's extra time is that kernel's
                                  * cost in the graph (cu_time_exp in cuda_forward.cu) */
    cu_pick *pick;               /* device sampling buffers, made on first use */
    char desc[512];
};

gptoss_status cu_fail(cudaError_t e, const char *what);
int cu_time_exp(const char *name);
gptoss_status cuda_forward(backend *b, const backend_item *items, int n_items, float *logits);
gptoss_status cuda_forward_pick(backend *b, const backend_item *items, int n_items,
                                const pick_request *reqs, pick_result *res);

#endif
