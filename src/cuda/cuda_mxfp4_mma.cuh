/* cuda_mxfp4_mma.cuh - MXFP4 codes -> bf16 A fragments of mma.sync m16n8k16:
 * the bf16x2 multiply, scale and MMA helpers shared by the prefill GEMM v2
 * (cuda_moe_gemm_v2.cu) and the decode kernels v9 (cuda_moe_decode_v9.cu).
 *
 * Exact placement: a code s|e1 e0|m put at bf16 bits s<<15 | e1e0m<<6 is
 * E2M1 x 2^-126 (e = 0 gives the subnormal m x 2^-127). v2 then multiplies by
 * 2^126 and by the E8M0 scale 2^(s-127). For scale bytes s <= 128 one
 * multiply by 2^(s-1) does both (2^(s-1) is a normal bf16, the product
 * E2M1 x 2^(s-127) is representable down to s = 0, subnormals kept), which
 * is what the decode kernels use unless a warp meets a larger scale byte. */
#ifndef GPTOSS_CUDA_MXFP4_MMA_CUH
#define GPTOSS_CUDA_MXFP4_MMA_CUH

#include "cuda_matvec.cuh"

/* bf16x2 product, round to nearest, subnormals kept (exact for our operands) */
static __device__ __forceinline__ uint32_t mx_bmul2(uint32_t a, uint32_t b) {
    uint32_t d;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm("mul.rn.bf16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
#else
    /* sm_80..89 have no bf16 multiply: fma with -0 (keeps the sign of -0 products) */
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(0x80008000u));
#endif
    return d;
}

#define MX_BF16X2_2P126 0x7E807E80u /* 2^126 in both halves */

/* E8M0 scale byte -> bf16x2 2^(s-127) (s = 0 -> 2^-127, subnormal), as v2 */
static __device__ __forceinline__ uint32_t mx_scale2(uint32_t s) {
    uint32_t b = s ? s << 7 : 0x0040u;
    return b | (b << 16);
}

/* E8M0 scale byte s <= 128 -> bf16x2 2^(s-1) (exponent field s + 126): the
 * single multiplier of the fast path (2^126 x 2^(s-127)). */
static __device__ __forceinline__ uint32_t mx_fast2(uint32_t s) {
    uint32_t b = (s + 126u) << 7;
    return b | (b << 16);
}

/* Codes n_J (low half) and n_{J+4} (high half) of a 32-bit code word
 * (nibble i = element i of the word's 8) placed as bf16 E2M1 x 2^-126.
 * The two codes sit 16 bits apart, so one multiply puts a copy of each at
 * <<6 (e1e0m -> bits 6..8) and at <<12 (s -> bit 15) without carries; the
 * mask drops the other copy's bits. w8 = w >> 8 serves J = 2, 3. */
template <int J>
static __device__ __forceinline__ uint32_t mx_place(uint32_t w, uint32_t w8) {
    uint32_t y = (J & 2) ? w8 : w;
    y &= (J & 1) ? 0x00F000F0u : 0x000F000Fu;
    return (y * ((J & 1) ? 0x104u : 0x1040u)) & 0x81C081C0u;
}

/* Word w -> out[J] = (element J, element J + 4) x scale, J = 0..3.
 * SLOW: v2's two multiplies (any scale byte, m = mx_scale2(s)); else one
 * multiply by m = mx_fast2(s) (scale bytes <= 128). */
template <bool SLOW>
static __device__ __forceinline__ void mx_convert(uint32_t w, uint32_t m, uint32_t (&out)[4]) {
    uint32_t w8 = w >> 8;
    uint32_t p[4] = { mx_place<0>(w, w8), mx_place<1>(w, w8), mx_place<2>(w, w8), mx_place<3>(w, w8) };
#pragma unroll
    for (int j = 0; j < 4; j++) out[j] = mx_bmul2(SLOW ? mx_bmul2(p[j], MX_BF16X2_2P126) : p[j], m);
}

/* The 8 codes of word w (nibble 2m = element 2m, low nibble first) -> 4 bf16x2 registers,
 * out[m] = (element 2m, element 2m+1) x scale, low half first. */
static __device__ __forceinline__ void mx_dequant_word(uint32_t w, uint32_t s2, uint32_t (&out)[4]) {
    uint32_t lo = w & 0x0F0F0F0Fu, hi = (w >> 4) & 0x0F0F0F0Fu;
#pragma unroll
    for (int m = 0; m < 4; m++) {
        /* [lo byte m, 0, hi byte m, 0]: the zero bytes replicate the sign of a
         * byte < 16 */
        uint32_t p = cu_prmt(lo, hi, 0xC480u + 0x1111u * m);
        /* code c of each half -> c << 6 (sign copy at bit 9 dropped) and
         * c << 12 (only its bit 3 kept, at bit 15); no carries between them */
        uint32_t v = (p * 0x1040u) & 0x81C081C0u;
        out[m] = mx_bmul2(mx_bmul2(v, MX_BF16X2_2P126), s2);
    }
}

/* gate_up epilogue of the grouped GEMMs v2 and v4: lanes g and g ^ 1 (4
 * apart) hold the gate and the up row of one output column for the same two
 * tokens (v0, v1); the even lane takes the first token, the odd lane the
 * second (one shuffle each). Stores the clamped SwiGLU of its token, with
 * the rows' biases bg / bu, as bf16 hi + lo. */
static __device__ __forceinline__ void mx_swiglu_pair(float v0, float v1, int odd, float bg, float bu,
                                                      float limit, float alpha, bf16 *hi, bf16 *lo) {
    float other = __shfl_xor_sync(0xffffffffu, odd ? v0 : v1, 4);
    float gate = odd ? other : v0, up = odd ? v1 : other;
    float a = swiglu(gate + bg, up + bu, limit, alpha);
    bf16 h = __float2bfloat16_rn(a);
    *hi = h;
    *lo = __float2bfloat16_rn(a - __bfloat162float(h));
}

/* d += A B, m16n8k16, bf16 in, fp32 accumulate. a0/a1: rows g / g+8 at k
 * 2t, 2t+1; a2/a3: the same rows at k 2t+8, 2t+9; b0: k 2t, 2t+1, b1: k
 * 2t+8, 2t+9 of column g (PTX ISA, "Matrix Fragments for mma.m16n8k16 with
 * floating point type"). */
static __device__ __forceinline__ void mx_mma(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                              uint32_t a3, uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

#endif
