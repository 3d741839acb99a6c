/* cuda_moe_decode_v2.cu - second version of the MXFP4 decode expert kernels,
 * selected with GPTOSS_CUDA_MOE_DECODE=v2 (see cu_moe_decode_init).
 *
 * Same math as cuda_moe_decode.cu in fp32 (exact E2M1 x 2^(s-127) weights,
 * fp32 inputs, fp32 accumulation); what changes is how a code becomes a float:
 *
 * - A byte of a block (two E2M1 codes) is looked up as ONE float2 in a
 *   per-lane table tab[256][32] (64 KiB of shared memory): entry (byte, lane)
 *   holds (value(low nibble), value(high nibble)). Every lane reads its own
 *   column, so a warp's 64-bit loads never conflict, and the byte offset
 *   byte*256 + lane*8 comes out of a single PRMT (__byte_perm of the weight
 *   word and lane*8). Per two weights: PRMT + LDS.64 + 2 FFMA.
 * - The input values stay in registers: a lane always owns blocks lane,
 *   lane+32, lane+64 of a row (K <= 3072), so it loads its 96 inputs once and
 *   reuses them for every row it walks. No shared-memory input traffic.
 *
 * gate_up: a warp walks (gate, up) row pairs of one expert with the next
 * pair's weights in flight (as v1); every warp does the router top-k itself.
 * down: the 8 warps of a block split into k groups (one per chosen expert,
 * inputs = that expert's activations in registers); the group walks the
 * block's row range two rows at a time; the k partial sums per row meet in
 * shared memory and x[t][r] += sum_j w_j (dot_j + b_j) is added in expert
 * order (no atomics, deterministic).
 *
 * Shapes not covered (K > 3072, k > 8, the fused RMSNorm input, not enough
 * shared memory) return 0 and the caller runs the v1 kernels.
 */
#include "cuda_matvec.cuh"

#define V2_PRE 3                 /* blocks per lane: rows up to 96 blocks (3072) */
#define V2_TAB_BYTES (256 * 32 * 8) /* float2 [256 bytes][32 lanes] */

static int g_v2_wave_gu = 132, g_v2_wave_dn = 132, g_v2_smem_max = 48 * 1024;

/* Exact E2M1 values (code = sign, 2-bit exponent, 1-bit mantissa). */
static __constant__ float c_v2_e2m1[16] = { 0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                            -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f };

/* tab[b * 32 + l] = (value(b & 15), value(b >> 4)) for every lane l. With 256
 * threads the byte b = i >> 5 is the same for all lanes of a warp, so the
 * constant reads are broadcasts. */
__device__ __forceinline__ void v2_build_tab(float2 *tab) {
    for (int i = threadIdx.x; i < 256 * 32; i += blockDim.x) {
        uint32_t b = (uint32_t)i >> 5;
        tab[i] = make_float2(c_v2_e2m1[b & 15u], c_v2_e2m1[b >> 4]);
    }
}

/* The lane's input blocks b = lane + 32*it (zero past NB). */
__device__ __forceinline__ void v2_load_x(float (&x)[V2_PRE][32], const float *v, int NB, int lane) {
#pragma unroll
    for (int it = 0; it < V2_PRE; it++) {
        int b = lane + 32 * it;
#pragma unroll
        for (int q = 0; q < 8; q++) {
            float4 f = b < NB ? __ldg(reinterpret_cast<const float4 *>(v + (size_t)b * 32) + q)
                              : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            x[it][4 * q] = f.x; x[it][4 * q + 1] = f.y; x[it][4 * q + 2] = f.z; x[it][4 * q + 3] = f.w;
        }
    }
}

/* sum_i value(code_i) * x[i] over one 32-weight block (unscaled). tabc: the
 * table as bytes; lb = lane * 8. */
__device__ __forceinline__ float v2_block_dot(uint4 q, const float (&x)[32], const char *tabc,
                                              uint32_t lb) {
    uint32_t wv[4] = { q.x, q.y, q.z, q.w };
    float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; i++) {
#pragma unroll
        for (int b = 0; b < 4; b++) {
            /* bytes: [0] = lb (lane*8 <= 248), [1] = byte b of the word, [2..3] = 0 */
            uint32_t off = __byte_perm(wv[i], lb, 0x5504u | ((uint32_t)b << 4));
            float2 v = *reinterpret_cast<const float2 *>(tabc + off);
            s0 = fmaf(v.x, x[8 * i + 2 * b], s0);
            s1 = fmaf(v.y, x[8 * i + 2 * b + 1], s1);
        }
    }
    return s0 + s1;
}

/* Two rows (row, row+1) of one matrix, V2_PRE blocks per lane. */
struct v2_rows {
    uint4 q[2][V2_PRE];
    uint32_t sc[2][V2_PRE];
};

/* Loads rows row and row+1 (row+1 only when two) of a matrix whose blocks
 * start at bm and scales at sm. */
