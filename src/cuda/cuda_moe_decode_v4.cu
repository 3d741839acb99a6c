/* cuda_moe_decode_v4.cu - fourth version of the MXFP4 decode expert kernels
 * (GPTOSS_CUDA_MOE_DECODE=v4; the fallback of v7/v7f when a block's
 * shared memory does not fit).
 *
 * Same math as v1 in fp32 (exact E2M1 x 2^(s-127) weights, fp32 inputs, fp32
 * accumulation); what changes is the parallelism. ncu on the 20b showed the
 * previous version (v3, removed: one warp per row pair over the whole K)
 * issue-latency bound: 8 warps per SM (96 input floats per lane in registers)
 * issued 0.4 instructions per cycle per scheduler. Here each row is split in
 * three parts of 32 blocks (K <= 3072): a warp's lane owns ONE block of its
 * part (32 input floats in registers), so a 768-thread block (24 warps, 6 per
 * scheduler) fits in the register file. A warp walks row pairs of its part
 * through S cp.async stages (each lane copies the blocks it reads; the scale
 * bytes are shared through the stage, hence __syncwarp); the three partial
 * sums of a row meet in shared memory and are added in a fixed order
 * (deterministic), then the epilogue applies bias + SwiGLU (gate_up) or the
 * routing weights + residual (down).
 *
 * gate_up: grid (bx, T*k); block = a range of (gate, up) row pairs of one
 *          token/expert pair; warp w: part w % 3, pairs i0 + w/3 + 8n.
 * down:    grid (bx, T); block = a row range for all k experts; 24 warps =
 *          k experts x 3 parts x (8/k) row groups (k in 1, 2, 4, 8).
 * Other shapes return 0 and the caller runs v1.
 *
 * v6 (GPTOSS_CUDA_MOE_DECODE=v6) is this kernel with another dot product
 * (template flag I8): a lane turns its 32 inputs into two int8 blocks, hi and
 * lo (x ~ dh*hi + dl*lo, error <= max|x| / 64516 per element), and each
 * 4-byte word of codes becomes two int8x4 words of 2*E2M1 values through
 * three byte permutes per four codes (positive table, negative table, select
 * on the sign bit); __dp4a multiplies four weights at once. That is 16
 * instructions per 8 weights against ~24 for the table + FFMA path, and no
 * 64 KiB shared table, so the pipeline can be deeper.
 */
#include "cuda_moe_common.cuh"

#include <stdlib.h>
#include <string.h>

#define V4_THREADS 768
#define V4_WARPS 24
#define V4_PARTS 3
/* Stage: two rows x 32 blocks x 16 bytes, then each row's scale bytes of the
 * part (from a 4-byte aligned start: up to 36 bytes, 48 reserved per row). */
#define V4_SB (2 * 32 * 16 + 2 * 48)

static int g_v4_sms = 132, g_v4_smem_max = 48 * 1024;

/* Copies blocks [pb, pb+nbp) of rows row, row+1 (row+1 only when two) and
 * their scale bytes into the stage at shared address sa. Lane l copies block
 * pb + l of each row (the block it reads later). */
__device__ __forceinline__ void v4_issue(uint32_t sa, const uint8_t *bm, const uint8_t *sm,
                                         size_t row, bool two, int NB, int pb, int nbp, int lane) {
    size_t rowbytes = (size_t)NB * 16;
    if (lane < nbp) {
        cu_cp16(sa + (uint32_t)(lane * 16), bm + row * rowbytes + (size_t)(pb + lane) * 16, 16);
        cu_cp16(sa + (uint32_t)(512 + lane * 16), bm + (row + (two ? 1 : 0)) * rowbytes + (size_t)(pb + lane) * 16,
                two ? 16 : 0);
    }
    /* scales: lanes 0..8 row 0, lanes 16..24 row 1; word w covers bytes
     * [a + 4w, a + 4w + 4) of [a, end) with a = start rounded down to 4 */
    int g = lane >> 4, w = lane & 15;
    if (g == 1 && !two) return;
    size_t start = (row + g) * (size_t)NB + pb, a = start & ~(size_t)3, end = start + nbp;
    size_t wb = a + 4 * (size_t)w;
    if (w < 9 && wb < end) {
        int n = end - wb < 4 ? (int)(end - wb) : 4;
        cu_cp4(sa + (uint32_t)(1024 + g * 48 + 4 * w), sm + wb, n);
    }
}

