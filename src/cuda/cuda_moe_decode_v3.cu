/* cuda_moe_decode_v3.cu - third version of the MXFP4 decode expert kernels
 * (the default; GPTOSS_CUDA_MOE_DECODE=v2 or v1 selects an older one).
 *
 * Same math as v1/v2 in fp32 (exact E2M1 x 2^(s-127) weights, fp32 inputs,
 * fp32 accumulation). What changes is how many weight bytes are in flight:
 * v2 kept one row pair per warp in registers (about 24 KB per SM), which
 * left the kernels waiting on memory latency. Here each warp streams its row
 * pairs through S shared-memory stages with cp.async (16-byte copies; scale
 * bytes as 4-byte copies), so S-1 pairs (~3 KB each) are in flight per warp
 * while it computes the oldest: 8 warps x (S-1) x 3 KB per SM. Each lane
 * copies exactly the blocks it later reads, the scale bytes are shared
 * through the stage (hence __syncwarp after each wait).
 *
 * Code -> float: a byte (two E2M1 codes) is looked up in a per-lane table
 * (entry (byte, lane) at byte*256 + lane*W, one PRMT builds the offset):
 *   TAB_F2: W = 8, a float2 (the v2 table; LDS.64, two wavefronts a warp);
 *   TAB_BF: W = 4, a bf16x2 word unpacked with a shift and a mask (LDS.32,
 *           one wavefront; two more ALU instructions).
 * GPTOSS_CUDA_MOE_TAB=f2|bf and GPTOSS_CUDA_MOE_STAGES=4|6 choose (default bf, 6).
 *
 * Shapes not covered (odd K/32, K > 3072, k > 8, the fused RMSNorm input,
 * too little shared memory) return 0 and the caller runs v2.
 */
#include "cuda_moe_common.cuh"

#include <stdlib.h>
#include <string.h>

#define V3_PRE 3              /* blocks per lane: rows up to 96 blocks (3072) */


static int g_v3_wave = 132, g_v3_smem_max = 48 * 1024, g_v3_bf = 1, g_v3_stages = 6;

/* The lane's input blocks b = lane + 32*it (zero past NB). */
__device__ __forceinline__ void v3_load_x(float (&x)[V3_PRE][32], const float *v, int NB, int lane) {
#pragma unroll
    for (int it = 0; it < V3_PRE; it++) {
        int b = lane + 32 * it;
#pragma unroll
        for (int q = 0; q < 8; q++) {
            float4 f = b < NB ? __ldg(reinterpret_cast<const float4 *>(v + (size_t)b * 32) + q)
                              : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            x[it][4 * q] = f.x; x[it][4 * q + 1] = f.y; x[it][4 * q + 2] = f.z; x[it][4 * q + 3] = f.w;
        }
    }
}

/* Stage layout: row 0 blocks [NB][16], row 1 blocks [NB][16], then the two
 * rows' scale bytes (2*NB, NB even so that they start 4-byte aligned in the
 * checkpoint), padded to 16. */
static inline int v3_stage_bytes(int NB) { return 2 * NB * 16 + (2 * NB + 15) / 16 * 16; }

/* Copies rows row, row+1 (row+1 only when two) of a matrix (blocks at bm,
 * scales at sm) into the stage at shared address sa. */
__device__ __forceinline__ void v3_issue(uint32_t sa, const uint8_t *bm, const uint8_t *sm,
                                         size_t row, bool two, int NB, int lane) {
    size_t rowbytes = (size_t)NB * 16;
#pragma unroll
    for (int g = 0; g < 2; g++)
#pragma unroll
        for (int it = 0; it < V3_PRE; it++) {
            int b = lane + 32 * it;
            if (b < NB) {
                bool ok = g == 0 || two;
                v3_cp16(sa + (uint32_t)(g * NB * 16 + b * 16),
                        bm + (row + (ok ? g : 0)) * rowbytes + (size_t)b * 16, ok ? 16 : 0);
            }
        }
    int sbytes = two ? 2 * NB : NB;
    const uint8_t *ss = sm + row * NB;
#pragma unroll
    for (int it = 0; it < 2; it++) {
        int j = lane + 32 * it; /* word j of the scale bytes */
        if (4 * j < sbytes) {
            int n = sbytes - 4 * j < 4 ? sbytes - 4 * j : 4;
            v3_cp4(sa + (uint32_t)(2 * NB * 16 + 4 * j), ss + 4 * j, n);
        }
    }
}

