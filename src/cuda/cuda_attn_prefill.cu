/* cuda_attn_prefill.cu - tensor-core attention with sinks for prefill passes
 * (T > CU_DECODE_MAX_T), the default since run E (20b prompt 512: 16,414-16,464
 * tok/s against 14,525 with k_attention, which GPTOSS_CUDA_ATTN=v1 selects;
 * read once, on the first prefill attention) or cu_attention_set_variant. Same arguments and
 * results as k_attention (cuda_kernels.cu): q rows of qkv, fp32 KV cache
 * [slot][cap ring][nkv][hd], sinks, sliding window, out / out_b + out_lo.
 * Numerics: ../shared/docs/gpt-oss-spec.md (attention, fp32 reference).
 *
 * Design:
 * - Block = 8 warps = (16 * 8 / G tokens) x (the G query heads of one KV
 *   head); warp w handles head w % G for 16 consecutive tokens, so one K/V
 *   tile in shared memory serves all G heads (GQA) and the sink is a
 *   per-warp scalar. G must divide 8 (20b/120b: G = 8, 16 tokens a block).
 * - Keys in tiles of 32, read as fp32 from the cache (ring index key % cap),
 *   split once into bf16 hi + lo rows in shared memory; the next tile's fp32
 *   values wait in registers while the current one is multiplied.
 * - mma.sync m16n8k16, fp32 accumulate: S = Qh Kh + Qh Kl + Ql Kh with Q and
 *   K split into fp16 hi + lo (~22 bits; Q fragments stay in registers for
 *   the whole block), then fp32 online softmax started at the sink, then
 *   O += Ph Vh + Ph Vl + Pl Vh in bf16 hi + lo (~16 bits), P taken straight
 *   from the S accumulators (C layout of two n8 tiles = A layout of one k16
 *   step). Why fp16 for scores: an emulation of the splits on the parity
 *   test's data gave per-row errors of 2.2-2.7e-5 with bf16 Q/K (score
 *   errors dominate: exact scores gave 5-7e-6) and 5.2e-6 with fp16 Q/K.
 *   Limit: |q|, |k| elements must stay below 65504 (fp16 range; a bigger
 *   one becomes inf and the row NaN); lo parts below 2^-14 lose relative
 *   precision but keep ~3e-8 absolute, harmless next to the hi part.
 * - Tokens of a pass may belong to different KV slots (batched decode of
 *   several sessions runs the prefill kernels): the block walks the distinct
 *   slots of its tokens in increasing order, each over the union of their
 *   key ranges, with rows of other slots masked. One sequence = one walk.
 *
 * Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with
 * floating point type"; lane = 4 g + t): A regs {a0a1, a2a3, a4a5, a6a7} =
 * (row g, k 2t..2t+1), (row g+8, k 2t..), (row g, k 2t+8..), (row g+8,
 * k 2t+8..); B regs {b0b1, b2b3} = (k 2t..2t+1, col g), (k 2t+8.., col g);
 * C c0..c3 = (row g, col 2t, 2t+1), (row g+8, col 2t, 2t+1); low half of a
 * register = lower index. ldmatrix .m8n8: lane 8 i + r gives the address of
 * row r of matrix i; matrix i lands in register i, lane 4 r + w holding
 * elements 2w, 2w+1 of row r (with .trans: rows 2w, 2w+1 of column r). */
#include "cuda_internal.h"
#include "cuda_mxfp4_mma.cuh"

#include <cuda_fp16.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>

