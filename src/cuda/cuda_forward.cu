/* cuda_forward.cu - the forward pass of the CUDA backend.
 *
 * Items are packed into passes of up to CU_PASS_MAX_T tokens. A pass of at
 * most CU_DECODE_MAX_T tokens (decode, batched decode) runs the bandwidth
 * kernels: bf16 matvecs with fp32 activations and the fused MXFP4 MoE
 * matvecs. A bigger pass (prefill) runs cuBLAS bf16 GEMMs (fp32 accumulate),
 * fp32 routing (the router GEMM in fp32 so that expert choice matches an fp32
 * reference) and the grouped MXFP4 tensor-core GEMMs.
 */
#include "cuda_backend.h"

#include <string.h>

extern "C" {
#include "util.h"
}


static cublasStatus_t gemm_bf16(backend *b, const bf16 *W, int N, int K, const bf16 *A, int T,
                                float *C, int ldc, float beta) {
    float alpha = 1.0f;
    return cublasGemmEx(b->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, T, K, &alpha, W, CUDA_R_16BF, K, A,
                        CUDA_R_16BF, K, &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                        CUBLAS_GEMM_DEFAULT);
}

/* C = W (A_hi + A_lo)^T + beta C: the bf16 split keeps fp32-like accuracy. */
static cublasStatus_t gemm_split(backend *b, const bf16 *W, int N, int K, const bf16 *hi,
                                 const bf16 *lo, int T, float *C, int ldc, float beta) {
    cublasStatus_t st = gemm_bf16(b, W, N, K, hi, T, C, ldc, beta);
    if (!st) st = gemm_bf16(b, W, N, K, lo, T, C, ldc, 1.0f);
    return st;
}

static cublasStatus_t gemm_f32(backend *b, const float *W, int N, int K, const float *A, int T,
                               float *C, int ldc) {
    float alpha = 1.0f, beta = 0.0f;
    return cublasSgemm(b->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, T, K, &alpha, W, K, A, K, &beta, C, ldc);
}

/* Timing experiments (GPTOSS_CUDA_TIME=name): the named decode kernel runs a
 * second time per layer, on the next layer's weights (so that the second
 * launch finds none of them in L2) and into scratch outputs; "guh"/"dnh" run
 * the second MoE launch on half the rows. The step's extra time over the
 * default is the kernel's cost inside the graph, launch gaps included; with
 * the half variants it splits into a fixed part and a per-row part. The
 * results are wrong: for measurements only. */
enum { TX_NONE, TX_QKV, TX_ATTN, TX_O, TX_ROUTER, TX_GU, TX_GUH, TX_DN, TX_DNH, TX_GUT, TX_EMPTY };

/* "empty": the cost of one launch of a kernel that does nothing (132 x 768
 * threads) between two kernels of the graph; "gut": the second gate_up on
 * 1/32 of the rows (its fixed cost) */
__global__ void k_time_empty(void) {}

int cu_time_exp(const char *name) {
    static const char *names[] = { "", "qkv", "attn", "o", "router", "gu", "guh", "dn", "dnh", "gut", "empty" };
    for (int i = 1; name && i < (int)(sizeof names / sizeof names[0]); i++)
        if (!strcmp(name, names[i])) return i;
    return TX_NONE;
}

/* Enqueues embedding, all layers and (when lm_rows > 0 and small) the final
 * norm + lm_head matvec of a pass. keys_full bounds the keys any token sees on
 * full-attention layers (it sizes the split-KV grid). */