/* Per-lane partial dot products of the stage's two rows (to be warp-summed). */
template <bool BF>
__device__ __forceinline__ void v3_dot_stage(const unsigned char *st, const float (&x)[V3_PRE][32],
                                             const unsigned char *tab, uint32_t lb, int NB, int lane,
                                             float (&acc)[2]) {
    acc[0] = 0.0f;
    acc[1] = 0.0f;
#pragma unroll
    for (int it = 0; it < V3_PRE; it++) {
        int b = lane + 32 * it;
        if (b < NB) {
#pragma unroll
            for (int g = 0; g < 2; g++) {
                uint4 q = *reinterpret_cast<const uint4 *>(st + g * NB * 16 + b * 16);
                uint32_t sc = st[2 * NB * 16 + g * NB + b];
                acc[g] = fmaf(v3_block_dot<BF>(q, x[it], tab, lb), e8m0_scale(sc), acc[g]);
            }
        }
    }
}

/* grid (bx, T*k), 256 threads, smem V3_TAB_BYTES + 8*S*SB. Warp w of block
 * bx walks (gate, up) row pairs i = bx*8 + w + n*gridDim.x*8 of its expert. */
template <int S, bool BF>
__global__ void __launch_bounds__(256, 1) k_moe_gate_up_v3(const uint8_t *__restrict__ blocks,
                                                          const uint8_t *__restrict__ scales,
                                                          const float *__restrict__ bias,
                                                          const float *__restrict__ h,
                                                          const float *__restrict__ logits, int E,
                                                          int *sel_e, float *sel_w,
                                                          float *__restrict__ act, int k, int H,
                                                          int I, float limit, float alpha, int SB) {
    extern __shared__ __align__(16) unsigned char v3_smem[];
    int pair_idx = blockIdx.y; /* t*k + j */
    int t = pair_idx / k, jsel = pair_idx % k;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v3_build_tab<BF>(v3_smem);
    pdl_trigger();
    pdl_wait(); /* router logits / selection and h come from the predecessor */
    int e;
    if (logits) { /* every warp picks the experts itself (same inputs, same result) */
        int sel[CU_MAX_TOPK];
        float w[CU_MAX_TOPK];
        cu_warp_topk(logits + (size_t)t * E, NULL, E, k, sel, w);
        e = sel[jsel];
        if (blockIdx.x == 0 && jsel == 0 && threadIdx.x == 0)
            for (int r = 0; r < k; r++) {
                sel_e[t * k + r] = sel[r];
                sel_w[t * k + r] = w[r];
            }
    } else {
        e = sel_e[pair_idx];
    }
    int NB = H / 32;
    size_t rowbytes = (size_t)NB * 16;
    const uint8_t *bexp = blocks + (size_t)e * 2 * I * rowbytes;
    const uint8_t *sexp = scales + (size_t)e * 2 * I * NB;
    int stride = gridDim.x * 8, i0 = blockIdx.x * 8 + warp;
    int n_items = i0 < I ? (I - 1 - i0) / stride + 1 : 0;
    unsigned char *stages = v3_smem + V3_TAB_BYTES + (size_t)warp * S * SB;
    uint32_t sbase = (uint32_t)__cvta_generic_to_shared(stages);
#pragma unroll
    for (int s = 0; s < S - 1; s++) {
        if (s < n_items) v3_issue(sbase + s * SB, bexp, sexp, 2 * (size_t)(i0 + s * stride), true, NB, lane);
        v3_commit();
    }
    float x[V3_PRE][32];
    v3_load_x(x, h + (size_t)t * H, NB, lane);
    __syncthreads(); /* the table */
    uint32_t lb = (uint32_t)lane * (BF ? 4u : 8u);
    const float *be = bias + (size_t)e * 2 * I;
    float *out = act + (size_t)pair_idx * I;
    for (int n = 0; n < n_items; n++) {
        v3_wait<S - 2>();
        __syncwarp();
        int nn = n + S - 1;
        if (nn < n_items)
            v3_issue(sbase + (nn % S) * SB, bexp, sexp, 2 * (size_t)(i0 + nn * stride), true, NB, lane);
        v3_commit();
        float acc[2];
        v3_dot_stage<BF>(stages + (n % S) * SB, x, v3_smem, lb, NB, lane, acc);
        float gt = warp_sum(acc[0]), up = warp_sum(acc[1]);
        if (lane == 0) {
            int i = i0 + n * stride;
            out[i] = swiglu(gt + be[2 * i], up + be[2 * i + 1], limit, alpha);
        }
        __syncwarp(); /* every lane is done with stage n % S before it is refilled */
    }
    v3_wait<0>();
}

