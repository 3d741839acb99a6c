/* cuda_moe_gemm_v2.cu - second version of the grouped MXFP4 expert GEMM for
 * prefill, the default since run E (20b prompt 512: 14,510-14,543 tok/s
 * against 10,177 with cuda_moe_gemm.cu's k_moe_gemm, which
 * GPTOSS_CUDA_MOE_GEMM=v1 selects; devices whose blocks cannot have ~105 KB
 * of shared memory fall back to it). Same inputs and outputs:
 * k_route's tile list (64-row tiles of one expert), A = bf16 hi + lo rows,
 * the same epilogues; k_route and k_combine are shared.
 *
 * Design (why it differs from v1):
 * - The weight dimension is the MMA's M (experts see few tokens): a block
 *   computes 256 weight rows x 64 tokens, each of its 8 warps 32 rows x 64
 *   tokens = 2 x 8 tiles of mma.sync m16n8k16 (bf16 in, fp32 accumulate).
 * - B never exists as bf16 in shared memory: the raw MXFP4 bytes and scales
 *   arrive by cp.async (4 stages of 64 K), and each warp dequantises its own
 *   rows straight into A-operand registers (every weight converted exactly
 *   once per block, no extra barrier, no shared-memory round trip). Each
 *   A fragment then feeds 8 token tiles x (hi, lo) = 16 MMAs.
 * - K is permuted inside every 32-element MXFP4 block so that a lane's A
 *   fragment of both k16 halves comes from ONE 32-bit word of codes and its
 *   token fragment from ONE 16-byte shared load (see "k order" below); the
 *   sum over K does not care about the order as long as both operands use
 *   the same one. The 16-byte loads play the role of ldmatrix.x4 (same
 *   bytes per instruction) and are bank-conflict free through an XOR swizzle.
 *
 * k order. mma m16n8k16 (PTX ISA, "Matrix Fragments for mma.m16n8k16 with
 * floating point type"): lane = 4 g + t; A regs {a0a1, a2a3, a4a5, a6a7} hold
 * (row g, k 2t..2t+1), (row g+8, k 2t..), (row g, k 2t+8..), (row g+8, k 2t+8..);
 * B regs {b0b1, b2b3} hold (k 2t..2t+1, col g), (k 2t+8.., col g); C regs
 * c0..c3 hold (row g, col 2t, 2t+1), (row g+8, col 2t, 2t+1). Here the MMA
 * k index kk of half c (0, 1) of a 32-block maps to block element
 *     kk = 2t + e      ->  8t + 4c + e        (e = 0, 1)
 *     kk = 2t + 8 + e  ->  8t + 4c + 2 + e,
 * a bijection onto 0..31. Lane t thus needs elements 8t..8t+7 only: code
 * word t of the row's 16-byte block (byte m = elements 8t+2m, 8t+2m+1, low
 * nibble first) and tokens' bf16 elements 8t..8t+7 (one uint4).
 *
 * Dequantisation, exact and without tables: a code s|e1 e0|m placed as
 * bf16 bits s<<15 | e1e0m<<6 is E2M1 x 2^-126 (e = 0 gives the subnormal
 * m x 2^-127), so one bf16x2 multiply by 2^126 gives the exact E2M1 pair and
 * one by 2^(s-127) the scaled weights (s = 0: 2^-127, as v1; subnormal bf16
 * results are exact, PTX mul.bf16x2 supports subnormals). */
#include "cuda_mxfp4_mma.cuh"

#include <stdlib.h>
#include <string.h>
#include <type_traits>

#define V2_BT 64      /* tokens per tile: must equal k_route's tile rows */
#define V2_BN 256     /* weight rows per block (8 warps x 32) */
#define V2_BK 64      /* K per stage: two MXFP4 blocks */
#define V2_STAGES 4
#define V2_THREADS 256
#define V2_OLD (128 + 8) /* bf16 row of the gate_up output tile, padded (bank spread) */

