/* cuda_backend.cu - the CUDA backend: weight upload, KV caches, forward
 * orchestration (decode kernels for a few tokens, cuBLAS + grouped MXFP4 GEMMs
 * for prefill), logits back to the host.
 *
 * Errors never abort: every CUDA/cuBLAS failure becomes GPTOSS_ERR_BACKEND (or
 * GPTOSS_ERR_OUT_OF_MEMORY for allocations) with a one-line message.
 */
#include "cuda_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "util.h"
}

#define STAGE_BYTES (64u << 20)
#define PART_FLOATS (16u << 20)

gptoss_status cu_fail(cudaError_t e, const char *what) {
    cudaGetLastError(); /* clear sticky-free errors */
    if (e == cudaErrorMemoryAllocation)
        return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "cuda: %s: out of device memory", what);
    return gptoss_set_error(GPTOSS_ERR_BACKEND, "cuda: %s: %s", what, cudaGetErrorString(e));
}

/* ------------------------------------------------------------------ upload */

typedef struct {
    backend *b;
    uint8_t *stage[2];
    cudaEvent_t ev[2];
    int cur;
    uint64_t done, total;
    const backend_params *p;
} uploader;

static gptoss_status up_chunked(uploader *u, uint8_t *dst, const void *src, size_t n, int to_f32,
                                tensor_dtype dt) {
    /* to_f32: src has n elements of dtype dt, converted to fp32 at dst */
    size_t esz = to_f32 ? (dt == DTYPE_F32 ? 4 : 2) : 1;
    size_t out_esz = to_f32 ? 4 : 1;
    size_t per = STAGE_BYTES / out_esz;
    for (size_t off = 0; off < n; off += per) {
        size_t len = n - off < per ? n - off : per;
        cudaError_t e = cudaEventSynchronize(u->ev[u->cur]);
        if (e) return cu_fail(e, "upload wait");
        uint8_t *st = u->stage[u->cur];
        const uint8_t *s8 = (const uint8_t *)src + off * esz;
        if (!to_f32) {
            memcpy(st, s8, len);
        } else {
            float *f = (float *)st;
            if (dt == DTYPE_F32) memcpy(f, s8, len * 4);
            else
                for (size_t i = 0; i < len; i++) {
                    uint16_t h;
                    memcpy(&h, s8 + 2 * i, 2);
                    f[i] = bf16_to_f32(h);
                }
        }
        e = cudaMemcpyAsync(dst + off * out_esz, st, len * out_esz, cudaMemcpyHostToDevice, u->b->stream);
        if (!e) e = cudaEventRecord(u->ev[u->cur], u->b->stream);
        if (e) return cu_fail(e, "upload copy");
        u->cur ^= 1;
        u->done += len * esz;
        if (u->p->progress) u->p->progress(u->p->progress_user, u->done, u->total);
    }
    return GPTOSS_OK;
}

static gptoss_status up_raw(uploader *u, void *dst, const tensor_view *t) {
    return up_chunked(u, (uint8_t *)dst, t->data, t->nbytes, 0, DTYPE_U8);
}
static gptoss_status up_f32(uploader *u, float *dst, const tensor_view *t, const char *name) {
    if (t->dtype != DTYPE_BF16 && t->dtype != DTYPE_F32)
        return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED, "cuda: tensor %s: expected bf16 or f32", name);
    size_t n = t->nbytes / (t->dtype == DTYPE_F32 ? 4 : 2);
    return up_chunked(u, (uint8_t *)dst, t->data, n, 1, t->dtype);
}

/* Arena: one cudaMalloc, 256-byte aligned pieces. Sizing pass when base == NULL. */
typedef struct { uint8_t *base; size_t off; } arena;
static void *take(arena *a, size_t n) {
    size_t o = (a->off + 255) & ~(size_t)255;
    a->off = o + n;
    return a->base ? a->base + o : NULL;
}

