/* engine.c - the public model/session API on top of a backend.
 *
 * A model owns the mapped weights, one backend and its KV slots. A session is
 * one sequence: a slot plus the token ids it holds. Appends are split into
 * chunks of at most BACKEND_MAX_CHUNK tokens (the backends' prefill unit);
 * gptoss_decode_batch runs one token of several sessions in one forward call
 * (continuous batching); gptoss_decode_sample does the same and samples
 * each row, on the device when the backend has forward_pick (only the
 * chosen ids cross to the host). A mutex serialises forward calls on one model.
 */
#include "backend.h"
#include "util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gptoss_model {
    model_weights w;
    const backend_ops *ops;
    backend *be;
    int max_context;            /* positions per slot */
    int max_sequences;          /* slots */
    unsigned char *slot_used;   /* [max_sequences] */
    float *scratch_logits;      /* [vocab] rows nobody asked for land here */
    float *rows;                /* [rows_cap, vocab] rows gptoss_decode_sample samples on the host */
    size_t rows_cap;
    pthread_mutex_t lock;
};

struct gptoss_session {
    gptoss_model *m;
    int slot;
    int n;                      /* tokens in the cache */
    int32_t *tokens;            /* [max_context] */
};

const char *gptoss_build_info(void) {
#ifdef GPTOSS_CUDA
    return "backends: cpu (avx512, avx2, scalar; chosen at run time), cuda (sm_90a, sm_80, sm_86, sm_89)";
#else
    return "backends: cpu (avx512, avx2, scalar; chosen at run time); built without CUDA";
#endif
}

void gptoss_model_params_default(gptoss_model_params *p) {
    memset(p, 0, sizeof *p);
}

static gptoss_status pick_backend(const char *device, const backend_ops **ops) {
    if (!device || !*device || !strcmp(device, "auto")) {
#ifdef GPTOSS_CUDA
        if (cuda_device_available()) {
            *ops = &cuda_backend_ops;
            return GPTOSS_OK;
        }
#endif
        *ops = &cpu_backend_ops;
        return GPTOSS_OK;
    }
    if (!strcmp(device, "cpu")) {
        *ops = &cpu_backend_ops;
        return GPTOSS_OK;
    }
    if (!strcmp(device, "cuda")) {
#ifdef GPTOSS_CUDA
        if (!cuda_device_available())
            return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED, "device cuda: no CUDA GPU is visible");
        *ops = &cuda_backend_ops;
        return GPTOSS_OK;
#else
        return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED,
                                "device cuda: this build has no CUDA backend (nvcc was not found at build time)");
#endif
    }
    return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "device '%s': expected cpu, cuda or auto", device);
}

gptoss_status gptoss_model_load(const char *dir, const gptoss_model_params *params,
                                gptoss_model **out) {
    if (!dir || !out) return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "model_load: NULL argument");
    *out = NULL;
    gptoss_model_params defaults;
    if (!params) {
        gptoss_model_params_default(&defaults);
        params = &defaults;
    }
    if (params->n_threads < 0 || params->max_context < 0 || params->max_sequences < 0)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT,
                                "model_load: n_threads, max_context and max_sequences must be >= 0");
    const backend_ops *ops = NULL;
    gptoss_status st = pick_backend(params->device, &ops);
    if (st) return st;

    gptoss_model *m = calloc(1, sizeof *m);
    if (!m) return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "model_load: out of memory");
    st = weights_load(dir, &m->w);
    if (st) {
        free(m);
        return st;
    }
    const gptoss_config *c = &m->w.cfg;
    int max_ctx = params->max_context ? params->max_context
                                      : (c->max_position < 8192 ? c->max_position : 8192);
    if (max_ctx > c->max_position) {
        st = gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT,
                              "context %d exceeds the model's max_position_embeddings %d",
                              max_ctx, c->max_position);
        goto fail;
    }
    m->max_context = max_ctx;
    m->max_sequences = params->max_sequences ? params->max_sequences : 1;
    m->ops = ops;
    m->slot_used = calloc((size_t)m->max_sequences, 1);
    m->scratch_logits = malloc((size_t)c->vocab_size * sizeof(float));
    if (!m->slot_used || !m->scratch_logits) {
        st = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "model_load: out of memory");
        goto fail;
    }
    backend_params bp = {
        .n_threads = params->n_threads,
        .max_context = m->max_context,
        .max_sequences = m->max_sequences,
        .gpu_index = params->gpu_index,
        .progress = params->progress,
        .progress_user = params->progress_user,
    };
    st = ops->create(&m->w, &bp, &m->be);
    if (st) goto fail;
    pthread_mutex_init(&m->lock, NULL);
    *out = m;
    return GPTOSS_OK;
