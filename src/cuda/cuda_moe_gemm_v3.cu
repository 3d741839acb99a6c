/* cuda_moe_gemm_v3.cu - the grouped MXFP4 expert GEMM of prefill on Hopper's
 * warpgroup tensor-core instructions (wgmma, sm_90a only). Same inputs,
 * outputs, tiles and epilogues as v2 (cuda_moe_gemm_v2.cu), which the other
 * GPUs keep. The default where the GPU runs this binary's sm_90a code
 * (GPTOSS_CUDA_MOE_GEMM=v2 or v1 choose the others).
 *
 * Why: v2 issues mma.sync m16n8k16 from every warp, each MMA fed by a 16-byte
 * shared load of the token operand; the run F profile counted 7 instructions
 * per MMA and 37 % tensor-pipe activity. wgmma m64n64k16 reads the token
 * operand (B) straight from shared memory and does 32 times an m16n8k16's
 * work per instruction; the warps only dequantise the weights (A, from
 * registers) and keep the pipeline fed.
 *
 * Block: 256 weight rows x 64 tokens, 2 warpgroups; warpgroup wg owns rows
 * 128 wg .. 128 wg + 127 as two m64 tiles (mi). Per 32-element MXFP4 block and
 * m tile: two k16 steps, each one wgmma on the bf16 "hi" token rows and one on
 * the "lo" rows into the same accumulators (hi + lo: fp32-like activations).
 *
 * Fragments (PTX ISA, "Register Fragments" of wgmma .m64nNk16): warp q of the
 * warpgroup holds rows 16q..16q+15 of the m64 tile exactly as mma.m16n8k16's
 * A: lane 4g + t has (row g, k 2t..2t+1), (row g+8, same k), (row g, k
 * 2t+8..), (row g+8, k 2t+8..). For k16 step c of a block that is code bytes
 * 8c + t and 8c + t + 4 of the row's 16-byte block, so a lane gathers bytes
 * t, t+4, t+8, t+12 (three byte permutes of one 16-byte shared load) and
 * dequantises them exactly as v2 (mx_dequant_word). The accumulators of token
 * tile j (8 tokens) are d[4j .. 4j+3] = (row g, token 8j+2t, +1), (row g+8,
 * same tokens): v2's acc[mi][j][c].
 *
 * Token tiles in shared memory: 64 rows x 128 bytes (64 K) per stage, the
 * 128-byte swizzle of wgmma's K-major layout (16-byte chunk c of row r at
 * chunk c ^ (r % 8), 1024-byte aligned atoms of 8 rows); k16 step s of the
 * stage starts 32 s bytes into the rows.
 *
 * Pipeline: 4 stages, loads issued 2 stages ahead; one wgmma commit group per
 * MXFP4 block, and a warp waits for it before it overwrites the A registers
 * with the next block's weights, so the slot refilled at stage kt (last read
 * at kt - 2) is free once every warp passed the stage's barrier. */
#include "cuda_mxfp4_mma.cuh"
#include "cuda_wgmma.cuh"
#include "cuda_internal.h"

#include <stdint.h>

#define V3_BT 64   /* tokens per tile: k_route's tile rows */
#define V3_BN 256  /* weight rows per block */
#define V3_BK 64   /* K per stage: two MXFP4 blocks */
#define V3_STAGES 4
#define V3_AHEAD 2 /* stages in flight ahead of the one computed */
#define V3_THREADS 256
#define V3_OLD (128 + 8) /* bf16 row of the gate_up output tile, padded */

struct v3_stage {
    uint4 ahi[V3_BT * 8]; /* token rows, hi part, 128-byte swizzle (offset 0: 1024-aligned) */
    uint4 alo[V3_BT * 8]; /* lo part (offset 8192) */
    uint4 b[V3_BN * 2];   /* codes: row r, block b at r * 2 + (b ^ ((r >> 2) & 1)) */
    uint2 sw[V3_BN];      /* the two aligned words holding row r's scale bytes */
};
struct v3_smem {
    union {
        v3_stage st[V3_STAGES]; /* 26 KB each: every stage 1024-aligned */
        struct {
            bf16 hi[V3_BT * V3_OLD];
            bf16 lo[V3_BT * V3_OLD];
        } out;
    };
    int arow[V3_BT];
    int prow[V3_BT];
    float pw[V3_BT];
};
static_assert(sizeof(v3_stage) % 1024 == 0, "stages must keep the 1024-byte alignment");