static void layout_weights(backend *b, arena *a) {
    const gptoss_config *c = &b->cfg;
    int H = c->hidden, E = c->n_experts, I = c->intermediate;
    int Q = c->n_heads * c->head_dim, KV = c->n_kv_heads * c->head_dim, QKV = Q + 2 * KV;
    if (!b->embed_host) b->embed = (bf16 *)take(a, (size_t)c->vocab_size * H * 2);
    b->lm_head = (bf16 *)take(a, (size_t)c->vocab_size * H * 2);
    b->final_norm = (float *)take(a, (size_t)H * 4);
    b->inv_freq = (float *)take(a, (size_t)c->head_dim / 2 * 4);
    for (int l = 0; l < c->n_layers; l++) {
        cu_layer *L = &b->L[l];
        L->attn_norm = (float *)take(a, (size_t)H * 4);
        L->mlp_norm = (float *)take(a, (size_t)H * 4);
        L->qkv_w = (bf16 *)take(a, (size_t)QKV * H * 2);
        L->qkv_b = (float *)take(a, (size_t)QKV * 4);
        L->o_w = (bf16 *)take(a, (size_t)H * Q * 2);
        L->o_b = (float *)take(a, (size_t)H * 4);
        L->sinks = (float *)take(a, (size_t)c->n_heads * 4);
        L->router_w = (bf16 *)take(a, (size_t)E * H * 2);
        L->router_w32 = (float *)take(a, (size_t)E * H * 4);
        L->router_b = (float *)take(a, (size_t)E * 4);
        L->gu_blocks = (uint8_t *)take(a, (size_t)E * 2 * I * (H / 32) * 16);
        L->gu_scales = (uint8_t *)take(a, (size_t)E * 2 * I * (H / 32));
        L->gu_bias = (float *)take(a, (size_t)E * 2 * I * 4);
        L->dn_blocks = (uint8_t *)take(a, (size_t)E * H * (I / 32) * 16);
        L->dn_scales = (uint8_t *)take(a, (size_t)E * H * (I / 32));
        L->dn_bias = (float *)take(a, (size_t)E * H * 4);
    }
}

static gptoss_status upload_weights(backend *b, const model_weights *w, const backend_params *p) {
    const gptoss_config *c = &b->cfg;
    int H = c->hidden;
    int Q = c->n_heads * c->head_dim, KV = c->n_kv_heads * c->head_dim;
    uploader u;
    memset(&u, 0, sizeof u);
    u.b = b;
    u.p = p;
    u.total = w->total_bytes;
    gptoss_status st = GPTOSS_OK;
    cudaError_t e = cudaSuccess;
    for (int i = 0; i < 2 && !e; i++) {
        e = cudaMallocHost((void **)&u.stage[i], STAGE_BYTES);
        if (!e) e = cudaEventCreateWithFlags(&u.ev[i], cudaEventDisableTiming);
        if (!e) e = cudaEventRecord(u.ev[i], b->stream);
    }
    if (e) { st = cu_fail(e, "pinned staging buffers"); goto done; }
#define UP(x) do { st = (x); if (st) goto done; } while (0)
    if (b->embed_host) { /* read by k_embed through the mapping */
        memcpy(b->embed_host, w->embed.data, w->embed.nbytes);
        u.done += w->embed.nbytes;
    } else {
        UP(up_raw(&u, b->embed, &w->embed));
    }
    UP(up_raw(&u, b->lm_head, &w->lm_head));
    UP(up_f32(&u, b->final_norm, &w->final_norm, "model.norm.weight"));
    for (int l = 0; l < c->n_layers; l++) {
        const layer_weights *s = &w->layers[l];
        cu_layer *L = &b->L[l];
        UP(up_f32(&u, L->attn_norm, &s->attn_norm, "input_layernorm"));
        UP(up_f32(&u, L->mlp_norm, &s->mlp_norm, "post_attention_layernorm"));
        UP(up_raw(&u, L->qkv_w, &s->q_w));
        UP(up_raw(&u, (uint8_t *)L->qkv_w + (size_t)Q * H * 2, &s->k_w));
        UP(up_raw(&u, (uint8_t *)L->qkv_w + (size_t)(Q + KV) * H * 2, &s->v_w));
        UP(up_f32(&u, L->qkv_b, &s->q_b, "q_proj.bias"));
        UP(up_f32(&u, L->qkv_b + Q, &s->k_b, "k_proj.bias"));
        UP(up_f32(&u, L->qkv_b + Q + KV, &s->v_b, "v_proj.bias"));
        UP(up_raw(&u, L->o_w, &s->o_w));
        UP(up_f32(&u, L->o_b, &s->o_b, "o_proj.bias"));
        UP(up_f32(&u, L->sinks, &s->sinks, "sinks"));
        UP(up_raw(&u, L->router_w, &s->router_w));
        UP(up_f32(&u, L->router_w32, &s->router_w, "router.weight"));
        u.done -= s->router_w.nbytes; /* counted twice */
        UP(up_f32(&u, L->router_b, &s->router_b, "router.bias"));
        UP(up_raw(&u, L->gu_blocks, &s->gate_up_blocks));
        UP(up_raw(&u, L->gu_scales, &s->gate_up_scales));
        UP(up_f32(&u, L->gu_bias, &s->gate_up_bias, "gate_up_proj_bias"));
        UP(up_raw(&u, L->dn_blocks, &s->down_blocks));
        UP(up_raw(&u, L->dn_scales, &s->down_scales));
        UP(up_f32(&u, L->dn_bias, &s->down_bias, "down_proj_bias"));
    }
#undef UP
    {
        float *inv = (float *)malloc((size_t)c->head_dim / 2 * sizeof(float));
        if (!inv) { st = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "cuda: out of host memory"); goto done; }
        rope_yarn_params(c, inv, &b->conc);
        e = cudaMemcpy(b->inv_freq, inv, (size_t)c->head_dim / 2 * sizeof(float), cudaMemcpyHostToDevice);
        free(inv);
        if (e) { st = cu_fail(e, "rope table"); goto done; }
    }
    e = cudaStreamSynchronize(b->stream);
    if (e) st = cu_fail(e, "weight upload");