/* One stage. Token rows: 8 chunks of 16 B (64 bf16), chunk index XOR 4 on odd
 * rows so that the two rows a quarter-warp reads hit different bank halves.
 * Code rows: 2 blocks of 16 B, block index XOR ((row >> 2) & 1) so that the
 * 8 rows x 4 words a warp reads cover all 32 banks. Scales: the two aligned
 * words holding the row's bytes kb0 and kb0 + 1 (4-byte cp.async only). */
struct v2_stage {
    uint4 ahi[V2_BT * 8];
    uint4 alo[V2_BT * 8];
    uint4 b[V2_BN * 2];
    uint2 sw[V2_BN];
};
struct v2_smem {
    union {
        v2_stage st[V2_STAGES];
        struct { /* gate_up epilogue: activations of the tile before the coalesced copy */
            bf16 hi[V2_BT * V2_OLD];
            bf16 lo[V2_BT * V2_OLD];
        } out;
    };
    int arow[V2_BT];  /* source row of A per tile row (-1: none) */
    int prow[V2_BT];  /* down: pair index per tile row */
    float pw[V2_BT];  /* down: routing weight per tile row */
};


/* A_hi/A_lo: [rows, K] bf16 (hi + lo = the activations to ~16 bits).
 * GATE_UP: A rows are tokens (through perm / k_top); the epilogue writes the
 * SwiGLU activations as hi/lo bf16 rows in expert order. down: A rows are
 * those activations; the epilogue writes weighted fp32 rows in pair order. */
