/* cuda_moe_decode_v11.cu - MXFP4 decode expert kernels on integer tensor cores
 * (GPTOSS_CUDA_MOE_DECODE=v11, the default since the ninth session).
 *
 * Why: v7f spends ~147 instructions per lane and 16-byte code chunk (code
 * table loads, fp32 FMAs, shuffles) and runs with ~1 eligible warp per
 * scheduler. Here a code becomes an int8 operand of mma.sync m16n8k32 with
 * two PRMTs per four codes, and the input enters as exact int8 limbs: ncu
 * counted ~122 instructions per lane and 64 codes (one 16-row tile step).
 *
 * Weights (A, 16 rows x 32 k per MMA). PRMT looks a 3-bit magnitude up in the
 * table {0,1,2,3,4,6,8,12} (= 2 x E2M1); a selector nibble with bit 3 set (a
 * negative code) returns 0 instead. So P = prmt(T, w) holds the positive
 * codes and Q = prmt(T, w ^ 0x88888888) the magnitudes of the negative ones,
 * and value = P - Q: an MMA takes 4 codes of a row as P bytes at k slots
 * 4t..4t+3 and the same codes as Q bytes at 16+4t..16+4t+3, and B holds +x
 * against P and -x against Q. Lane (g, t) = (lane / 4, lane % 4) carries
 * rows g and g + 8.
 *
 * Input (B, 32 k x 8 columns). Per super-block of 4 MXFP4 blocks (128 k),
 * x is scaled by 2^F (F chosen from the super-block's max |x|) and rounded to
 * an integer of at most 2^20, split into three signed limbs of at most 64 in
 * magnitude: x_int = l0 2^14 + l1 2^7 + l2 (exact to 2^-21 of the max).
 * The MMA's columns are (block, limb): a warp's super-block is two "pairs"
 * of blocks; in a pair's MMAs lanes t = 0, 1 hold block A (halves 0, 1) and
 * t = 2, 3 block B; column 4c + l is limb l of block c (column 3 of each
 * block is zero). So the int32 tile holds, per row and block, exact limb
 * dots; lane t's two columns are (limb 0, limb 1) for even t and (limb 2, 0)
 * for odd t, combined as c0 * 128 + c1 (units 2^7, folded into the scale)
 * or c0, converted to float and multiplied by the block's E8M0 scale.
 *
 * Work split. A block has one warp per super-block (NSB = ceil(K / 128) <=
 * 23 warps); a warp builds its super-block's limbs itself (no block barrier
 * before the main loop), keeps its B fragments (16 registers) and walks the
 * block's 16-row tiles, the loads of DEPTH - 1 tiles in flight. Per tile the
 * four lanes of a row are reduced with two shuffles and the super-block's
 * partial row sums go to shared memory; after the barrier each row adds its
 * NSB partials in a fixed order (timing-independent result). Both kernels:
 * grid (bx, T*k), one token/expert pair per grid row, so a block streams
 * one expert's rows. gate_up: tiles of the 2I interleaved gate/up rows,
 * clamped SwiGLU in the epilogue. down: tiles of the H output rows; each
 * block stores its rows (bias included) in a scratch y, and the last of the
 * k blocks of a token's row range (an atomic counter) adds x += sum_j w_j
 * y_j in expert order, as v7f did, and resets the counter. (A down block for
 * all k experts, v11's first form, switched B every two tiles: 17.4 us
 * against 12.9 us for this split, ninth session.)
 *
 * Limits: a zero scale byte (2^-127) contributes 2^-127 on even lanes and 0
 * on odd ones (products below 2^-120 |x|); scale bytes >= 248 (2^121) are
 * not supported (the launch cannot see them; no checkpoint has them); rows
 * must come in 16-row tiles and K <= 2944 (else the launchers return 0 and
 * v7f runs). */
#include "cuda_moe_common.cuh"

#include <stdlib.h>
#include <string.h>

#define V11_DEPTH 3        /* tiles whose loads are in registers */
#define V11_LIMB_BYTES 192 /* per vector and block: [limb 3][sign 2][32 elements] int8 */

