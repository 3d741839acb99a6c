/* cuda_moe_common.cuh - device helpers shared by the MXFP4 decode kernels v4
 * and v5: the per-lane E2M1 lookup table, the 32-weight block dot product and
 * the cp.async wrappers. */
#ifndef GPTOSS_CUDA_MOE_COMMON_CUH
#define GPTOSS_CUDA_MOE_COMMON_CUH

#include "cuda_matvec.cuh"

#define MOE_TAB_BYTES (256 * 256)

static __constant__ float c_moe_e2m1[16] = { 0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                            -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f };

static __device__ __forceinline__ uint32_t moe_bf16_bits(float v) { return __float_as_uint(v) >> 16; }

/* tab[b * 64 + l] (lanes l < 32 used) = bf16x2 (value(b & 15), value(b >> 4)):
 * entry (byte, lane) at byte*256 + lane*4, so that a warp's lookups never
 * share a bank and one PRMT builds the offset. 64 KiB. */
__device__ __forceinline__ void moe_build_tab(unsigned char *tab) {
    uint32_t *t = reinterpret_cast<uint32_t *>(tab);
    for (int i = threadIdx.x; i < 256 * 64; i += blockDim.x) {
        uint32_t b = (uint32_t)i >> 6;
        t[i] = moe_bf16_bits(c_moe_e2m1[b & 15u]) | (moe_bf16_bits(c_moe_e2m1[b >> 4]) << 16);
    }
}

/* The table offset of byte `sel` selects (byte 1) for this lane (lb = lane*4, byte 0). */
#define MOE_TAB_SEL(b) (0x5504u | ((uint32_t)(b) << 4))

/* sum_i value(code_i) * x[i] over one 32-weight block (unscaled); four
 * accumulation chains. */
__device__ __forceinline__ float moe_block_dot(uint4 q, const float (&x)[32], const unsigned char *tab,
                                               uint32_t lb) {
    uint32_t wv[4] = { q.x, q.y, q.z, q.w };
    float s[4] = { 0.0f, 0.0f, 0.0f, 0.0f };
#pragma unroll
    for (int i = 0; i < 4; i++) {
#pragma unroll
        for (int b = 0; b < 4; b++) {
            uint32_t u = *reinterpret_cast<const uint32_t *>(tab + __byte_perm(wv[i], lb, MOE_TAB_SEL(b)));
            s[2 * (i & 1)] = fmaf(__uint_as_float(u << 16), x[8 * i + 2 * b], s[2 * (i & 1)]);
            s[2 * (i & 1) + 1] = fmaf(__uint_as_float(u & 0xffff0000u), x[8 * i + 2 * b + 1], s[2 * (i & 1) + 1]);
        }
    }
    return (s[0] + s[1]) + (s[2] + s[3]);
}

/* The expert of token/expert pair (t, j): from the router logits when given
 * (every warp picks the k best itself: same inputs, same result; block 0 of
 * pair j == 0 stores the selection and its weights for the down kernel), or
 * from sel_e. */
__device__ __forceinline__ int moe_pair_expert(const float *logits, int E, int k, int t, int j,
                                               int *sel_e, float *sel_w) {
    if (!logits) return sel_e[t * k + j];
    int sel[CU_MAX_TOPK];
    float w[CU_MAX_TOPK];
    cu_warp_topk(logits + (size_t)t * E, NULL, E, k, sel, w);
    if (blockIdx.x == 0 && j == 0 && threadIdx.x == 0)
        for (int r = 0; r < k; r++) {
            sel_e[t * k + r] = sel[r];
            sel_w[t * k + r] = w[r];
        }
    return sel[j];
}

static __device__ __forceinline__ void moe_cp16(uint32_t dst, const void *src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
static __device__ __forceinline__ void moe_cp4(uint32_t dst, const void *src, int bytes) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
static __device__ __forceinline__ void moe_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void moe_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

#endif