fail:
    free(m->slot_used);
    free(m->scratch_logits);
    weights_free(&m->w);
    free(m);
    return st;
}

void gptoss_model_free(gptoss_model *m) {
    if (!m) return;
    if (m->be) m->ops->destroy(m->be);
    pthread_mutex_destroy(&m->lock);
    weights_free(&m->w);
    free(m->slot_used);
    free(m->scratch_logits);
    free(m->rows);
    free(m);
}

void gptoss_model_get_info(const gptoss_model *m, gptoss_model_info *info) {
    const gptoss_config *c = &m->w.cfg;
    memset(info, 0, sizeof *info);
    info->n_layers = c->n_layers;
    info->hidden = c->hidden;
    info->n_heads = c->n_heads;
    info->n_kv_heads = c->n_kv_heads;
    info->head_dim = c->head_dim;
    info->n_experts = c->n_experts;
    info->experts_per_token = c->experts_per_token;
    info->intermediate = c->intermediate;
    info->vocab_size = c->vocab_size;
    info->sliding_window = c->sliding_window;
    info->max_position = c->max_position;
    info->max_context = m->max_context;
    info->backend = m->ops->name;
    info->kernels = m->ops->kernels(m->be);
    info->weight_bytes = m->w.total_bytes;
    info->bytes_per_token = weights_bytes_per_token(&m->w);
}

gptoss_status gptoss_model_memory_bandwidth(gptoss_model *m, double *gb_s) {
    if (!m || !gb_s) return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "memory bandwidth: NULL argument");
    *gb_s = 0.0;
    if (!m->ops->mem_bandwidth)
        return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED, "memory bandwidth: the %s backend does not measure it",
                                m->ops->name);
    pthread_mutex_lock(&m->lock);
    gptoss_status st = m->ops->mem_bandwidth(m->be, gb_s);
    pthread_mutex_unlock(&m->lock);
    return st;
}

/* ---------------------------------------------------------------- sessions */

gptoss_status gptoss_session_create(gptoss_model *m, gptoss_session **out) {
    if (!m || !out) return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "session_create: NULL argument");
    *out = NULL;
    gptoss_session *s = calloc(1, sizeof *s);
    int32_t *tokens = malloc((size_t)m->max_context * sizeof(int32_t));
    if (!s || !tokens) {
        free(s);
        free(tokens);
        return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "session_create: out of memory");
    }
    pthread_mutex_lock(&m->lock);
    int slot = -1;
    for (int i = 0; i < m->max_sequences; i++)
        if (!m->slot_used[i]) {
            slot = i;
            m->slot_used[i] = 1;
            break;
        }
    pthread_mutex_unlock(&m->lock);
    if (slot < 0) {
        free(s);
        free(tokens);
        return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY,
                                "session_create: all %d sequence slots are in use (raise max_sequences)",
                                m->max_sequences);
    }
    s->m = m;
    s->slot = slot;
    s->tokens = tokens;
    *out = s;
    return GPTOSS_OK;
}

void gptoss_session_free(gptoss_session *s) {
    if (!s) return;
    pthread_mutex_lock(&s->m->lock);
    s->m->slot_used[s->slot] = 0;
    pthread_mutex_unlock(&s->m->lock);
    free(s->tokens);
    free(s);
}

int gptoss_session_length(const gptoss_session *s) { return s->n; }
const int32_t *gptoss_session_tokens(const gptoss_session *s) { return s->tokens; }

void gptoss_session_reset(gptoss_session *s) { s->n = 0; }

gptoss_status gptoss_session_truncate(gptoss_session *s, int n) {
    if (n < 0 || n > s->n)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "truncate to %d: the session holds %d tokens", n, s->n);
    if (n == s->n) return GPTOSS_OK;
    if (n == 0) {
        s->n = 0;
        return GPTOSS_OK;
    }
    pthread_mutex_lock(&s->m->lock);
    gptoss_status st = s->m->ops->truncate(s->m->be, s->slot, n, s->n);
    pthread_mutex_unlock(&s->m->lock);
    if (st == GPTOSS_OK) s->n = n;
    return st;
}

