/* cuda_test.cu - single-kernel entry points on host data for the parity tests
 * (see cuda_test.h). Not used by the engine. */
#include "cuda/cuda_internal.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_test.h"

#include <cublas_v2.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "util.h"
}

namespace {

/* Device buffers freed at scope exit. */
struct dev_pool {
    void *p[32];
    int n = 0;
    bool failed = false;
    dev_pool() { cu_kernels_init(); }
    template <typename T> T *put(const T *host, size_t count) {
        T *d = alloc<T>(count);
        if (d && host && cudaMemcpy(d, host, count * sizeof(T), cudaMemcpyHostToDevice)) failed = true;
        return d;
    }
    template <typename T> T *alloc(size_t count) {
        void *d = NULL;
        if (n >= 32 || cudaMalloc(&d, count * sizeof(T) + 16)) { failed = true; return NULL; }
        cudaMemset(d, 0, count * sizeof(T) + 16);
        p[n++] = d;
        return (T *)d;
    }
    ~dev_pool() { for (int i = 0; i < n; i++) cudaFree(p[i]); }
};

int finish(dev_pool &dp, const char *what) {
    cudaError_t e = cudaGetLastError();
    if (!e) e = cudaDeviceSynchronize();
    if (e || dp.failed) {
        gptoss_set_error(GPTOSS_ERR_BACKEND, "cuda test %s: %s", what,
                         e ? cudaGetErrorString(e) : "allocation/copy failed");
        return -1;
    }
    return 0;
}

int get(void *host, const void *dev, size_t bytes) {
    return cudaMemcpy(host, dev, bytes, cudaMemcpyDeviceToHost) ? -1 : 0;
}

} // namespace

extern "C" int cuda_test_device(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) { cudaGetLastError(); return 0; }
    return n > 0;
}

extern "C" int cuda_test_linear(const uint16_t *W, int N, int K, const float *x, int T,
                                const float *bias, const float *resid, float *out) {
    dev_pool dp;
    bf16 *dW = dp.put((const bf16 *)W, (size_t)N * K);
    float *dx = dp.put(x, (size_t)T * K);
    float *db = bias ? dp.put(bias, (size_t)N) : NULL;
    float *dout = dp.alloc<float>((size_t)T * N);
    if (resid && dout) cudaMemcpy(dout, resid, (size_t)T * N * 4, cudaMemcpyHostToDevice);
    if (dp.failed) return finish(dp, "linear");
    if (T <= CU_DECODE_MAX_T) {
        cu_matvec_bf16(dW, N, K, dx, T, db, resid ? dout : NULL, dout, N, 0);
    } else {
        bf16 *dxb = dp.alloc<bf16>((size_t)T * K);
        if (dp.failed) return finish(dp, "linear");
        cu_f32_to_bf16(dx, dxb, (size_t)T * K, 0);
        cublasHandle_t h;
        if (cublasCreate(&h)) { gptoss_set_error(GPTOSS_ERR_BACKEND, "cublasCreate"); return -1; }
        float alpha = 1.0f, beta = resid ? 1.0f : 0.0f;
        cublasStatus_t s = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, T, K, &alpha, dW, CUDA_R_16BF,
                                        K, dxb, CUDA_R_16BF, K, &beta, dout, CUDA_R_32F, N,
                                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        cudaDeviceSynchronize();
        cublasDestroy(h);
        if (s) { gptoss_set_error(GPTOSS_ERR_BACKEND, "cublasGemmEx %d", (int)s); return -1; }
        if (db) cu_add_bias_rows(dout, db, T, N, N, 0);
    }
    if (finish(dp, "linear")) return -1;
    return get(out, dout, (size_t)T * N * 4);
}

extern "C" int cuda_test_rmsnorm(const float *x, const float *w, int T, int H, float eps, float *out) {
    dev_pool dp;
    float *dx = dp.put(x, (size_t)T * H), *dw = dp.put(w, (size_t)H);
    float *dout = dp.alloc<float>((size_t)T * H);
    bf16 *dob = dp.alloc<bf16>((size_t)T * H);
    if (dp.failed) return finish(dp, "rmsnorm");
    cu_rmsnorm(dx, NULL, dw, dout, dob, NULL, NULL, T, H, eps, 0);
    if (finish(dp, "rmsnorm")) return -1;
    return get(out, dout, (size_t)T * H * 4);
}