done:
    for (int i = 0; i < 2; i++) {
        if (u.ev[i]) { cudaEventSynchronize(u.ev[i]); cudaEventDestroy(u.ev[i]); }
        if (u.stage[i]) cudaFreeHost(u.stage[i]);
    }
    return st;
}

/* --------------------------------------------------------------- lifecycle */

static gptoss_status check_config(const gptoss_config *c) {
    int hd = c->head_dim;
    if (hd != 8 && hd != 16 && hd != 24 && hd != 32 && hd != 48 && hd != 64 && hd != 80 && hd != 96 &&
        hd != 128)
        return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED,
                                "cuda: head_dim %d (supported: 8, 16, 24, 32, 48, 64, 80, 96, 128)", hd);
    if (c->n_heads % c->n_kv_heads || c->n_heads / c->n_kv_heads > 32)
        return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED, "cuda: %d query heads per KV head (max 32)",
                                c->n_heads / c->n_kv_heads);
    if (c->n_experts > 256 || c->experts_per_token > CU_MAX_TOPK)
        return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED, "cuda: %d experts / top-%d (max 256 / %d)",
                                c->n_experts, c->experts_per_token, CU_MAX_TOPK);
    if (c->hidden % 32 || c->intermediate % 32)
        return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED, "cuda: hidden/intermediate must be multiples of 32");
    return GPTOSS_OK;
}

static void cuda_destroy(backend *b);

static gptoss_status alloc_dev(void **p, size_t n, const char *what) {
    cudaError_t e = cudaMalloc(p, n ? n : 1);
    if (e) {
        size_t fr = 0, tot = 0;
        cudaGetLastError();
        cudaMemGetInfo(&fr, &tot);
        return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "cuda: %s: %zu MiB do not fit (%zu MiB free of %zu)",
                                what, n >> 20, fr >> 20, tot >> 20);
    }
    return GPTOSS_OK;
}