__device__ __forceinline__ void v2_load_rows(v2_rows &r, const uint8_t *bm, const uint8_t *sm,
                                             size_t row, bool two, int NB, int lane) {
    size_t rowbytes = (size_t)NB * 16;
#pragma unroll
    for (int g = 0; g < 2; g++) {
#pragma unroll
        for (int it = 0; it < V2_PRE; it++) {
            int b = lane + 32 * it;
            if (b < NB && (g == 0 || two)) {
                r.q[g][it] = ld_stream(bm + (row + g) * rowbytes + (size_t)b * 16);
                r.sc[g][it] = __ldg(sm + (row + g) * NB + b);
            } else {
                r.q[g][it] = make_uint4(0, 0, 0, 0);
                r.sc[g][it] = 0;
            }
        }
    }
}

/* Per-lane partial dot products of both rows (to be warp-summed). */
__device__ __forceinline__ void v2_dot_rows(const v2_rows &r, const float (&x)[V2_PRE][32],
                                            const char *tabc, uint32_t lb, int NB, int lane,
                                            float (&acc)[2]) {
    acc[0] = 0.0f;
    acc[1] = 0.0f;
#pragma unroll
    for (int it = 0; it < V2_PRE; it++) {
        if (lane + 32 * it < NB) {
#pragma unroll
            for (int g = 0; g < 2; g++)
                acc[g] = fmaf(v2_block_dot(r.q[g][it], x[it], tabc, lb), e8m0_scale(r.sc[g][it]), acc[g]);
        }
    }
}

__device__ __forceinline__ void v2_finish_pair(const v2_rows &r, const float (&x)[V2_PRE][32],
                                               const char *tabc, uint32_t lb, const float *bias,
                                               int i, int NB, int lane, float limit, float alpha,
                                               float *out) {
    float acc[2];
    v2_dot_rows(r, x, tabc, lb, NB, lane, acc);
    float gt = warp_sum(acc[0]), up = warp_sum(acc[1]);
    if (lane == 0) {
        gt += bias[2 * i];
        up += bias[2 * i + 1];
        out[i] = swiglu(gt, up, limit, alpha);
    }
}

/* grid (bx, T*k), 256 threads, dynamic smem V2_TAB_BYTES. */
__global__ void __launch_bounds__(256, 1) k_moe_gate_up_v2(const uint8_t *__restrict__ blocks,
                                                          const uint8_t *__restrict__ scales,
                                                          const float *__restrict__ bias,
                                                          const float *__restrict__ h,
                                                          const float *__restrict__ logits, int E,
                                                          int *sel_e, float *sel_w,
                                                          float *__restrict__ act, int k, int H,
                                                          int I, float limit, float alpha) {
    extern __shared__ float2 tab[];
    int pair_idx = blockIdx.y; /* t*k + j */
    int t = pair_idx / k, jsel = pair_idx % k;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
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
    int stride = gridDim.x * 8;
    int i = blockIdx.x * 8 + warp;
    v2_rows ra, rb;
    if (i < I) v2_load_rows(ra, bexp, sexp, 2 * (size_t)i, true, NB, lane);
    float x[V2_PRE][32];
    v2_load_x(x, h + (size_t)t * H, NB, lane);
    v2_build_tab(tab);
    __syncthreads();
    const char *tabc = reinterpret_cast<const char *>(tab);
    uint32_t lb = (uint32_t)lane * 8u;
    const float *be = bias + (size_t)e * 2 * I;
    float *out = act + (size_t)pair_idx * I;
    while (i < I) {
        int i2 = i + stride;
        if (i2 < I) v2_load_rows(rb, bexp, sexp, 2 * (size_t)i2, true, NB, lane);
        v2_finish_pair(ra, x, tabc, lb, be, i, NB, lane, limit, alpha, out);
        if (i2 >= I) break;
        int i3 = i2 + stride;
        if (i3 < I) v2_load_rows(ra, bexp, sexp, 2 * (size_t)i3, true, NB, lane);
        v2_finish_pair(rb, x, tabc, lb, be, i2, NB, lane, limit, alpha, out);
        i = i3;
    }
}

/* grid (bx, T), 256 threads, smem V2_TAB_BYTES + k*RB floats. Block rows
 * [r0, r0+RB); warp w works for expert j = w / (8/k) on row pairs
 * r0 + 2*(w % (8/k) + n*(8/k)). */