/* Per-lane dot products of the stage's two rows with this lane's block. */
template <class X>
__device__ __forceinline__ void v4_dot_stage(const unsigned char *st, const X &x,
                                             const unsigned char *tab, uint32_t lb, size_t row,
                                             int NB, int pb, int nbp, int lane, float (&acc)[2]) {
    acc[0] = 0.0f;
    acc[1] = 0.0f;
    if (lane < nbp) {
#pragma unroll
        for (int g = 0; g < 2; g++) {
            uint4 q = *reinterpret_cast<const uint4 *>(st + g * 512 + lane * 16);
            size_t start = (row + g) * (size_t)NB + pb;
            uint32_t sc = st[1024 + g * 48 + (int)(start & 3) + lane];
            acc[g] = x.dot(q, tab, lb) * e8m0_scale(sc);
        }
    }
}

/* shared bytes before the stages: the code table of the fp32 path */
#define V4_TAB(I8) ((I8) ? 0 : MOE_TAB_BYTES)

/* grid (bx, T*k), 768 threads, smem V4_TAB + 24*S*V4_SB + 3*2*PR floats.
 * Block bx: pairs [bx*PR, min(I, bx*PR + PR)). */
template <bool I8, int S>
__global__ void __launch_bounds__(V4_THREADS, 1) k_moe_gate_up_v4(
    const uint8_t *__restrict__ blocks, const uint8_t *__restrict__ scales,
    const float *__restrict__ bias, const float *__restrict__ h, const float *__restrict__ logits,
    int E, int *sel_e, float *sel_w, float *__restrict__ act, int k, int H, int I, float limit,
    float alpha, int PR) {
    extern __shared__ __align__(16) unsigned char v4_smem[];
    float *part = reinterpret_cast<float *>(v4_smem + V4_TAB(I8) + (size_t)V4_WARPS * S * V4_SB); /* [3][2*PR] */
    int pair_idx = blockIdx.y; /* t*k + j */
    int t = pair_idx / k, jsel = pair_idx % k;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (!I8) moe_build_tab(v4_smem);
    pdl_trigger();
    pdl_wait(); /* router logits / selection and h come from the predecessor */
    int e = moe_pair_expert(logits, E, k, t, jsel, sel_e, sel_w);
    int NB = H / 32, p = warp % V4_PARTS, grp = warp / V4_PARTS;
    int pb = p * 32, nbp = min(32, NB - pb);
    int i0 = blockIdx.x * PR, i1 = min(I, i0 + PR);
    int first = i0 + grp;
    int n_items = nbp > 0 && first < i1 ? (i1 - 1 - first) / 8 + 1 : 0;
    size_t rowbytes = (size_t)NB * 16;
    const uint8_t *bexp = blocks + (size_t)e * 2 * I * rowbytes;
    const uint8_t *sexp = scales + (size_t)e * 2 * I * NB;
    unsigned char *stages = v4_smem + V4_TAB(I8) + (size_t)warp * S * V4_SB;
    uint32_t sbase = (uint32_t)__cvta_generic_to_shared(stages);
#pragma unroll
    for (int s = 0; s < S - 1; s++) {
        if (s < n_items) v4_issue(sbase + s * V4_SB, bexp, sexp, 2 * (size_t)(first + 8 * s), true, NB, pb, nbp, lane);
        cu_cp_commit();
    }
    typename std::conditional<I8, MoeXI8, MoeXF32>::type x;
    x.load(h + (size_t)t * H, pb + lane, NB);
    __syncthreads(); /* the table */
    uint32_t lb = (uint32_t)lane * 4u;
    for (int n = 0; n < n_items; n++) {
        cu_cp_wait<S - 2>();
        __syncwarp();
        int nn = n + S - 1;
        if (nn < n_items)
            v4_issue(sbase + (nn % S) * V4_SB, bexp, sexp, 2 * (size_t)(first + 8 * nn), true, NB, pb, nbp, lane);
        cu_cp_commit();
        int i = first + 8 * n;
        float acc[2];
        v4_dot_stage(stages + (n % S) * V4_SB, x, v4_smem, lb, 2 * (size_t)i, NB, pb, nbp, lane, acc);
        acc[0] = warp_sum(acc[0]);
        acc[1] = warp_sum(acc[1]);
        if (lane == 0) {
            part[p * 2 * PR + 2 * (i - i0)] = acc[0];
            part[p * 2 * PR + 2 * (i - i0) + 1] = acc[1];
        }
        __syncwarp(); /* every lane is done with stage n % S before it is refilled */
    }
    cu_cp_wait<0>();
    __syncthreads();
    moe_gate_up_epilogue(part, PR, NB, i0, i1, bias + (size_t)e * 2 * I, 0, act + (size_t)pair_idx * I,
                         limit, alpha);
}