static gptoss_status cuda_create(const model_weights *w, const backend_params *p, backend **out) {
    *out = NULL;
    if (!w || !p || p->max_context < 1 || p->max_sequences < 1)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "cuda: create: bad parameters");
    gptoss_status st = check_config(&w->cfg);
    if (st) return st;
    int ndev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e || ndev < 1) { cudaGetLastError(); return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED, "cuda: no CUDA device visible"); }
    if (p->gpu_index < 0 || p->gpu_index >= ndev)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "cuda: gpu_index %d out of range (%d devices)",
                                p->gpu_index, ndev);
    backend *b = (backend *)calloc(1, sizeof *b);
    if (!b) return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "cuda: out of host memory");
    b->cfg = w->cfg;
    b->cfg.layer_is_sliding = (unsigned char *)malloc((size_t)w->cfg.n_layers);
    b->L = (cu_layer *)calloc((size_t)w->cfg.n_layers, sizeof(cu_layer));
    if (!b->cfg.layer_is_sliding || !b->L) { free(b->cfg.layer_is_sliding); free(b->L); free(b);
        return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "cuda: out of host memory"); }
    memcpy(b->cfg.layer_is_sliding, w->cfg.layer_is_sliding, (size_t)w->cfg.n_layers);
    b->dev = p->gpu_index;
    b->max_ctx = p->max_context;
    b->max_seq = p->max_sequences;
    const gptoss_config *c = &b->cfg;
    int H = c->hidden, E = c->n_experts, I = c->intermediate, K = c->experts_per_token;
    int Q = c->n_heads * c->head_dim, KV = c->n_kv_heads * c->head_dim, QKV = Q + 2 * KV;
    int T = CU_PASS_MAX_T;

    if ((e = cudaSetDevice(b->dev))) { st = cu_fail(e, "set device"); goto fail; }
    if ((e = cudaStreamCreateWithFlags(&b->stream, cudaStreamNonBlocking))) { st = cu_fail(e, "stream"); goto fail; }
    if (cublasCreate(&b->blas) != CUBLAS_STATUS_SUCCESS) {
        st = gptoss_set_error(GPTOSS_ERR_BACKEND, "cuda: cublasCreate failed");
        goto fail;
    }
    cublasSetStream(b->blas, b->stream);
    cublasSetMathMode(b->blas, CUBLAS_DEFAULT_MATH);
    {
        cudaDeviceProp prop;
        cudaGetDeviceProperties(&prop, b->dev);
        snprintf(b->desc, sizeof b->desc,
                 "sm_%d%d%s %s: bf16 matvec + fused MXFP4 MoE (decode), cuBLAS + WMMA MXFP4 grouped GEMM (prefill), fp32 KV",
                 prop.major, prop.minor, prop.major == 9 && prop.minor == 0 ? "a" : "", prop.name);
    }

    { /* weights */
        const char *em = getenv("GPTOSS_CUDA_EMBED");
        if (!(em && !strcmp(em, "device"))) {
            size_t eb = (size_t)c->vocab_size * H * 2;
            if ((e = cudaHostAlloc(&b->embed_host, eb, cudaHostAllocMapped))) {
                b->embed_host = NULL;
                st = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "cuda: %zu MiB of pinned host memory for the embedding table: %s",
                                      eb >> 20, cudaGetErrorString(e));
                cudaGetLastError();
                goto fail;
            }
            void *dp = NULL;
            if ((e = cudaHostGetDevicePointer(&dp, b->embed_host, 0))) { st = cu_fail(e, "embedding mapping"); goto fail; }
            b->embed = (bf16 *)dp;
        }
        arena a = { NULL, 0 };
        layout_weights(b, &a);
        b->wbytes = a.off;
        if ((st = alloc_dev(&b->warena, a.off, "weights"))) goto fail;
        a.base = (uint8_t *)b->warena;
        a.off = 0;
        layout_weights(b, &a);
        if ((st = upload_weights(b, w, p))) goto fail;
    }
    { /* KV caches */
        int hd = c->head_dim;
        size_t total = 0;
        int sl_cap = c->sliding_window + BACKEND_MAX_CHUNK;
        if (sl_cap > b->max_ctx) sl_cap = b->max_ctx;
        for (int l = 0; l < c->n_layers; l++) {
            b->L[l].cap = c->layer_is_sliding[l] ? sl_cap : b->max_ctx;
            total += 2 * (size_t)b->max_seq * b->L[l].cap * c->n_kv_heads * hd * sizeof(kv_t) + 256;
        }
        if ((st = alloc_dev(&b->kvarena, total, "KV cache"))) goto fail;
        b->kvbytes = total;
        uint8_t *q = (uint8_t *)b->kvarena;
        for (int l = 0; l < c->n_layers; l++) {
            size_t n = (size_t)b->max_seq * b->L[l].cap * c->n_kv_heads * hd * sizeof(kv_t);
            b->L[l].kc = (kv_t *)q; q += n;
            b->L[l].vc = (kv_t *)q; q += n;
            q = (uint8_t *)(((uintptr_t)q + 255) & ~(uintptr_t)255);
        }
    }
    { /* activations */
        arena a = { NULL, 0 };
        for (int pass = 0; pass < 2; pass++) {
            int mt = cu_moe_max_tiles(T, K, E);
            int maxHQ = H > Q ? H : Q;
            b->x = (float *)take(&a, (size_t)T * H * 4);
            b->hf = (float *)take(&a, (size_t)T * H * 4);
            b->hb = (bf16 *)take(&a, (size_t)T * maxHQ * 2);
            b->hb_lo = (bf16 *)take(&a, (size_t)T * maxHQ * 2);
            b->attn_lo = (bf16 *)take(&a, (size_t)T * Q * 2);
            b->qkv = (float *)take(&a, (size_t)T * QKV * 4);
            b->attn = (float *)take(&a, (size_t)T * Q * 4);
            b->attn_b = (bf16 *)take(&a, (size_t)T * Q * 2);
            b->rlog = (float *)take(&a, (size_t)T * E * 4);
            b->sel_e = (int *)take(&a, (size_t)T * K * 4);
            b->sel_w = (float *)take(&a, (size_t)T * K * 4);
            b->act_dec = (float *)take(&a, (size_t)CU_DECODE_MAX_T * K * I * 4);
            b->moe_y = (float *)take(&a, (size_t)CU_DECODE_MAX_T * K * H * 4);
            b->moe_cnt = (unsigned *)take(&a, (size_t)CU_DECODE_MAX_T * CU_V11_MAX_RANGES * 4);
            b->part = (float *)take(&a, (size_t)PART_FLOATS * 4);
            b->moe.counts = (int *)take(&a, (size_t)E * 4);
            b->moe.offsets = (int *)take(&a, (size_t)(E + 1) * 4);
            b->moe.perm = (int *)take(&a, (size_t)T * K * 4);
            b->moe.tiles = (int *)take(&a, (size_t)mt * 4);
            b->moe.n_tiles = (int *)take(&a, 4);
            b->moe.act_hi = (bf16 *)take(&a, (size_t)T * K * I * 2);
            b->moe.act_lo = (bf16 *)take(&a, (size_t)T * K * I * 2);
            b->moe.ypair = (float *)take(&a, (size_t)T * K * H * 4);
            b->logits_d = (float *)take(&a, (size_t)LOGIT_ROWS * c->vocab_size * 4);
            b->params_d = (int *)take(&a, (size_t)(3 * T + T) * 4);
            if (pass == 0) {
                if ((st = alloc_dev(&b->aarena, a.off, "activation buffers"))) goto fail;
                b->abytes = a.off;
                a.base = (uint8_t *)b->aarena;
                a.off = 0;
            }
        }
        if ((e = cudaMemset(b->moe_cnt, 0, (size_t)CU_DECODE_MAX_T * CU_V11_MAX_RANGES * 4))) {
            st = cu_fail(e, "MoE counters"); goto fail; }
        if ((e = cudaMallocHost((void **)&b->params_h, (size_t)4 * T * 4))) { st = cu_fail(e, "pinned params"); goto fail; }
        if ((e = cudaMallocHost((void **)&b->logits_h, (size_t)PIN_LOGIT_ROWS * c->vocab_size * 4))) {
            st = cu_fail(e, "pinned logits"); goto fail; }
        if ((e = cudaMalloc(&b->blas_ws, 32u << 20))) { st = cu_fail(e, "cuBLAS workspace"); goto fail; }
        cublasSetWorkspace(b->blas, b->blas_ws, 32u << 20);
        b->part_floats = PART_FLOATS;
    }
    cu_kernels_init();
    {
        const char *g = getenv("GPTOSS_CUDA_GRAPH");
        b->use_graph = !(g && !strcmp(g, "0"));
        b->time_exp = cu_time_exp(getenv("GPTOSS_CUDA_TIME"));
    }
    if ((e = cudaStreamSynchronize(b->stream))) { st = cu_fail(e, "create"); goto fail; }
    *out = b;
    return GPTOSS_OK;
