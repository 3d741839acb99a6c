/* cuda_moe_gemm.cu - grouped MXFP4 expert GEMMs for prefill (many tokens).
 *
 * 1. k_route: token/expert pairs are bucketed by expert (counts, offsets,
 *    perm) and a list of (expert, 64-row tile) work items is built.
 * 2. k_moe_gemm<GATE_UP>: one block computes a 64 x 128 output tile of one
 *    expert: A (activations, bf16, gathered rows) and B (weights, MXFP4 blocks
 *    dequantised on the fly to bf16 in shared memory) feed the tensor cores
 *    (WMMA 16x16x16 bf16, fp32 accumulate). The next k-tile's global loads are
 *    issued into registers before the current tile's MMAs.
 *    GATE_UP epilogue: + bias, clamped SwiGLU of the interleaved (gate, up)
 *    column pairs, bf16 activations in expert order.
 *    down epilogue: + bias, times the routing weight, fp32 rows in pair order.
 * 3. k_combine: x[t] += sum over the token's k pairs (fixed order: deterministic).
 */
#include "cuda_matvec.cuh"

#include <mma.h>

using namespace nvcuda;

#define BM 64
#define BN 128
#define BK 64
#define LDS (BK + 8) /* padded bf16 row of the A/B tiles */
#define LDC (BN + 4) /* padded fp32 row of the epilogue tile */

__constant__ float c_fp4[16] = { 0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                 -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f };

int cu_moe_max_tiles(int T, int k, int E) { return (T * k + BM - 1) / BM + E; }



/* One block of 1024 threads. E <= 1024. */
__global__ void k_route(const int *sel_e, int P, int E, int *counts, int *offsets, int *perm,
                        int *tiles, int *n_tiles) {
    extern __shared__ int sh[]; /* cnt[E], cur[E] */
    int *cnt = sh, *cur = sh + E;
    for (int e = threadIdx.x; e < E; e += blockDim.x) cnt[e] = 0;
    __syncthreads();
    for (int p = threadIdx.x; p < P; p += blockDim.x) atomicAdd(&cnt[sel_e[p]], 1);
    __syncthreads();
    if (threadIdx.x == 0) {
        int off = 0, nt = 0;
        for (int e = 0; e < E; e++) {
            offsets[e] = off;
            counts[e] = cnt[e];
            cur[e] = off;
            for (int m = 0; m * BM < cnt[e]; m++) tiles[nt++] = (e << 16) | m;
            off += cnt[e];
        }
        offsets[E] = off;
        n_tiles[0] = nt;
    }
    __syncthreads();
    for (int p = threadIdx.x; p < P; p += blockDim.x) {
        int slot = atomicAdd(&cur[sel_e[p]], 1);
        perm[slot] = p;
    }
}

/* ---------------------------------------------------------------- pipeline
 * Per k-tile of 64: the A rows (fp32 activations, gathered) and the B bytes
 * (128 rows x 2 MXFP4 blocks + their scales) arrive with cp.async, STAGES deep.
 * Each tile is then converted in shared memory: A into a bf16 "hi" part and a
 * bf16 "lo" remainder (A = hi + lo to ~16 bits: the products keep fp32-like
 * accuracy), B dequantised to bf16 (exact: E2M1 x 2^k). Two MMAs per step. */
#define STAGES 3


struct raw_stage {
    bf16 ahi[BM * LDS];          /* A tile, bf16 high part, MMA layout */
    bf16 alo[BM * LDS];          /* A tile, bf16 remainder */
    uint8_t b[BN * 2 * 16];      /* [row][blk][16] codes */
    uint32_t sw[BN * 2][2];      /* two aligned words holding the row's scale bytes */
};
struct gemm_smem {
    union {
        struct {
            raw_stage raw[STAGES];
            bf16 b[BN * LDS];
        } m;
        float c[BM * LDC];
    };
};

/* A_hi/A_lo: [rows, K] bf16 (hi + lo = the fp32 activations to ~16 bits).
 * GATE_UP: A rows are tokens (gathered through perm / k_top); the epilogue
 * writes the SwiGLU activations as hi/lo bf16 rows in expert order.
 * down: A rows are those activations; the epilogue writes weighted fp32 rows
 * in pair order. */