namespace {

constexpr int TC_WARPS = 8;
constexpr int TC_THREADS = 32 * TC_WARPS;
constexpr int TC_HD = 64;          /* head_dim covered (gpt-oss) */
constexpr int TC_KT = 32;          /* keys per tile */
constexpr int TC_LD = TC_HD + 8;   /* bf16 row of 144 B: 16-byte aligned for ldmatrix,
                                    * and the 8 rows of a matrix start in distinct banks */
constexpr int TC_MAX_TQ = 16 * TC_WARPS; /* tokens of a block when G = 1 */

struct tc_smem {
    __half kh[TC_KT][TC_LD], kl[TC_KT][TC_LD]; /* key tile, fp16 hi + lo, [key][dim] */
    bf16 vh[TC_KT][TC_LD], vl[TC_KT][TC_LD];  /* value tile, bf16 hi + lo, same layout */
    float4 stage[2][TC_THREADS][2];           /* next tile, fp32: [K/V][thread][chunk] */
    int pos[TC_MAX_TQ], slot[TC_MAX_TQ];      /* block tokens (slot -1: past T) */
};

__device__ __forceinline__ uint32_t pack_bf16(float lo_idx, float hi_idx) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo_idx, hi_idx); /* .x = low half */
    return *reinterpret_cast<uint32_t *>(&v);
}

/* (x0, x1) -> bf16 hi pair and bf16 remainder pair. */
__device__ __forceinline__ void split2(float x0, float x1, uint32_t &hi, uint32_t &lo) {
    __nv_bfloat162 h = __floats2bfloat162_rn(x0, x1);
    float2 hf = __bfloat1622float2(h);
    hi = *reinterpret_cast<uint32_t *>(&h);
    lo = pack_bf16(x0 - hf.x, x1 - hf.y);
}

/* (x0, x1) -> fp16 hi pair and fp16 remainder pair. */
__device__ __forceinline__ void split2h(float x0, float x1, uint32_t &hi, uint32_t &lo) {
    __half2 h = __floats2half2_rn(x0, x1); /* .x = low half */
    float2 hf = __half22float2(h);
    __half2 l = __floats2half2_rn(x0 - hf.x, x1 - hf.y);
    hi = *reinterpret_cast<uint32_t *>(&h);
    lo = *reinterpret_cast<uint32_t *>(&l);
}

__device__ __forceinline__ void mma_f16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                        uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
        "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}


__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void *p) {
    uint32_t addr = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const void *p) {
    uint32_t addr = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}


/* float4 -> 4 hi (8 bytes) and 4 lo at hi_dst / lo_dst: fp16 (keys) or bf16 (values). */
__device__ __forceinline__ void store_split4(__half *hi_dst, __half *lo_dst, float4 v) {
    uint2 h, l;
    split2h(v.x, v.y, h.x, l.x);
    split2h(v.z, v.w, h.y, l.y);
    *reinterpret_cast<uint2 *>(hi_dst) = h;
    *reinterpret_cast<uint2 *>(lo_dst) = l;
}
__device__ __forceinline__ void store_split4(bf16 *hi_dst, bf16 *lo_dst, float4 v) {
    uint2 h, l;
    split2(v.x, v.y, h.x, l.x);
    split2(v.z, v.w, h.y, l.y);
    *reinterpret_cast<uint2 *>(hi_dst) = h;
    *reinterpret_cast<uint2 *>(lo_dst) = l;
}

/* Keys visible to a token at position p: [lo, p]. */
__device__ __forceinline__ int key_lo(int p, int window) {
    return window > 0 ? max(0, p - window + 1) : 0;
}