static cublasStatus_t enqueue_body(backend *b, int T, int keys_full, int lm_rows) {
    const gptoss_config *c = &b->cfg;
    int H = c->hidden, E = c->n_experts, I = c->intermediate, K = c->experts_per_token;
    int nh = c->n_heads, nkv = c->n_kv_heads, hd = c->head_dim;
    int Q = nh * hd, QKV = Q + 2 * nkv * hd, V = c->vocab_size;
    cudaStream_t s = b->stream;
    cublasStatus_t bs = CUBLAS_STATUS_SUCCESS;
    bool dec = T <= CU_DECODE_MAX_T;
    const int *tok = b->params_d, *pos = b->params_d + T, *slot = b->params_d + 2 * T;
    const int *rows = b->params_d + 3 * T;

    cu_embed(b->embed, tok, b->x, T, H, s);
    for (int l = 0; l < c->n_layers && !bs; l++) {
        const cu_layer *L = &b->L[l];
        int sliding = c->layer_is_sliding[l];
        /* attention */
        if (dec) {
            cu_qkv_rope(L->qkv_w, H, b->x, L->attn_norm, c->rms_eps, L->qkv_b, b->inv_freq, b->conc,
                        pos, slot, L->kc, L->vc, L->cap, T, nh, nkv, hd, b->qkv, s);
        } else {
            cu_rmsnorm(b->x, NULL, L->attn_norm, NULL, b->hb, b->hb_lo, NULL, T, H, c->rms_eps, s);
            bs = gemm_split(b, L->qkv_w, QKV, H, b->hb, b->hb_lo, T, b->qkv, QKV, 0.0f);
            cu_rope_kv(b->qkv, L->qkv_b, b->inv_freq, b->conc, pos, slot, L->kc, L->vc, L->cap, T,
                       nh, nkv, hd, s);
        }
        cu_attn_args a;
        memset(&a, 0, sizeof a);
        a.q = b->qkv; a.ldq = QKV;
        a.kc = L->kc; a.vc = L->vc; a.cap = L->cap;
        a.pos = pos; a.slot = slot; a.sinks = L->sinks;
        a.out = dec ? b->attn : NULL;
        a.out_b = dec ? NULL : b->attn_b;
        a.out_lo = dec ? NULL : b->attn_lo;
        a.T = T; a.nh = nh; a.nkv = nkv; a.hd = hd;
        a.window = sliding ? c->sliding_window : 0;
        a.max_keys = sliding && c->sliding_window < keys_full ? c->sliding_window : keys_full;
        a.part = b->part; a.part_floats = b->part_floats;
        const cu_layer *L2 = &b->L[(l + 1) % c->n_layers]; /* timing experiments only */
        int tx = dec ? b->time_exp : TX_NONE;
        if (tx == TX_QKV)
            cu_qkv_rope(L2->qkv_w, H, b->x, L2->attn_norm, c->rms_eps, L2->qkv_b, b->inv_freq, b->conc,
                        pos, slot, L2->kc, L2->vc, L2->cap, T, nh, nkv, hd, b->qkv, s);
        cu_attention(&a, s);
        if (tx == TX_ATTN) cu_attention(&a, s);
        /* MoE */
        if (dec) {
            cu_matvec_bf16(L->o_w, H, Q, b->attn, T, L->o_b, b->x, b->x, H, s);
            if (tx == TX_O) cu_matvec_bf16(L2->o_w, H, Q, b->attn, T, L2->o_b, b->hf, b->hf, H, s);
            cu_matvec_norm_bf16(L->router_w, E, H, b->x, T, L->router_b, NULL, b->rlog, E,
                                L->mlp_norm, c->rms_eps, b->hf, s);
            if (tx == TX_ROUTER)
                cu_matvec_norm_bf16(L2->router_w, E, H, b->x, T, L2->router_b, NULL, b->rlog, E,
                                    L2->mlp_norm, c->rms_eps, b->hf, s);
            cu_moe_gate_up_decode(L->gu_blocks, L->gu_scales, L->gu_bias, b->hf, NULL, 0.0f,
                                  b->rlog, E, b->sel_e, b->sel_w, b->act_dec, T, K, H, I,
                                  c->swiglu_limit, c->swiglu_alpha, s);
            if (tx == TX_GU || tx == TX_GUH || tx == TX_GUT)
                cu_moe_gate_up_decode(L2->gu_blocks, L2->gu_scales, L2->gu_bias, b->hf, NULL, 0.0f,
                                      b->rlog, E, b->sel_e, b->sel_w, b->act_dec, T, K, H,
                                      tx == TX_GUH ? I / 2 : tx == TX_GUT ? I / 32 : I, c->swiglu_limit,
                                      c->swiglu_alpha, s);
            if (tx == TX_EMPTY) k_time_empty<<<132, 768, 0, s>>>();
            cu_moe_down_decode(L->dn_blocks, L->dn_scales, L->dn_bias, b->act_dec, b->sel_e,
                               b->sel_w, b->x, b->moe_y, b->moe_cnt, T, K, H, I, s);
            if (tx == TX_DN || tx == TX_DNH)
                cu_moe_down_decode(L2->dn_blocks, L2->dn_scales, L2->dn_bias, b->act_dec, b->sel_e,
                                   b->sel_w, b->hf, b->moe_y, b->moe_cnt, T, K, tx == TX_DNH ? H / 2 : H, I, s);
        } else {
            if (!bs) bs = gemm_split(b, L->o_w, H, Q, b->attn_b, b->attn_lo, T, b->x, H, 1.0f);
            cu_rmsnorm(b->x, L->o_b, L->mlp_norm, b->hf, b->hb, b->hb_lo, NULL, T, H, c->rms_eps, s);
            if (!bs) bs = gemm_f32(b, L->router_w32, E, H, b->hf, T, b->rlog, E);
            cu_topk(b->rlog, L->router_b, T, E, K, b->sel_e, b->sel_w, s);
            cu_moe_prefill(L->gu_blocks, L->gu_scales, L->gu_bias, L->dn_blocks, L->dn_scales,
                           L->dn_bias, b->hb, b->hb_lo, b->sel_e, b->sel_w, b->x, &b->moe, T, K, E, H, I,
                           c->swiglu_limit, c->swiglu_alpha, s);
        }
    }
    if (lm_rows > 0 && lm_rows <= CU_DECODE_MAX_T) {
        if (lm_rows == T) { /* every token wants logits (decode): norm fused into lm_head */
            cu_matvec_norm_bf16(b->lm_head, V, H, b->x, T, NULL, NULL, b->logits_d, V, b->final_norm,
                                c->rms_eps, NULL, s);
        } else {
            cu_rmsnorm(b->x, NULL, b->final_norm, b->hf, NULL, NULL, rows, lm_rows, H, c->rms_eps, s);
            cu_matvec_bf16(b->lm_head, V, H, b->hf, lm_rows, NULL, NULL, b->logits_d, V, s);
        }
    }
    return bs;
}

