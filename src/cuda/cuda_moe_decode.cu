/* cuda_moe_decode.cu - MXFP4 expert matvecs for decode (a few tokens per pass).
 *
 * Weights stay in the checkpoint layout: a row is cols/32 blocks of 16 bytes
 * (32 E2M1 codes, low nibble first) plus one E8M0 scale byte per block. A
 * lane owns whole blocks (16-byte loads, coalesced along the row); the input
 * vector sits in shared memory transposed as [8][cols/32] float4 so that the
 * lanes of a warp, reading consecutive blocks, hit consecutive 16-byte words.
 *
 * gate_up: a warp does two (gate, up) row pairs of one expert, reusing the
 * input values in registers for the four rows, and applies the clamped SwiGLU
 * (+1 on up, alpha) before writing one activation per pair.
 * down:    a warp does two output rows for all k chosen experts and writes
 * x += sum_j w_j (W_d,e_j act_j + b_d,e_j) directly (no atomics).
 */
#include "cuda_matvec.cuh"

#include <stdlib.h>
#include <string.h>

__constant__ float c_e2m1[16] = { 0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                  -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f };

/* sum_i value(code_i) * x[i] over one 32-weight block (unscaled). */
__device__ __forceinline__ float block_dot(uint4 q, const float (&x)[32], const float *lut) {
    uint32_t wv[4] = { q.x, q.y, q.z, q.w };
    float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; i++) {
#pragma unroll
        for (int b = 0; b < 4; b++) {
            uint32_t byte = (wv[i] >> (8 * b)) & 0xffu;
            s0 = fmaf(lut[byte & 15u], x[8 * i + 2 * b], s0);
            s1 = fmaf(lut[byte >> 4], x[8 * i + 2 * b + 1], s1);
        }
    }
    return s0 + s1;
}

/* Loads a length-K fp32 vector into the transposed layout xs[j * NB + b] =
 * x[b*32 + 4j .. +3] (float4), NB = K/32. */
__device__ __forceinline__ void load_transposed(float4 *xs, const float *x, int K) {
    int NB = K / 32;
    for (int i = threadIdx.x; i < K / 4; i += blockDim.x) {
        int b = i / 8, j = i % 8;
        xs[j * NB + b] = reinterpret_cast<const float4 *>(x)[i];
    }
}

__device__ __forceinline__ void read_block_x(const float4 *xs, int NB, int b, float (&x)[32]) {
#pragma unroll
    for (int j = 0; j < 8; j++) {
        float4 v = xs[j * NB + b];
        x[4 * j] = v.x; x[4 * j + 1] = v.y; x[4 * j + 2] = v.z; x[4 * j + 3] = v.w;
    }
}

#define PRE 3 /* blocks per lane whose loads are issued together (rows up to 3072 wide) */

static int g_blocks_per_wave = 264; /* 2 blocks of 256 threads per SM; set at init */
/* decode kernel version (GPTOSS_CUDA_MOE_DECODE=v1|v4|v6|v7|v7f|v9|v11, read at
 * the first init; cu_moe_decode_set_variant overrides); 0 = not decided yet.
 * 11 = v11 (cuda_moe_decode_v11.cu, int8 tensor cores, x as exact int8
 * limbs) is the default since the ninth session (docs/BENCHMARKS.md run K:
 * 579 tok/s on the 20b against 521 for v7f in the same call); it falls back
 * to v7f for shapes it does not cover (K > 2944, rows not in 16-row tiles,
 * no down scratch). 8 = v7f (cuda_moe_decode_v7.cu, fp32 inputs through a
 * code table, weights streamed into registers): 471-472 tok/s on the 20b
 * against 478-481 for v7 (int8 hi + lo inputs, ~30x larger error), 441-445
 * for v4 (cp.async stages), 430-434 for v6 (v4 with the int8 dot) and 397
 * for v1 (this file). Versions 2, 3 and 5 were removed; docs/CUDA_NOTES.md
 * has their story. 9 = v9 (cuda_moe_decode_v9.cu, bf16 tensor cores,
 * opt-in: 427 tok/s against 484 for v7f in run F). v7f itself falls back to
 * v4, then v1. */