/* grid (bx, T), 256 threads, smem V3_TAB_BYTES + 8*S*SB + k*RB floats. Block
 * rows [r0, r0+RB); warp w works for expert j = w / (8/k) on row pairs
 * r0 + 2*(w % (8/k) + n*(8/k)); the k partial sums per row meet in shared
 * memory and x[t][r] += sum_j w_j (dot_j + b_j) is added in expert order. */
template <int S, bool BF>
__global__ void __launch_bounds__(256, 1) k_moe_down_v3(const uint8_t *__restrict__ blocks,
                                                       const uint8_t *__restrict__ scales,
                                                       const float *__restrict__ bias,
                                                       const float *__restrict__ act,
                                                       const int *__restrict__ sel_e,
                                                       const float *__restrict__ sel_w, float *x,
                                                       int k, int H, int I, int RB, int SB) {
    extern __shared__ __align__(16) unsigned char v3_smem[];
    float *part = reinterpret_cast<float *>(v3_smem + V3_TAB_BYTES + (size_t)8 * S * SB); /* [k][RB] */
    int t = blockIdx.y;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int r0 = blockIdx.x * RB, r1 = min(H, r0 + RB);
    int wpe = 8 / k, j = warp / wpe, sub = warp % wpe;
    bool active = j < k;
    v3_build_tab<BF>(v3_smem);
    pdl_trigger();
    pdl_wait(); /* selection, activations and x come from the predecessors */
    int NB = I / 32;
    size_t rowbytes = (size_t)NB * 16;
    int e = active ? sel_e[t * k + j] : 0;
    const uint8_t *bexp = blocks + (size_t)e * H * rowbytes;
    const uint8_t *sexp = scales + (size_t)e * H * NB;
    int rfirst = r0 + 2 * sub, step = 2 * wpe;
    int n_items = active && rfirst < r1 ? (r1 - 1 - rfirst) / step + 1 : 0;
    unsigned char *stages = v3_smem + V3_TAB_BYTES + (size_t)warp * S * SB;
    uint32_t sbase = (uint32_t)__cvta_generic_to_shared(stages);
#pragma unroll
    for (int s = 0; s < S - 1; s++) {
        if (s < n_items) {
            int r = rfirst + s * step;
            v3_issue(sbase + s * SB, bexp, sexp, (size_t)r, r + 1 < r1, NB, lane);
        }
        v3_commit();
    }
    float xv[V3_PRE][32];
    v3_load_x(xv, act + ((size_t)t * k + (active ? j : 0)) * I, NB, lane);
    __syncthreads(); /* the table */
    uint32_t lb = (uint32_t)lane * (BF ? 4u : 8u);
    float *pj = part + (size_t)(active ? j : 0) * RB; /* row r at pj[r - r0] */
    for (int n = 0; n < n_items; n++) {
        v3_wait<S - 2>();
        __syncwarp();
        int nn = n + S - 1;
        if (nn < n_items) {
            int r = rfirst + nn * step;
            v3_issue(sbase + (nn % S) * SB, bexp, sexp, (size_t)r, r + 1 < r1, NB, lane);
        }
        v3_commit();
        float acc[2];
        v3_dot_stage<BF>(stages + (n % S) * SB, xv, v3_smem, lb, NB, lane, acc);
        acc[0] = warp_sum(acc[0]);
        acc[1] = warp_sum(acc[1]);
        int r = rfirst + n * step;
        if (lane == 0) {
            pj[r - r0] = acc[0];
            if (r + 1 < r1) pj[r + 1 - r0] = acc[1];
        }
        __syncwarp();
    }
    v3_wait<0>();
    __syncthreads();
    for (int rr = r0 + threadIdx.x; rr < r1; rr += blockDim.x) {
        float total = 0.0f;
        for (int jj = 0; jj < k; jj++) {
            int ej = sel_e[t * k + jj];
            total += sel_w[t * k + jj] * (part[(size_t)jj * RB + (rr - r0)] + bias[(size_t)ej * H + rr]);
        }
        x[(size_t)t * H + rr] += total;
    }
}