/* Decode passes replay a CUDA graph keyed by (T, rows, key bucket): the
 * kernels read tokens/positions/slots from params_d, and the split-KV grid is
 * sized for a power-of-two bucket of the longest context. */
static gptoss_status launch_decode_graph(backend *b, int T, int maxpos, int R) {
    int bucket = 256;
    while (bucket < maxpos + 1) bucket *= 2;
    if (bucket > b->max_ctx) bucket = b->max_ctx;
    if (bucket < maxpos + 1) bucket = maxpos + 1;
    cudaError_t e;
    if (!b->graph_exec || b->graph_T != T || b->graph_R != R || b->graph_bucket != bucket) {
        if (b->graph_exec) { cudaGraphExecDestroy(b->graph_exec); b->graph_exec = NULL; }
        cudaGraph_t g = NULL;
        e = cudaStreamBeginCapture(b->stream, cudaStreamCaptureModeThreadLocal);
        if (e) return cu_fail(e, "graph capture");
        enqueue_body(b, T, bucket, R);
        e = cudaStreamEndCapture(b->stream, &g);
        if (e) return cu_fail(e, "graph capture end");
        e = cudaGraphInstantiate(&b->graph_exec, g, 0);
        cudaGraphDestroy(g);
        if (e) { b->graph_exec = NULL; return cu_fail(e, "graph instantiate"); }
        b->graph_T = T; b->graph_R = R; b->graph_bucket = bucket;
    }
    e = cudaGraphLaunch(b->graph_exec, b->stream);
    if (e) return cu_fail(e, "graph launch");
    return GPTOSS_OK;
}