static int g_v11_sms = 132;
static int g_v11_smem_max = 48 * 1024;
/* GPTOSS_CUDA_V11_DOWN=0: v7f's down after v11's gate_up (comparisons) */
static int g_v11_down = 1;

/* Streaming 8-byte load that skips L1. */
static __device__ __forceinline__ uint2 ld_stream8(const void *p) {
    uint2 r;
    asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0,%1}, [%2];" : "=r"(r.x), "=r"(r.y) : "l"(p));
    return r;
}

/* d += A B, m16n8k32, s8 in, s32 accumulate. a0/a1: rows g / g+8 at k
 * 4t..4t+3; a2/a3: the same rows at k 16+4t..; b0: k 4t.., b1: k 16+4t.. of
 * column g (PTX ISA, "Matrix Fragments for mma.m16n8k32"). */
static __device__ __forceinline__ void v11_mma(int (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                               uint32_t a3, uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

#define V11_T0 0x03020100u /* 2 x E2M1 magnitudes 0..3 */
#define V11_T1 0x0C080604u /* 4..7 */

static __host__ __device__ __forceinline__ size_t v11_align16(size_t n) { return (n + 15) & ~(size_t)15; }

/* The codes of one tile step for this lane: [pair][row g, g + 8]. */
struct V11Buf {
    uint2 q[2][2];
    uint32_t s[2][2];
};

/* Row g of the lane's current tile: codes at its pair-0 half block and the
 * scale byte of that block. Row g + 8 is 8 rows further, pair 1 two blocks
 * further; rows come in whole tiles (the launchers require rows % 16 == 0). */
struct V11Ptr {
    const uint8_t *pb, *ps;
    bool ok1; /* the lane's pair-1 block exists (false only in the last super-block) */
};

/* Loads the current tile and moves on to the next one. NB: blocks per row
 * (a compile-time constant in the gpt-oss instantiation, so that the row
 * offsets become immediates). */
static __device__ __forceinline__ void v11_load(V11Buf &b, V11Ptr &P, int NB) {
    const size_t rb = (size_t)NB * 16, r8 = 8 * rb, s8 = (size_t)8 * NB;
    b.q[0][0] = ld_stream8(P.pb);
    b.q[0][1] = ld_stream8(P.pb + r8);
    b.s[0][0] = __ldg(P.ps);
    b.s[0][1] = __ldg(P.ps + s8);
    if (P.ok1) {
        b.q[1][0] = ld_stream8(P.pb + 32);
        b.q[1][1] = ld_stream8(P.pb + r8 + 32);
        b.s[1][0] = __ldg(P.ps + 2);
        b.s[1][1] = __ldg(P.ps + s8 + 2);
    } else {
        b.q[1][0] = b.q[1][1] = make_uint2(0, 0);
        b.s[1][0] = b.s[1][1] = 0u;
    }
    P.pb += 2 * r8;
    P.ps += 2 * s8;
}

/* P at row r0 + g of the matrix whose rows start at bl / sl. A lane whose
 * pair-0 block is past the row's end (NB % 4 == 1 in the last super-block)
 * reads block NB - 1 instead: its B fragment is zero. */
static __device__ __forceinline__ V11Ptr v11_seek(const uint8_t *bl, const uint8_t *sl, int r0, int NB) {
    int lane = threadIdx.x & 31, sb = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    int blk0 = 4 * sb + (t >> 1), bc = min(blk0, NB - 1);
    V11Ptr P;
    P.pb = bl + (size_t)(r0 + g) * NB * 16 + bc * 16 + 8 * (t & 1);
    P.ps = sl + (size_t)(r0 + g) * NB + bc;
    P.ok1 = blk0 + 2 < NB;
    return P;
}

/* B fragments of the warp's super-block for one vector: [pair][mma][b0, b1]. */
struct V11B {
    uint32_t b[2][4][2];
};

/* limbs: the vector's [NB][192] limb bytes in shared memory. */
static __device__ __forceinline__ void v11_load_b(V11B &B, const unsigned char *limbs, int NB) {
    int lane = threadIdx.x & 31, sb = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    int c = g >> 2, l = g & 3, h = t & 1;
    bool active = c == (t >> 1) && l < 3;
#pragma unroll
    for (int p = 0; p < 2; p++) {
        int blk = 4 * sb + 2 * p + (t >> 1);
        uint4 pos = make_uint4(0, 0, 0, 0), neg = pos;
        if (active && blk < NB) {
            const unsigned char *src = limbs + (size_t)blk * V11_LIMB_BYTES + l * 64 + 16 * h;
            pos = *reinterpret_cast<const uint4 *>(src);
            neg = *reinterpret_cast<const uint4 *>(src + 32);
        }
        B.b[p][0][0] = pos.x; B.b[p][1][0] = pos.y; B.b[p][2][0] = pos.z; B.b[p][3][0] = pos.w;
        B.b[p][0][1] = neg.x; B.b[p][1][1] = neg.y; B.b[p][2][1] = neg.z; B.b[p][3][1] = neg.w;
    }
}

/* The table's low word as a per-thread value (laneid >> 5 is 0, which the
 * compiler cannot see): as a constant, ptxas copied it from a uniform
 * register before every PRMT (32 extra instructions per tile). */
static __device__ __forceinline__ uint32_t v11_t0(void) {
    uint32_t lid;
    asm volatile("mov.u32 %0, %%laneid;" : "=r"(lid));
    return 0x03020100u + (lid >> 5);
}

/* One tile step: after the quad reduction lanes t = 0 / 1 hold rows g / g + 8
 * (not yet multiplied by the vector's 2^(-F-1)). T0: v11_t0(). Scale bytes
 * of 0 give 2^-120 on even lanes (exact: 2^-127 in units of 2^7) and 0 on
 * odd lanes (2^-127 flushed). */
static __device__ __forceinline__ float v11_step(const V11Buf &b, const V11B &B, uint32_t T0, int t) {
    const uint32_t L0 = (t & 1) ? 1u : 128u;
    const uint32_t EV = (t & 1) ? 0u : (7u << 23); /* even lanes' units of 2^7 */
    float ra = 0.0f, rb = 0.0f;
#pragma unroll
    for (int p = 0; p < 2; p++) {
        int d[4] = { 0, 0, 0, 0 };
        const uint32_t wa[2] = { b.q[p][0].x, b.q[p][0].y }, wb[2] = { b.q[p][1].x, b.q[p][1].y };
#pragma unroll
        for (int wi = 0; wi < 2; wi++) {
            uint32_t xa = wa[wi] ^ 0x88888888u, xb = wb[wi] ^ 0x88888888u;
            uint32_t pa0 = cu_prmt(T0, V11_T1, wa[wi]), qa0 = cu_prmt(T0, V11_T1, xa);
            uint32_t pb0 = cu_prmt(T0, V11_T1, wb[wi]), qb0 = cu_prmt(T0, V11_T1, xb);
            v11_mma(d, pa0, pb0, qa0, qb0, B.b[p][2 * wi][0], B.b[p][2 * wi][1]);
            uint32_t pa1 = cu_prmt(T0, V11_T1, wa[wi] >> 16), qa1 = cu_prmt(T0, V11_T1, xa >> 16);
            uint32_t pb1 = cu_prmt(T0, V11_T1, wb[wi] >> 16), qb1 = cu_prmt(T0, V11_T1, xb >> 16);
            v11_mma(d, pa1, pb1, qa1, qb1, B.b[p][2 * wi + 1][0], B.b[p][2 * wi + 1][1]);
        }
        float sa = __uint_as_float(b.s[p][0] * (1u << 23) + EV), sbv = __uint_as_float(b.s[p][1] * (1u << 23) + EV);
        ra = fmaf((float)(int)(d[0] * L0 + d[1]), sa, ra);
        rb = fmaf((float)(int)(d[2] * L0 + d[3]), sbv, rb);
    }
    bool odd = t & 1;
    float keep = odd ? rb : ra, send = odd ? ra : rb;
    keep += __shfl_xor_sync(0xffffffffu, send, 1);
    keep += __shfl_xor_sync(0xffffffffu, keep, 2);
    return keep;
}

/* Four int32 bytes -> one word (low byte first). */
static __device__ __forceinline__ uint32_t v11_pack4(int a, int b, int c, int d) {
    return cu_prmt(cu_prmt((uint32_t)a, (uint32_t)b, 0x0040u), cu_prmt((uint32_t)c, (uint32_t)d, 0x0040u), 0x5410u);
}

/* Lane q's four inputs of the calling warp's super-block sb: elements
 * 4q..4q+3 of blocks 4sb..4sb+3 (zero past the row). */
static __device__ __forceinline__ float4 v11_x4(const float *x, int NB) {
    int q = threadIdx.x & 31, blk = 4 * (threadIdx.x >> 5) + (q >> 3);
    return blk < NB ? __ldg(reinterpret_cast<const float4 *>(x + (size_t)blk * 32 + 4 * (q & 7)))
                    : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
}

/* The warp's super-block of one vector (f: v11_x4) -> limbs[blk][192] for
 * its blocks; returns 2^(-F-1). Ends with __syncwarp() (only this warp reads
 * them). */
static __device__ float v11_limbs(unsigned char *limbs, float4 f, int NB) {
    int q = threadIdx.x & 31, blk = 4 * (threadIdx.x >> 5) + (q >> 3), e0 = 4 * (q & 7);
    float m = warp_max(fmaxf(fmaxf(fabsf(f.x), fabsf(f.y)), fmaxf(fabsf(f.z), fabsf(f.w))));
    /* F = 20 - e with m < 2^e (e from the exponent field; zero and
     * subnormal maxima take the largest F) */
    int ef = (int)(__float_as_uint(m) >> 23) & 0xff;
    int F = ef ? min(20 - (ef - 126), 125) : 125;
    float p2 = __uint_as_float((uint32_t)(F + 127) << 23);
    const float e4[4] = { f.x, f.y, f.z, f.w };
    int l0[4], l1[4], l2[4];
#pragma unroll
    for (int j = 0; j < 4; j++) {
        int xi = __float2int_rn(e4[j] * p2); /* |xi| <= 2^20 */
        l0[j] = (xi + 8192) >> 14;
        int r = xi - l0[j] * 16384; /* [-8192, 8191] */
        l1[j] = (r + 64) >> 7;
        l2[j] = r - l1[j] * 128; /* [-64, 63] */
    }
    if (blk < NB) {
        uint32_t *dst = reinterpret_cast<uint32_t *>(limbs + (size_t)blk * V11_LIMB_BYTES + e0);
        dst[0] = v11_pack4(l0[0], l0[1], l0[2], l0[3]);
        dst[8] = v11_pack4(-l0[0], -l0[1], -l0[2], -l0[3]);
        dst[16] = v11_pack4(l1[0], l1[1], l1[2], l1[3]);
        dst[24] = v11_pack4(-l1[0], -l1[1], -l1[2], -l1[3]);
        dst[32] = v11_pack4(l2[0], l2[1], l2[2], l2[3]);
        dst[40] = v11_pack4(-l2[0], -l2[1], -l2[2], -l2[3]);
    }
    __syncwarp();
    return __uint_as_float((uint32_t)(126 - F) << 23); /* 2^(-F-1): 2 x E2M1 in the table */
}

/* The warp's walk over nt tiles (the first DEPTH - 1 already in buf):
 * part[s][NSB][16] += its super-block's row sums x f. */
static __device__ __forceinline__ void v11_walk(V11Buf (&buf)[V11_DEPTH], V11Ptr &P, int NB, int nt,
                                                const V11B &B, float f, float *part, int NSB) {
    const uint32_t T0 = v11_t0();
    int lane = threadIdx.x & 31, t = lane & 3;
    float *pp = part + (size_t)(threadIdx.x >> 5) * 16 + (lane >> 2) + 8 * t;
    for (int s0 = 0; s0 < nt; s0 += V11_DEPTH) {
#pragma unroll
        for (int d = 0; d < V11_DEPTH; d++) {
            int s = s0 + d;
            if (s >= nt) break;
            if (s + V11_DEPTH - 1 < nt) v11_load(buf[(d + V11_DEPTH - 1) % V11_DEPTH], P, NB);
            float v = v11_step(buf[d], B, T0, t);
            if (t < 2) *pp = v * f;
            pp += (size_t)NSB * 16;
        }
    }
}

/* Row sums of the block's tiles: part[it][w][rr] over the NSB super-blocks,
 * four interleaved chains (fixed order, so the result does not depend on
 * timing) instead of one 23-long chain of shared loads. */
static __device__ __forceinline__ float v11_row_sum(const float *part, int it, int rr, int NSB) {
    const float *p = part + (size_t)it * NSB * 16 + rr;
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    int w = 0;
    for (; w + 4 <= NSB; w += 4) {
        a0 += p[w * 16];
        a1 += p[(w + 1) * 16];
        a2 += p[(w + 2) * 16];
        a3 += p[(w + 3) * 16];
    }
    for (; w < NSB; w++) a0 += p[w * 16];
    return (a0 + a1) + (a2 + a3);
}

/* The part both kernels share, after the expert e is known: rows [r0, r0 +
 * 16 nt) of the matrix at bl / sl, whose biases brow[0..16 nt) go to bpre,
 * the input slice x4 (v11_x4) -> part (v11_walk). The first weights are in
 * flight while the limbs are built. Ends with __syncthreads(). */
static __device__ __forceinline__ void v11_body(const uint8_t *bl, const uint8_t *sl, int r0, int nt,
                                                const float *brow, float4 x4, unsigned char *limbs, float *part,
                                                float *bpre, int NB, int NSB) {
    V11Ptr P = v11_seek(bl, sl, r0, NB);
    V11Buf buf[V11_DEPTH];
#pragma unroll
    for (int i = 0; i < V11_DEPTH - 1; i++)
        if (i < nt) v11_load(buf[i], P, NB);
    for (int r = threadIdx.x; r < nt * 16; r += blockDim.x) bpre[r] = brow[r];
    float f = v11_limbs(limbs, x4, NB);
    V11B B;
    v11_load_b(B, limbs, NB);
    v11_walk(buf, P, NB, nt, B, f, part, NSB);
    pdl_trigger_end();
    __syncthreads();
}

/* gate_up's epilogue: row r of the block sums its NSB partials in
 * super-block order; gate rows are even, up rows odd (lanes 2i, 2i + 1 of a
 * warp); out: the block's first activation. */
static __device__ __forceinline__ void v11_swiglu_out(float *out, const float *part, const float *bpre, int nt,
                                                      int NSB, float limit, float alpha) {
    int lane = threadIdx.x & 31;
    for (int base = threadIdx.x & ~31; base < nt * 16; base += blockDim.x) {
        int r = base + lane, it = r >> 4, rr = r & 15;
        float v = r < nt * 16 ? v11_row_sum(part, it, rr, NSB) : 0.0f;
        float other = __shfl_xor_sync(0xffffffffu, v, 1);
        if (r < nt * 16 && !(r & 1)) out[r >> 1] = swiglu(v + bpre[r], other + bpre[r + 1], limit, alpha);
    }
}

/* grid (bx, T*k), NSB warps; block bx: tiles [bx*TPB, +TPB) of the 2I
 * interleaved gate/up rows of one token/expert pair. Shared memory: limbs
 * [NB][192], part [TPB][NSB][16], biases [16 TPB]. */
template <int NBC>
__global__ void __launch_bounds__(736, 1) k_moe_gate_up_v11(
    const uint8_t *__restrict__ blocks, const uint8_t *__restrict__ scales,
    const float *__restrict__ bias, const float *__restrict__ h, const float *__restrict__ logits,
    int E, int *sel_e, float *sel_w, float *__restrict__ act, int k, int H, int I, float limit,
    float alpha, int TPB) {
    extern __shared__ __align__(16) unsigned char v11_smem[];
    const int NB = NBC ? NBC : H / 32, NSB = (NB + 3) / 4, N = 2 * I, NT = N / 16;
    const int tile0 = blockIdx.x * TPB, nt = min(TPB, NT - tile0);
    unsigned char *limbs = v11_smem;
    float *part = reinterpret_cast<float *>(v11_smem + v11_align16((size_t)NB * V11_LIMB_BYTES)); /* [nt][NSB][16] */
    float *bpre = part + (size_t)TPB * NSB * 16;
    int pair_idx = blockIdx.y, tok = pair_idx / k, jsel = pair_idx % k;
    pdl_trigger();
    pdl_wait(); /* router logits / selection and h come from the predecessor */
    float4 x4 = v11_x4(h + (size_t)tok * H, NB); /* in flight while the expert is picked */
    int e = moe_pair_expert(logits, E, k, tok, jsel, sel_e, sel_w);
    v11_body(blocks + (size_t)e * N * NB * 16, scales + (size_t)e * N * NB, tile0 * 16, nt,
             bias + (size_t)e * N + tile0 * 16, x4, limbs, part, bpre, NB, NSB);
    v11_swiglu_out(act + (size_t)pair_idx * I + tile0 * 8, part, bpre, nt, NSB, limit, alpha);
}

/* grid (bx, T*k), NSB warps; block bx: output tiles [bx*TPB, +TPB) of the
 * expert of token/expert pair blockIdx.y; each block's rows r get y_j[r]
 * (bias included), then x[r] += sum_j w_j y_j[r] in expert order, as v7f.
 * CL (sm_90, the default there): the k blocks of a token's tile range form a
 * cluster (1, k); each keeps its y in shared memory, and after a cluster
 * barrier block j adds rows j, j + k, ... reading the k y's through
 * distributed shared memory; a second barrier keeps every block's y alive
 * until the others have read it. Otherwise: y goes to the scratch y[pair]
 * and the last of the k blocks (counter cnt[tok * bx + bx], reset after)
 * does the sum after a fence (ninth session: ~20 % of the kernel's warp
 * samples in that fence, atomic and second pass). Shared memory: limbs
 * [NB][192], part [TPB][NSB][16], biases [16 TPB], a flag, y [16 TPB]. */
template <int NBC, bool CL>
__global__ void __launch_bounds__(736, 1) k_moe_down_v11(
    const uint8_t *__restrict__ blocks, const uint8_t *__restrict__ scales,
    const float *__restrict__ bias, const float *__restrict__ act, const int *__restrict__ sel_e,
    const float *__restrict__ sel_w, float *x, float *y, unsigned *cnt, int k, int H, int I, int TPB) {
    extern __shared__ __align__(16) unsigned char v11_smem[];
    const int NB = NBC ? NBC : I / 32, NSB = (NB + 3) / 4, NT = H / 16;
    const int tile0 = blockIdx.x * TPB, nt = min(TPB, NT - tile0), r0 = tile0 * 16, nr = nt * 16;
    unsigned char *limbs = v11_smem;
    float *part = reinterpret_cast<float *>(v11_smem + v11_align16((size_t)NB * V11_LIMB_BYTES)); /* [nt][NSB][16] */
    float *bpre = part + (size_t)TPB * NSB * 16;
    int *s_last = reinterpret_cast<int *>(bpre + 16 * TPB); /* dynamic: a static one would break the opt-in size */
    float *ys = bpre + 16 * TPB + 4;                        /* [16 TPB], CL only */
    int pair_idx = blockIdx.y, tok = pair_idx / k;
    pdl_trigger();
    /* selection, activations and x come from the predecessors. (Picking the
     * experts from the router logits before this wait was 1.4 % faster but
     * failed the forward parity tests with PDL, ninth session: launch_dependents
     * only schedules, the wait alone orders memory; docs/CUDA_NOTES.md.) */
    pdl_wait();
    float4 x4 = v11_x4(act + (size_t)pair_idx * I, NB);
    int e = __ldg(sel_e + pair_idx);
    v11_body(blocks + (size_t)e * H * NB * 16, scales + (size_t)e * H * NB, r0, nt, bias + (size_t)e * H + r0,
             x4, limbs, part, bpre, NB, NSB);
    const float *wt = sel_w + (size_t)tok * k;
    if (CL) {
        for (int r = threadIdx.x; r < nr; r += blockDim.x) ys[r] = v11_row_sum(part, r >> 4, r & 15, NSB) + bpre[r];
        cluster_sync();
        int j0 = pair_idx % k; /* = the block's cluster rank: clusters are (1, k) */
        for (int r = j0 + k * (int)threadIdx.x; r < nr; r += k * blockDim.x) {
            float total = 0.0f;
            for (int j = 0; j < k; j++) total += __ldg(wt + j) * ld_cluster_f32(ys + r, (unsigned)j);
            x[(size_t)tok * H + r0 + r] += total;
        }
        cluster_sync();
        return;
    }
    float *yp = y + (size_t)pair_idx * H + r0;
    for (int r = threadIdx.x; r < nr; r += blockDim.x) yp[r] = v11_row_sum(part, r >> 4, r & 15, NSB) + bpre[r];
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) *s_last = atomicAdd(cnt + (size_t)tok * gridDim.x + blockIdx.x, 1u) == (unsigned)k - 1;
    __syncthreads();
    if (!*s_last) return;
    __threadfence();
    const float *yt = y + (size_t)tok * k * H + r0;
    for (int r = threadIdx.x; r < nr; r += blockDim.x) {
        float total = 0.0f;
        for (int j = 0; j < k; j++) total += wt[j] * __ldcg(yt + (size_t)j * H + r);
        x[(size_t)tok * H + r0 + r] += total;
    }
    if (threadIdx.x == 0) cnt[(size_t)tok * gridDim.x + blockIdx.x] = 0u;
}

#define V11_NB_GPTOSS 90 /* 2880 / 32: the instantiation with compile-time row offsets */

/* GPTOSS_CUDA_V11_CLUSTER=0: down's combine through the scratch y and an
 * atomic counter also on sm_90 (comparisons; it is the only form below sm_90) */
static int g_v11_cluster = 1;
/* down's clusters resident at once [instantiation: 0 generic, 1 K = 2880][cluster size k] (0 = refused) */
static int g_v11_cap_dn[2][9];

template <int NBC> static void v11_down_attrs(int optin) {
    cudaFuncSetAttribute(k_moe_down_v11<NBC, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin);
    cudaFuncSetAttribute(k_moe_down_v11<NBC, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin);
}

void cu_moe_decode_v11_init(void) {
    pdl_mode_upload();
    const char *dv = getenv("GPTOSS_CUDA_V11_DOWN"), *cl = getenv("GPTOSS_CUDA_V11_CLUSTER");
    g_v11_down = !(dv && !strcmp(dv, "0"));
    int sms, optin;
    cu_device_limits(&sms, &optin);
    g_v11_sms = sms;
    g_v11_smem_max = optin;
    g_v11_cluster = cu_device_major() >= 9 && !(cl && !strcmp(cl, "0"));
    cudaFuncSetAttribute(k_moe_gate_up_v11<0>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin);
    cudaFuncSetAttribute(k_moe_gate_up_v11<V11_NB_GPTOSS>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin);
    v11_down_attrs<0>(optin);
    v11_down_attrs<V11_NB_GPTOSS>(optin);
    /* clusters resident at once, asked here (outside graph capture) at one
     * block per multiprocessor (736 threads of 80 registers allow no more) */
    memset(g_v11_cap_dn, 0, sizeof g_v11_cap_dn);
    for (int c = 1; c <= 8 && g_v11_cluster; c++) {
        g_v11_cap_dn[0][c] = cu_cluster_capacity(k_moe_down_v11<0, true>, dim3(736), dim3(1, c, 1), optin);
        g_v11_cap_dn[1][c] = cu_cluster_capacity(k_moe_down_v11<V11_NB_GPTOSS, true>, dim3(736), dim3(1, c, 1), optin);
    }
    cudaGetLastError();
}

static size_t v11_smem_bytes(int NB, int TPB) {
    int NSB = (NB + 3) / 4;
    return v11_align16((size_t)NB * V11_LIMB_BYTES) + sizeof(float) * ((size_t)TPB * NSB * 16 + 16 * (size_t)TPB + 4);
}

int cu_moe_gate_up_decode_v11(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                              const float *h, const float *norm_w, const float *logits, int E,
                              int *sel_e, float *sel_w, float *act, int T, int k, int H, int I,
                              float limit, float alpha, cudaStream_t s) {
    int NB = H / 32, NSB = (NB + 3) / 4;
    if (norm_w || H % 32 || H < 32 || NSB > 23 || (2 * I) % 16 || k < 1 || k > CU_MAX_TOPK || T < 1 || I < 1)
        return 0;
    int P = T * k, bx, TPB;
    moe_tile_grid(g_v11_sms, 2 * I / 16, P, &bx, &TPB);
    size_t smem = v11_smem_bytes(NB, TPB);
    if (smem > (size_t)g_v11_smem_max) return 0;
    if (NB == V11_NB_GPTOSS)
        cu_launch_serial(k_moe_gate_up_v11<V11_NB_GPTOSS>, dim3(bx, P), dim3(32 * NSB), smem, s, blocks, scales,
                         bias, h, logits, E, sel_e, sel_w, act, k, H, I, limit, alpha, TPB);
    else
        cu_launch_serial(k_moe_gate_up_v11<0>, dim3(bx, P), dim3(32 * NSB), smem, s, blocks, scales, bias, h,
                         logits, E, sel_e, sel_w, act, k, H, I, limit, alpha, TPB);
    return 1;
}

/* For the parity test's report. */
int cu_v11_cluster_cap_down(void) { return g_v11_cap_dn[1][4]; }

/* The cluster form of down when the device takes it with all bx clusters of
 * a token resident at once. */
template <int NBC>
static bool v11_down_cluster(dim3 grid, int threads, int k, size_t smem, cudaStream_t s, const uint8_t *blocks,
                             const uint8_t *scales, const float *bias, const float *act, const int *sel_e,
                             const float *sel_w, float *x, int H, int I, int TPB) {
    if (!g_v11_cluster || k > 8 || g_v11_cap_dn[NBC == V11_NB_GPTOSS][k] < (int)grid.x) return false;
    cudaError_t e = cu_launch_cluster(k_moe_down_v11<NBC, true>, grid, dim3(threads), dim3(1, k, 1), smem,
                                      g_cu_pdl >= 2, s, blocks, scales, bias, act, sel_e, sel_w, x, (float *)NULL,
                                      (unsigned *)NULL, k, H, I, TPB);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    return true;
}

int cu_moe_down_decode_v11(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                           const float *act, const int *sel_e, const float *sel_w, float *x, float *y,
                           unsigned *cnt, int T, int k, int H, int I, cudaStream_t s) {
    int NB = I / 32, NSB = (NB + 3) / 4;
    if (!g_v11_down || !y || !cnt || I % 32 || I < 32 || NSB > 23 || H % 16 || H < 16 || k < 1 || k > CU_MAX_TOPK || T < 1 ||
        T > CU_DECODE_MAX_T)
        return 0;
    int P = T * k, bx, TPB;
    moe_tile_grid(g_v11_sms, H / 16, P, &bx, &TPB);
    if (bx > CU_V11_MAX_RANGES) return 0;
    size_t smem = v11_smem_bytes(NB, TPB);
    size_t smem_cl = smem + sizeof(float) * 16 * (size_t)TPB;
    if (smem > (size_t)g_v11_smem_max) return 0;
    dim3 grid(bx, P);
    if (smem_cl <= (size_t)g_v11_smem_max &&
        (NB == V11_NB_GPTOSS ? v11_down_cluster<V11_NB_GPTOSS>(grid, 32 * NSB, k, smem_cl, s, blocks, scales, bias,
                                                                act, sel_e, sel_w, x, H, I, TPB)
                             : v11_down_cluster<0>(grid, 32 * NSB, k, smem_cl, s, blocks, scales, bias, act,
                                                   sel_e, sel_w, x, H, I, TPB)))
        return 1;
    if (NB == V11_NB_GPTOSS)
        cu_launch_serial(k_moe_down_v11<V11_NB_GPTOSS, false>, grid, dim3(32 * NSB), smem, s, blocks, scales, bias,
                         act, sel_e, sel_w, x, y, cnt, k, H, I, TPB);
    else
        cu_launch_serial(k_moe_down_v11<0, false>, grid, dim3(32 * NSB), smem, s, blocks, scales, bias, act, sel_e,
                         sel_w, x, y, cnt, k, H, I, TPB);
    return 1;
}