static gptoss_status check_ids(const gptoss_model *m, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->w.cfg.vocab_size)
            return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT,
                                    "token id %d at index %zu is outside the vocabulary [0, %d)",
                                    (int)ids[i], i, m->w.cfg.vocab_size);
    return GPTOSS_OK;
}

gptoss_status gptoss_session_append(gptoss_session *s, const int32_t *ids, size_t n,
                                    float *logits, int all) {
    if (!s || (!ids && n)) return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "append: NULL argument");
    if (n == 0) return GPTOSS_OK;
    gptoss_model *m = s->m;
    if ((size_t)s->n + n > (size_t)m->max_context)
        return gptoss_set_error(GPTOSS_ERR_CONTEXT_FULL,
                                "context full: %d tokens in the sequence + %zu new exceed the context of %d",
                                s->n, n, m->max_context);
    gptoss_status st = check_ids(m, ids, n);
    if (st) return st;
    size_t vocab = (size_t)m->w.cfg.vocab_size;
    pthread_mutex_lock(&m->lock);
    for (size_t done = 0; done < n;) {
        int chunk = (int)(n - done < BACKEND_MAX_CHUNK ? n - done : BACKEND_MAX_CHUNK);
        int last = done + (size_t)chunk == n;
        backend_item item = {
            .slot = s->slot, .pos = s->n, .n = chunk, .tokens = ids + done,
            .logits_all = logits && all,
        };
        float *dst = m->scratch_logits;
        if (logits && all) dst = logits + done * vocab;
        else if (logits && last) dst = logits;
        st = m->ops->forward(m->be, &item, 1, dst);
        if (st) break;
        memcpy(s->tokens + s->n, ids + done, (size_t)chunk * sizeof(int32_t));
        s->n += chunk;
        done += (size_t)chunk;
    }
    pthread_mutex_unlock(&m->lock);
    return st;
}

/* Checks a decode step of n sessions (n >= 1) and fills its items. */
static gptoss_status check_decode(gptoss_session **sessions, const int32_t *ids, size_t n,
                                  backend_item *items, const char *what) {
    gptoss_model *m = sessions[0] ? sessions[0]->m : NULL;
    for (size_t i = 0; i < n; i++) {
        gptoss_session *s = sessions[i];
        if (!s) return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "%s: session %zu is NULL", what, i);
        if (s->m != m)
            return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "%s: sessions belong to different models", what);
        if (s->n + 1 > m->max_context)
            return gptoss_set_error(GPTOSS_ERR_CONTEXT_FULL, "context full: sequence %zu holds %d tokens (context %d)",
                                    i, s->n, m->max_context);
        gptoss_status st = check_ids(m, ids + i, 1);
        if (st) return st;
        for (size_t j = 0; j < i; j++)
            if (sessions[j] == s)
                return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "%s: session %zu appears twice", what, i);
        items[i] = (backend_item){.slot = s->slot, .pos = s->n, .n = 1, .tokens = ids + i, .logits_all = 0};
    }
    return GPTOSS_OK;
}

gptoss_status gptoss_decode_batch(gptoss_session **sessions, const int32_t *ids, size_t n,
                                  float *logits) {
    if (!sessions || !ids || !logits)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "decode_batch: NULL argument");
    if (n == 0) return GPTOSS_OK;
    backend_item *items = malloc(n * sizeof *items);
    if (!items) return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "decode_batch: out of memory");
    gptoss_status st = check_decode(sessions, ids, n, items, "decode_batch");
    if (!st) {
        gptoss_model *m = sessions[0]->m;
        pthread_mutex_lock(&m->lock);
        st = m->ops->forward(m->be, items, (int)n, logits);
        pthread_mutex_unlock(&m->lock);
    }
    if (!st)
        for (size_t i = 0; i < n; i++) sessions[i]->tokens[sessions[i]->n++] = ids[i];
    free(items);
    return st;
}

/* The sampler's message, naming the sequence (next[i] is -1). */
static gptoss_status sample_failed(size_t i) {
    char why[256];
    snprintf(why, sizeof why, "%s", gptoss_last_error());
    return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "decode_sample: sequence %zu: %s", i, why);
}