template <bool GATE_UP>
__global__ void __launch_bounds__(256, 2) k_moe_gemm(
    const uint8_t *__restrict__ blocks, const uint8_t *__restrict__ scales,
    const float *__restrict__ bias, const bf16 *__restrict__ A_hi, const bf16 *__restrict__ A_lo,
    int k_top, const int *__restrict__ offsets, const int *__restrict__ perm,
    const int *__restrict__ tiles, const int *__restrict__ n_tiles, const float *__restrict__ sel_w,
    bf16 *act_hi, bf16 *act_lo, float *y_out, int N, int K, float limit, float alpha) {
    extern __shared__ __align__(128) unsigned char smem_raw[];
    gemm_smem &sm = *reinterpret_cast<gemm_smem *>(smem_raw);
    __shared__ float lut[16];
    __shared__ int arow[BM]; /* source row of A for each tile row (-1 = none) */
    if ((int)blockIdx.y >= n_tiles[0]) return;
    int tile = tiles[blockIdx.y];
    int e = tile >> 16, mt = tile & 0xffff;
    int row0 = offsets[e] + mt * BM;
    int mrows = min(BM, offsets[e + 1] - row0);
    int n0 = blockIdx.x * BN;
    int tid = threadIdx.x;
    if (tid < 16) lut[tid] = c_fp4[tid];
    if (tid < BM) {
        int src = -1;
        if (tid < mrows) src = GATE_UP ? perm[row0 + tid] / k_top : row0 + tid;
        arow[tid] = src;
    }
    __syncthreads();

    int NB = K / 32;
    size_t rowbytes = (size_t)NB * 16;
    const uint8_t *bexp = blocks + (size_t)e * N * rowbytes;
    const uint8_t *sexp = scales + (size_t)e * N * NB;
    int b_row = tid / 2, b_blk = tid % 2, b_n = n0 + b_row;

    auto issue = [&](int kt) {
        raw_stage &st = sm.m.raw[kt % STAGES];
        int k0 = kt * BK;
        /* A: 64 rows x 8 chunks of 8 bf16, hi and lo */
        for (int i = 0; i < 2; i++) {
            int c = tid + 256 * i, r = c / 8, cc = c % 8;
            int src = arow[r], col = k0 + cc * 8;
            bool ok = src >= 0 && col < K;
            size_t off = ok ? (size_t)src * K + col : 0;
            cu_cp16(&st.ahi[r * LDS + cc * 8], A_hi + off, ok ? 16 : 0);
            cu_cp16(&st.alo[r * LDS + cc * 8], A_lo + off, ok ? 16 : 0);
        }
        int kb = k0 / 32 + b_blk;
        bool ok = b_n < N && kb < NB;
        cu_cp16(&st.b[(b_row * 2 + b_blk) * 16],
                   ok ? (const void *)(bexp + (size_t)b_n * rowbytes + (size_t)kb * 16) : (const void *)bexp,
                   ok ? 16 : 0);
        size_t so = (size_t)b_n * NB + kb, sa = so & ~(size_t)3;
        cu_cp4(&st.sw[b_row * 2 + b_blk][0], ok ? (const void *)(sexp + sa) : (const void *)sexp, ok ? 4 : 0);
        cu_cp4(&st.sw[b_row * 2 + b_blk][1], ok ? (const void *)(sexp + sa + 4) : (const void *)sexp, ok ? 4 : 0);
    };
    auto dequant = [&](int kt) {
        raw_stage &st = sm.m.raw[kt % STAGES];
        int kb = kt * BK / 32 + b_blk;
        size_t so = (size_t)b_n * NB + kb;
        uint64_t w2 = (uint64_t)st.sw[b_row * 2 + b_blk][0] | ((uint64_t)st.sw[b_row * 2 + b_blk][1] << 32);
        uint32_t sbyte = (uint32_t)(w2 >> (8 * (so & 3))) & 0xffu;
        float sc = sbyte ? __uint_as_float(sbyte << 23) : __uint_as_float(0x00400000u);
        uint4 rb = *reinterpret_cast<const uint4 *>(&st.b[(b_row * 2 + b_blk) * 16]);
        uint32_t wv[4] = { rb.x, rb.y, rb.z, rb.w };
        uint32_t packed[16];
#pragma unroll
        for (int i = 0; i < 4; i++) {
#pragma unroll
            for (int bb = 0; bb < 4; bb++) {
                uint32_t byte = (wv[i] >> (8 * bb)) & 0xffu;
                __nv_bfloat162 v = __floats2bfloat162_rn(lut[byte & 15u] * sc, lut[byte >> 4] * sc);
                packed[4 * i + bb] = *reinterpret_cast<uint32_t *>(&v);
            }
        }
        uint4 *dst = reinterpret_cast<uint4 *>(&sm.m.b[b_row * LDS + b_blk * 32]);
#pragma unroll
        for (int i = 0; i < 4; i++)
            dst[i] = make_uint4(packed[4 * i], packed[4 * i + 1], packed[4 * i + 2], packed[4 * i + 3]);
    };

    int warp = tid >> 5, wm = warp / 4, wn = warp % 4;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++) wmma::fill_fragment(acc[i][j], 0.0f);

    int nk = (K + BK - 1) / BK;
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < nk) issue(s);
        cu_cp_commit();
    }
    for (int kt = 0; kt < nk; kt++) {
        cu_cp_wait<STAGES - 2>();
        __syncthreads();
        dequant(kt);
        if (kt + STAGES - 1 < nk) issue(kt + STAGES - 1);
        cu_cp_commit();
        __syncthreads();
        const raw_stage &st = sm.m.raw[kt % STAGES];
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> fh[2], fl[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> fb[2];
#pragma unroll
            for (int i = 0; i < 2; i++) {
                wmma::load_matrix_sync(fh[i], &st.ahi[(wm * 32 + i * 16) * LDS + kk], LDS);
                wmma::load_matrix_sync(fl[i], &st.alo[(wm * 32 + i * 16) * LDS + kk], LDS);
            }
#pragma unroll
            for (int j = 0; j < 2; j++)
                wmma::load_matrix_sync(fb[j], &sm.m.b[(wn * 32 + j * 16) * LDS + kk], LDS);
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 2; j++) {
                    wmma::mma_sync(acc[i][j], fh[i], fb[j], acc[i][j]);
                    wmma::mma_sync(acc[i][j], fl[i], fb[j], acc[i][j]);
                }
        }
    }
    cu_cp_wait<0>();
    __syncthreads();
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++)
            wmma::store_matrix_sync(&sm.c[(wm * 32 + i * 16) * LDC + wn * 32 + j * 16], acc[i][j],
                                    LDC, wmma::mem_row_major);
    __syncthreads();

    const float *be = bias + (size_t)e * N;
    if (GATE_UP) {
        int I = N / 2;
        for (int idx = tid; idx < BM * (BN / 2); idx += 256) {
            int r = idx / (BN / 2), c = idx % (BN / 2);
            int n = n0 + 2 * c;
            if (r >= mrows || n >= N) continue;
            float g = sm.c[r * LDC + 2 * c] + be[n];
            float u = sm.c[r * LDC + 2 * c + 1] + be[n + 1];
            float a = swiglu(g, u, limit, alpha);
            bf16 hi = __float2bfloat16_rn(a);
            size_t o = (size_t)(row0 + r) * I + n / 2;
            act_hi[o] = hi;
            act_lo[o] = __float2bfloat16_rn(a - __bfloat162float(hi));
        }
    } else {
        for (int idx = tid; idx < BM * BN; idx += 256) {
            int r = idx / BN, c = idx % BN;
            int n = n0 + c;
            if (r >= mrows || n >= N) continue;
            int p = perm[row0 + r];
            y_out[(size_t)p * N + n] = sel_w[p] * (sm.c[r * LDC + c] + be[n]);
        }
    }
}

