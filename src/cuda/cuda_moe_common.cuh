/* cuda_moe_common.cuh - device helpers shared by the MXFP4 decode kernels v4
 * to v7: the per-lane E2M1 lookup table, the 32-weight block dot products
 * (fp32 inputs through the table; int8 hi + lo inputs through dp4a). */
#ifndef GPTOSS_CUDA_MOE_COMMON_CUH
#define GPTOSS_CUDA_MOE_COMMON_CUH

#include "cuda_matvec.cuh"

#define MOE_TAB_BYTES (256 * 256)

/* E2M1 code c (s e1 e0 m) as a float: 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their
 * negatives (-0 for code 8). Computed, not looked up: a __constant__ table
 * indexed by a different code in every lane serializes the constant cache,
 * which made the per-block table build ~5 % of the gate_up kernel (ncu
 * source counters, fifth session). */
static __device__ __forceinline__ float moe_e2m1(uint32_t c) {
    uint32_t e = (c >> 1) & 3u, m = c & 1u;
    uint32_t bits = e ? ((126u + e) << 23) | (m << 22) : (m ? 0x3F000000u : 0u);
    return __uint_as_float(bits | ((c & 8u) << 28));
}

static __device__ __forceinline__ uint32_t moe_bf16_bits(float v) { return __float_as_uint(v) >> 16; }

/* tab[b * 64 + l] (lanes l < 32 used) = bf16x2 (value(b & 15), value(b >> 4)):
 * entry (byte, lane) at byte*256 + lane*4, so that a warp's lookups never
 * share a bank and one PRMT builds the offset. 64 KiB. */
