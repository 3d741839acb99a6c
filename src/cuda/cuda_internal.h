/* cuda_internal.h - shared declarations of the CUDA backend (C++ only).
 *
 * Device weights keep checkpoint precision: bf16 matrices as [out, in],
 * MXFP4 expert blocks [E, rows, cols/32, 16] + E8M0 scales [E, rows, cols/32]
 * exactly as on disk. Small vectors (norms, biases, sinks) are fp32 on the
 * device. Activations are fp32 (bf16 copies feed the tensor-core GEMMs).
 */
#ifndef GPTOSS_CUDA_INTERNAL_H
#define GPTOSS_CUDA_INTERNAL_H

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

typedef __nv_bfloat16 bf16;
/* KV cache element: fp32, so that attention matches an fp32 reference (bf16
 * keys were measured to move the 20b's logits by up to ~1 through score errors). */
typedef float kv_t;

/* Tokens per pass up to which the decode kernels (matvec, per-token MoE) run;
 * bigger passes use cuBLAS and the grouped MXFP4 GEMM. */
#define CU_DECODE_MAX_T 4
/* Tokens per internal pass (activation buffers are sized for this). */
#define CU_PASS_MAX_T 512
#define CU_MAX_TOPK 8

/* Per-token description of one pass, on the device. */
typedef struct {
    int *tok;      /* [T] token ids */
    int *pos;      /* [T] absolute positions */
    int *slot;     /* [T] KV slot */
} cu_pass_dev;

/* ------------------------------------------------ programmatic launches
 * On Hopper (sm_90+) the decode kernels are launched with programmatic
 * stream serialization (PDL): a kernel may start while its predecessor is
 * finishing, runs its prologue (weight loads, tables), and waits in
 * pdl_wait() (griddepcontrol.wait) before it touches anything the
 * predecessor writes or reads. Every kernel launched through cu_launch must
 * call pdl_wait() before such accesses. g_cu_pdl (set by cu_kernels_init
 * from GPTOSS_CUDA_PDL): 2 = all decode kernels (the default: level 3, with
 * g_cu_pdl_late, releases the successor only after a kernel's main loop;
 * level 2 at its start), 1 = all but the v7 MoE kernels, 0 = off. Fifth
 * session, same calls: level 3 decoded 506.3 tok/s against 498.0-501.1
 * without PDL; levels 1 and 2, which release successors at the start, were
 * 1-3 % slower than no PDL (waiting grids hold resources next to running ones). */
extern int g_cu_pdl;
extern int g_cu_pdl_late; /* level 3 (the default): level 2 with successors released late */

/* The configuration every launch below starts from (no attributes). */
static inline cudaLaunchConfig_t cu_launch_config(dim3 grid, dim3 block, size_t smem, cudaStream_t s) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    return cfg;
}
static inline cudaLaunchAttribute cu_pdl_attr(void) {
    cudaLaunchAttribute a = {};
    a.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    a.val.programmaticStreamSerializationAllowed = 1;
    return a;
}
static inline cudaLaunchAttribute cu_cluster_attr(dim3 cluster) {
    cudaLaunchAttribute a = {};
    a.id = cudaLaunchAttributeClusterDimension;
    a.val.clusterDim.x = cluster.x;
    a.val.clusterDim.y = cluster.y;
    a.val.clusterDim.z = cluster.z;
    return a;
}

template <typename... KArgs, typename... Args>
static inline void cu_launch(void (*kern)(KArgs...), dim3 grid, dim3 block, size_t smem,
                             cudaStream_t s, Args... args) {
    cudaLaunchConfig_t cfg = cu_launch_config(grid, block, smem, s);
    cudaLaunchAttribute at[1] = { cu_pdl_attr() };
    cfg.attrs = at;
    cfg.numAttrs = g_cu_pdl ? 1 : 0;
    cudaLaunchKernelEx(&cfg, kern, args...);
}

/* A launch in thread-block clusters of `cluster` blocks (sm_90+), with PDL
 * as cu_launch when `pdl`. Returns the launch's error (the caller falls back
 * when a cluster shape is refused). */
template <typename... KArgs, typename... Args>
static inline cudaError_t cu_launch_cluster(void (*kern)(KArgs...), dim3 grid, dim3 block, dim3 cluster,
                                            size_t smem, bool pdl, cudaStream_t s, Args... args) {
    cudaLaunchConfig_t cfg = cu_launch_config(grid, block, smem, s);
    cudaLaunchAttribute at[2] = { cu_cluster_attr(cluster), cu_pdl_attr() };
    cfg.attrs = at;
    cfg.numAttrs = pdl ? 2 : 1;
    return cudaLaunchKernelEx(&cfg, kern, args...);
}

