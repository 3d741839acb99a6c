/* cuda_moe_decode_v5.cu - fifth version of the MXFP4 decode expert kernels:
 * tensor cores (mma.sync m16n8k16, bf16 in, fp32 accumulate) instead of
 * one FFMA per weight; GPTOSS_CUDA_MOE_DECODE=v5 selects it. Correct (parity
 * tests) but slower than v4 on the H200 (408-410 against 443 tok/s on the
 * 20b): ncu counted 10.7 M instructions for gate_up (v4: 14.9 M) at 2.7
 * warps per scheduler, latency-bound; kept as the starting point of a
 * tensor-core decode path.
 *
 * Why: ncu showed v4 issue-bound at 5.2 instructions per weight (a table
 * lookup, two unpacks and two FFMAs per code pair, plus the row reductions).
 * Here a byte of codes becomes an A-fragment register (bf16x2) through the
 * per-lane table of v4, and one MMA multiplies 16 rows x 16 k. The input
 * enters as the B operand split into bf16 hi + lo columns (x = hi + lo to
 * ~16 bits, as in the prefill GEMMs): column 0 gives W.hi, column 1 W.lo.
 * The E8M0 scale multiplies each 32-k block's fp32 partial sum.
 *
 * Work: one warp owns a 16-row tile over the whole K (no cross-warp
 * reductions, no block barriers after the prologue); it streams the tile
 * through S cp.async stages of 4 blocks (16 rows x 64 bytes + scales). The
 * B fragments of all K sit in shared memory (built once per block).
 * gate_up: grid (bx, T*k), block = tiles of one token/expert pair; the
 *          epilogue pairs rows (gate 2i, up 2i+1) for the clamped SwiGLU.
 * down:    grid (bx, T*k); w_j (dot + b) -> ypart[t][j]; the last of the k
 *          blocks of a (t, bx) row range (atomic counter) adds the k rows to
 *          x in expert order, so the sum is deterministic.
 * Shapes not covered (K > 3072, no scratch for down) return 0 and the caller
 * runs v4.
 */
#include "cuda_moe_common.cuh"

#include <stdlib.h>
#include <string.h>

#define V5_KB 4                        /* blocks per stage */
#define V5_RS (V5_KB * 16 + 16)        /* padded stage row (80 B: conflict-free LDS.128) */
#define V5_SB (16 * V5_RS + 16 * 8)    /* 16 rows of codes + 16 two-word scale windows */
#define V5_STAGES 6
#define V5_MAXW 16                     /* warps per block */
#define V5_MAXNB 96                    /* blocks per row (K <= 3072) */
#define V5_BBYTES (V5_MAXNB * 8 * 16)  /* B fragments: [block][lane 0..7][4 words] */
#define V5_SMEM (MOE_TAB_BYTES + V5_BBYTES + V5_MAXW * V5_STAGES * V5_SB + 16) /* + is_last */

static int g_v5_sms = 132, g_v5_ok = 0;
/* Scratch of the down kernel, shared by the process's backends on one device
 * (one stream at a time); every launch leaves the counters at 0. */
static float *g_v5_ypart;              /* [T*k][H] */
static int *g_v5_count;                /* [T][bx] */
static size_t g_v5_ypart_n, g_v5_count_n;
static int g_v5_dev = -1;              /* device the scratch lives on */