/* grid (bx, T), 768 threads, smem V4_TAB + 24*S*V4_SB + k*3*RB floats.
 * Block rows [r0, r0+RB). Warp w: expert j = w / (3G), part (w % 3G) % 3,
 * row group (w % 3G) / 3 of G = 8/k; the group walks row pairs
 * r0 + 2*(grp + G*n). */
template <bool I8, int S>
__global__ void __launch_bounds__(V4_THREADS, 1) k_moe_down_v4(
    const uint8_t *__restrict__ blocks, const uint8_t *__restrict__ scales,
    const float *__restrict__ bias, const float *__restrict__ act, const int *__restrict__ sel_e,
    const float *__restrict__ sel_w, float *x, int k, int H, int I, int RB) {
    extern __shared__ __align__(16) unsigned char v4_smem[];
    float *part = reinterpret_cast<float *>(v4_smem + V4_TAB(I8) + (size_t)V4_WARPS * S * V4_SB); /* [k][3][RB] */
    int t = blockIdx.y;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int G = 8 / k, j = warp / (3 * G), rem = warp % (3 * G), p = rem % 3, grp = rem / 3;
    int r0 = blockIdx.x * RB, r1 = min(H, r0 + RB);
    if (!I8) moe_build_tab(v4_smem);
    pdl_trigger();
    pdl_wait(); /* selection, activations and x come from the predecessors */
    int NB = I / 32, pb = p * 32, nbp = min(32, NB - pb);
    size_t rowbytes = (size_t)NB * 16;
    int e = sel_e[t * k + j];
    const uint8_t *bexp = blocks + (size_t)e * H * rowbytes;
    const uint8_t *sexp = scales + (size_t)e * H * NB;
    int first = r0 + 2 * grp, step = 2 * G;
    int n_items = nbp > 0 && first < r1 ? (r1 - 1 - first) / step + 1 : 0;
    unsigned char *stages = v4_smem + V4_TAB(I8) + (size_t)warp * S * V4_SB;
    uint32_t sbase = (uint32_t)__cvta_generic_to_shared(stages);
#pragma unroll
    for (int s = 0; s < S - 1; s++) {
        if (s < n_items) {
            int r = first + s * step;
            v4_issue(sbase + s * V4_SB, bexp, sexp, (size_t)r, r + 1 < r1, NB, pb, nbp, lane);
        }
        cu_cp_commit();
    }
    typename std::conditional<I8, MoeXI8, MoeXF32>::type xv;
    xv.load(act + ((size_t)t * k + j) * I, pb + lane, NB);
    __syncthreads(); /* the table */
    uint32_t lb = (uint32_t)lane * 4u;
    float *pj = part + ((size_t)j * 3 + p) * RB; /* row r at pj[r - r0] */
    for (int n = 0; n < n_items; n++) {
        cu_cp_wait<S - 2>();
        __syncwarp();
        int nn = n + S - 1;
        if (nn < n_items) {
            int r = first + nn * step;
            v4_issue(sbase + (nn % S) * V4_SB, bexp, sexp, (size_t)r, r + 1 < r1, NB, pb, nbp, lane);
        }
        cu_cp_commit();
        int r = first + n * step;
        float acc[2];
        v4_dot_stage(stages + (n % S) * V4_SB, xv, v4_smem, lb, (size_t)r, NB, pb, nbp, lane, acc);
        acc[0] = warp_sum(acc[0]);
        acc[1] = warp_sum(acc[1]);
        if (lane == 0) {
            pj[r - r0] = acc[0];
            if (r + 1 < r1) pj[r + 1 - r0] = acc[1];
        }
        __syncwarp();
    }
    cu_cp_wait<0>();
    __syncthreads();
    moe_down_epilogue(part, RB, NB, r0, r1, sel_e + t * k, sel_w + t * k, k, bias, H, x + (size_t)t * H);
}

template <bool I8, int S> static void v4_config(void) {
    cudaFuncSetAttribute(k_moe_gate_up_v4<I8, S>, cudaFuncAttributeMaxDynamicSharedMemorySize, g_v4_smem_max);
    cudaFuncSetAttribute(k_moe_down_v4<I8, S>, cudaFuncAttributeMaxDynamicSharedMemorySize, g_v4_smem_max);
}