/* How many clusters of `cluster` blocks of `kern` can be resident at once
 * (0 when the device or the shape does not allow clusters). Not a stream
 * operation, but asked at init, outside graph capture, by its callers. */
template <typename... KArgs>
static inline int cu_cluster_capacity(void (*kern)(KArgs...), dim3 block, dim3 cluster, size_t smem) {
    cudaLaunchConfig_t cfg = cu_launch_config(cluster, block, smem, 0);
    cudaLaunchAttribute at[1] = { cu_cluster_attr(cluster) };
    cfg.attrs = at;
    cfg.numAttrs = 1;
    int n = 0;
    if (cudaOccupancyMaxActiveClusters(&n, kern, &cfg) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

/* As cu_launch, but without PDL at level 1 (the v7 MoE kernels: with PDL
 * their parity tests failed on the H200 in the third session, cause not
 * found; in the fifth session they passed with levels 2 and 3). */
template <typename... KArgs, typename... Args>
static inline void cu_launch_serial(void (*kern)(KArgs...), dim3 grid, dim3 block, size_t smem,
                                    cudaStream_t s, Args... args) {
    if (g_cu_pdl >= 2)
        cu_launch(kern, grid, block, smem, s, args...);
    else
        kern<<<grid, block, smem, s>>>(args...);
}

/* ----------------------------------------------------------- launchers */
/* Raises the shared-memory limits of the kernels that need it; call once per
 * device before any launch (outside graph capture). */
void cu_kernels_init(void);
/* Multiprocessors and the opt-in shared memory per block of the current
 * device (132 and 48 KiB when they cannot be read). */
void cu_device_limits(int *sms, int *smem_optin);
/* Compute capability major of the current device (0 when it cannot be read). */
int cu_device_major(void);
void cu_moe_decode_init(void);
void cu_moe_gemm_init(void);
void cu_decode_init(void);

/* Decode (T <= CU_DECODE_MAX_T): qkv[t] = W rmsnorm(x[t]) + bias, RoPE on q and
 * k, k and v into the caches, in one launch. */
void cu_qkv_rope(const bf16 *W, int K, const float *x, const float *norm_w, float eps,
                 const float *bias, const float *inv_freq, float conc, const int *pos,
                 const int *slot, kv_t *kc, kv_t *vc, int cap, int T, int nh, int nkv, int hd,
                 float *qkv, cudaStream_t s);

/* All take a stream and return nothing; errors surface via cudaGetLastError. */

void cu_embed(const bf16 *embed, const int *tok, float *x, int T, int H, cudaStream_t s);

/* x[t] += add_bias (if non-NULL); then out = rmsnorm(x[t]) * w, as fp32 (out_f)
 * and/or bf16 (out_b), either may be NULL; out_lo (may be NULL) receives the
 * bf16 remainder out - out_b, so that hi + lo carries ~16 mantissa bits into
 * bf16 tensor-core products. rows: tokens listed in `rows` (NULL = 0..T-1),
 * output row i. */
void cu_rmsnorm(float *x, const float *add_bias, const float *w, float *out_f, bf16 *out_b,
                bf16 *out_lo, const int *rows, int T, int H, float eps, cudaStream_t s);

/* out[t][n] = resid[t][n] + bias[n] + sum_k W[n][k] x[t][k]  (T <= CU_DECODE_MAX_T).
 * resid and bias may be NULL; out may alias resid. ldo: row stride of out/resid. */
void cu_matvec_bf16(const bf16 *W, int N, int K, const float *x, int T, const float *bias,
                    const float *resid, float *out, int ldo, cudaStream_t s);

/* Same with RMSNorm fused on the input: x[t] is normalised (eps) and scaled by
 * norm_w before the product (norm_w NULL = plain). K % 8 == 0. xn_out (may be
 * NULL) receives the normalised input [T, K]. */
void cu_matvec_norm_bf16(const bf16 *W, int N, int K, const float *x, int T, const float *bias,
                         const float *resid, float *out, int ldo, const float *norm_w, float eps,
                         float *xn_out, cudaStream_t s);

/* RoPE on q and k (in the fp32 qkv rows [T, (nh+2nkv)*hd]), then k and v go to
 * the caches at the token's slot/position (ring index pos % cap). */
void cu_rope_kv(float *qkv, const float *bias, const float *inv_freq, float conc, const int *pos,
                const int *slot, kv_t *kc, kv_t *vc, int cap, int T, int nh, int nkv, int hd,
                cudaStream_t s);

/* Attention with sinks. q: rows of qkv (stride ldq), out [T, nh*hd] fp32.
 * window: keys visible (0 = full). Part: scratch for split-KV partials. */
typedef struct {
    const float *q; int ldq;
    const kv_t *kc, *vc; int cap;
    const int *pos, *slot;
    const float *sinks;
    float *out; bf16 *out_b, *out_lo;  /* any may be NULL (lo: bf16 remainder) */
    int T, nh, nkv, hd, window;
    int max_keys;             /* upper bound on keys any token sees (host knowledge) */
    float *part; size_t part_floats;
} cu_attn_args;
void cu_attention(const cu_attn_args *a, cudaStream_t s);
/* Tensor-core prefill attention (cuda_attn_prefill.cu, the default; GPTOSS_CUDA_ATTN=v1 turns it off):
 * 1 when it ran the call, 0 when the caller's kernels must. */
int cu_attention_tc(const cu_attn_args *a, cudaStream_t s);
int cu_attention_set_variant(int v); /* returns the previous one */
/* Decode attention in thread-block clusters (cuda_attn_decode.cu; sm_90+, up to
 * 1024 keys, head_dim 64): 1 when it ran the call, 0 when the caller's kernels must. */
int cu_attention_cluster(const cu_attn_args *a, cudaStream_t s);
void cu_attn_decode_init(void);
int cu_attn_decode_cap(int z); /* clusters of z blocks resident at once (0: not used) */

/* Router: logits[t][e] = router_b[e] + W_r h[t] (h fp32 [T,H]). */
/* (uses cu_matvec_bf16 for small T, cuBLAS otherwise) */

/* Top-k + softmax over the top k: sel_e/sel_w [T, k]. */
void cu_topk(const float *logits, const float *bias, int T, int E, int k, int *sel_e, float *sel_w,
             cudaStream_t s);

/* Decode MoE (T <= CU_DECODE_MAX_T): act[t][j][i] = swiglu of expert sel_e[t][j].
 * With norm_w != NULL, h is the raw residual x and is RMS-normalised (eps) in
 * the kernel; with logits != NULL the kernel also does the router top-k
 * (softmax over the k best of logits[t][0..E)) and writes sel_e/sel_w. */
void cu_moe_gate_up_decode(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                           const float *h, const float *norm_w, float eps, const float *logits,
                           int E, int *sel_e, float *sel_w, float *act, int T, int k, int H,
                           int I, float limit, float alpha, cudaStream_t s);
/* x[t][r] += sum_j sel_w[t][j] * (W_d,e act[t][j] + b_d,e)[r]. y / cnt: v11's
 * scratch (below; NULL: v11 falls back to v7f). */
void cu_moe_down_decode(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                        const float *act, const int *sel_e, const float *sel_w, float *x, float *y,
                        unsigned *cnt, int T, int k, int H, int I, cudaStream_t s);
/* v11 down's scratch: y [CU_DECODE_MAX_T * k * H] floats (each expert's rows)
 * and cnt [CU_DECODE_MAX_T * CU_V11_MAX_RANGES] counters, zeroed once (the
 * kernel resets the ones it uses). */
#define CU_V11_MAX_RANGES 256

/* Versions 4 and 6 of the two decode MoE kernels (cuda_moe_decode_v4.cu;
 * v6 is v4 with i8 = 1: int8 hi + lo inputs, dp4a), chosen by
 * GPTOSS_CUDA_MOE_DECODE=v1|v4|v6 at init or cu_moe_decode_set_variant.
 * Same arguments; they return 0 without launching when the shape is not
 * covered (the launcher then runs v1). */
void cu_moe_decode_v4_init(void);
int cu_moe_gate_up_decode_v4(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                             const float *h, const float *norm_w, const float *logits, int E,
                             int *sel_e, float *sel_w, float *act, int T, int k, int H, int I,
                             float limit, float alpha, int i8, cudaStream_t s);
int cu_moe_down_decode_v4(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                          const float *act, const int *sel_e, const float *sel_w, float *x, int T,
                          int k, int H, int I, int i8, cudaStream_t s);
/* v7 (cuda_moe_decode_v7.cu): weights streamed into registers; i8 = 1: int8
 * hi + lo inputs (GPTOSS_CUDA_MOE_DECODE=v7), 0: fp32 inputs (v7f). */
void cu_moe_decode_v7_init(void);
/* v7f kernel shapes by name (g<G>w<NW>, as GPTOSS_CUDA_V7_GU/_DN; NULL = the
 * default; an unknown name selects g2w24) */
void cu_moe_v7_set_shapes(const char *gu, const char *dn);
int cu_moe_gate_up_decode_v7(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                             const float *h, const float *norm_w, const float *logits, int E,
                             int *sel_e, float *sel_w, float *act, int T, int k, int H, int I,
                             float limit, float alpha, int i8, cudaStream_t s);
int cu_moe_down_decode_v7(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                          const float *act, const int *sel_e, const float *sel_w, float *x, int T,
                          int k, int H, int I, int i8, cudaStream_t s);
/* v9 (cuda_moe_decode_v9.cu): tensor cores, weights as the MMA's A converted
 * in registers, x as bf16 hi/lo B columns (GPTOSS_CUDA_MOE_DECODE=v9). */
void cu_moe_decode_v9_init(void);
int cu_moe_gate_up_decode_v9(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                             const float *h, const float *norm_w, const float *logits, int E,
                             int *sel_e, float *sel_w, float *act, int T, int k, int H, int I,
                             float limit, float alpha, cudaStream_t s);
int cu_moe_down_decode_v9(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                          const float *act, const int *sel_e, const float *sel_w, float *x, int T,
                          int k, int H, int I, cudaStream_t s);
/* v11 (cuda_moe_decode_v11.cu): int8 tensor cores, codes as P/Q bytes of the
 * MMA's A by PRMT, x as three exact int8 limbs in B columns (block, limb)
 * (GPTOSS_CUDA_MOE_DECODE=v11). */
void cu_moe_decode_v11_init(void);
int cu_moe_gate_up_decode_v11(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                              const float *h, const float *norm_w, const float *logits, int E,
                              int *sel_e, float *sel_w, float *act, int T, int k, int H, int I,
                              float limit, float alpha, cudaStream_t s);
int cu_v11_cluster_cap_down(void); /* clusters of (1, 4) down blocks resident at once (0: not used) */
int cu_moe_down_decode_v11(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                           const float *act, const int *sel_e, const float *sel_w, float *x, float *y,
                           unsigned *cnt, int T, int k, int H, int I, cudaStream_t s);
/* 1, 4, 6, 7, 8 (= v7f), 9 or 11: the decode MoE kernel version used from now on (overrides the
 * environment); returns the previous one. */
int cu_moe_decode_set_variant(int v);

/* Grouped (prefill) MoE through tensor cores. scratch laid out by cu_moe_scratch_*. */
typedef struct {
    int *counts;      /* [E] */
    int *offsets;     /* [E+1] */
    int *perm;        /* [T*k] pair index (t*k+j) in expert order */
    int *tiles;       /* [max_tiles] (expert << 16 | m-tile index) */
    int *n_tiles;     /* [1] */
    bf16 *act_hi, *act_lo; /* [T*k, I] SwiGLU outputs (bf16 hi + lo), in expert order */
    float *ypair;     /* [T*k, H] weighted expert outputs, pair order */
} cu_moe_scratch;
int cu_moe_max_tiles(int T, int k, int E);
void cu_moe_prefill(const uint8_t *gu_blocks, const uint8_t *gu_scales, const float *gu_bias,
                    const uint8_t *dn_blocks, const uint8_t *dn_scales, const float *dn_bias,
                    const bf16 *h_hi, const bf16 *h_lo, const int *sel_e, const float *sel_w, float *x,
                    const cu_moe_scratch *sc, int T, int k, int E, int H, int I, float limit,
                    float alpha, cudaStream_t s);
/* ---- grouped GEMM v2 (cuda_moe_gemm_v2.cu), chosen by GPTOSS_CUDA_MOE_GEMM=v2
 * (read once) or cu_moe_gemm_set_variant; cu_moe_prefill keeps k_route and
 * k_combine and calls cu_moe_gemm_v2 for the two GEMMs, which returns 0
 * without launching when it does not cover the shape (tile_rows: k_route's
 * tile height). */
void cu_moe_gemm_v2_init(void);
int cu_moe_gemm_variant(void);       /* 1 (cuda_moe_gemm.cu), 2 or 4 */
/* returns the previous one; -1 (nothing changed) for 2 when the device cannot
 * run v2 (shared memory; valid after cu_kernels_init) */
int cu_moe_gemm_set_variant(int v);
int cu_moe_gemm_v2(const uint8_t *gu_blocks, const uint8_t *gu_scales, const float *gu_bias,
                   const uint8_t *dn_blocks, const uint8_t *dn_scales, const float *dn_bias,
                   const bf16 *h_hi, const bf16 *h_lo, const float *sel_w, const cu_moe_scratch *sc,
                   int T, int k, int E, int H, int I, float limit, float alpha, int tile_rows,
                   cudaStream_t s);
/* v4 (cuda_moe_gemm_v4.cu, wgmma, up to 128 tokens per expert tile and the
 * MMA width fitted to the tile; GPTOSS_CUDA_MOE_GEMM=v4): the same contract
 * but k_route's tile list unused; v4_init runs from v2_init, available =
 * the GPU runs this binary's sm_90a code (probe kernel) */
void cu_moe_gemm_v4_init(void);
int cu_moe_gemm_v4_available(void);
int cu_moe_gemm_v4(const uint8_t *gu_blocks, const uint8_t *gu_scales, const float *gu_bias,
                   const uint8_t *dn_blocks, const uint8_t *dn_scales, const float *dn_bias,
                   const bf16 *h_hi, const bf16 *h_lo, const float *sel_w, const cu_moe_scratch *sc,
                   int T, int k, int E, int H, int I, float limit, float alpha, cudaStream_t s);
/* ---- end grouped GEMM v2 */

/* The E <= 32 form (the 20b): lane l holds logit l (bias included; -INFINITY
 * past E), one expert per lane, the same rounds without the 8-slot scans. */
static __device__ __forceinline__ void cu_warp_topk32(float v, int k, int *sel, float *w) {
    int lane = threadIdx.x & 31;
    float best0 = 0.0f, sum = 0.0f;
    for (int r = 0; r < k; r++) {
        float m = v;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        int wl = __ffs(__ballot_sync(0xffffffffu, v == m)) - 1;
        if (lane == wl) v = -INFINITY;
        if (r == 0) best0 = m;
        sel[r] = wl;
        w[r] = expf(m - best0);
        sum += w[r];
    }
    for (int r = 0; r < k; r++) w[r] /= sum;
}

/* Warp-wide router top-k over logits[0..E) (+ bias), E <= 256: the k best
 * (lowest index on ties), softmax over them. Every lane returns the result.
 * Lane l holds experts l*NPL .. l*NPL+NPL-1 (NPL = ceil(E/32)), so that the
 * lowest lane holding the maximum also holds its lowest index: a round is a
 * lane-local arg-max, a 5-step warp max and one ballot. */
static __device__ __forceinline__ void cu_warp_topk(const float *logits, const float *bias, int E,
                                                    int k, int *sel, float *w) {
    int lane = threadIdx.x & 31;
    if (E <= 32) {
        cu_warp_topk32(lane < E ? logits[lane] + (bias ? bias[lane] : 0.0f) : -INFINITY, k, sel, w);
        return;
    }
    int npl = (E + 31) >> 5;
    float v[8];
#pragma unroll
    for (int i = 0; i < 8; i++) {
        int e = lane * npl + i;
        v[i] = i < npl && e < E ? logits[e] + (bias ? bias[e] : 0.0f) : -INFINITY;
    }
    float best0 = 0.0f, sum = 0.0f;
    for (int r = 0; r < k; r++) {
        float lb = -INFINITY;
        int li = 0;
#pragma unroll
        for (int i = 0; i < 8; i++)
            if (v[i] > lb) { lb = v[i]; li = i; }
        float m = lb;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        unsigned ball = __ballot_sync(0xffffffffu, lb == m);
        int wl = __ffs(ball) - 1;
        int wi = __shfl_sync(0xffffffffu, li, wl);
#pragma unroll
        for (int i = 0; i < 8; i++)
            if (lane == wl && i == wi) v[i] = -INFINITY;
        if (r == 0) best0 = m;
        sel[r] = wl * npl + wi;
        w[r] = expf(m - best0);
        sum += w[r];
    }
    for (int r = 0; r < k; r++) w[r] /= sum;
}

void cu_f32_to_bf16(const float *in, bf16 *out, size_t n, cudaStream_t s);
/* hi = bf16(in), lo = bf16(in - hi). */
void cu_split_bf16(const float *in, bf16 *hi, bf16 *lo, size_t n, cudaStream_t s);
void cu_add_bias_rows(float *x, const float *bias, int T, int N, int ld, cudaStream_t s);

#endif