__global__ void __launch_bounds__(256, 1) k_moe_down_v2(const uint8_t *__restrict__ blocks,
                                                       const uint8_t *__restrict__ scales,
                                                       const float *__restrict__ bias,
                                                       const float *__restrict__ act,
                                                       const int *__restrict__ sel_e,
                                                       const float *__restrict__ sel_w, float *x,
                                                       int k, int H, int I, int RB) {
    extern __shared__ float2 tab[];
    float *part = reinterpret_cast<float *>(tab + 256 * 32); /* [k][RB] */
    int t = blockIdx.y;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int r0 = blockIdx.x * RB, r1 = min(H, r0 + RB);
    int wpe = 8 / k, j = warp / wpe, sub = warp % wpe;
    bool active = j < k;
    int NB = I / 32;
    size_t rowbytes = (size_t)NB * 16;
    int e = active ? sel_e[t * k + j] : 0;
    const uint8_t *bexp = blocks + (size_t)e * H * rowbytes;
    const uint8_t *sexp = scales + (size_t)e * H * NB;
    int r = r0 + 2 * sub, step = 2 * wpe;
    v2_rows ra, rb;
    if (active && r < r1) v2_load_rows(ra, bexp, sexp, (size_t)r, r + 1 < r1, NB, lane);
    float xv[V2_PRE][32];
    v2_load_x(xv, act + ((size_t)t * k + (active ? j : 0)) * I, NB, lane);
    v2_build_tab(tab);
    __syncthreads();
    const char *tabc = reinterpret_cast<const char *>(tab);
    uint32_t lb = (uint32_t)lane * 8u;
    float *pj = part + (size_t)(active ? j : 0) * RB; /* row r at pj[r - r0] */
    while (active && r < r1) {
        int r2 = r + step;
        if (r2 < r1) v2_load_rows(rb, bexp, sexp, (size_t)r2, r2 + 1 < r1, NB, lane);
        float acc[2];
        v2_dot_rows(ra, xv, tabc, lb, NB, lane, acc);
        acc[0] = warp_sum(acc[0]);
        acc[1] = warp_sum(acc[1]);
        if (lane == 0) {
            pj[r - r0] = acc[0];
            if (r + 1 < r1) pj[r + 1 - r0] = acc[1];
        }
        if (r2 >= r1) break;
        int r3 = r2 + step;
        if (r3 < r1) v2_load_rows(ra, bexp, sexp, (size_t)r3, r3 + 1 < r1, NB, lane);
        v2_dot_rows(rb, xv, tabc, lb, NB, lane, acc);
        acc[0] = warp_sum(acc[0]);
        acc[1] = warp_sum(acc[1]);
        if (lane == 0) {
            pj[r2 - r0] = acc[0];
            if (r2 + 1 < r1) pj[r2 + 1 - r0] = acc[1];
        }
        r = r3;
    }
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

void cu_moe_decode_v2_init(void) {
    int dev = 0, sms = 132, optin = 48 * 1024;
    if (cudaGetDevice(&dev) == cudaSuccess) {
        if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || sms < 1)
            sms = 132;
        if (cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess)
            optin = 48 * 1024;
    }
    g_v2_smem_max = optin;
    cudaFuncSetAttribute(k_moe_gate_up_v2, cudaFuncAttributeMaxDynamicSharedMemorySize, optin);
    cudaFuncSetAttribute(k_moe_down_v2, cudaFuncAttributeMaxDynamicSharedMemorySize, optin);
    int n = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, k_moe_gate_up_v2, 256, V2_TAB_BYTES) != cudaSuccess || n < 1)
        n = 1;
    g_v2_wave_gu = n * sms;
    n = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, k_moe_down_v2, 256, V2_TAB_BYTES + 16 * 1024) != cudaSuccess || n < 1)
        n = 1;
    g_v2_wave_dn = n * sms;
    cudaGetLastError();
}

int cu_moe_gate_up_decode_v2(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                             const float *h, const float *norm_w, const float *logits, int E,
                             int *sel_e, float *sel_w, float *act, int T, int k, int H, int I,
                             float limit, float alpha, cudaStream_t s) {
    if (norm_w || H % 32 || H / 32 > 32 * V2_PRE || k < 1 || k > CU_MAX_TOPK || T < 1 ||
        V2_TAB_BYTES > g_v2_smem_max)
        return 0;
    int bx = (g_v2_wave_gu + T * k - 1) / (T * k), need = (I + 7) / 8;
    if (bx > need) bx = need;
    if (bx < 1) bx = 1;
    dim3 grid(bx, T * k);
    k_moe_gate_up_v2<<<grid, 256, V2_TAB_BYTES, s>>>(blocks, scales, bias, h, logits, E, sel_e,
                                                     sel_w, act, k, H, I, limit, alpha);
    return 1;
}

int cu_moe_down_decode_v2(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                          const float *act, const int *sel_e, const float *sel_w, float *x, int T,
                          int k, int H, int I, cudaStream_t s) {
    if (I % 32 || I / 32 > 32 * V2_PRE || k < 1 || k > 8 || T < 1 || H < 1) return 0;
    int bx = (g_v2_wave_dn + T - 1) / T, need = (H + 1) / 2;
    if (bx > need) bx = need;
    if (bx < 1) bx = 1;
    int RB = (H + bx - 1) / bx;
    RB += RB & 1; /* even: row pairs never straddle blocks */
    bx = (H + RB - 1) / RB;
    size_t smem = V2_TAB_BYTES + (size_t)k * RB * sizeof(float);
    if (smem > (size_t)g_v2_smem_max) return 0;
    dim3 grid(bx, T);
    k_moe_down_v2<<<grid, 256, smem, s>>>(blocks, scales, bias, act, sel_e, sel_w, x, k, H, I, RB);
    return 1;
}