/* Host path of gptoss_decode_sample (lock held): forward into the model's
 * row buffer, then the sampler on each row. */
static gptoss_status decode_sample_host(gptoss_session **sessions, const int32_t *ids, size_t n,
                                        const backend_item *items, gptoss_sampler **samplers,
                                        int32_t *next, float *logprobs) {
    gptoss_model *m = sessions[0]->m;
    size_t vocab = (size_t)m->w.cfg.vocab_size;
    if (m->rows_cap < n) {
        float *r = realloc(m->rows, n * vocab * sizeof *r);
        if (!r) return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "decode_sample: cannot allocate %zu logits rows", n);
        m->rows = r;
        m->rows_cap = n;
    }
    gptoss_status st = m->ops->forward(m->be, items, (int)n, m->rows);
    if (st) return st;
    for (size_t i = 0; i < n; i++) sessions[i]->tokens[sessions[i]->n++] = ids[i];
    for (size_t i = 0; i < n; i++) {
        next[i] = gptoss_sampler_sample(samplers[i], m->rows + i * vocab, (int)vocab,
                                        logprobs ? logprobs + i : NULL);
        if (next[i] < 0 && !st) st = sample_failed(i);
    }
    return st;
}

/* Device path (lock held): the backend reduces each row; the sampler
 * finishes from the small result (or from the row, when it needs it). */
static gptoss_status decode_sample_dev(gptoss_session **sessions, const int32_t *ids, size_t n,
                                       const backend_item *items, gptoss_sampler **samplers,
                                       int32_t *next, float *logprobs) {
    gptoss_model *m = sessions[0]->m;
    int vocab = m->w.cfg.vocab_size;
    pick_request *rq = malloc(n * sizeof *rq);
    pick_result *res = calloc(n, sizeof *res);
    if (!rq || !res) {
        free(rq);
        free(res);
        return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "decode_sample: out of memory");
    }
    for (size_t i = 0; i < n; i++) sampler_pick_request(samplers[i], logprobs != NULL, &rq[i]);
    gptoss_status st = m->ops->forward_pick(m->be, items, (int)n, rq, res);
    if (st == GPTOSS_ERR_UNSUPPORTED) st = decode_sample_host(sessions, ids, n, items, samplers, next, logprobs);
    else if (!st) {
        for (size_t i = 0; i < n; i++) sessions[i]->tokens[sessions[i]->n++] = ids[i];
        for (size_t i = 0; i < n; i++) {
            float *lp = logprobs ? logprobs + i : NULL;
            next[i] = sampler_pick_finish(samplers[i], &rq[i], &res[i], lp);
            if (next[i] == PICK_NEED_ROW)
                next[i] = res[i].row ? gptoss_sampler_sample(samplers[i], res[i].row, vocab, lp)
                                     : (gptoss_set_error(GPTOSS_ERR_BACKEND, "the backend returned no row"), -1);
            if (next[i] < 0 && !st) st = sample_failed(i);
        }
    }
    free(rq);
    free(res);
    return st;
}

gptoss_status gptoss_decode_sample(gptoss_session **sessions, const int32_t *ids, size_t n,
                                   gptoss_sampler **samplers, int32_t *next, float *logprobs) {
    if (!sessions || !ids || !samplers || !next)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "decode_sample: NULL argument");
    if (n == 0) return GPTOSS_OK;
    for (size_t i = 0; i < n; i++) {
        if (!samplers[i])
            return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "decode_sample: sampler %zu is NULL", i);
        for (size_t j = 0; j < i; j++) /* each draws from its own stream once */
            if (samplers[j] == samplers[i])
                return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "decode_sample: sampler %zu appears twice", i);
    }
    backend_item *items = malloc(n * sizeof *items);
    if (!items) return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "decode_sample: out of memory");
    gptoss_status st = check_decode(sessions, ids, n, items, "decode_sample");
    if (!st) {
        gptoss_model *m = sessions[0]->m;
        pthread_mutex_lock(&m->lock);
        st = m->ops->forward_pick ? decode_sample_dev(sessions, ids, n, items, samplers, next, logprobs)
                                  : decode_sample_host(sessions, ids, n, items, samplers, next, logprobs);
        pthread_mutex_unlock(&m->lock);
    }
    free(items);
    return st;
}
