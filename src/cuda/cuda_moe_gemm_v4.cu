/* cuda_moe_gemm_v4.cu - the grouped MXFP4 expert GEMM of prefill on wgmma
 * (sm_90a), one token tile per expert. Same inputs, outputs and epilogues as
 * v2 (cuda_moe_gemm_v2.cu), which GPUs without sm_90a keep.
 *
 * Why: v2 issues mma.sync m16n8k16 from every warp, each fed by a shared load
 * of the token operand (run F: 7 instructions per MMA, 37 % tensor-pipe
 * activity); wgmma reads the token operand (B) straight from shared memory and
 * the warps only dequantise the weights (A, registers). The first wgmma
 * version (v3, removed in the seventh session) gave every 64-token tile of an
 * expert its own blocks, so an expert with 70 tokens had its weights read and
 * dequantised twice and its second tile's MMAs ran 58 empty token columns; its
 * timing experiments put ~13 ms of a 512-token 20b prefill in loads +
 * dequantisation and ~9 ms in MMAs. v4 takes up to 128 tokens per tile (at
 * ~64 tokens per expert each weight is dequantised once) and sizes the MMA to
 * the tile: wgmma m64nNk16 with N the tile's token count rounded up to 16 (one
 * instantiation of the main loop per N, picked per block). Same call, H200:
 * 20b prompt 512 22.8k tok/s against v3's 18.6k, 120b 9.3k against 7.5k.
 *
 * Block: 256 weight rows x up to 128 tokens, 4 warpgroups of one m64 tile
 * each; 512 threads, one block per SM (the token tiles of 4 stages fill
 * shared memory). Tiles: block y is the y-th (expert, 128-row piece) in
 * expert order, found from k_route's offsets (its 64-row tile list is not
 * used). Per 32-element MXFP4 block: two k16 steps, each one wgmma on the
 * bf16 "hi" token rows and one on the "lo" rows into the same accumulators
 * (hi + lo: fp32-like activations).
 *
 * Fragments (PTX ISA, "Register Fragments" of wgmma .m64nNk16): warp q of the
 * warpgroup holds rows 16q..16q+15 of the m64 tile exactly as mma.m16n8k16's
 * A: lane 4g + t has (row g, k 2t..2t+1), (row g+8, same k), (row g, k
 * 2t+8..), (row g+8, k 2t+8..). For k16 step c of a block that is code bytes
 * 8c + t and 8c + t + 4 of the row's 16-byte block, so a lane gathers bytes
 * t, t+4, t+8, t+12 (three byte permutes of one 16-byte shared load) and
 * dequantises them exactly as v2 (mx_dequant_word). The accumulators of token
 * group j (8 tokens) are d[4j .. 4j+3] = (row g, token 8j+2t, +1), (row g+8,
 * same tokens), for any N.
 *
 * Token tiles in shared memory: up to 128 rows x 128 bytes per stage and
 * part, the 128-byte swizzle of wgmma's K-major layout (16-byte chunk c of
 * row r at chunk c ^ (r % 8), 1024-byte aligned atoms of 8 rows); k16 step s
 * of the stage starts 32 s bytes into the rows.
 *
 * Pipeline: 4 stages, loads issued 2 stages ahead; one wgmma commit group per
 * MXFP4 block, and a warp waits for it before it overwrites the A registers
 * with the next block's weights, so the slot refilled at stage kt (last read
 * at kt - 2) is free once every warp passed the stage's barrier. */
#include "cuda_mxfp4_mma.cuh"
#include "cuda_wgmma.cuh"
#include "cuda_internal.h"

#include <stddef.h>
#include <stdint.h>

#define V4_BT 128 /* tokens per tile, at most */
#define V4_BN 256 /* weight rows per block */
#define V4_BK 64  /* K per stage: two MXFP4 blocks */
#define V4_STAGES 4
#define V4_AHEAD 2 /* stages in flight ahead of the one computed */
#define V4_THREADS 512
#define V4_OLD (128 + 8) /* bf16 row of the gate_up output tile, padded */