static int g_moe_variant = 0;

static void resolve_variant(void) {
    if (!g_moe_variant) {
        const char *v = getenv("GPTOSS_CUDA_MOE_DECODE");
        g_moe_variant = !v ? 11 : !strcmp(v, "v1") ? 1 : !strcmp(v, "v4") ? 4
                      : !strcmp(v, "v6") ? 6 : !strcmp(v, "v7") ? 7 : !strcmp(v, "v9") ? 9
                      : !strcmp(v, "v7f") ? 8 : 11;
    }
}

int cu_moe_decode_set_variant(int v) {
    resolve_variant();
    int old = g_moe_variant;
    g_moe_variant = v == 1 || v == 4 || v == 6 || v == 7 || v == 9 || v == 11 ? v : 8;
    return old;
}

/* One (gate, up) row pair of expert e: PRE blocks per lane. */
struct pair_regs {
    uint4 q[PRE][2];
    uint32_t sc[PRE][2];
};

static __device__ __forceinline__ void load_pair(pair_regs &r, const uint8_t *bexp,
                                                 const uint8_t *sexp, int i, int NB, int lane) {
    size_t rowbytes = (size_t)NB * 16;
#pragma unroll
    for (int it = 0; it < PRE; it++) {
        int b = lane + 32 * it;
#pragma unroll
        for (int g = 0; g < 2; g++) {
            size_t row = 2 * (size_t)i + g;
            if (b < NB) {
                r.q[it][g] = ld_stream(bexp + row * rowbytes + (size_t)b * 16);
                r.sc[it][g] = sexp[row * NB + b];
            } else {
                r.q[it][g] = make_uint4(0, 0, 0, 0);
                r.sc[it][g] = 0;
            }
        }
    }
}

/* gate/up dot products of pair i (regs preloaded), SwiGLU, one activation. */
static __device__ __forceinline__ void finish_pair(const pair_regs &r, const float4 *xs,
                                                   const float *lut, const uint8_t *bexp,
                                                   const uint8_t *sexp, const float *bias, int e,
                                                   int i, int NB, int I, int lane, float limit,
                                                   float alpha, float *out) {
    float acc[2] = { 0.0f, 0.0f };
#pragma unroll
    for (int it = 0; it < PRE; it++) {
        int b = lane + 32 * it;
        if (b < NB) {
            float x[32];
            read_block_x(xs, NB, b, x);
#pragma unroll
            for (int g = 0; g < 2; g++) acc[g] = fmaf(block_dot(r.q[it][g], x, lut), e8m0_scale(r.sc[it][g]), acc[g]);
        }
    }
    size_t rowbytes = (size_t)NB * 16;
    for (int b = lane + 32 * PRE; b < NB; b += 32) { /* rows wider than the preload */
        float x[32];
        read_block_x(xs, NB, b, x);
#pragma unroll
        for (int g = 0; g < 2; g++) {
            size_t row = 2 * (size_t)i + g;
            acc[g] = fmaf(block_dot(ld_stream(bexp + row * rowbytes + (size_t)b * 16), x, lut),
                          e8m0_scale(sexp[row * NB + b]), acc[g]);
        }
    }
    float gt = warp_sum(acc[0]), up = warp_sum(acc[1]);
    if (lane == 0) {
        gt += bias[(size_t)e * 2 * I + 2 * i];
        up += bias[(size_t)e * 2 * I + 2 * i + 1];
        out[i] = swiglu(gt, up, limit, alpha);
    }
}