extern "C" int cuda_test_rope_kv(float *qkv, const float *bias, const float *inv_freq, float conc,
                                 const int *pos, const int *slot, float *kc, float *vc,
                                 int slots, int cap, int T, int nh, int nkv, int hd) {
    dev_pool dp;
    size_t width = (size_t)(nh + 2 * nkv) * hd, cache = (size_t)slots * cap * nkv * hd;
    float *dq = dp.put(qkv, (size_t)T * width);
    float *db = bias ? dp.put(bias, width) : NULL;
    float *df = dp.put(inv_freq, (size_t)hd / 2);
    int *dpos = dp.put(pos, (size_t)T), *dslot = dp.put(slot, (size_t)T);
    kv_t *dk = dp.put(kc, cache), *dv = dp.put(vc, cache);
    if (dp.failed) return finish(dp, "rope");
    cu_rope_kv(dq, db, df, conc, dpos, dslot, dk, dv, cap, T, nh, nkv, hd, 0);
    if (finish(dp, "rope")) return -1;
    if (get(qkv, dq, (size_t)T * width * 4) || get(kc, dk, cache * 4) || get(vc, dv, cache * 4)) return -1;
    return 0;
}

extern "C" int cuda_test_attention(const float *q, int ldq, const float *kc, const float *vc,
                                   int slots, int cap, const int *pos, const int *slot,
                                   const float *sinks, int T, int nh, int nkv, int hd, int window,
                                   float *out) {
    dev_pool dp;
    size_t cache = (size_t)slots * cap * nkv * hd;
    int maxpos = 0;
    for (int t = 0; t < T; t++) maxpos = pos[t] > maxpos ? pos[t] : maxpos;
    cu_attn_args a;
    memset(&a, 0, sizeof a);
    a.q = dp.put(q, (size_t)T * ldq);
    a.ldq = ldq;
    a.kc = dp.put(kc, cache);
    a.vc = dp.put(vc, cache);
    a.cap = cap;
    a.pos = dp.put(pos, (size_t)T);
    a.slot = dp.put(slot, (size_t)T);
    a.sinks = dp.put(sinks, (size_t)nh);
    a.out = dp.alloc<float>((size_t)T * nh * hd);
    a.T = T; a.nh = nh; a.nkv = nkv; a.hd = hd; a.window = window;
    a.max_keys = window && window < maxpos + 1 ? window : maxpos + 1;
    a.part_floats = (size_t)1 << 22;
    a.part = dp.alloc<float>(a.part_floats);
    if (dp.failed) return finish(dp, "attention");
    cu_attention(&a, 0);
    if (finish(dp, "attention")) return -1;
    return get(out, a.out, (size_t)T * nh * hd * 4);
}

extern "C" int cuda_test_attention_variant(int version) {
    return cu_attention_set_variant(version);
}

extern "C" int cuda_test_topk(const float *logits, int T, int E, int k, int *sel_e, float *sel_w) {
    dev_pool dp;
    float *dl = dp.put(logits, (size_t)T * E);
    int *de = dp.alloc<int>((size_t)T * k);
    float *dw = dp.alloc<float>((size_t)T * k);
    if (dp.failed) return finish(dp, "topk");
    cu_topk(dl, NULL, T, E, k, de, dw, 0);
    if (finish(dp, "topk")) return -1;
    if (get(sel_e, de, (size_t)T * k * 4) || get(sel_w, dw, (size_t)T * k * 4)) return -1;
    return 0;
}