/* Same contract as k_moe_gemm_v2 (cuda_moe_gemm_v2.cu). */
template <bool GATE_UP>
__global__ void __launch_bounds__(V3_THREADS, 2) k_moe_gemm_v3(
    const uint8_t *__restrict__ blocks, const uint8_t *__restrict__ scales,
    const float *__restrict__ bias, const bf16 *__restrict__ A_hi, const bf16 *__restrict__ A_lo,
    int k_top, const int *__restrict__ offsets, const int *__restrict__ perm,
    const int *__restrict__ tiles, const int *__restrict__ n_tiles, const float *__restrict__ sel_w,
    bf16 *act_hi, bf16 *act_lo, float *y_out, int N, int K, float limit, float alpha) {
#ifdef CU_WGMMA
    extern __shared__ unsigned char v3_smem_raw[];
    /* the swizzled token tiles need 1024-byte alignment: the launch adds 1 KB */
    uint32_t raw = (uint32_t)__cvta_generic_to_shared(v3_smem_raw);
    v3_smem &sm = *reinterpret_cast<v3_smem *>(v3_smem_raw + (((raw + 1023u) & ~1023u) - raw));
    if ((int)blockIdx.y >= n_tiles[0]) return;
    int tile = tiles[blockIdx.y];
    int e = tile >> 16;
    int row0 = offsets[e] + (tile & 0xffff) * V3_BT;
    int mrows = min(V3_BT, offsets[e + 1] - row0);
    int n0 = blockIdx.x * V3_BN;
    int tid = threadIdx.x;
    if (tid < V3_BT) {
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

    /* ---- producer role: token row tid / 4 (chunks 2 (tid % 4), +1, hi and
     * lo), code row tid (both blocks), scale words of row tid */
    const int tr = tid >> 2, tch = 2 * (tid & 3);
    const int tsrc = sm.arow[tr];
    const bf16 *thi = tsrc >= 0 ? A_hi + (size_t)tsrc * K : A_hi;
    const bf16 *tlo = tsrc >= 0 ? A_lo + (size_t)tsrc * K : A_lo;
    const bool brow_ok = n0 + tid < N;
    const uint8_t *brow = brow_ok ? bexp + (size_t)(n0 + tid) * rowbytes : bexp;
    const size_t srow = brow_ok ? (size_t)(n0 + tid) * NB : 0;

    auto issue = [&](int kt) {
        v3_stage &st = sm.st[kt % V3_STAGES];
        int kb0 = 2 * kt;
#pragma unroll
        for (int i = 0; i < 2; i++) {
            int ch = tch + i; /* 8 bf16 of block kb0 + ch / 4 */
            bool ok = tsrc >= 0 && kb0 + (ch >> 2) < NB;
            size_t off = ok ? (size_t)kt * V3_BK + ch * 8 : 0;
            int dst = tr * 8 + (ch ^ (tr & 7));
            cu_cp16(&st.ahi[dst], thi + off, ok ? 16 : 0);
            cu_cp16(&st.alo[dst], tlo + off, ok ? 16 : 0);
        }
#pragma unroll
        for (int b = 0; b < 2; b++) {
            bool ok = brow_ok && kb0 + b < NB;
            cu_cp16(&st.b[tid * 2 + (b ^ ((tid >> 2) & 1))], brow + (ok ? (size_t)(kb0 + b) * 16 : 0),
                    ok ? 16 : 0);
        }
        size_t pos = srow + kb0, a = pos & ~(size_t)3;
        bool two = brow_ok && (pos & 3) == 3 && kb0 + 1 < NB;
        cu_cp4(&st.sw[tid].x, sexp + (brow_ok ? a : 0), brow_ok ? 4 : 0);
        cu_cp4(&st.sw[tid].y, sexp + (two ? a + 4 : 0), two ? 4 : 0);
    };

    /* ---- consumer role: warp q of warpgroup wg, rows rbase[mi] + g (+ 8) */
    const int warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int wg = warp >> 2;
    int rbase[2];
    bool mt_on[2]; /* the m64 tile holds rows below N (epilogue only) */
    int rb[2][2];  /* (row * NB) % 4 of the lane's rows */
#pragma unroll
    for (int mi = 0; mi < 2; mi++) {
        rbase[mi] = 128 * wg + 64 * mi + 16 * (warp & 3);
        mt_on[mi] = n0 + 128 * wg + 64 * mi < N;
#pragma unroll
        for (int h = 0; h < 2; h++) rb[mi][h] = (int)(((size_t)(n0 + rbase[mi] + 8 * h + g) * NB) & 3);
    }
    const uint32_t gsel = (uint32_t)t | ((uint32_t)(t + 4) << 4); /* byte t of two words */

    float acc[2][32];
#pragma unroll
    for (int mi = 0; mi < 2; mi++)
#pragma unroll
        for (int i = 0; i < 32; i++) acc[mi][i] = 0.0f;
    uint32_t af[2][2][4]; /* [mi][k16 step][reg] */

    const uint32_t sbase = (uint32_t)__cvta_generic_to_shared(&sm.st[0]);

#pragma unroll
    for (int s = 0; s < V3_AHEAD; s++) {
        if (s < nk) issue(s);
        cu_cp_commit();
    }
    for (int kt = 0; kt < nk; kt++) {
        cu_cp_wait<V3_AHEAD - 1>();
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); /* cp.async data -> wgmma */
        __syncthreads();
        if (kt + V3_AHEAD < nk) issue(kt + V3_AHEAD);
        cu_cp_commit();
        const v3_stage &st = sm.st[kt % V3_STAGES];
        const uint32_t hi_addr = sbase + (uint32_t)(kt % V3_STAGES) * (uint32_t)sizeof(v3_stage);
#pragma unroll
        for (int b = 0; b < 2; b++) {
            /* no branch around the wgmmas (the compiler would serialise them):
             * a missing block (K tail) and rows past N arrive as zero codes
             * with scale byte 0, so they add exact zeros */
            const bool blk_ok = 2 * kt + b < NB;
            /* the A registers were read by the previous block's wgmmas (one
             * buffer: a second one, filled while the tensor cores work, and a
             * one-multiply path for scale bytes <= 128 both measured slower) */
            wg_wait<0>();
#pragma unroll
            for (int mi = 0; mi < 2; mi++) {
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    int r = rbase[mi] + 8 * h + g;
                    uint2 sw = st.sw[r];
                    uint32_t s = __byte_perm(sw.x, sw.y, ((rb[mi][h] + 2 * kt) & 3) + b) & 0xffu;
                    s = blk_ok ? s : 0u;
                    uint4 q = st.b[r * 2 + (b ^ ((r >> 2) & 1))];
                    uint32_t w = __byte_perm(__byte_perm(q.x, q.y, gsel), __byte_perm(q.z, q.w, gsel), 0x5410u);
                    uint32_t d[4];
                    mx_dequant_word(w, mx_scale2(s), d);
                    af[mi][0][h] = d[0];
                    af[mi][0][2 + h] = d[1];
                    af[mi][1][h] = d[2];
                    af[mi][1][2 + h] = d[3];
                }
            }
            wg_fence();
#pragma unroll
            for (int c = 0; c < 2; c++) {
                uint32_t off = (uint32_t)(32 * (2 * b + c));
                uint64_t dh = wg_desc(hi_addr + off), dl = wg_desc(hi_addr + 8192u + off);
#pragma unroll
                for (int mi = 0; mi < 2; mi++) wg_mma<64>(acc[mi], af[mi][c], dh);
#pragma unroll
                for (int mi = 0; mi < 2; mi++) wg_mma<64>(acc[mi], af[mi][c], dl);
            }
            wg_commit();
        }
    }
    wg_wait<0>();
    cu_cp_wait<0>();
    __syncthreads(); /* the stages are free: the gate_up epilogue reuses them */

    const float *be = bias + (size_t)e * N;
    if (GATE_UP) {
        /* (gate, up) rows are lanes g, g ^ 1 (4 apart): an even lane takes
         * token 2t of the pair, an odd lane token 2t + 1 */
        const int odd = g & 1;
#pragma unroll
        for (int mi = 0; mi < 2; mi++) {
            if (!mt_on[mi]) continue;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                int rl = rbase[mi] + 8 * h + g - odd; /* local gate row */
                int ng = n0 + rl;
                float bg = ng < N ? be[ng] : 0.0f, bu = ng < N ? be[ng + 1] : 0.0f;
                int col = rl >> 1;
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    float v0 = acc[mi][4 * j + 2 * h], v1 = acc[mi][4 * j + 2 * h + 1];
                    float other = __shfl_xor_sync(0xffffffffu, odd ? v0 : v1, 4);
                    float gate = odd ? other : v0, up = odd ? v1 : other;
                    float a = swiglu(gate + bg, up + bu, limit, alpha);
                    bf16 hi = __float2bfloat16_rn(a);
                    int o = (8 * j + 2 * t + odd) * V3_OLD + col;
                    sm.out.hi[o] = hi;
                    sm.out.lo[o] = __float2bfloat16_rn(a - __bfloat162float(hi));
                }
            }
        }
        __syncthreads();
        const int I = N / 2, c0 = n0 / 2;
        for (int idx = tid; idx < 2 * V3_BT * 16; idx += V3_THREADS) {
            int lo = idx >= V3_BT * 16, r = (idx >> 4) & (V3_BT - 1), ch = idx & 15;
            if (r >= mrows || c0 + 8 * ch >= I) continue;
            const bf16 *src = (lo ? sm.out.lo : sm.out.hi) + r * V3_OLD + 8 * ch;
            bf16 *dst = (lo ? act_lo : act_hi) + (size_t)(row0 + r) * I + c0 + 8 * ch;
            *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(src);
        }
    } else {
#pragma unroll
        for (int mi = 0; mi < 2; mi++) {
            if (!mt_on[mi]) continue;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                int n = n0 + rbase[mi] + 8 * h + g;
                if (n >= N) continue;
                float bn = be[n];
#pragma unroll
                for (int j = 0; j < 8; j++)
#pragma unroll
                    for (int c = 0; c < 2; c++) {
                        int r = 8 * j + 2 * t + c;
                        if (r < mrows) y_out[(size_t)sm.prow[r] * N + n] = sm.pw[r] * (acc[mi][4 * j + 2 * h + c] + bn);
                    }
            }
        }
    }