struct v4_stage {
    uint4 ahi[V4_BT * 8]; /* token rows, hi part, 128-byte swizzle (offset 0: 1024-aligned) */
    uint4 alo[V4_BT * 8]; /* lo part (offset 16384) */
    uint4 b[V4_BN * 2];   /* codes: row r, block b at r * 2 + (b ^ ((r >> 2) & 1)) */
    uint2 sw[V4_BN];      /* the two aligned words holding row r's scale bytes */
};
struct v4_smem {
    union {
        v4_stage st[V4_STAGES]; /* 42 KB each: every stage 1024-aligned */
        struct {
            bf16 hi[V4_BT * V4_OLD];
            bf16 lo[V4_BT * V4_OLD];
        } out;
    };
    int arow[V4_BT];
    int prow[V4_BT];
    float pw[V4_BT];
    int tile_e, tile_m;
};
static_assert(sizeof(v4_stage) % 1024 == 0, "stages must keep the 1024-byte alignment");
#define V4_LO_OFF 16384u /* offsetof(v4_stage, alo): the lo tile's descriptor offset */
static_assert(offsetof(v4_stage, alo) == V4_LO_OFF, "V4_LO_OFF must match the stage layout");

/* The kernel's arguments and the block's tile, for the per-width bodies. */
struct v4_job {
    const uint8_t *blocks, *scales;
    const float *bias;
    const bf16 *A_hi, *A_lo;
    const float *sel_w;
    bf16 *act_hi, *act_lo;
    float *y_out;
    int N, K, row0, mrows, n0;
    float limit, alpha;
};