fail:
    cuda_destroy(b);
    return st;
}

static void cuda_destroy(backend *b) {
    if (!b) return;
    cudaSetDevice(b->dev);
    if (b->stream) cudaStreamSynchronize(b->stream);
    if (b->graph_exec) cudaGraphExecDestroy(b->graph_exec);
    if (b->blas) cublasDestroy(b->blas);
    cudaFree(b->warena);
    if (b->embed_host) cudaFreeHost(b->embed_host);
    cudaFree(b->kvarena);
    cudaFree(b->aarena);
    cudaFree(b->blas_ws);
    if (b->params_h) cudaFreeHost(b->params_h);
    if (b->logits_h) cudaFreeHost(b->logits_h);
    cu_pick_free(b->pick);
    if (b->stream) cudaStreamDestroy(b->stream);
    cudaGetLastError();
    free(b->cfg.layer_is_sliding);
    free(b->L);
    free(b);
}

static const char *cuda_kernels(const backend *b) { return b ? b->desc : "cuda"; }

static gptoss_status cuda_truncate(backend *b, int slot, int n, int cur_len) {
    if (!b || slot < 0 || slot >= b->max_seq || n < 0 || n > cur_len)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "cuda: truncate: slot %d n %d len %d", slot, n, cur_len);
    /* full layers keep every position; sliding rings must still hold the
     * window before position n */
    for (int l = 0; l < b->cfg.n_layers; l++) {
        if (!b->cfg.layer_is_sliding[l] || b->L[l].cap >= b->max_ctx) continue;
        int need = n - b->cfg.sliding_window; /* oldest key position still needed */
        if (need < 0) need = 0;
        if (n > 0 && need < cur_len - b->L[l].cap)
            return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED,
                                    "cuda: cannot roll the sliding-window cache back from %d to %d tokens",
                                    cur_len, n);
    }
    return GPTOSS_OK;
}