/* grid (bx, T*k), 256 threads, smem H floats; one wave of blocks, each warp
 * walks pairs i = blockIdx.x*8 + warp + n*gridDim.x*8 with the next pair's
 * weights loading while the current one is computed. Order: router top-k
 * (warp 0) -> first weight loads -> input vector to shared memory. */
__global__ void __launch_bounds__(256, 2) k_moe_gate_up(const uint8_t *__restrict__ blocks,
                                                       const uint8_t *__restrict__ scales,
                                                       const float *__restrict__ bias,
                                                       const float *__restrict__ h,
                                                       const float *__restrict__ norm_w, float eps,
                                                       const float *__restrict__ logits, int E,
                                                       int *sel_e, float *sel_w,
                                                       float *__restrict__ act, int k, int H, int I,
                                                       float limit, float alpha) {
    extern __shared__ float4 xs[];
    __shared__ float lut[16];
    __shared__ int s_e;
    __shared__ float s_red[8];
    int pair_idx = blockIdx.y; /* t*k + j */
    int t = pair_idx / k, jsel = pair_idx % k;
    if (threadIdx.x < 16) lut[threadIdx.x] = c_e2m1[threadIdx.x];
    if (logits) {
        if (threadIdx.x < 32) {
            int sel[CU_MAX_TOPK];
            float w[CU_MAX_TOPK];
            cu_warp_topk(logits + (size_t)t * E, NULL, E, k, sel, w);
            if (threadIdx.x == 0) {
                s_e = sel[jsel];
                if (blockIdx.x == 0 && jsel == 0)
                    for (int r = 0; r < k; r++) {
                        sel_e[t * k + r] = sel[r];
                        sel_w[t * k + r] = w[r];
                    }
            }
        }
    } else if (threadIdx.x == 0) {
        s_e = sel_e[pair_idx];
    }
    __syncthreads();
    int e = s_e;
    int NB = H / 32;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    size_t rowbytes = (size_t)NB * 16;
    const uint8_t *bexp = blocks + (size_t)e * 2 * I * rowbytes;
    const uint8_t *sexp = scales + (size_t)e * 2 * I * NB;
    int stride = gridDim.x * 8;
    int i = blockIdx.x * 8 + warp;
    pair_regs ra, rb;
    if (i < I) load_pair(ra, bexp, sexp, i, NB, lane);

    const float *hx = h + (size_t)t * H;
    float inv = 1.0f;
    if (norm_w) {
        float ss = 0.0f;
        for (int j = threadIdx.x; j < H; j += blockDim.x) ss += hx[j] * hx[j];
        ss = warp_sum(ss);
        if ((threadIdx.x & 31) == 0) s_red[threadIdx.x >> 5] = ss;
        __syncthreads();
        float tot = 0.0f;
        for (int w = 0; w < 8; w++) tot += s_red[w];
        inv = rsqrtf(tot / (float)H + eps);
    }
    for (int j = threadIdx.x; j < H / 4; j += blockDim.x) {
        int b = j / 8, q = j % 8;
        float4 v = reinterpret_cast<const float4 *>(hx)[j];
        if (norm_w) {
            float4 g = reinterpret_cast<const float4 *>(norm_w)[j];
            v.x *= inv * g.x; v.y *= inv * g.y; v.z *= inv * g.z; v.w *= inv * g.w;
        }
        xs[q * NB + b] = v;
    }
    __syncthreads();
    float *out = act + (size_t)pair_idx * I;
    while (i < I) {
        int i2 = i + stride;
        if (i2 < I) load_pair(rb, bexp, sexp, i2, NB, lane);
        finish_pair(ra, xs, lut, bexp, sexp, bias, e, i, NB, I, lane, limit, alpha, out);
        if (i2 >= I) break;
        int i3 = i2 + stride;
        if (i3 < I) load_pair(ra, bexp, sexp, i3, NB, lane);
        finish_pair(rb, xs, lut, bexp, sexp, bias, e, i2, NB, I, lane, limit, alpha, out);
        i = i3;
    }
}