#ifdef CU_WGMMA
template <bool GATE_UP, int NT>
static __device__ __forceinline__ void v4_body(v4_smem &sm, const v4_job &j, int e) {
    const int NB = j.K / 32, nk = (NB + 1) / 2, N = j.N, n0 = j.n0;
    const size_t rowbytes = (size_t)NB * 16;
    const uint8_t *bexp = j.blocks + (size_t)e * N * rowbytes;
    const uint8_t *sexp = j.scales + (size_t)e * N * NB;
    const int tid = threadIdx.x;

    /* ---- producer role: token row tid / 4 (chunks 2 (tid % 4), +1, hi and
     * lo) when below NT; code row tid / 2, block tid % 2; scale word x
     * (tid < 256) or y of row tid % 256 */
    const int tr = tid >> 2, tch = 2 * (tid & 3);
    const bool tok_on = tr < NT;
    const int tsrc = tok_on ? sm.arow[tr] : -1;
    const bf16 *thi = tsrc >= 0 ? j.A_hi + (size_t)tsrc * j.K : j.A_hi;
    const bf16 *tlo = tsrc >= 0 ? j.A_lo + (size_t)tsrc * j.K : j.A_lo;
    const int br = tid >> 1, bb = tid & 1;
    const bool brow_ok = n0 + br < N;
    const uint8_t *brow = brow_ok ? bexp + (size_t)(n0 + br) * rowbytes : bexp;
    const int sr = tid & (V4_BN - 1), sy = tid >= V4_BN;
    const bool srow_ok = n0 + sr < N;
    const size_t srow = srow_ok ? (size_t)(n0 + sr) * NB : 0;

    auto issue = [&](int kt) {
        v4_stage &st = sm.st[kt % V4_STAGES];
        int kb0 = 2 * kt;
        if (tok_on) {
#pragma unroll
            for (int i = 0; i < 2; i++) {
                int ch = tch + i; /* 8 bf16 of block kb0 + ch / 4 */
                bool ok = tsrc >= 0 && kb0 + (ch >> 2) < NB;
                size_t off = ok ? (size_t)kt * V4_BK + ch * 8 : 0;
                int dst = tr * 8 + (ch ^ (tr & 7));
                cu_cp16(&st.ahi[dst], thi + off, ok ? 16 : 0);
                cu_cp16(&st.alo[dst], tlo + off, ok ? 16 : 0);
            }
        }
        bool ok = brow_ok && kb0 + bb < NB;
        cu_cp16(&st.b[br * 2 + (bb ^ ((br >> 2) & 1))], brow + (ok ? (size_t)(kb0 + bb) * 16 : 0), ok ? 16 : 0);
        size_t pos = srow + kb0, a = pos & ~(size_t)3;
        if (!sy) {
            cu_cp4(&st.sw[sr].x, sexp + (srow_ok ? a : 0), srow_ok ? 4 : 0);
        } else {
            bool two = srow_ok && (pos & 3) == 3 && kb0 + 1 < NB;
            cu_cp4(&st.sw[sr].y, sexp + (two ? a + 4 : 0), two ? 4 : 0);
        }
    };

    /* ---- consumer role: warp q of warpgroup wg, rows rbase + g (+ 8) */
    const int warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int wg = warp >> 2;
    const int rbase = 64 * wg + 16 * (warp & 3);
    const bool mt_on = n0 + 64 * wg < N; /* the m64 tile holds rows below N (epilogue only) */
    int rb[2];                           /* (row * NB) % 4 of the lane's rows */
#pragma unroll
    for (int h = 0; h < 2; h++) rb[h] = (int)(((size_t)(n0 + rbase + 8 * h + g) * NB) & 3);
    const uint32_t gsel = (uint32_t)t | ((uint32_t)(t + 4) << 4); /* byte t of two words */

    float acc[NT / 2];
#pragma unroll
    for (int i = 0; i < NT / 2; i++) acc[i] = 0.0f;
    uint32_t af[2][4]; /* [k16 step][reg] */
    const uint32_t sbase = (uint32_t)__cvta_generic_to_shared(&sm.st[0]);

#pragma unroll
    for (int s = 0; s < V4_AHEAD; s++) {
        if (s < nk) issue(s);
        cu_cp_commit();
    }
    for (int kt = 0; kt < nk; kt++) {
        cu_cp_wait<V4_AHEAD - 1>();
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); /* cp.async data -> wgmma */
        __syncthreads();
        if (kt + V4_AHEAD < nk) issue(kt + V4_AHEAD);
        cu_cp_commit();
        const v4_stage &st = sm.st[kt % V4_STAGES];
        const uint32_t hi_addr = sbase + (uint32_t)(kt % V4_STAGES) * (uint32_t)sizeof(v4_stage);
#pragma unroll
        for (int b = 0; b < 2; b++) {
            /* no branch around the wgmmas (the compiler would serialise
             * them): a missing block (K tail) and rows past N arrive as zero
             * codes with scale byte 0, so they add exact zeros */
            const bool blk_ok = 2 * kt + b < NB;
            wg_wait<0>(); /* the previous block's wgmmas read af */
#pragma unroll
            for (int h = 0; h < 2; h++) {
                int r = rbase + 8 * h + g;
                uint2 sw = st.sw[r];
                uint32_t s = __byte_perm(sw.x, sw.y, ((rb[h] + 2 * kt) & 3) + b) & 0xffu;
                s = blk_ok ? s : 0u;
                uint4 q = st.b[r * 2 + (b ^ ((r >> 2) & 1))];
                uint32_t w = __byte_perm(__byte_perm(q.x, q.y, gsel), __byte_perm(q.z, q.w, gsel), 0x5410u);
                uint32_t d[4];
                mx_dequant_word(w, mx_scale2(s), d);
                af[0][h] = d[0];
                af[0][2 + h] = d[1];
                af[1][h] = d[2];
                af[1][2 + h] = d[3];
            }
            wg_fence();
#pragma unroll
            for (int c = 0; c < 2; c++) {
                uint32_t off = (uint32_t)(32 * (2 * b + c));
                wg_mma<NT>(acc, af[c], wg_desc(hi_addr + off));
                wg_mma<NT>(acc, af[c], wg_desc(hi_addr + V4_LO_OFF + off));
            }
            wg_commit();
        }
    }
    wg_wait<0>();
    cu_cp_wait<0>();
    __syncthreads(); /* the stages are free: the gate_up epilogue reuses them */

    const float *be = j.bias + (size_t)e * N;
    if (GATE_UP) {
        /* (gate, up) rows are lanes g, g ^ 1 (4 apart): an even lane takes
         * token 2t of the pair, an odd lane token 2t + 1 */
        const int odd = g & 1;
        if (mt_on) {
#pragma unroll
            for (int h = 0; h < 2; h++) {
                int rl = rbase + 8 * h + g - odd; /* local gate row */
                int ng = n0 + rl;
                float bg = ng < N ? be[ng] : 0.0f, bu = ng < N ? be[ng + 1] : 0.0f;
                int col = rl >> 1;
#pragma unroll
                for (int jj = 0; jj < NT / 8; jj++) {
                    int o = (8 * jj + 2 * t + odd) * V4_OLD + col;
                    mx_swiglu_pair(acc[4 * jj + 2 * h], acc[4 * jj + 2 * h + 1], odd, bg, bu, j.limit, j.alpha,
                                   &sm.out.hi[o], &sm.out.lo[o]);
                }
            }
        }
        __syncthreads();
        const int I = N / 2, c0 = n0 / 2;
        for (int idx = tid; idx < 2 * NT * 16; idx += V4_THREADS) {
            int lo = idx >= NT * 16, r = (idx >> 4) - (lo ? NT : 0), ch = idx & 15;
            if (r >= j.mrows || c0 + 8 * ch >= I) continue;
            const bf16 *src = (lo ? sm.out.lo : sm.out.hi) + r * V4_OLD + 8 * ch;
            bf16 *dst = (lo ? j.act_lo : j.act_hi) + (size_t)(j.row0 + r) * I + c0 + 8 * ch;
            *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(src);
        }
    } else if (mt_on) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int n = n0 + rbase + 8 * h + g;
            if (n >= N) continue;
            float bn = be[n];