template <bool GATE_UP>
__global__ void __launch_bounds__(V2_THREADS, 2) k_moe_gemm_v2(
    const uint8_t *__restrict__ blocks, const uint8_t *__restrict__ scales,
    const float *__restrict__ bias, const bf16 *__restrict__ A_hi, const bf16 *__restrict__ A_lo,
    int k_top, const int *__restrict__ offsets, const int *__restrict__ perm,
    const int *__restrict__ tiles, const int *__restrict__ n_tiles, const float *__restrict__ sel_w,
    bf16 *act_hi, bf16 *act_lo, float *y_out, int N, int K, float limit, float alpha, int unroll_full) {
    extern __shared__ __align__(128) unsigned char v2_smem_raw[];
    v2_smem &sm = *reinterpret_cast<v2_smem *>(v2_smem_raw);
    if ((int)blockIdx.y >= n_tiles[0]) return;
    int tile = tiles[blockIdx.y];
    int e = tile >> 16;
    int row0 = offsets[e] + (tile & 0xffff) * V2_BT;
    int mrows = min(V2_BT, offsets[e + 1] - row0);
    int n0 = blockIdx.x * V2_BN;
    int tid = threadIdx.x;
    if (tid < V2_BT) {
        int src = -1;
        if (tid < mrows) {
            int p = perm[row0 + tid];
            src = GATE_UP ? p / k_top : row0 + tid;
            if (!GATE_UP) {
                sm.prow[tid] = p;
                sm.pw[tid] = sel_w[p];
            }
        }
        sm.arow[tid] = src;
    }
    __syncthreads();

    const int NB = K / 32, nk = (NB + 1) / 2;
    const size_t rowbytes = (size_t)NB * 16;
    const uint8_t *bexp = blocks + (size_t)e * N * rowbytes;
    const uint8_t *sexp = scales + (size_t)e * N * NB;

    /* ---- producer role of this thread: token row tid/4 (chunks 2(tid%4),
     * +1, hi and lo), code row tid (both blocks), scale words of row tid */
    const int tr = tid >> 2, tch = 2 * (tid & 3);
    const int tsrc = sm.arow[tr];
    const bf16 *thi = tsrc >= 0 ? A_hi + (size_t)tsrc * K : A_hi;
    const bf16 *tlo = tsrc >= 0 ? A_lo + (size_t)tsrc * K : A_lo;
    const bool brow_ok = n0 + tid < N;
    const uint8_t *brow = brow_ok ? bexp + (size_t)(n0 + tid) * rowbytes : bexp;
    const size_t srow = brow_ok ? (size_t)(n0 + tid) * NB : 0;

    auto issue = [&](int kt) {
        v2_stage &st = sm.st[kt % V2_STAGES];
        int kb0 = 2 * kt;
#pragma unroll
        for (int i = 0; i < 2; i++) {
            int ch = tch + i; /* 8 bf16 of k block kb0 + ch / 4 */
            bool ok = tsrc >= 0 && kb0 + (ch >> 2) < NB;
            size_t off = ok ? (size_t)kt * V2_BK + ch * 8 : 0;
            int dst = tr * 8 + (ch ^ ((tr & 1) << 2));
            cu_cp16(&st.ahi[dst], thi + off, ok ? 16 : 0);
            cu_cp16(&st.alo[dst], tlo + off, ok ? 16 : 0);
        }
#pragma unroll
        for (int b = 0; b < 2; b++) {
            bool ok = brow_ok && kb0 + b < NB;
            cu_cp16(&st.b[tid * 2 + (b ^ ((tid >> 2) & 1))], brow + (ok ? (size_t)(kb0 + b) * 16 : 0),
                    ok ? 16 : 0);
        }
        /* bytes pos, pos + 1 lie in the aligned words at a and (when pos % 4
         * == 3 and block kb0 + 1 exists) a + 4. Like v1, the first word may
         * read up to 3 bytes past a scale array whose size is not a multiple
         * of 4 (the checkpoint's is). */
        size_t pos = srow + kb0, a = pos & ~(size_t)3;
        bool two = brow_ok && (pos & 3) == 3 && kb0 + 1 < NB;
        cu_cp4(&st.sw[tid].x, sexp + (brow_ok ? a : 0), brow_ok ? 4 : 0);
        cu_cp4(&st.sw[tid].y, sexp + (two ? a + 4 : 0), two ? 4 : 0);
    };

    /* ---- consumer role: warp w owns weight rows 32w .. 32w+31 of the block */
    const int warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int wr0 = warp * 32;
    const bool warp_active = n0 + wr0 < N;
    const int jn = (mrows + 7) >> 3; /* token tiles of 8 holding rows */
    int rb[4];                       /* (row * NB) % 4 of the lane's rows g + 8i */
#pragma unroll
    for (int i = 0; i < 4; i++) rb[i] = (int)(((size_t)(n0 + wr0 + g + 8 * i) * NB) & 3);

    float acc[2][8][4];
#pragma unroll
    for (int mi = 0; mi < 2; mi++)
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int c = 0; c < 4; c++) acc[mi][j][c] = 0.0f;

    /* FULL: all 8 token tiles hold rows (every tile of an expert but its
     * last): no early exit, so the compiler may interleave the 16 accumulator
     * chains across token tiles */
    auto compute = [&](int kt, auto full_tag) {
        constexpr bool FULL = decltype(full_tag)::value;
        const v2_stage &st = sm.st[kt % V2_STAGES];
        const uint32_t *codes = reinterpret_cast<const uint32_t *>(st.b);
#pragma unroll
        for (int b = 0; b < 2; b++) {
            if (2 * kt + b >= NB) break;
            /* A fragments of both k16 halves of this block: af[mi][c] */
            uint32_t af[2][2][4];
#pragma unroll
            for (int i = 0; i < 4; i++) { /* row g + 8i: m tile i / 2, upper half when i odd */
                int r = wr0 + g + 8 * i;
                uint2 sw = st.sw[r];
                uint32_t s = __byte_perm(sw.x, sw.y, ((rb[i] + 2 * kt) & 3) + b) & 0xffu;
                uint32_t w = codes[r * 8 + ((b ^ ((r >> 2) & 1)) << 2) + t];
                uint32_t d[4];
                mx_dequant_word(w, mx_scale2(s), d);
                /* bytes 2c, 2c + 1 -> a0a1 / a4a5 (row g) or a2a3 / a6a7 (row g + 8) */
                af[i >> 1][0][i & 1] = d[0];
                af[i >> 1][0][2 + (i & 1)] = d[1];
                af[i >> 1][1][i & 1] = d[2];
                af[i >> 1][1][2 + (i & 1)] = d[3];
            }
#pragma unroll
            for (int j = 0; j < 8; j++) {
                if (!FULL && j >= jn) break;
                int row = 8 * j + g;
                int ch = row * 8 + (((b ^ (row & 1)) << 2) | t);
                uint4 qh = st.ahi[ch], ql = st.alo[ch];
#pragma unroll
                for (int mi = 0; mi < 2; mi++) {
                    mx_mma(acc[mi][j], af[mi][0][0], af[mi][0][1], af[mi][0][2], af[mi][0][3], qh.x, qh.y);
                    mx_mma(acc[mi][j], af[mi][0][0], af[mi][0][1], af[mi][0][2], af[mi][0][3], ql.x, ql.y);
                    mx_mma(acc[mi][j], af[mi][1][0], af[mi][1][1], af[mi][1][2], af[mi][1][3], qh.z, qh.w);
                    mx_mma(acc[mi][j], af[mi][1][0], af[mi][1][1], af[mi][1][2], af[mi][1][3], ql.z, ql.w);
                }
            }
        }
    };

    /* ---- pipeline: one barrier per stage; the slot refilled at step kt was
     * last read at step kt - 1, which every warp finished before the barrier */