/* params_h holds tok[T], pos[T], slot[T], rows[R]. The logits rows go to
 * logits_out, or (rq != NULL) are reduced on the device as rq[0..R) asks into
 * res (device sampling, cuda_sample.cu; row0: the call's row of rq[0]). */
static gptoss_status run_pass(backend *b, int T, int maxpos, int R, float *logits_out,
                              const pick_request *rq, pick_result *res, int row0) {
    const gptoss_config *c = &b->cfg;
    int H = c->hidden, V = c->vocab_size;
    cudaStream_t s = b->stream;
    cudaError_t e;
    e = cudaMemcpyAsync(b->params_d, b->params_h, (size_t)(3 * T + R) * sizeof(int),
                        cudaMemcpyHostToDevice, s);
    if (e) return cu_fail(e, "forward: parameters");
    const int *rows = b->params_d + 3 * T;
    bool want = logits_out || rq;
    int lm_rows = want && R <= CU_DECODE_MAX_T ? R : 0;
    if (T <= CU_DECODE_MAX_T && b->use_graph) {
        gptoss_status st = launch_decode_graph(b, T, maxpos, lm_rows);
        if (st) return st;
    } else {
        cublasStatus_t bs = enqueue_body(b, T, maxpos + 1, lm_rows);
        if (bs) return gptoss_set_error(GPTOSS_ERR_BACKEND, "cuda: cuBLAS GEMM failed (status %d)", (int)bs);
    }
    /* logits for the requested rows */
    for (int off = 0; off < R && want; off += LOGIT_ROWS) {
        int Rc = R - off < LOGIT_ROWS ? R - off : LOGIT_ROWS;
        if (!lm_rows) {
            cu_rmsnorm(b->x, NULL, b->final_norm, NULL, b->hb, b->hb_lo, rows + off, Rc, H, c->rms_eps, s);
            cublasStatus_t bs = gemm_split(b, b->lm_head, V, H, b->hb, b->hb_lo, Rc, b->logits_d, V, 0.0f);
            if (bs) return gptoss_set_error(GPTOSS_ERR_BACKEND, "cuda: cuBLAS lm_head failed (status %d)", (int)bs);
        }
        if (rq) { /* launched after the graph; only small results come back */
            gptoss_status st = cu_pick_run(b->pick, b->logits_d, rq + off, res + off, Rc, row0 + off, s);
            if (st) return st;
            continue;
        }
        float *dst = logits_out + (size_t)off * V;
        size_t bytes = (size_t)Rc * V * sizeof(float);
        if (Rc <= PIN_LOGIT_ROWS) {
            e = cudaMemcpyAsync(b->logits_h, b->logits_d, bytes, cudaMemcpyDeviceToHost, s);
            if (!e) e = cudaStreamSynchronize(s);
            if (e) return cu_fail(e, "forward");
            memcpy(dst, b->logits_h, bytes);
        } else {
            e = cudaMemcpyAsync(dst, b->logits_d, bytes, cudaMemcpyDeviceToHost, s);
            if (!e) e = cudaStreamSynchronize(s);
            if (e) return cu_fail(e, "forward");
        }
    }
    e = cudaGetLastError();
    if (!e) e = cudaStreamSynchronize(s);
    if (e) return cu_fail(e, "forward");
    return GPTOSS_OK;
}