#pragma unroll
            for (int jj = 0; jj < NT / 8; jj++)
#pragma unroll
                for (int c = 0; c < 2; c++) {
                    int r = 8 * jj + 2 * t + c;
                    if (r < j.mrows) j.y_out[(size_t)sm.prow[r] * N + n] = sm.pw[r] * (acc[4 * jj + 2 * h + c] + bn);
                }
        }
    }
}
#endif

/* Same contract as k_moe_gemm_v2 (cuda_moe_gemm_v2.cu) but for the tiles:
 * blockIdx.y is the y-th 128-row piece of the experts' rows (E experts). */
template <bool GATE_UP>
__global__ void __launch_bounds__(V4_THREADS, 1) k_moe_gemm_v4(
    const uint8_t *__restrict__ blocks, const uint8_t *__restrict__ scales,
    const float *__restrict__ bias, const bf16 *__restrict__ A_hi, const bf16 *__restrict__ A_lo,
    int k_top, int E, const int *__restrict__ offsets, const int *__restrict__ perm,
    const float *__restrict__ sel_w, bf16 *act_hi, bf16 *act_lo, float *y_out, int N, int K, float limit,
    float alpha) {
#ifdef CU_WGMMA
    extern __shared__ unsigned char v4_smem_raw[];
    /* the swizzled token tiles need 1024-byte alignment: the launch adds 1 KB */
    uint32_t raw = (uint32_t)__cvta_generic_to_shared(v4_smem_raw);
    v4_smem &sm = *reinterpret_cast<v4_smem *>(v4_smem_raw + (((raw + 1023u) & ~1023u) - raw));
    const int tid = threadIdx.x;
    /* warp 0 finds the block's (expert, piece): a prefix sum of the experts'
     * piece counts, 32 experts per step */
    if (tid < 32) {
        if (tid == 0) sm.tile_e = -1;
        __syncwarp();
        int base = 0, y = (int)blockIdx.y;
        for (int e0 = 0; e0 < E; e0 += 32) {
            int e = e0 + tid;
            int n = e < E ? (offsets[e + 1] - offsets[e] + V4_BT - 1) / V4_BT : 0, inc = n;
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                int v = __shfl_up_sync(0xffffffffu, inc, o);
                if (tid >= o) inc += v;
            }
            if (y >= base + inc - n && y < base + inc) {
                sm.tile_e = e;
                sm.tile_m = y - (base + inc - n);
            }
            base += __shfl_sync(0xffffffffu, inc, 31);
        }
    }
    __syncthreads();
    const int e = sm.tile_e;
    if (e < 0) return; /* the grid covers the most pieces T k can need */
    v4_job j = { blocks, scales, bias, A_hi, A_lo, sel_w, act_hi, act_lo, y_out, N, K, 0, 0, 0, limit, alpha };
    j.row0 = offsets[e] + sm.tile_m * V4_BT;
    j.mrows = min(V4_BT, offsets[e + 1] - j.row0);
    j.n0 = blockIdx.x * V4_BN;
    if (tid < V4_BT) {
        int src = -1;
        if (tid < j.mrows) {
            int p = perm[j.row0 + tid];
            src = GATE_UP ? p / k_top : j.row0 + tid;
            if (!GATE_UP) {
                sm.prow[tid] = p;
                sm.pw[tid] = sel_w[p];
            }
        }
        sm.arow[tid] = src;
    }
    __syncthreads();
    switch ((j.mrows + 15) >> 4) { /* the MMA width: tokens rounded up to 16 */
    case 1: v4_body<GATE_UP, 16>(sm, j, e); break;
    case 2: v4_body<GATE_UP, 32>(sm, j, e); break;
    case 3: v4_body<GATE_UP, 48>(sm, j, e); break;
    case 4: v4_body<GATE_UP, 64>(sm, j, e); break;
    case 5: v4_body<GATE_UP, 80>(sm, j, e); break;
    case 6: v4_body<GATE_UP, 96>(sm, j, e); break;
    case 7: v4_body<GATE_UP, 112>(sm, j, e); break;
    default: v4_body<GATE_UP, 128>(sm, j, e); break;
    }