#pragma unroll
    for (int s = 0; s < V2_STAGES - 1; s++) {
        if (s < nk) issue(s);
        cu_cp_commit();
    }
    for (int kt = 0; kt < nk; kt++) {
        cu_cp_wait<V2_STAGES - 2>();
        __syncthreads();
        if (kt + V2_STAGES - 1 < nk) issue(kt + V2_STAGES - 1);
        cu_cp_commit();
        if (warp_active) {
            if (unroll_full && jn == 8) compute(kt, std::true_type{});
            else compute(kt, std::false_type{});
        }
    }
    cu_cp_wait<0>();
    __syncthreads(); /* the stages are free: the gate_up epilogue reuses them */

    const float *be = bias + (size_t)e * N;
    if (GATE_UP) {
        /* rows come in (gate, up) pairs = lanes g, g ^ 1: an even lane takes
         * token 2t of the pair, an odd lane token 2t + 1 (one shuffle each) */
        const int odd = g & 1;
        if (warp_active) {
#pragma unroll
            for (int mi = 0; mi < 2; mi++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    int rl = wr0 + 16 * mi + 8 * h + g - odd; /* local gate row */
                    int ng = n0 + rl;
                    float bg = ng < N ? be[ng] : 0.0f, bu = ng < N ? be[ng + 1] : 0.0f;
                    int col = rl >> 1;
#pragma unroll
                    for (int j = 0; j < 8; j++) {
                        if (j >= jn) break;
                        int o = (8 * j + 2 * t + odd) * V2_OLD + col;
                        mx_swiglu_pair(acc[mi][j][2 * h], acc[mi][j][2 * h + 1], odd, bg, bu, limit, alpha,
                                       &sm.out.hi[o], &sm.out.lo[o]);
                    }
                }
        }
        __syncthreads();
        /* coalesced copy: 16-byte chunks of 8 activations (I % 8 == 0) */
        const int I = N / 2, c0 = n0 / 2;
        for (int idx = tid; idx < 2 * V2_BT * 16; idx += V2_THREADS) {
            int lo = idx >= V2_BT * 16, r = (idx >> 4) & (V2_BT - 1), ch = idx & 15;
            if (r >= mrows || c0 + 8 * ch >= I) continue;
            const bf16 *src = (lo ? sm.out.lo : sm.out.hi) + r * V2_OLD + 8 * ch;
            bf16 *dst = (lo ? act_lo : act_hi) + (size_t)(row0 + r) * I + c0 + 8 * ch;
            *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(src);
        }
    } else if (warp_active) {
        /* each store: 4 tokens x 8 consecutive rows = 4 full 32-byte sectors */
#pragma unroll
        for (int mi = 0; mi < 2; mi++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                int n = n0 + wr0 + 16 * mi + 8 * h + g;
                if (n >= N) continue;
                float bn = be[n];
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    if (j >= jn) break;
#pragma unroll
                    for (int c = 0; c < 2; c++) {
                        int r = 8 * j + 2 * t + c;
                        if (r < mrows)
                            y_out[(size_t)sm.prow[r] * N + n] = sm.pw[r] * (acc[mi][j][2 * h + c] + bn);
                    }
                }
            }
    }
}