void cu_moe_gate_up_decode(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                           const float *h, const float *norm_w, float eps, const float *logits,
                           int E, int *sel_e, float *sel_w, float *act, int T, int k, int H,
                           int I, float limit, float alpha, cudaStream_t s) {
    if (g_moe_variant == 11 && cu_moe_gate_up_decode_v11(blocks, scales, bias, h, norm_w, logits, E,
                                                         sel_e, sel_w, act, T, k, H, I, limit,
                                                         alpha, s))
        return;
    if (g_moe_variant == 9 && cu_moe_gate_up_decode_v9(blocks, scales, bias, h, norm_w, logits, E,
                                                       sel_e, sel_w, act, T, k, H, I, limit,
                                                       alpha, s))
        return;
    if (g_moe_variant >= 7 && cu_moe_gate_up_decode_v7(blocks, scales, bias, h, norm_w, logits, E,
                                                       sel_e, sel_w, act, T, k, H, I, limit,
                                                       alpha, g_moe_variant == 7, s))
        return;
    if (g_moe_variant >= 4 && cu_moe_gate_up_decode_v4(blocks, scales, bias, h, norm_w, logits, E,
                                                       sel_e, sel_w, act, T, k, H, I, limit,
                                                       alpha, g_moe_variant == 6, s))
        return;
    int bx = (g_blocks_per_wave + T * k - 1) / (T * k), need = (I + 7) / 8;
    if (bx > need) bx = need;
    if (bx < 1) bx = 1;
    dim3 grid(bx, T * k);
    k_moe_gate_up<<<grid, 256, (size_t)H * sizeof(float), s>>>(blocks, scales, bias, h, norm_w, eps,
                                                               logits, E, sel_e, sel_w, act, k, H,
                                                               I, limit, alpha);
}

#define DOWN_KG 4 /* experts per preload group */

/* grid (bx, T), 256 threads, smem k*I floats; one wave; a warp walks rows
 * r = blockIdx.x*8 + warp + n*gridDim.x*8, issuing all k experts' loads of a
 * row together, and writes x[t][r] += sum_j w_j (W_d,e_j act_j + b)[r]. */