__global__ void k_combine(float *x, const float *ypair, int k, int H) {
    int t = blockIdx.x;
    for (int i = threadIdx.x; i < H; i += blockDim.x) {
        float s = 0.0f;
        for (int j = 0; j < k; j++) s += ypair[((size_t)t * k + j) * H + i];
        x[(size_t)t * H + i] += s;
    }
}

void cu_moe_prefill(const uint8_t *gu_blocks, const uint8_t *gu_scales, const float *gu_bias,
                    const uint8_t *dn_blocks, const uint8_t *dn_scales, const float *dn_bias,
                    const bf16 *h_hi, const bf16 *h_lo, const int *sel_e, const float *sel_w, float *x,
                    const cu_moe_scratch *sc, int T, int k, int E, int H, int I, float limit,
                    float alpha, cudaStream_t s) {
    int P = T * k;
    k_route<<<1, 1024, 2 * E * sizeof(int), s>>>(sel_e, P, E, sc->counts, sc->offsets, sc->perm,
                                                  sc->tiles, sc->n_tiles);
    /* ---- GEMM v2 hook (cuda_moe_gemm_v2.cu, GPTOSS_CUDA_MOE_GEMM=v2) */
    if (cu_moe_gemm_variant() >= 2 && /* v4 (sm_90a) is launched from there too */
        cu_moe_gemm_v2(gu_blocks, gu_scales, gu_bias, dn_blocks, dn_scales, dn_bias, h_hi, h_lo,
                       sel_w, sc, T, k, E, H, I, limit, alpha, BM, s)) {
        k_combine<<<T, 256, 0, s>>>(x, sc->ypair, k, H);
        return;
    }
    /* ---- end GEMM v2 hook */
    int mt = cu_moe_max_tiles(T, k, E);
    size_t smem = sizeof(gemm_smem);
    dim3 g1((2 * I + BN - 1) / BN, mt);
    k_moe_gemm<true><<<g1, 256, smem, s>>>(gu_blocks, gu_scales, gu_bias, h_hi, h_lo, k,
                                           sc->offsets, sc->perm, sc->tiles, sc->n_tiles, sel_w,
                                           sc->act_hi, sc->act_lo, NULL, 2 * I, H, limit, alpha);
    dim3 g2((H + BN - 1) / BN, mt);
    k_moe_gemm<false><<<g2, 256, smem, s>>>(dn_blocks, dn_scales, dn_bias, sc->act_hi, sc->act_lo,
                                            k, sc->offsets, sc->perm, sc->tiles, sc->n_tiles, sel_w,
                                            NULL, NULL, sc->ypair, H, I, limit, alpha);
    k_combine<<<T, 256, 0, s>>>(x, sc->ypair, k, H);
}

void cu_moe_gemm_init(void) {
    cu_moe_gemm_v2_init(); /* GEMM v2 hook */
    cudaFuncSetAttribute(k_moe_gemm<true>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sizeof(gemm_smem));
    cudaFuncSetAttribute(k_moe_gemm<false>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sizeof(gemm_smem));
}