extern "C" int cuda_test_moe(const uint8_t *gu_blocks, const uint8_t *gu_scales, const float *gu_bias,
                             const uint8_t *dn_blocks, const uint8_t *dn_scales, const float *dn_bias,
                             const float *h, const float *router_logits, float *x, int T, int E,
                             int k, int H, int I, float limit, float alpha, int grouped) {
    dev_pool dp;
    uint8_t *gb = dp.put(gu_blocks, (size_t)E * 2 * I * H / 2);
    uint8_t *gs = dp.put(gu_scales, (size_t)E * 2 * I * H / 32);
    float *gbias = dp.put(gu_bias, (size_t)E * 2 * I);
    uint8_t *db = dp.put(dn_blocks, (size_t)E * H * I / 2);
    uint8_t *ds = dp.put(dn_scales, (size_t)E * H * I / 32);
    float *dbias = dp.put(dn_bias, (size_t)E * H);
    float *dh = dp.put(h, (size_t)T * H);
    float *dl = dp.put(router_logits, (size_t)T * E);
    float *dx = dp.put(x, (size_t)T * H);
    int *sel_e = dp.alloc<int>((size_t)T * k);
    float *sel_w = dp.alloc<float>((size_t)T * k);
    if (dp.failed) return finish(dp, "moe");
    if (grouped != 2) cu_topk(dl, NULL, T, E, k, sel_e, sel_w, 0);
    if (grouped != 1) {
        float *act = dp.alloc<float>((size_t)T * k * I);
        if (dp.failed) return finish(dp, "moe");
        cu_moe_gate_up_decode(gb, gs, gbias, dh, NULL, 0.0f, grouped == 2 ? dl : NULL, E, sel_e, sel_w,
                              act, T, k, H, I, limit, alpha, 0);
        float *y = dp.alloc<float>((size_t)CU_DECODE_MAX_T * k * H);
        unsigned *cnt = dp.alloc<unsigned>((size_t)CU_DECODE_MAX_T * CU_V11_MAX_RANGES);
        if (dp.failed) return finish(dp, "moe");
        cu_moe_down_decode(db, ds, dbias, act, sel_e, sel_w, dx, y, cnt, T, k, H, I, 0);
    } else {
        cu_moe_scratch sc;
        int mt = cu_moe_max_tiles(T, k, E);
        sc.counts = dp.alloc<int>((size_t)E);
        sc.offsets = dp.alloc<int>((size_t)E + 1);
        sc.perm = dp.alloc<int>((size_t)T * k);
        sc.tiles = dp.alloc<int>((size_t)mt);
        sc.n_tiles = dp.alloc<int>(1);
        sc.act_hi = dp.alloc<bf16>((size_t)T * k * I);
        sc.act_lo = dp.alloc<bf16>((size_t)T * k * I);
        sc.ypair = dp.alloc<float>((size_t)T * k * H);
        bf16 *hhi = dp.alloc<bf16>((size_t)T * H), *hlo = dp.alloc<bf16>((size_t)T * H);
        if (dp.failed) return finish(dp, "moe");
        cu_split_bf16(dh, hhi, hlo, (size_t)T * H, 0);
        cu_moe_prefill(gb, gs, gbias, db, ds, dbias, hhi, hlo, sel_e, sel_w, dx, &sc, T, k, E, H, I, limit,
                       alpha, 0);
    }
    if (finish(dp, "moe")) return -1;
    return get(x, dx, (size_t)T * H * 4);
}

extern "C" void cuda_test_cluster_caps(int *down_k4, int *attn_z4, int *attn_z16) {
    cu_kernels_init();
    *down_k4 = cu_v11_cluster_cap_down();
    *attn_z4 = cu_attn_decode_cap(4);
    *attn_z16 = cu_attn_decode_cap(16);
}

extern "C" int cuda_test_moe_decode_variant(int version) {
    return cu_moe_decode_set_variant(version);
}

extern "C" void cuda_test_moe_v7_shapes(const char *gate_up, const char *down) {
    cu_kernels_init(); /* the shapes' shared-memory limits */
    cu_moe_v7_set_shapes(gate_up, down);
}

extern "C" int cuda_test_moe_gemm_variant(int version) {
    cu_kernels_init(); /* v2's shared-memory check */
    return cu_moe_gemm_set_variant(version);
}

extern "C" int cuda_test_pick(const float *logits, int R, int V, const pick_request *rq, pick_result *res,
                              int32_t *cand_id, float *cand_logit) {
    dev_pool dp;
    float *l = dp.put(logits, (size_t)R * V);
    if (dp.failed) return finish(dp, "pick");
    cu_pick *p = NULL;
    int rc = -1;
    if (cu_pick_reserve(&p, V, R) == GPTOSS_OK) {
        rc = 0;
        for (int off = 0; off < R && !rc; off += CU_PICK_ROWS) {
            int n = R - off < CU_PICK_ROWS ? R - off : CU_PICK_ROWS;
            if (cu_pick_run(p, l + (size_t)off * V, rq + off, res + off, n, off, 0) != GPTOSS_OK) rc = -1;
        }
        for (int r = 0; r < R && !rc; r++) { /* out of the pick buffers, freed below */
            int n = res[r].st.n_cand < PICK_CAND_CAP ? res[r].st.n_cand : PICK_CAND_CAP;
            if (n > 0) {
                memcpy(cand_id + (size_t)r * PICK_CAND_CAP, res[r].cand_id, (size_t)n * sizeof(int32_t));
                memcpy(cand_logit + (size_t)r * PICK_CAND_CAP, res[r].cand_logit, (size_t)n * sizeof(float));
            }
            res[r].cand_id = cand_id + (size_t)r * PICK_CAND_CAP;
            res[r].cand_logit = cand_logit + (size_t)r * PICK_CAND_CAP;
            res[r].row = NULL;
        }
    }
    cu_pick_free(p);
    if (rc) return -1;
    return finish(dp, "pick");
}