__global__ void __launch_bounds__(TC_THREADS, 2) k_attn_tc(cu_attn_args a) {
    __shared__ __align__(16) tc_smem sm;
    const int G = a.nh / a.nkv;
    const int TQ = 16 * (TC_WARPS / G);
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, t4 = lane & 3;
    const int kvh = blockIdx.y, h = kvh * G + warp % G;
    const int tb = blockIdx.x * TQ;      /* first token of the block */
    const int wt = (warp / G) * 16;      /* first token of the warp, block-relative */

    pdl_trigger();
    pdl_wait(); /* q and the K/V rows of this pass come from the predecessor */

    for (int i = tid; i < TQ; i += TC_THREADS) {
        bool ok = tb + i < a.T;
        sm.pos[i] = ok ? a.pos[tb + i] : 0;
        sm.slot[i] = ok ? a.slot[tb + i] : -1;
    }

    /* Q fragments of the warp's 16 tokens (rows g, g + 8), hi + lo. */
    uint32_t qh[4][4], ql[4][4];
#pragma unroll
    for (int ks = 0; ks < 4; ks++)
#pragma unroll
        for (int r = 0; r < 4; r++) {
            int row = g + 8 * (r & 1), dim = ks * 16 + 2 * t4 + 8 * (r >> 1);
            int tok = tb + wt + row;
            float2 v = make_float2(0.0f, 0.0f);
            if (tok < a.T) v = *reinterpret_cast<const float2 *>(a.q + (size_t)tok * a.ldq + h * TC_HD + dim);
            split2h(v.x, v.y, qh[ks][r], ql[ks][r]);
        }

    const float scale = rsqrtf((float)TC_HD); /* as k_attention: d * scale */
    /* softmax state of rows g, g + 8; l is this lane's partial sum (the quad
     * adds its four at the end), so only t4 == 0 starts with the sink's 1 */
    float m[2], l[2];
    m[0] = m[1] = a.sinks[h];
    l[0] = l[1] = t4 == 0 ? 1.0f : 0.0f;
    float o[8][4];
#pragma unroll
    for (int i = 0; i < 8; i++)
#pragma unroll
        for (int c = 0; c < 4; c++) o[i][c] = 0.0f;

    const size_t kvw = (size_t)a.nkv * TC_HD;
    /* tile loader: thread -> key j, 16-byte chunks c and c + 8 of K and V,
     * copied into its own stage slots (so it alone reads them back: no barrier) */
    const int lj = tid >> 3, lc = tid & 7;

    __syncthreads(); /* sm.pos / sm.slot */
    int prev = -1;
    for (;;) {
        /* next slot S among the block's tokens and the union of their ranges */
        int S = INT_MAX;
        for (int i = 0; i < TQ; i++) {
            int sl = sm.slot[i];
            if (sl > prev && sl < S) S = sl;
        }
        if (S == INT_MAX) break;
        prev = S;
        int kbeg = INT_MAX, kend = INT_MIN;
        for (int i = 0; i < TQ; i++)
            if (sm.slot[i] == S) {
                kbeg = min(kbeg, key_lo(sm.pos[i], a.window));
                kend = max(kend, sm.pos[i] + 1);
            }
        /* this lane's rows: keys [rlo, rhi] of slot S (empty: 1 > 0) */
        int rlo[2], rhi[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            int i = wt + g + 8 * r;
            bool in = sm.slot[i] == S;
            rlo[r] = in ? key_lo(sm.pos[i], a.window) : 1;
            rhi[r] = in ? sm.pos[i] : 0;
        }
        /* the warp's union, to skip tiles none of its rows sees */
        int wlo = INT_MAX, whi = INT_MIN;
#pragma unroll
        for (int r = 0; r < 2; r++)
            if (rlo[r] <= rhi[r]) { wlo = min(wlo, rlo[r]); whi = max(whi, rhi[r]); }
#pragma unroll
        for (int off = 4; off < 32; off <<= 1) { /* over g; a quad shares its rows */
            wlo = min(wlo, __shfl_xor_sync(0xffffffffu, wlo, off));
            whi = max(whi, __shfl_xor_sync(0xffffffffu, whi, off));
        }

        auto load = [&](int k0) { /* keys past kend: zeros (P = 0 there, V must be finite) */
            int key = k0 + lj;
            bool ok = key < kend;
            size_t off = ((size_t)S * a.cap + (ok ? key % a.cap : 0)) * kvw + kvh * TC_HD + lc * 4;
#pragma unroll
            for (int c = 0; c < 2; c++) {
                cu_cp16(&sm.stage[0][tid][c], a.kc + off + 32 * c, ok ? 16 : 0);
                cu_cp16(&sm.stage[1][tid][c], a.vc + off + 32 * c, ok ? 16 : 0);
            }
        };
        load(kbeg);
        for (int k0 = kbeg; k0 < kend; k0 += TC_KT) {
            cu_cp_wait_all();
            __syncthreads(); /* every warp is done with the previous tile */
#pragma unroll
            for (int c = 0; c < 2; c++) {
                int d = lc * 4 + 32 * c;
                store_split4(&sm.kh[lj][d], &sm.kl[lj][d], sm.stage[0][tid][c]);
                store_split4(&sm.vh[lj][d], &sm.vl[lj][d], sm.stage[1][tid][c]);
            }
            __syncthreads();
            if (k0 + TC_KT < kend) load(k0 + TC_KT); /* in flight during the MMAs */
            if (k0 > whi || k0 + TC_KT - 1 < wlo) continue;

            /* S = Q K^T for 16 rows x 32 keys: n8 tiles nt = keys 8 nt.. */
            float s[4][4];
#pragma unroll
            for (int nt = 0; nt < 4; nt++)
#pragma unroll
                for (int c = 0; c < 4; c++) s[nt][c] = 0.0f;
            const int mi = lane >> 3, mr = lane & 7;
#pragma unroll
            for (int ks = 0; ks < 4; ks++)
#pragma unroll
                for (int np = 0; np < 2; np++) {
                    /* matrices: (keys 16np.., dims 16ks..), (same keys, dims +8),
                     * (keys 16np+8.., dims 16ks..), (keys +8, dims +8) ->
                     * b0b1, b2b3 of n tile 2np, then of 2np + 1 */
                    int key = np * 16 + (mi >> 1) * 8 + mr, dim = ks * 16 + (mi & 1) * 8;
                    uint32_t bh[4], bl[4];
                    ldsm_x4(bh, &sm.kh[key][dim]);
                    ldsm_x4(bl, &sm.kl[key][dim]);
                    mma_f16(s[2 * np], ql[ks], bh[0], bh[1]);
                    mma_f16(s[2 * np], qh[ks], bl[0], bl[1]);
                    mma_f16(s[2 * np], qh[ks], bh[0], bh[1]);
                    mma_f16(s[2 * np + 1], ql[ks], bh[2], bh[3]);
                    mma_f16(s[2 * np + 1], qh[ks], bl[2], bl[3]);
                    mma_f16(s[2 * np + 1], qh[ks], bh[2], bh[3]);
                }

            /* mask, scale, online softmax (rows g: c 0-1, g + 8: c 2-3) */
            float mx[2] = { -INFINITY, -INFINITY };
#pragma unroll
            for (int nt = 0; nt < 4; nt++)
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    int r = c >> 1, key = k0 + nt * 8 + 2 * t4 + (c & 1);
                    bool vis = key >= rlo[r] && key <= rhi[r];
                    s[nt][c] = vis ? s[nt][c] * scale : -INFINITY;
                    mx[r] = fmaxf(mx[r], s[nt][c]);
                }
            float corr[2];
#pragma unroll
            for (int r = 0; r < 2; r++) {
                mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
                mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
                float mnew = fmaxf(m[r], mx[r]); /* finite: m starts at the sink */
                corr[r] = __expf(m[r] - mnew);
                m[r] = mnew;
                l[r] *= corr[r];
            }
#pragma unroll
            for (int nt = 0; nt < 4; nt++)
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    int r = c >> 1;
                    float p = s[nt][c] == -INFINITY ? 0.0f : __expf(s[nt][c] - m[r]);
                    s[nt][c] = p;
                    l[r] += p;
                }
#pragma unroll
            for (int dn = 0; dn < 8; dn++) {
                o[dn][0] *= corr[0]; o[dn][1] *= corr[0];
                o[dn][2] *= corr[1]; o[dn][3] *= corr[1];
            }

            /* O += P V: k16 step kk = keys 16kk.., A = n tiles 2kk, 2kk + 1 of S */
#pragma unroll
            for (int kk = 0; kk < 2; kk++) {
                uint32_t ph[4], pl[4];
                split2(s[2 * kk][0], s[2 * kk][1], ph[0], pl[0]);
                split2(s[2 * kk][2], s[2 * kk][3], ph[1], pl[1]);
                split2(s[2 * kk + 1][0], s[2 * kk + 1][1], ph[2], pl[2]);
                split2(s[2 * kk + 1][2], s[2 * kk + 1][3], ph[3], pl[3]);
#pragma unroll
                for (int dp = 0; dp < 4; dp++) {
                    /* transposed matrices: (keys 16kk.., dims 16dp..), (keys +8,
                     * same dims), (keys 16kk.., dims +8), (keys +8, dims +8) ->
                     * b0b1, b2b3 of dim tile 2dp, then of 2dp + 1 */
                    int key = kk * 16 + (mi & 1) * 8 + mr, dim = dp * 16 + (mi >> 1) * 8;
                    uint32_t bh[4], bl[4];
                    ldsm_x4_trans(bh, &sm.vh[key][dim]);
                    ldsm_x4_trans(bl, &sm.vl[key][dim]);
                    mx_mma(o[2 * dp], pl[0], pl[1], pl[2], pl[3], bh[0], bh[1]);
                    mx_mma(o[2 * dp], ph[0], ph[1], ph[2], ph[3], bl[0], bl[1]);
                    mx_mma(o[2 * dp], ph[0], ph[1], ph[2], ph[3], bh[0], bh[1]);
                    mx_mma(o[2 * dp + 1], pl[0], pl[1], pl[2], pl[3], bh[2], bh[3]);
                    mx_mma(o[2 * dp + 1], ph[0], ph[1], ph[2], ph[3], bl[2], bl[3]);
                    mx_mma(o[2 * dp + 1], ph[0], ph[1], ph[2], ph[3], bh[2], bh[3]);
                }
            }
        }
    }

    /* normalise and store rows g, g + 8 (dims 8 dn + 2 t4, + 1) */
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
        int tok = tb + wt + g + 8 * r;
        if (tok >= a.T) continue;
        float inv = 1.0f / l[r];
        size_t base = (size_t)tok * a.nh * TC_HD + (size_t)h * TC_HD + 2 * t4;