__device__ __forceinline__ void moe_build_tab(unsigned char *tab) {
    uint32_t *t = reinterpret_cast<uint32_t *>(tab);
    for (int i = threadIdx.x; i < 256 * 64; i += blockDim.x) {
        uint32_t b = (uint32_t)i >> 6;
        t[i] = moe_bf16_bits(moe_e2m1(b & 15u)) | (moe_bf16_bits(moe_e2m1(b >> 4)) << 16);
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

/* Launch shape of the tile-walking decode kernels (v9, v11): about one block
 * per multiprocessor, bx blocks of TPB tiles for each of rows_y grid rows. */
static inline void moe_tile_grid(int sms, int ntiles, int rows_y, int *bx, int *TPB) {
    int b = sms / rows_y;
    if (b < 1) b = 1;
    int tpb = (ntiles + b - 1) / b;
    *TPB = tpb;
    *bx = (ntiles + tpb - 1) / tpb;
}

/* A lane's 32 inputs of its block, fp32 (v4, v7f): the exact path. */
struct MoeXF32 {
    float x[32];
    __device__ __forceinline__ void load(const float *v, int b, int NB) {
#pragma unroll
        for (int q = 0; q < 8; q++) {
            float4 f = b < NB ? __ldg(reinterpret_cast<const float4 *>(v + (size_t)b * 32) + q)
                              : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            x[4 * q] = f.x; x[4 * q + 1] = f.y; x[4 * q + 2] = f.z; x[4 * q + 3] = f.w;
        }
    }
    /* unscaled sum of value(code_i) * x_i over the block */
    __device__ __forceinline__ float dot(uint4 q, const unsigned char *tab, uint32_t lb) const {
        return moe_block_dot(q, x, tab, lb);
    }
};

/* The epilogues of the decode kernels v4 and v7, whose rows are split in
 * three parts of 32 blocks (NB blocks in all): the part sums meet in a fixed
 * order. gate_up: part[q][2 (i - i0) + {0, 1}] hold pair i's gate and up
 * sums (q < 3, row stride 2 PR); act[i] = clamped SwiGLU. Call after a
 * __syncthreads. */
/* be: the expert's biases, pair i at be[2 (i - b0)], b0 = 0 for the tensor
 * itself or i0 for a copy of the block's pairs */
__device__ __forceinline__ void moe_gate_up_epilogue(const float *part, int PR, int NB, int i0, int i1,
                                                     const float *be, int b0, float *act, float limit,
                                                     float alpha) {
    int np = NB > 64 ? 3 : NB > 32 ? 2 : 1; /* parts that hold blocks */
    for (int i = i0 + threadIdx.x; i < i1; i += blockDim.x) {
        int o = 2 * (i - i0);
        float gt = part[o], up = part[o + 1];
        for (int q = 1; q < np; q++) {
            gt += part[q * 2 * PR + o];
            up += part[q * 2 * PR + o + 1];
        }
        act[i] = swiglu(gt + be[2 * (i - b0)], up + be[2 * (i - b0) + 1], limit, alpha);
    }
}

/* down: part[j][q][r - r0] holds expert j's part-q sum of row r; x[r] (the
 * token's residual row) += sum_j w[j] (sum + bias_e[j][r]), in expert order. */
__device__ __forceinline__ float moe_down_sum(const float *part, int RB, int NB, int jj, int rel) {
    int np = NB > 64 ? 3 : NB > 32 ? 2 : 1;
    const float *pp = part + (size_t)jj * 3 * RB + rel;
    float d = pp[0];
    for (int q = 1; q < np; q++) d += pp[(size_t)q * RB];
    return d;
}

__device__ __forceinline__ void moe_down_epilogue(const float *part, int RB, int NB, int r0, int r1,
                                                  const int *sel_e, const float *sel_w, int k,
                                                  const float *bias, int H, float *x) {
    for (int rr = r0 + threadIdx.x; rr < r1; rr += blockDim.x) {
        float total = 0.0f;
        for (int jj = 0; jj < k; jj++)
            total += sel_w[jj] * (moe_down_sum(part, RB, NB, jj, rr - r0) + bias[(size_t)sel_e[jj] * H + rr]);
        x[rr] += total;
    }
}

/* The same with the biases and the residual staged in shared memory at the
 * start of the kernel: pre[j * RB + r - r0] = expert j's bias of row r,
 * pre[k * RB + r - r0] = x[r] (the kernel's own row range). Call after a
 * __syncthreads. */
__device__ __forceinline__ void moe_down_epilogue_pre(const float *part, int RB, int NB, int r0, int r1,
                                                      const float *sel_w, int k, const float *pre,
                                                      float *x) {
    for (int rr = r0 + threadIdx.x; rr < r1; rr += blockDim.x) {
        float total = 0.0f;
        for (int jj = 0; jj < k; jj++)
            total += sel_w[jj] * (moe_down_sum(part, RB, NB, jj, rr - r0) + pre[jj * RB + rr - r0]);
        x[rr] = pre[k * RB + rr - r0] + total;
    }
}

/* tab2[b * 32 + l] (8 bytes, one copy per lane l) = (value(b & 15),
 * value(b >> 4)) as two floats: a code byte becomes both operands with one
 * 64-bit shared load (no bf16 unpacking), conflict-free since lane l reads
 * bytes [8l, 8l + 8) of a 256-byte row. 64 KiB. Each value pair is computed
 * once and stored for 4 lanes at a time. */
__device__ __forceinline__ void moe_build_tab2(unsigned char *tab) {
    float4 *t = reinterpret_cast<float4 *>(tab);
    for (int i = threadIdx.x; i < 256 * 16; i += blockDim.x) {
        uint32_t b = (uint32_t)i >> 4;
        float lo = moe_e2m1(b & 15u), hi = moe_e2m1(b >> 4);
        t[i] = make_float4(lo, hi, lo, hi);
    }
}

/* fp32 inputs through tab2 (v7f): per code byte one PRMT (the address:
 * byte b at bits 8-15, lane*8 below), one LDS.64 and two FFMA. */
struct MoeXF32P {
    MoeXF32 f;
    __device__ __forceinline__ void load(const float *v, int b, int NB) { f.load(v, b, NB); }
    /* lb = lane * 8 */
    __device__ __forceinline__ float dot(uint4 q, const unsigned char *tab, uint32_t lb) const {
        uint32_t wv[4] = { q.x, q.y, q.z, q.w };
        float s[4] = { 0.0f, 0.0f, 0.0f, 0.0f };
#pragma unroll
        for (int i = 0; i < 4; i++) {
#pragma unroll
            for (int b = 0; b < 4; b++) {
                float2 v = *reinterpret_cast<const float2 *>(tab + __byte_perm(wv[i], lb, MOE_TAB_SEL(b)));
                s[2 * (i & 1)] = fmaf(v.x, f.x[8 * i + 2 * b], s[2 * (i & 1)]);
                s[2 * (i & 1) + 1] = fmaf(v.y, f.x[8 * i + 2 * b + 1], s[2 * (i & 1) + 1]);
            }
        }
        return (s[0] + s[1]) + (s[2] + s[3]);
    }
};

/* The same inputs as int8 hi + lo blocks (v6, v7). Byte j of h[i] is element 4i + j. */
struct MoeXI8 {
    int h[8], l[8];
    float dh, dl; /* 0.5 * step of hi and lo (the codes below are 2 * E2M1) */
    __device__ __forceinline__ void load(const float *v, int b, int NB) {
        MoeXF32 f;
        f.load(v, b, NB);
        float m = 0.0f;
        bool finite = true;
#pragma unroll
        for (int i = 0; i < 32; i++) {
            m = fmaxf(m, fabsf(f.x[i]));
            finite = finite && fabsf(f.x[i]) <= 3.402823466e38f;
        }
        /* hi step m/127; the remainder is within half a step, lo step m/127/254 */
        float d1 = m * (1.0f / 127.0f), d2 = d1 * (1.0f / 254.0f);
        float inv1 = m > 0.0f ? 127.0f / m : 0.0f, inv2 = m > 0.0f ? 1.0f / d2 : 0.0f;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            uint32_t ph = 0, pl = 0;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                float xv = f.x[4 * i + j];
                int q1 = max(-127, min(127, __float2int_rn(xv * inv1)));
                float r = fmaf(-(float)q1, d1, xv);
                int q2 = max(-127, min(127, __float2int_rn(r * inv2)));
                ph |= ((uint32_t)q1 & 0xffu) << (8 * j);
                pl |= ((uint32_t)q2 & 0xffu) << (8 * j);
            }
            h[i] = (int)ph;
            l[i] = (int)pl;
        }
        /* a non-finite input poisons the sums as the fp32 path would */
        dh = finite ? 0.5f * d1 : __int_as_float(0x7fc00000);
        dl = 0.5f * d2;
    }
    __device__ __forceinline__ float dot(uint4 q, const unsigned char *, uint32_t) const {
        /* 2 * E2M1 as int8: P = codes 0..7, N = codes 8..15 (index: low 3
         * bits). A positive code looks up P directly; a negative one looks up
         * N with its sign bit flipped off (the flipped bit of a positive code
         * only replicates a sign, and that byte is not chosen). The third
         * permute takes byte i from P's result or (4 + i) from N's, by the
         * sign bit of code i. */
        const uint32_t P0 = 0x03020100u, P1 = 0x0C080604u, N0 = 0xFDFEFF00u, N1 = 0xF4F8FAFCu;
        uint32_t w[4] = { q.x, q.y, q.z, q.w };
        int ah = 0, al = 0;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            uint32_t wn = w[i] ^ 0x88888888u;
            uint32_t sel = ((w[i] >> 1) & 0x44444444u) | 0x32103210u;
            uint32_t v0 = cu_prmt(cu_prmt(P0, P1, w[i]), cu_prmt(N0, N1, wn), sel);
            uint32_t v1 = cu_prmt(cu_prmt(P0, P1, w[i] >> 16), cu_prmt(N0, N1, wn >> 16), sel >> 16);
            ah = __dp4a((int)v0, h[2 * i], ah);
            ah = __dp4a((int)v1, h[2 * i + 1], ah);
            al = __dp4a((int)v0, l[2 * i], al);
            al = __dp4a((int)v1, l[2 * i + 1], al);
        }
        return (float)ah * dh + (float)al * dl;
    }
};


#endif