static gptoss_status forward(backend *b, const backend_item *items, int n_items, float *logits,
                             const pick_request *rq, pick_result *res) {
    if (!b || (!items && n_items) || n_items < 0)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "cuda: forward: NULL argument");
    const gptoss_config *c = &b->cfg;
    for (int i = 0; i < n_items; i++) {
        const backend_item *it = &items[i];
        if (it->slot < 0 || it->slot >= b->max_seq)
            return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "cuda: forward: item %d: slot %d out of range (%d slots)",
                                    i, it->slot, b->max_seq);
        if (it->n < 1 || it->n > BACKEND_MAX_CHUNK || it->pos < 0 || !it->tokens)
            return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "cuda: forward: item %d: bad n %d / pos %d",
                                    i, it->n, it->pos);
        if (it->pos + it->n > b->max_ctx)
            return gptoss_set_error(GPTOSS_ERR_CONTEXT_FULL, "cuda: forward: item %d: %d + %d tokens exceed the context %d",
                                    i, it->pos, it->n, b->max_ctx);
        for (int j = 0; j < it->n; j++)
            if (it->tokens[j] < 0 || it->tokens[j] >= c->vocab_size)
                return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "cuda: forward: item %d: token %d out of range",
                                        i, (int)it->tokens[j]);
        for (int j = 0; j < i; j++)
            if (items[j].slot == it->slot)
                return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "cuda: forward: slot %d appears twice", it->slot);
    }
    cudaError_t e = cudaSetDevice(b->dev);
    if (e) return cu_fail(e, "set device");
    const int T_MAX = CU_PASS_MAX_T;
    int *ph = b->params_h;
    float *out = logits;
    int T = 0, R = 0, maxpos = 0, row0 = 0;
    int tokbuf[CU_PASS_MAX_T], posbuf[CU_PASS_MAX_T], slotbuf[CU_PASS_MAX_T], rowbuf[CU_PASS_MAX_T];
    for (int i = 0; i <= n_items; i++) {
        int n = i < n_items ? items[i].n : 0;
        if (T > 0 && (i == n_items || T + n > T_MAX)) {
            memcpy(ph, tokbuf, (size_t)T * 4);
            memcpy(ph + T, posbuf, (size_t)T * 4);
            memcpy(ph + 2 * T, slotbuf, (size_t)T * 4);
            memcpy(ph + 3 * T, rowbuf, (size_t)R * 4);
            gptoss_status st = run_pass(b, T, maxpos, R, out, rq, res, row0);
            if (st) return st;
            if (out) out += (size_t)R * c->vocab_size;
            if (rq) rq += R, res += R, row0 += R;
            T = R = maxpos = 0;
        }
        if (i == n_items) break;
        const backend_item *it = &items[i];
        for (int j = 0; j < it->n; j++) {
            tokbuf[T] = it->tokens[j];
            posbuf[T] = it->pos + j;
            slotbuf[T] = it->slot;
            if (it->logits_all || j == it->n - 1) rowbuf[R++] = T;
            T++;
        }
        if (it->pos + it->n - 1 > maxpos) maxpos = it->pos + it->n - 1;
    }
    return GPTOSS_OK;
}

gptoss_status cuda_forward(backend *b, const backend_item *items, int n_items, float *logits) {
    return forward(b, items, n_items, logits, NULL, NULL);
}

/* Decode items only: one row each, reduced on the device (cuda_sample.cu). */
gptoss_status cuda_forward_pick(backend *b, const backend_item *items, int n_items,
                                const pick_request *reqs, pick_result *res) {
    if (!b || !items || !reqs || !res || n_items < 1)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "cuda: forward_pick: bad argument");
    for (int i = 0; i < n_items; i++)
        if (items[i].n != 1 || items[i].logits_all)
            return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "cuda: forward_pick: item %d is not one decode token", i);
    cudaError_t e = cudaSetDevice(b->dev);
    if (e) return cu_fail(e, "set device");
    gptoss_status st = cu_pick_reserve(&b->pick, b->cfg.vocab_size, n_items); /* UNSUPPORTED: engine falls back */
    if (st) return st;
    return forward(b, items, n_items, NULL, reqs, res);
}