/* ------------------------------------------------------------ selection */
static int g_gemm_variant = 0; /* 1 = v1 (cuda_moe_gemm.cu), 2 = v2, 4 = v4 (cuda_moe_gemm_v4.cu); 0 = not read yet */
/* the device gives a block sizeof(v2_smem) (~105 KB: Hopper and A100 do, sm_86/89 not) */
static bool g_v2_fits = false;
/* full tiles take the branch-free token loop (GPTOSS_CUDA_GEMM_FULL=0: never) */
static int g_v2_full = 1;

int cu_moe_gemm_variant(void) {
    if (!g_gemm_variant) {
        const char *v = getenv("GPTOSS_CUDA_MOE_GEMM");
        /* v4 where the GPU runs it (cu_moe_gemm_v2 falls back to v2 otherwise) */
        g_gemm_variant = v && !strcmp(v, "v1") ? 1 : v && !strcmp(v, "v2") ? 2 : 4;
    }
    return g_gemm_variant;
}

int cu_moe_gemm_set_variant(int v) {
    int old = cu_moe_gemm_variant();
    if (v == 2 && !g_v2_fits) return -1; /* would fall back to v1 anyway */
    if (v == 4 && !cu_moe_gemm_v4_available()) return -1;
    g_gemm_variant = v == 2 || v == 4 ? v : 1;
    return old;
}

void cu_moe_gemm_v2_init(void) {
    cu_moe_gemm_variant();
    const char *full = getenv("GPTOSS_CUDA_GEMM_FULL");
    g_v2_full = !(full && !strcmp(full, "0"));
    int sms, smem_optin;
    cu_device_limits(&sms, &smem_optin);
    g_v2_fits = smem_optin >= (int)sizeof(v2_smem) &&
                cudaFuncSetAttribute(k_moe_gemm_v2<true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     (int)sizeof(v2_smem)) == cudaSuccess &&
                cudaFuncSetAttribute(k_moe_gemm_v2<false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     (int)sizeof(v2_smem)) == cudaSuccess;
    cudaGetLastError();
    cu_moe_gemm_v4_init();
}

int cu_moe_gemm_v2(const uint8_t *gu_blocks, const uint8_t *gu_scales, const float *gu_bias,
                   const uint8_t *dn_blocks, const uint8_t *dn_scales, const float *dn_bias,
                   const bf16 *h_hi, const bf16 *h_lo, const float *sel_w, const cu_moe_scratch *sc,
                   int T, int k, int E, int H, int I, float limit, float alpha, int tile_rows,
                   cudaStream_t s) {
    if (g_gemm_variant == 4 && cu_moe_gemm_v4(gu_blocks, gu_scales, gu_bias, dn_blocks, dn_scales, dn_bias,
                                              h_hi, h_lo, sel_w, sc, T, k, E, H, I, limit, alpha, s))
        return 1;
    if (!g_v2_fits || tile_rows != V2_BT || H % 32 || I % 32) return 0;
    int mt = cu_moe_max_tiles(T, k, E);
    size_t smem = sizeof(v2_smem);
    dim3 g1((2 * I + V2_BN - 1) / V2_BN, mt), g2((H + V2_BN - 1) / V2_BN, mt);
    k_moe_gemm_v2<true><<<g1, V2_THREADS, smem, s>>>(gu_blocks, gu_scales, gu_bias, h_hi, h_lo, k,
                                                     sc->offsets, sc->perm, sc->tiles, sc->n_tiles,
                                                     sel_w, sc->act_hi, sc->act_lo, NULL, 2 * I, H,
                                                     limit, alpha, g_v2_full);
    k_moe_gemm_v2<false><<<g2, V2_THREADS, smem, s>>>(dn_blocks, dn_scales, dn_bias, sc->act_hi,
                                                      sc->act_lo, k, sc->offsets, sc->perm, sc->tiles,
                                                      sc->n_tiles, sel_w, NULL, NULL, sc->ypair, H, I,
                                                      limit, alpha, g_v2_full);
    return 1;
}