int cuda_device_available(void) {
    static int cached = -1;
    if (cached < 0) {
        int n = 0;
        cudaError_t e = cudaGetDeviceCount(&n);
        cudaGetLastError();
        cached = (e == cudaSuccess && n > 0) ? 1 : 0;
    }
    return cached;
}

/* Copy bandwidth (read + write) of two 512 MiB buffers, best of 5 timed
 * copies after one warm-up: the figure the decode's achieved GB/s is set
 * against. The buffers are freed again. */
static gptoss_status cuda_mem_bandwidth(backend *b, double *gb_s) {
    const size_t n = (size_t)512 << 20;
    void *src = NULL, *dst = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    gptoss_status st = GPTOSS_OK;
    float best = 0.0f;
    cudaError_t e = cudaSetDevice(b->dev);
    if (!e) e = cudaMalloc(&src, n);
    if (!e) e = cudaMalloc(&dst, n);
    if (!e) e = cudaMemsetAsync(src, 1, n, b->stream);
    if (!e) e = cudaEventCreate(&e0);
    if (!e) e = cudaEventCreate(&e1);
    for (int r = 0; r < 6 && !e; r++) {
        e = cudaEventRecord(e0, b->stream);
        if (!e) e = cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, b->stream);
        if (!e) e = cudaEventRecord(e1, b->stream);
        if (!e) e = cudaEventSynchronize(e1);
        float ms = 0.0f;
        if (!e) e = cudaEventElapsedTime(&ms, e0, e1);
        if (!e && r > 0 && ms > 0.0f && (best == 0.0f || ms < best)) best = ms;
    }
    if (e) st = cu_fail(e, "memory bandwidth probe");
    else if (best <= 0.0f) st = gptoss_set_error(GPTOSS_ERR_BACKEND, "cuda: memory bandwidth probe: no timing");
    else *gb_s = 2.0 * (double)n / (best * 1e-3) / 1e9;
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaFree(src);
    cudaFree(dst);
    cudaGetLastError();
    return st;
}

extern "C" const backend_ops cuda_backend_ops = {
    "cuda", cuda_create, cuda_destroy, cuda_kernels, cuda_forward, cuda_truncate, cuda_mem_bandwidth,
    cuda_forward_pick,
};
