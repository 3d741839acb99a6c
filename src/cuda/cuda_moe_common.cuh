/* cuda_moe_common.cuh - device helpers shared by the MXFP4 decode kernels v3
 * and v4: the per-lane E2M1 lookup table, the 32-weight block dot product and
 * the cp.async wrappers. */
#ifndef GPTOSS_CUDA_MOE_COMMON_CUH
#define GPTOSS_CUDA_MOE_COMMON_CUH

#include "cuda_matvec.cuh"

#define V3_TAB_BYTES (256 * 256)

static __constant__ float c_v3_e2m1[16] = { 0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                            -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f };

static __device__ __forceinline__ uint32_t v3_bf16_bits(float v) { return __float_as_uint(v) >> 16; }

template <bool BF> __device__ __forceinline__ void v3_build_tab(unsigned char *tab) {
    if (BF) {
        uint32_t *t = reinterpret_cast<uint32_t *>(tab); /* [256][64], lanes 0..31 used */
        for (int i = threadIdx.x; i < 256 * 64; i += blockDim.x) {
            uint32_t b = (uint32_t)i >> 6;
            t[i] = v3_bf16_bits(c_v3_e2m1[b & 15u]) | (v3_bf16_bits(c_v3_e2m1[b >> 4]) << 16);
        }
    } else {
        float2 *t = reinterpret_cast<float2 *>(tab); /* [256][32] */
        for (int i = threadIdx.x; i < 256 * 32; i += blockDim.x) {
            uint32_t b = (uint32_t)i >> 5;
            t[i] = make_float2(c_v3_e2m1[b & 15u], c_v3_e2m1[b >> 4]);
        }
    }
}

/* sum_i value(code_i) * x[i] over one 32-weight block (unscaled). lb = lane
 * * (BF ? 4 : 8): byte 0 of the table offset; the code byte is byte 1. */
template <bool BF>
__device__ __forceinline__ float v3_block_dot(uint4 q, const float (&x)[32], const unsigned char *tab,
                                              uint32_t lb) {
    uint32_t wv[4] = { q.x, q.y, q.z, q.w };
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f; /* four chains: more independent FMAs */
#pragma unroll
    for (int i = 0; i < 4; i++) {
#pragma unroll
        for (int b = 0; b < 4; b++) {
            uint32_t off = __byte_perm(wv[i], lb, 0x5504u | ((uint32_t)b << 4));
            float lo, hi;
            if (BF) {
                uint32_t u = *reinterpret_cast<const uint32_t *>(tab + off);
                lo = __uint_as_float(u << 16);
                hi = __uint_as_float(u & 0xffff0000u);
            } else {
                float2 v = *reinterpret_cast<const float2 *>(tab + off);
                lo = v.x;
                hi = v.y;
            }
            if (i & 1) {
                s2 = fmaf(lo, x[8 * i + 2 * b], s2);
                s3 = fmaf(hi, x[8 * i + 2 * b + 1], s3);
            } else {
                s0 = fmaf(lo, x[8 * i + 2 * b], s0);
                s1 = fmaf(hi, x[8 * i + 2 * b + 1], s1);
            }
        }
    }
    return (s0 + s1) + (s2 + s3);
}

static __device__ __forceinline__ void v3_cp16(uint32_t dst, const void *src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
static __device__ __forceinline__ void v3_cp4(uint32_t dst, const void *src, int bytes) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
static __device__ __forceinline__ void v3_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void v3_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

#endif