#pragma unroll
        for (int dn = 0; dn < 8; dn++) {
            float x0 = o[dn][2 * r] * inv, x1 = o[dn][2 * r + 1] * inv;
            size_t idx = base + dn * 8;
            if (a.out) *reinterpret_cast<float2 *>(a.out + idx) = make_float2(x0, x1);
            if (a.out_b) {
                uint32_t hi, lo;
                split2(x0, x1, hi, lo);
                *reinterpret_cast<uint32_t *>(a.out_b + idx) = hi;
                if (a.out_lo) *reinterpret_cast<uint32_t *>(a.out_lo + idx) = lo;
            }
        }
    }
}

int g_attn_variant = 0; /* 1 = k_attention (cuda_kernels.cu), 2 = k_attn_tc; 0 = not read yet */

int attn_variant(void) {
    if (!g_attn_variant) {
        const char *v = getenv("GPTOSS_CUDA_ATTN");
        g_attn_variant = v && !strcmp(v, "v1") ? 1 : 2;
    }
    return g_attn_variant;
}

} // namespace

int cu_attention_set_variant(int v) {
    int old = attn_variant();
    g_attn_variant = v == 2 ? 2 : 1;
    return old;
}

int cu_attention_tc(const cu_attn_args *a, cudaStream_t s) {
    if (attn_variant() != 2 || a->T <= CU_DECODE_MAX_T) return 0;
    int G = a->nkv > 0 ? a->nh / a->nkv : 0;
    /* shapes covered: head_dim 64, G in {1, 2, 4, 8}, float2-aligned q rows,
     * out_lo only together with out_b (as the forward pass uses them) */
    if (a->hd != TC_HD || G < 1 || G * a->nkv != a->nh || TC_WARPS % G || (a->ldq & 1) ||
        (a->out_lo && !a->out_b))
        return 0;
    int TQ = 16 * (TC_WARPS / G);
    dim3 grid((a->T + TQ - 1) / TQ, a->nkv);
    cu_launch(k_attn_tc, grid, dim3(TC_THREADS), 0, s, *a);
    return 1;
}