static __device__ __forceinline__ uint32_t v5_bf16x2(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

static __device__ __forceinline__ void v5_mma(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                              uint32_t a3, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* B fragments for x[0..32*NB): entry (block b, lane l = 4g + t, g < 2, reg r)
 * = (x[k], x[k+1]) of column g (0: bf16 hi, 1: bf16 lo = x - hi), with
 * k = 32b + 16(r >> 1) + 8(r & 1) + 2t (the m16n8k16 B layout). */
__device__ __forceinline__ void v5_build_b(uint32_t *bs, const float *x, int NB) {
    for (int i = threadIdx.x; i < NB * 32; i += blockDim.x) {
        int b = i >> 5, l = (i >> 2) & 7, r = i & 3, g = l >> 2, t = l & 3;
        int k = 32 * b + 16 * (r >> 1) + 8 * (r & 1) + 2 * t;
        float2 f = *reinterpret_cast<const float2 *>(x + k);
        __nv_bfloat16 h0 = __float2bfloat16_rn(f.x), h1 = __float2bfloat16_rn(f.y);
        bs[i] = g == 0 ? v5_bf16x2(__bfloat162float(h0), __bfloat162float(h1))
                       : v5_bf16x2(f.x - __bfloat162float(h0), f.y - __bfloat162float(h1));
    }
}

/* Copies stage q of a tile (rows row0.. row0+15, rows >= nrows zero-filled;
 * blocks 4q .. 4q+3 below NB) and each row's scale window into shared
 * address sa. */
__device__ __forceinline__ void v5_issue(uint32_t sa, const uint8_t *bm, const uint8_t *sm, int row0,
                                         int nrows, int NB, int q, int lane) {
    int kb0 = q * V5_KB, nkb = min(V5_KB, NB - kb0);
#pragma unroll
    for (int i = 0; i < 2; i++) { /* 16 rows x 4 blocks = 64 copies */
        int idx = lane + 32 * i, r = idx >> 2, b = idx & 3;
        if (b < nkb) {
            bool ok = row0 + r < nrows;
            moe_cp16(sa + (uint32_t)(r * V5_RS + b * 16),
                    bm + ((size_t)(ok ? row0 + r : 0) * NB + kb0 + b) * 16, ok ? 16 : 0);
        }
    }
    { /* 16 rows x 2 words of scales */
        int r = lane >> 1, w = lane & 1;
        if (row0 + r < nrows) {
            size_t start = (size_t)(row0 + r) * NB + kb0, a = start & ~(size_t)3, end = start + nkb;
            size_t wb = a + 4 * (size_t)w;
            if (wb < end) moe_cp4(sa + (uint32_t)(16 * V5_RS + r * 8 + 4 * w), sm + wb, end - wb < 4 ? (int)(end - wb) : 4);
        }
    }
}

/* One warp: the 16-row tile starting at row0, whole K. Lanes with t == 0
 * return the sums of rows g and g+8 (g = lane / 4). */
__device__ __forceinline__ void v5_tile(unsigned char *smem, const uint32_t *bs, unsigned char *stages,
                                        uint32_t sbase, const uint8_t *bm, const uint8_t *sm, int row0,
                                        int nrows, int NB, int lane, float &out_g, float &out_g8) {
    int g = lane >> 2, nq = (NB + V5_KB - 1) / V5_KB;
    uint32_t lb = (uint32_t)lane * 4u, sel = 0x5504u | ((uint32_t)(lane & 3) << 4);
    const uint4 *bsv = reinterpret_cast<const uint4 *>(bs);
#pragma unroll
    for (int s = 0; s < V5_STAGES - 1; s++) {
        if (s < nq) v5_issue(sbase + s * V5_SB, bm, sm, row0, nrows, NB, s, lane);
        moe_commit();
    }
    float acc0 = 0.0f, acc1 = 0.0f;
    for (int q = 0; q < nq; q++) {
        moe_wait<V5_STAGES - 2>();
        __syncwarp();
        int qq = q + V5_STAGES - 1;
        if (qq < nq) v5_issue(sbase + (qq % V5_STAGES) * V5_SB, bm, sm, row0, nrows, NB, qq, lane);
        moe_commit();
        const unsigned char *st = stages + (q % V5_STAGES) * V5_SB;
        const unsigned char *r0 = st + g * V5_RS, *r1 = st + (g + 8) * V5_RS;
        int kb0 = q * V5_KB;
        int o0 = (int)(((size_t)(row0 + g) * NB + kb0) & 3), o1 = (int)(((size_t)(row0 + g + 8) * NB + kb0) & 3);
        const unsigned char *s0 = st + 16 * V5_RS + g * 8 + o0, *s1 = st + 16 * V5_RS + (g + 8) * 8 + o1;
#pragma unroll
        for (int b = 0; b < V5_KB; b++) {
            if (kb0 + b < NB) {
                uint4 q0 = *reinterpret_cast<const uint4 *>(r0 + b * 16);
                uint4 q1 = *reinterpret_cast<const uint4 *>(r1 + b * 16);
                uint4 bf = lane < 8 ? bsv[(kb0 + b) * 8 + lane] : make_uint4(0, 0, 0, 0);
#define V5_LK(w) (*reinterpret_cast<const uint32_t *>(smem + __byte_perm((w), lb, sel)))
                float d[4] = { 0.0f, 0.0f, 0.0f, 0.0f };
                v5_mma(d, V5_LK(q0.x), V5_LK(q1.x), V5_LK(q0.y), V5_LK(q1.y), bf.x, bf.y);
                v5_mma(d, V5_LK(q0.z), V5_LK(q1.z), V5_LK(q0.w), V5_LK(q1.w), bf.z, bf.w);
#undef V5_LK
                acc0 = fmaf(d[0] + d[1], e8m0_scale(s0[b]), acc0);
                acc1 = fmaf(d[2] + d[3], e8m0_scale(s1[b]), acc1);
            }
        }
        __syncwarp(); /* every lane is done with this stage before it is refilled */
    }
    moe_wait<0>();
    __syncwarp();
    out_g = acc0;
    out_g8 = acc1;
}

/* grid (bx, T*k), 32*W threads (W <= 16); block bx: tiles [bx*TPB, +TPB) of
 * the 2I gate/up rows, warp w takes tiles w, w+W, ... */
__global__ void __launch_bounds__(V5_MAXW * 32, 1) k_moe_gate_up_v5(
    const uint8_t *__restrict__ blocks, const uint8_t *__restrict__ scales,
    const float *__restrict__ bias, const float *__restrict__ h, const float *__restrict__ logits,
    int E, int *sel_e, float *sel_w, float *__restrict__ act, int k, int H, int I, float limit,
    float alpha, int TPB) {
    extern __shared__ __align__(16) unsigned char v5_smem[];
    uint32_t *bs = reinterpret_cast<uint32_t *>(v5_smem + MOE_TAB_BYTES);
    int pair_idx = blockIdx.y, t = pair_idx / k, jsel = pair_idx % k;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, W = blockDim.x >> 5;
    moe_build_tab(v5_smem);
    pdl_trigger();
    pdl_wait(); /* router logits / selection and h come from the predecessor */
    int e = moe_pair_expert(logits, E, k, t, jsel, sel_e, sel_w);
    int NB = H / 32, N = 2 * I, ntiles = (N + 15) / 16;
    const uint8_t *bexp = blocks + (size_t)e * N * NB * 16;
    const uint8_t *sexp = scales + (size_t)e * N * NB;
    unsigned char *stages = v5_smem + MOE_TAB_BYTES + V5_BBYTES + (size_t)warp * V5_STAGES * V5_SB;
    uint32_t sbase = (uint32_t)__cvta_generic_to_shared(stages);
    int m1 = min(ntiles, (int)(blockIdx.x + 1) * TPB);
    int first = blockIdx.x * TPB + warp;
    v5_build_b(bs, h + (size_t)t * H, NB);
    __syncthreads(); /* table and B */
    const float *be = bias + (size_t)e * N;
    float *out = act + (size_t)pair_idx * I;
    for (int m = first; m < m1; m += W) {
        float sg, sg8;
        v5_tile(v5_smem, bs, stages, sbase, bexp, sexp, m * 16, N, NB, lane, sg, sg8);
        /* rows 2i (gate) and 2i+1 (up) sit in lanes 4g and 4g+4 (g even) */
        float og = __shfl_down_sync(0xffffffffu, sg, 4), og8 = __shfl_down_sync(0xffffffffu, sg8, 4);
        int g = lane >> 2;
        if ((lane & 7) == 0) {
            int r = m * 16 + g;
            if (r < N) out[r / 2] = swiglu(sg + be[r], og + be[r + 1], limit, alpha);
            r += 8;
            if (r < N) out[r / 2] = swiglu(sg8 + be[r], og8 + be[r + 1], limit, alpha);
        }
    }
}

/* grid (bx, T*k), 32*W threads; block bx: output-row tiles [bx*TPB, +TPB) of
 * expert j of token t. Writes w_j (dot + b) to ypart[t*k + j]; the k-th block
 * to finish a (t, bx) range adds the k rows to x. */
__global__ void __launch_bounds__(V5_MAXW * 32, 1) k_moe_down_v5(
    const uint8_t *__restrict__ blocks, const uint8_t *__restrict__ scales,
    const float *__restrict__ bias, const float *__restrict__ act, const int *__restrict__ sel_e,
    const float *__restrict__ sel_w, float *x, int k, int H, int I, int TPB, float *ypart,
    int *count) {
    extern __shared__ __align__(16) unsigned char v5_smem[];
    uint32_t *bs = reinterpret_cast<uint32_t *>(v5_smem + MOE_TAB_BYTES);
    int *is_last = reinterpret_cast<int *>(v5_smem + V5_SMEM - 16); /* past the last stage */
    int pair_idx = blockIdx.y, t = pair_idx / k;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, W = blockDim.x >> 5;
    moe_build_tab(v5_smem);
    pdl_trigger();
    pdl_wait(); /* selection, activations and x come from the predecessors */
    int e = sel_e[pair_idx];
    float wj = sel_w[pair_idx];
    int NB = I / 32, ntiles = (H + 15) / 16;
    const uint8_t *bexp = blocks + (size_t)e * H * NB * 16;
    const uint8_t *sexp = scales + (size_t)e * H * NB;
    unsigned char *stages = v5_smem + MOE_TAB_BYTES + V5_BBYTES + (size_t)warp * V5_STAGES * V5_SB;
    uint32_t sbase = (uint32_t)__cvta_generic_to_shared(stages);
    int m0 = blockIdx.x * TPB, m1 = min(ntiles, m0 + TPB);
    v5_build_b(bs, act + (size_t)pair_idx * I, NB);
    __syncthreads(); /* table and B */
    const float *be = bias + (size_t)e * H;
    float *yp = ypart + (size_t)pair_idx * H;
    for (int m = m0 + warp; m < m1; m += W) {
        float sg, sg8;
        v5_tile(v5_smem, bs, stages, sbase, bexp, sexp, m * 16, H, NB, lane, sg, sg8);
        if ((lane & 3) == 0) {
            int r = m * 16 + (lane >> 2);
            if (r < H) yp[r] = wj * (sg + be[r]);
            if (r + 8 < H) yp[r + 8] = wj * (sg8 + be[r + 8]);
        }
    }
    /* the last of the k blocks of this row range adds them up */
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        int *c = count + t * gridDim.x + blockIdx.x;
        int old = atomicAdd(c, 1);
        *is_last = old == k - 1;
        if (old == k - 1) *c = 0; /* ready for the next launch */
    }
    __syncthreads();
    if (!*is_last) return;
    __threadfence();
    int r0 = m0 * 16, r1 = min(H, m1 * 16);
    for (int row = r0 + threadIdx.x; row < r1; row += blockDim.x) {
        float total = 0.0f;
        for (int j = 0; j < k; j++) total += __ldcg(ypart + ((size_t)t * k + j) * H + row);
        x[(size_t)t * H + row] += total;
    }
}

void cu_moe_decode_v5_init(void) {
    int sms, optin;
    cu_device_limits(&sms, &optin);
    g_v5_sms = sms;
    g_v5_ok = optin >= V5_SMEM &&
              cudaFuncSetAttribute(k_moe_gate_up_v5, cudaFuncAttributeMaxDynamicSharedMemorySize, V5_SMEM) == cudaSuccess &&
              cudaFuncSetAttribute(k_moe_down_v5, cudaFuncAttributeMaxDynamicSharedMemorySize, V5_SMEM) == cudaSuccess;
    cudaGetLastError();
}

int cu_moe_decode_v5_reserve(int T, int k, int H) {
    size_t yn = (size_t)T * k * H, cn = (size_t)T * g_v5_sms;
    int dev = -1;
    if (cudaGetDevice(&dev) != cudaSuccess) { cudaGetLastError(); return -1; }
    if (dev != g_v5_dev) { /* another device's scratch is not usable here; it stays
                            * allocated for that device's backend */
        g_v5_ypart = NULL; g_v5_count = NULL; g_v5_ypart_n = g_v5_count_n = 0;
    }
    if (yn <= g_v5_ypart_n && cn <= g_v5_count_n) return 0;
    if (yn < g_v5_ypart_n) yn = g_v5_ypart_n;
    if (cn < g_v5_count_n) cn = g_v5_count_n;
    /* A larger scratch replaces the old one, which stays allocated: decode
     * graphs captured earlier keep its address (a few hundred KB at most). */
    float *yp = NULL;
    int *cnt = NULL;
    if (cudaMalloc(&yp, yn * sizeof(float)) || cudaMalloc(&cnt, cn * sizeof(int)) ||
        cudaMemset(cnt, 0, cn * sizeof(int))) {
        cudaFree(yp);
        cudaFree(cnt);
        cudaGetLastError();
        return -1;
    }
    g_v5_ypart = yp;
    g_v5_count = cnt;
    g_v5_ypart_n = yn;
    g_v5_count_n = cn;
    g_v5_dev = dev;
    return 0;
}

/* Blocks per pair and tiles per block: about one wave of blocks, at most
 * V5_MAXW tiles (warps) per block. */
static void v5_grid(int ntiles, int P, int *bx, int *TPB, int *W) {
    int b = g_v5_sms / P;
    if (b < 1) b = 1;
    int tpb = (ntiles + b - 1) / b;
    b = (ntiles + tpb - 1) / tpb;
    *bx = b;
    *TPB = tpb;
    *W = tpb < V5_MAXW ? tpb : V5_MAXW;
}

int cu_moe_gate_up_decode_v5(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                             const float *h, const float *norm_w, const float *logits, int E,
                             int *sel_e, float *sel_w, float *act, int T, int k, int H, int I,
                             float limit, float alpha, cudaStream_t s) {
    int NB = H / 32;
    if (!g_v5_ok || norm_w || H % 32 || NB > V5_MAXNB || k < 1 || k > CU_MAX_TOPK || T < 1 || I < 1 ||
        (uintptr_t)scales % 4)
        return 0;
    int P = T * k, bx, TPB, W;
    v5_grid((2 * I + 15) / 16, P, &bx, &TPB, &W);
    cu_launch(k_moe_gate_up_v5, dim3(bx, P), dim3(32 * W), (size_t)V5_SMEM, s, blocks, scales, bias, h,
              logits, E, sel_e, sel_w, act, k, H, I, limit, alpha, TPB);
    return 1;
}

int cu_moe_down_decode_v5(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                          const float *act, const int *sel_e, const float *sel_w, float *x, int T,
                          int k, int H, int I, cudaStream_t s) {
    int NB = I / 32;
    if (!g_v5_ok || I % 32 || NB > V5_MAXNB || k < 1 || k > CU_MAX_TOPK || T < 1 || H < 1 ||
        (uintptr_t)scales % 4)
        return 0;
    int P = T * k, bx, TPB, W;
    v5_grid((H + 15) / 16, P, &bx, &TPB, &W);
    int dev = -1;
    if (!g_v5_ypart || (size_t)P * H > g_v5_ypart_n || (size_t)T * bx > g_v5_count_n ||
        cudaGetDevice(&dev) != cudaSuccess || dev != g_v5_dev)
        return 0;
    cu_launch(k_moe_down_v5, dim3(bx, P), dim3(32 * W), (size_t)V5_SMEM, s, blocks, scales, bias, act,
              sel_e, sel_w, x, k, H, I, TPB, g_v5_ypart, g_v5_count);
    return 1;
}