template <int S, bool BF> static void v3_config(void) {
    cudaFuncSetAttribute(k_moe_gate_up_v3<S, BF>, cudaFuncAttributeMaxDynamicSharedMemorySize, g_v3_smem_max);
    cudaFuncSetAttribute(k_moe_down_v3<S, BF>, cudaFuncAttributeMaxDynamicSharedMemorySize, g_v3_smem_max);
}

void cu_moe_decode_v3_init(void) {
    int dev = 0, sms = 132, optin = 48 * 1024;
    if (cudaGetDevice(&dev) == cudaSuccess) {
        if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || sms < 1)
            sms = 132;
        if (cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess)
            optin = 48 * 1024;
    }
    g_v3_smem_max = optin;
    g_v3_wave = sms; /* one 256-thread block per SM (registers, shared memory) */
    const char *tb = getenv("GPTOSS_CUDA_MOE_TAB");
    g_v3_bf = !(tb && !strcmp(tb, "f2"));
    const char *st = getenv("GPTOSS_CUDA_MOE_STAGES");
    g_v3_stages = st && !strcmp(st, "4") ? 4 : 6;
    v3_config<4, true>(); v3_config<4, false>(); v3_config<6, true>(); v3_config<6, false>();
    cudaGetLastError();
}

/* Stages that fit next to the table (and `extra` bytes), at most g_v3_stages. */
static int v3_pick_stages(int SB, size_t extra) {
    int S = g_v3_stages;
    while (S >= 4 && V3_TAB_BYTES + (size_t)8 * S * SB + extra > (size_t)g_v3_smem_max) S -= 2;
    return S >= 4 ? S : 0;
}

int cu_moe_gate_up_decode_v3(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                             const float *h, const float *norm_w, const float *logits, int E,
                             int *sel_e, float *sel_w, float *act, int T, int k, int H, int I,
                             float limit, float alpha, cudaStream_t s) {
    int NB = H / 32;
    if (norm_w || H % 32 || NB % 2 || NB > 32 * V3_PRE || k < 1 || k > CU_MAX_TOPK || T < 1 ||
        (uintptr_t)scales % 4)
        return 0;
    int SB = v3_stage_bytes(NB), S = v3_pick_stages(SB, 0);
    if (!S) return 0;
    int bx = (g_v3_wave + T * k - 1) / (T * k), need = (I + 7) / 8;
    if (bx > need) bx = need;
    if (bx < 1) bx = 1;
    dim3 grid(bx, T * k);
    size_t smem = V3_TAB_BYTES + (size_t)8 * S * SB;
#define GU(SS, BB) cu_launch(k_moe_gate_up_v3<SS, BB>, grid, dim3(256), smem, s, blocks, scales, bias, h, \
                             logits, E, sel_e, sel_w, act, k, H, I, limit, alpha, SB)
    if (S == 6) { if (g_v3_bf) GU(6, true); else GU(6, false); }
    else { if (g_v3_bf) GU(4, true); else GU(4, false); }
#undef GU
    return 1;
}

int cu_moe_down_decode_v3(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                          const float *act, const int *sel_e, const float *sel_w, float *x, int T,
                          int k, int H, int I, cudaStream_t s) {
    int NB = I / 32;
    if (I % 32 || NB % 2 || NB > 32 * V3_PRE || k < 1 || k > 8 || T < 1 || H < 1 ||
        (uintptr_t)scales % 4 || ((size_t)H * NB) % 4)
        return 0;
    int bx = (g_v3_wave + T - 1) / T, need = (H + 1) / 2;
    if (bx > need) bx = need;
    if (bx < 1) bx = 1;
    int RB = (H + bx - 1) / bx;
    RB += RB & 1; /* even: row pairs never straddle blocks */
    bx = (H + RB - 1) / RB;
    int SB = v3_stage_bytes(NB), S = v3_pick_stages(SB, (size_t)k * RB * sizeof(float));
    if (!S) return 0;
    size_t smem = V3_TAB_BYTES + (size_t)8 * S * SB + (size_t)k * RB * sizeof(float);
    dim3 grid(bx, T);
#define DN(SS, BB) cu_launch(k_moe_down_v3<SS, BB>, grid, dim3(256), smem, s, blocks, scales, bias, act, \
                             sel_e, sel_w, x, k, H, I, RB, SB)
    if (S == 6) { if (g_v3_bf) DN(6, true); else DN(6, false); }
    else { if (g_v3_bf) DN(4, true); else DN(4, false); }
#undef DN
    return 1;
}