#else
    (void)blocks, (void)scales, (void)bias, (void)A_hi, (void)A_lo, (void)k_top, (void)offsets, (void)perm;
    (void)tiles, (void)n_tiles, (void)sel_w, (void)act_hi, (void)act_lo, (void)y_out, (void)N, (void)K;
    (void)limit, (void)alpha;
#endif
}

/* 1 when this binary's code for the running GPU has the wgmma body */
__global__ void k_moe_gemm_v3_probe(int *out) {
#ifdef CU_WGMMA
    *out = 1;
#else
    *out = 0;
#endif
}

static bool g_v3_ok = false;
void cu_moe_gemm_v3_init(void) {
    int sms, smem_optin;
    cu_device_limits(&sms, &smem_optin);
    int need = (int)sizeof(v3_smem) + 1024;
    g_v3_ok = false;
    int *d = NULL, h = 0;
    if (smem_optin < need || cudaMalloc(&d, sizeof(int)) != cudaSuccess) {
        cudaGetLastError();
        return;
    }
    k_moe_gemm_v3_probe<<<1, 1>>>(d);
    if (cudaMemcpy(&h, d, sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess && h == 1 &&
        cudaFuncSetAttribute(k_moe_gemm_v3<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, need) ==
            cudaSuccess &&
        cudaFuncSetAttribute(k_moe_gemm_v3<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, need) ==
            cudaSuccess)
        g_v3_ok = true;
    cudaFree(d);
    cudaGetLastError();
}

int cu_moe_gemm_v3_available(void) { return g_v3_ok; }

int cu_moe_gemm_v3(const uint8_t *gu_blocks, const uint8_t *gu_scales, const float *gu_bias,
                   const uint8_t *dn_blocks, const uint8_t *dn_scales, const float *dn_bias,
                   const bf16 *h_hi, const bf16 *h_lo, const float *sel_w, const cu_moe_scratch *sc,
                   int T, int k, int E, int H, int I, float limit, float alpha, int tile_rows,
                   cudaStream_t s) {
    if (!g_v3_ok || tile_rows != V3_BT || H % 32 || I % 32) return 0;
    int mt = cu_moe_max_tiles(T, k, E);
    size_t smem = sizeof(v3_smem) + 1024;
    dim3 g1((2 * I + V3_BN - 1) / V3_BN, mt), g2((H + V3_BN - 1) / V3_BN, mt);
    k_moe_gemm_v3<true><<<g1, V3_THREADS, smem, s>>>(gu_blocks, gu_scales, gu_bias, h_hi, h_lo, k,
                                                     sc->offsets, sc->perm, sc->tiles, sc->n_tiles,
                                                     sel_w, sc->act_hi, sc->act_lo, NULL, 2 * I, H,
                                                     limit, alpha);
    k_moe_gemm_v3<false><<<g2, V3_THREADS, smem, s>>>(dn_blocks, dn_scales, dn_bias, sc->act_hi,
                                                      sc->act_lo, k, sc->offsets, sc->perm, sc->tiles,
                                                      sc->n_tiles, sel_w, NULL, NULL, sc->ypair, H, I,
                                                      limit, alpha);
    return 1;
}