__global__ void __launch_bounds__(256, 2) k_moe_down(const uint8_t *__restrict__ blocks,
                                                    const uint8_t *__restrict__ scales,
                                                    const float *__restrict__ bias,
                                                    const float *__restrict__ act,
                                                    const int *__restrict__ sel_e,
                                                    const float *__restrict__ sel_w, float *x,
                                                    int k, int H, int I) {
    extern __shared__ float4 xs[]; /* k x [8][NB] */
    __shared__ float lut[16];
    int t = blockIdx.y;
    int NB = I / 32;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    size_t rowbytes = (size_t)NB * 16;
    if (threadIdx.x < 16) lut[threadIdx.x] = c_e2m1[threadIdx.x];
    bool loaded = false;
    for (int row = blockIdx.x * 8 + warp;; row += gridDim.x * 8) {
        bool active = row < H;
        int rr = active ? row : H - 1;
        float total = 0.0f;
        for (int j0 = 0; j0 < k; j0 += DOWN_KG) {
            uint4 q[DOWN_KG][PRE];
            uint32_t sc[DOWN_KG][PRE];
            int ex[DOWN_KG];
#pragma unroll
            for (int jj = 0; jj < DOWN_KG; jj++) {
                int j = j0 + jj;
                ex[jj] = j < k ? sel_e[t * k + j] : 0;
                const uint8_t *bexp = blocks + (size_t)ex[jj] * H * rowbytes + rr * rowbytes;
                const uint8_t *sexp = scales + (size_t)ex[jj] * H * NB + (size_t)rr * NB;
#pragma unroll
                for (int it = 0; it < PRE; it++) {
                    int b = lane + 32 * it;
                    if (active && j < k && b < NB) {
                        q[jj][it] = ld_stream(bexp + (size_t)b * 16);
                        sc[jj][it] = sexp[b];
                    } else {
                        q[jj][it] = make_uint4(0, 0, 0, 0);
                        sc[jj][it] = 0;
                    }
                }
            }
            if (!loaded) { /* first pass: the activations go to shared memory meanwhile */
                for (int j = 0; j < k; j++)
                    load_transposed(xs + (size_t)j * 8 * NB, act + ((size_t)t * k + j) * I, I);
                __syncthreads();
                loaded = true;
            }
#pragma unroll
            for (int jj = 0; jj < DOWN_KG; jj++) {
                int j = j0 + jj;
                if (j >= k) break;
                const float4 *xj = xs + (size_t)j * 8 * NB;
                float acc = 0.0f;
#pragma unroll
                for (int it = 0; it < PRE; it++) {
                    int b = lane + 32 * it;
                    if (b < NB) {
                        float xv[32];
                        read_block_x(xj, NB, b, xv);
                        acc = fmaf(block_dot(q[jj][it], xv, lut), e8m0_scale(sc[jj][it]), acc);
                    }
                }
                const uint8_t *bexp = blocks + (size_t)ex[jj] * H * rowbytes + rr * rowbytes;
                const uint8_t *sexp = scales + (size_t)ex[jj] * H * NB + (size_t)rr * NB;
                for (int b = lane + 32 * PRE; b < NB; b += 32) {
                    float xv[32];
                    read_block_x(xj, NB, b, xv);
                    acc = fmaf(block_dot(ld_stream(bexp + (size_t)b * 16), xv, lut), e8m0_scale(sexp[b]), acc);
                }
                acc = warp_sum(acc);
                total += sel_w[t * k + j] * (acc + bias[(size_t)ex[jj] * H + rr]);
            }
        }
        if (lane == 0 && active) x[(size_t)t * H + row] += total;
        /* the block's warps must all pass the first __syncthreads: stop only
         * after every warp's first row */
        if (row + gridDim.x * 8 >= H) break;
    }
}

void cu_moe_decode_init(void) {
    resolve_variant();
    cu_moe_decode_v4_init();
    cu_moe_decode_v7_init();
    cu_moe_decode_v9_init();
    cu_moe_decode_v11_init();
    cudaFuncSetAttribute(k_moe_down, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024);
    int sms, optin;
    cu_device_limits(&sms, &optin);
    g_blocks_per_wave = 2 * sms;
    cudaGetLastError();
}

void cu_moe_down_decode(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                        const float *act, const int *sel_e, const float *sel_w, float *x, float *y,
                        unsigned *cnt, int T, int k, int H, int I, cudaStream_t s) {
    if (g_moe_variant == 11 &&
        cu_moe_down_decode_v11(blocks, scales, bias, act, sel_e, sel_w, x, y, cnt, T, k, H, I, s))
        return;
    if (g_moe_variant == 9 &&
        cu_moe_down_decode_v9(blocks, scales, bias, act, sel_e, sel_w, x, T, k, H, I, s))
        return;
    if (g_moe_variant >= 7 &&
        cu_moe_down_decode_v7(blocks, scales, bias, act, sel_e, sel_w, x, T, k, H, I,
                              g_moe_variant == 7, s))
        return;
    if (g_moe_variant >= 4 &&
        cu_moe_down_decode_v4(blocks, scales, bias, act, sel_e, sel_w, x, T, k, H, I,
                              g_moe_variant == 6, s))
        return;
    int bx = (g_blocks_per_wave + T - 1) / T, need = (H + 7) / 8;
    if (bx > need) bx = need;
    if (bx < 1) bx = 1;
    dim3 grid(bx, T);
    k_moe_down<<<grid, 256, (size_t)k * I * sizeof(float), s>>>(blocks, scales, bias, act, sel_e,
                                                                sel_w, x, k, H, I);
}