#else
    (void)blocks, (void)scales, (void)bias, (void)A_hi, (void)A_lo, (void)k_top, (void)E, (void)offsets;
    (void)perm, (void)sel_w, (void)act_hi, (void)act_lo, (void)y_out, (void)N, (void)K, (void)limit;
    (void)alpha;
#endif
}

/* 1 when this binary's code for the running GPU has the wgmma body */
__global__ void k_moe_gemm_v4_probe(int *out) {
#ifdef CU_WGMMA
    *out = 1;
#else
    *out = 0;
#endif
}

static bool g_v4_ok = false;
void cu_moe_gemm_v4_init(void) {
    int sms, smem_optin;
    cu_device_limits(&sms, &smem_optin);
    int need = (int)sizeof(v4_smem) + 1024;
    g_v4_ok = false;
    int *d = NULL, h = 0;
    if (smem_optin < need || cudaMalloc(&d, sizeof(int)) != cudaSuccess) {
        cudaGetLastError();
        return;
    }
    k_moe_gemm_v4_probe<<<1, 1>>>(d);
    g_v4_ok = cudaMemcpy(&h, d, sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess && h == 1 &&
              cudaFuncSetAttribute(k_moe_gemm_v4<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, need) ==
                  cudaSuccess &&
              cudaFuncSetAttribute(k_moe_gemm_v4<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, need) ==
                  cudaSuccess;
    cudaFree(d);
    cudaGetLastError();
}

int cu_moe_gemm_v4_available(void) { return g_v4_ok; }

int cu_moe_gemm_v4(const uint8_t *gu_blocks, const uint8_t *gu_scales, const float *gu_bias,
                   const uint8_t *dn_blocks, const uint8_t *dn_scales, const float *dn_bias,
                   const bf16 *h_hi, const bf16 *h_lo, const float *sel_w, const cu_moe_scratch *sc,
                   int T, int k, int E, int H, int I, float limit, float alpha, cudaStream_t s) {
    if (!g_v4_ok || H % 32 || I % 32) return 0;
    int pieces = (T * k + V4_BT - 1) / V4_BT + E; /* at most: each expert's last piece partial */
    size_t smem = sizeof(v4_smem) + 1024;
    dim3 g1((2 * I + V4_BN - 1) / V4_BN, pieces), g2((H + V4_BN - 1) / V4_BN, pieces);
    k_moe_gemm_v4<true><<<g1, V4_THREADS, smem, s>>>(gu_blocks, gu_scales, gu_bias, h_hi, h_lo, k, E,
                                                     sc->offsets, sc->perm, sel_w, sc->act_hi, sc->act_lo,
                                                     NULL, 2 * I, H, limit, alpha);
    k_moe_gemm_v4<false><<<g2, V4_THREADS, smem, s>>>(dn_blocks, dn_scales, dn_bias, sc->act_hi, sc->act_lo,
                                                      k, E, sc->offsets, sc->perm, sel_w, NULL, NULL,
                                                      sc->ypair, H, I, limit, alpha);
    return 1;
}