void cu_moe_decode_v4_init(void) {
    int sms, optin;
    cu_device_limits(&sms, &optin);
    g_v4_smem_max = optin;
    g_v4_sms = sms;
    v4_config<false, 3>(); v4_config<false, 4>(); v4_config<false, 5>(); v4_config<false, 6>();
    v4_config<true, 3>(); v4_config<true, 4>(); v4_config<true, 6>(); v4_config<true, 8>();
    cudaGetLastError();
}

/* The deepest pipeline (<= 6 stages for v4, <= 8 for v6; 3 at least) that
 * fits next to the table and `extra` bytes. */
static int v4_pick_stages(bool i8, size_t extra) {
    static const int fp32_s[] = { 6, 5, 4, 3 }, i8_s[] = { 8, 6, 4, 3 };
    for (int q = 0; q < 4; q++) {
        int S = i8 ? i8_s[q] : fp32_s[q];
        if ((size_t)V4_TAB(i8) + (size_t)V4_WARPS * S * V4_SB + extra <= (size_t)g_v4_smem_max) return S;
    }
    return 0;
}

int cu_moe_gate_up_decode_v4(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                             const float *h, const float *norm_w, const float *logits, int E,
                             int *sel_e, float *sel_w, float *act, int T, int k, int H, int I,
                             float limit, float alpha, int i8, cudaStream_t s) {
    int NB = H / 32;
    if (norm_w || H % 32 || NB > 32 * V4_PARTS || k < 1 || k > CU_MAX_TOPK || T < 1 || I < 1 ||
        (uintptr_t)scales % 4)
        return 0;
    int P = T * k, bx = g_v4_sms / P;
    if (bx < 1) bx = 1;
    int PR = (I + bx - 1) / bx;
    bx = (I + PR - 1) / PR;
    size_t extra = (size_t)V4_PARTS * 2 * PR * sizeof(float);
    int S = v4_pick_stages(i8, extra);
    if (!S) return 0;
    size_t smem = (size_t)V4_TAB(i8) + (size_t)V4_WARPS * S * V4_SB + extra;
    dim3 grid(bx, P);
#define GU(Q, SS) cu_launch(k_moe_gate_up_v4<Q, SS>, grid, dim3(V4_THREADS), smem, s, blocks, scales, bias, \
                            h, logits, E, sel_e, sel_w, act, k, H, I, limit, alpha, PR)
    if (i8) {
        switch (S) { case 8: GU(true, 8); break; case 6: GU(true, 6); break; case 4: GU(true, 4); break; default: GU(true, 3); break; }
    } else {
        switch (S) { case 6: GU(false, 6); break; case 5: GU(false, 5); break; case 4: GU(false, 4); break; default: GU(false, 3); break; }
    }
#undef GU
    return 1;
}

int cu_moe_down_decode_v4(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                          const float *act, const int *sel_e, const float *sel_w, float *x, int T,
                          int k, int H, int I, int i8, cudaStream_t s) {
    int NB = I / 32;
    if (I % 32 || NB > 32 * V4_PARTS || (k != 1 && k != 2 && k != 4 && k != 8) || T < 1 || H < 1 ||
        (uintptr_t)scales % 4)
        return 0;
    int bx = g_v4_sms / T;
    if (bx < 1) bx = 1;
    int RB = (H + bx - 1) / bx;
    RB += RB & 1; /* even: row pairs never straddle blocks */
    bx = (H + RB - 1) / RB;
    size_t extra = (size_t)k * V4_PARTS * RB * sizeof(float);
    int S = v4_pick_stages(i8, extra);
    if (!S) return 0;
    size_t smem = (size_t)V4_TAB(i8) + (size_t)V4_WARPS * S * V4_SB + extra;
    dim3 grid(bx, T);
#define DN(Q, SS) cu_launch(k_moe_down_v4<Q, SS>, grid, dim3(V4_THREADS), smem, s, blocks, scales, bias, \
                            act, sel_e, sel_w, x, k, H, I, RB)
    if (i8) {
        switch (S) { case 8: DN(true, 8); break; case 6: DN(true, 6); break; case 4: DN(true, 4); break; default: DN(true, 3); break; }
    } else {
        switch (S) { case 6: DN(false, 6); break; case 5: DN(false, 5); break; case 4: DN(false, 4); break; default: DN(false, 3); break; }
    }
#undef DN
    return 1;
}
