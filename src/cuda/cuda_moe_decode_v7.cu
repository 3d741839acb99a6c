/* cuda_moe_decode_v7.cu - MXFP4 decode expert kernels that stream the weights
 * straight into registers (GPTOSS_CUDA_MOE_DECODE=v7: int8 hi + lo inputs and
 * dp4a; v7f: fp32 inputs through the code table, exact).
 *
 * Same work split as v4 (a row in three parts of 32 blocks, a lane owns one
 * block of its part), but no shared-memory stages: v4 and
 * v6 (v4 with the int8 dot) ran at the same ~27 us for the 20b gate_up although
 * v6 issues ~30 % fewer instructions, so the cp.async staging, not the
 * arithmetic, set their pace. Here a warp loads G rows of its part with
 * 16-byte streaming loads (a warp reads 512 contiguous bytes per row) and the
 * next G rows are in flight while it multiplies the current ones (double
 * buffering in registers, as the bf16 matvecs that reach 4.1 TB/s do). Each
 * lane also loads its block's scale byte per row (32 lanes: one 32-byte
 * sector). v7f turns a code byte into two float operands with one 64-bit
 * shared-memory load (moe_build_tab2); every gate_up warp picks the experts
 * itself. Shapes (G rows per group, NW warps) below: v7f uses 4 x 15 for
 * gate_up and 4 x 12 for down, v7 (int8) 4 x 24.
 *
 * gate_up: grid (bx, T*k); rows [2*i0, 2*i1) of one token/expert pair (gate
 *          and up interleaved), groups of G rows; warp w: part w % 3, groups
 *          w / 3 + (NW/3) n.
 * down:    grid (bx, T); rows [r0, r1) for all k experts; warp w: expert
 *          j = w / (3G8), part (w % 3G8) % 3, groups (w % 3G8) / 3 + G8*n with
 *          G8 = NW/(3k).
 */
#include "cuda_moe_common.cuh"

#include <stdio.h>
#include <string.h>
#include <type_traits>

#define V7_THREADS 768
#define V7_WARPS 24
#define V7_PARTS 3

static int g_v7_sms = 132;

template <int G> struct V7Rows {
    uint4 w[G];
    uint32_t s[G];
};

/* Rows row0 .. row0+G-1 (those < rend) of this lane's block: codes and scale byte. */
template <int G>
__device__ __forceinline__ void v7_load(V7Rows<G> &b, const uint8_t *bl, const uint8_t *sl, int row0,
                                        int rend, size_t rowbytes, int NB, bool lane_ok) {
#pragma unroll
    for (int r = 0; r < G; r++) {
        bool ok = lane_ok && row0 + r < rend;
        b.w[r] = ok ? ld_stream(bl + (size_t)(row0 + r) * rowbytes) : make_uint4(0, 0, 0, 0);
        b.s[r] = ok ? (uint32_t)__ldg(sl + (size_t)(row0 + r) * NB) : 0u;
    }
}

/* The warp's sums of G rows: lane r * (32 / G) returns row r's. Each
 * exchange step halves the rows a lane carries (one shuffle serves two rows),
 * then the last lanes reduce one value: 5 shuffles for any G <= 32 instead
 * of 5 per row. */
template <int G>
__device__ __forceinline__ float v7_warp_sums(float (&a)[G], int lane) {
#pragma unroll
    for (int n = G, o = 16; n > 1; n >>= 1, o >>= 1) {
        bool up = lane & o;
#pragma unroll
        for (int i = 0; i < n / 2; i++) {
            float send = up ? a[i] : a[i + n / 2], keep = up ? a[i + n / 2] : a[i];
            a[i] = keep + __shfl_xor_sync(0xffffffffu, send, o);
        }
    }
    float v = a[0];
#pragma unroll
    for (int o = 16 / G; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

template <class X, int G>
__device__ __forceinline__ float v7_dot(const V7Rows<G> &b, const X &x, const unsigned char *tab,
                                        uint32_t lb, int lane) {
    float acc[G];
#pragma unroll
    for (int r = 0; r < G; r++) acc[r] = x.dot(b.w[r], tab, lb) * e8m0_scale(b.s[r]);
    return v7_warp_sums<G>(acc, lane);
}

/* Walks the groups g = g0, g0 + gstep, ... (< ngroups) of rows rbase + g*G
 * (rows < rend), double-buffered; `a` holds group g0 already (v7_load by the
 * caller, so that the first weights are in flight before the block's
 * barrier); out(row, sum) for every row, called by the lane that holds the
 * sum. */
template <class X, int G, class Out>
__device__ __forceinline__ void v7_walk(V7Rows<G> &a, const uint8_t *bl, const uint8_t *sl, int rbase,
                                        int rend, size_t rowbytes, int NB, bool lane_ok, int g0,
                                        int gstep, int ngroups, const X &x, const unsigned char *tab,
                                        uint32_t lb, Out out) {
    V7Rows<G> b;
    int lane = threadIdx.x & 31, mine = lane / (32 / G);
    bool owner = lane % (32 / G) == 0;
    for (int g = g0; g < ngroups; g += 2 * gstep) {
        int gb = g + gstep;
        if (gb < ngroups) v7_load<G>(b, bl, sl, rbase + gb * G, rend, rowbytes, NB, lane_ok);
        float v = v7_dot<X, G>(a, x, tab, lb, lane);
        if (owner && rbase + g * G + mine < rend) out(rbase + g * G + mine, v);
        if (gb >= ngroups) break;
        int ga = gb + gstep;
        if (ga < ngroups) v7_load<G>(a, bl, sl, rbase + ga * G, rend, rowbytes, NB, lane_ok);
        v = v7_dot<X, G>(b, x, tab, lb, lane);
        if (owner && rbase + gb * G + mine < rend) out(rbase + gb * G + mine, v);
    }
}

/* grid (bx, T*k), NW warps, smem TAB + 3*2*PR + 2*PR floats. Block bx: pairs
 * [bx*PR, min(I, bx*PR + PR)). */
template <bool I8, int G, int NW = V7_WARPS>
__global__ void __launch_bounds__(NW * 32, 1) k_moe_gate_up_v7(
    const uint8_t *__restrict__ blocks, const uint8_t *__restrict__ scales,
    const float *__restrict__ bias, const float *__restrict__ h, const float *__restrict__ logits,
    int E, int *sel_e, float *sel_w, float *__restrict__ act, int k, int H, int I, float limit,
    float alpha, int PR) {
    extern __shared__ __align__(16) unsigned char v7_smem[];
    const int TAB = I8 ? 0 : MOE_TAB_BYTES;
    float *part = reinterpret_cast<float *>(v7_smem + TAB); /* [3][2*PR] */
    int pair_idx = blockIdx.y, t = pair_idx / k, jsel = pair_idx % k;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    pdl_trigger();
    pdl_wait(); /* router logits / selection and h come from the predecessor */
    /* Every warp picks the expert itself (same inputs, same result) and
     * requests its first weights and its inputs at once; the table is built
     * while they are in flight, and the barrier only guards the table (the
     * fifth session measured ~7.6 us of each gate_up launch outside the
     * streaming: the pick, the table and the first latency in a row). */
    int NB = H / 32, p = warp % V7_PARTS, grp = warp / V7_PARTS;
    int pb = p * 32, nbp = min(32, NB - pb);
    typename std::conditional<I8, MoeXI8, MoeXF32P>::type x;
    x.load(h + (size_t)t * H, pb + lane, NB); /* in flight while the expert is picked */
    int e = moe_pair_expert(logits, E, k, t, jsel, sel_e, sel_w);
    int i0 = blockIdx.x * PR, i1 = min(I, i0 + PR);
    /* the epilogue's biases, requested now into shared memory (one memory
     * latency less at the end; registers stay with the weights) */
    const float *be = bias + (size_t)e * 2 * I;
    float *bpre = part + V7_PARTS * 2 * PR; /* [2 PR] */
    for (int i = i0 + (int)threadIdx.x; i < i1; i += blockDim.x) {
        bpre[2 * (i - i0)] = be[2 * i];
        bpre[2 * (i - i0) + 1] = be[2 * i + 1];
    }
    size_t rowbytes = (size_t)NB * 16;
    const uint8_t *bl = blocks + (size_t)e * 2 * I * rowbytes + (size_t)(pb + lane) * 16;
    const uint8_t *sl = scales + (size_t)e * 2 * I * NB + pb + lane;
    int rbase = 2 * i0, rend = 2 * i1, ngroups = (rend - rbase + G - 1) / G;
    V7Rows<G> first;
    if (nbp > 0 && grp < ngroups) v7_load<G>(first, bl, sl, rbase + grp * G, rend, rowbytes, NB, lane < nbp);
    if (!I8) moe_build_tab2(v7_smem);
    __syncthreads(); /* the table */
    float *pp = part + (size_t)p * 2 * PR;
    if (nbp > 0)
        v7_walk<decltype(x), G>(first, bl, sl, rbase, rend, rowbytes, NB, lane < nbp, grp, NW / V7_PARTS,
                                ngroups, x, v7_smem, (uint32_t)lane * 8u, [&](int row, float v) {
                                    pp[row - rbase] = v;
                                });
    pdl_trigger_end();
    __syncthreads();
    moe_gate_up_epilogue(part, PR, NB, i0, i1, bpre, i0, act + (size_t)pair_idx * I, limit, alpha);
}

/* grid (bx, T), NW warps, smem TAB + k*3*RB + (k+1)*RB floats. Block rows [r0, r0+RB). */
template <bool I8, int G, int NW = V7_WARPS>
__global__ void __launch_bounds__(NW * 32, 1) k_moe_down_v7(
    const uint8_t *__restrict__ blocks, const uint8_t *__restrict__ scales,
    const float *__restrict__ bias, const float *__restrict__ act, const int *__restrict__ sel_e,
    const float *__restrict__ sel_w, float *x, int k, int H, int I, int RB) {
    extern __shared__ __align__(16) unsigned char v7_smem[];
    const int TAB = I8 ? 0 : MOE_TAB_BYTES;
    float *part = reinterpret_cast<float *>(v7_smem + TAB); /* [k][3][RB] */
    int t = blockIdx.y;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int G8 = NW / (3 * k), j = warp / (3 * G8), rem = warp % (3 * G8), p = rem % 3, grp = rem / 3;
    int r0 = blockIdx.x * RB, r1 = min(H, r0 + RB);
    pdl_trigger();
    pdl_wait(); /* selection, activations and x come from the predecessors */
    int NB = I / 32, pb = p * 32, nbp = min(32, NB - pb);
    size_t rowbytes = (size_t)NB * 16;
    int e = sel_e[t * k + j];
    /* the epilogue's operands, requested now into shared memory (one memory
     * latency less at the end): the k experts' biases of the block's rows and
     * the residual rows */
    float *bpre = part + (size_t)k * 3 * RB; /* [k][RB] biases, then [RB] residual */
    for (int i = threadIdx.x; i < (k + 1) * RB; i += blockDim.x) {
        int jj = i / RB, rr = r0 + i % RB;
        if (rr < r1) bpre[i] = jj < k ? bias[(size_t)sel_e[t * k + jj] * H + rr] : x[(size_t)t * H + rr];
    }
    const uint8_t *bl = blocks + (size_t)e * H * rowbytes + (size_t)(pb + lane) * 16;
    const uint8_t *sl = scales + (size_t)e * H * NB + pb + lane;
    int ngroups = (r1 - r0 + G - 1) / G;
    V7Rows<G> first; /* the first weights in flight before the table is built */
    if (nbp > 0 && grp < ngroups) v7_load<G>(first, bl, sl, r0 + grp * G, r1, rowbytes, NB, lane < nbp);
    typename std::conditional<I8, MoeXI8, MoeXF32P>::type xv;
    xv.load(act + ((size_t)t * k + j) * I, pb + lane, NB);
    if (!I8) {
        moe_build_tab2(v7_smem);
        __syncthreads(); /* the table */
    }
    float *pj = part + ((size_t)j * 3 + p) * RB; /* row r at pj[r - r0] */
    if (nbp > 0)
        v7_walk<decltype(xv), G>(first, bl, sl, r0, r1, rowbytes, NB, lane < nbp, grp, G8, ngroups, xv, v7_smem,
                                 (uint32_t)lane * 8u, [&](int row, float v) {
                                     pj[row - r0] = v;
                                 });
    pdl_trigger_end();
    __syncthreads();
    moe_down_epilogue_pre(part, RB, NB, r0, r1, sel_w + t * k, k, bpre, x + (size_t)t * H);
}

/* v7: int8 inputs, 4 rows per group, 24 warps (V7_THREADS); v7f: the shapes below. */
#define V7_G_I8 4

static int g_v7_smem_max = 48 * 1024;

/* fp32 kernel shapes (rows per group G, warps NW), chosen by
 * GPTOSS_CUDA_V7_GU / GPTOSS_CUDA_V7_DN = g<G>w<NW>. Defaults: gate_up g4w15,
 * down g4w12 (fifth session, same call: 498.7 tok/s against 481.2 for the
 * earlier 2 rows x 24 warps of both; fewer warps with 4 rows each keep 4
 * rows' loads in flight per warp, and the registers that frees hold them). */
#define V7_SHAPES(X) X(2, 24) X(4, 18) X(4, 15) X(4, 12) X(8, 12) X(8, 9)
static const int g_v7_shapes[][2] = {
#define V7_SHAPE_ROW(G, NW) { G, NW },
    V7_SHAPES(V7_SHAPE_ROW)
#undef V7_SHAPE_ROW
};
static int g_v7_gu_shape = 0, g_v7_dn_shape = 0;

static int v7_shape_of(const char *v, const char *dflt) {
    if (!v) v = dflt;
    for (int i = 0; i < (int)(sizeof g_v7_shapes / sizeof g_v7_shapes[0]); i++) {
        char name[16];
        snprintf(name, sizeof name, "g%dw%d", g_v7_shapes[i][0], g_v7_shapes[i][1]);
        if (!strcmp(v, name)) return i;
    }
    return 0;
}

void cu_moe_v7_set_shapes(const char *gu, const char *dn) {
    g_v7_gu_shape = v7_shape_of(gu, "g4w15");
    g_v7_dn_shape = v7_shape_of(dn, "g4w12");
}

void cu_moe_decode_v7_init(void) {
    pdl_mode_upload();
    int sms, optin;
    cu_device_limits(&sms, &optin);
    g_v7_sms = sms;
    g_v7_smem_max = optin;
#define V7_ATTR(G, NW)                                                                                   \
    cudaFuncSetAttribute(k_moe_gate_up_v7<false, G, NW>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin); \
    cudaFuncSetAttribute(k_moe_down_v7<false, G, NW>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin);
    V7_SHAPES(V7_ATTR)
#undef V7_ATTR
    g_v7_gu_shape = v7_shape_of(getenv("GPTOSS_CUDA_V7_GU"), "g4w15");
    g_v7_dn_shape = v7_shape_of(getenv("GPTOSS_CUDA_V7_DN"), "g4w12");
    cudaFuncSetAttribute(k_moe_gate_up_v7<true, V7_G_I8>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin);
    cudaFuncSetAttribute(k_moe_down_v7<true, V7_G_I8>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin);
    cudaGetLastError();
}

int cu_moe_gate_up_decode_v7(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                             const float *h, const float *norm_w, const float *logits, int E,
                             int *sel_e, float *sel_w, float *act, int T, int k, int H, int I,
                             float limit, float alpha, int i8, cudaStream_t s) {
    int NB = H / 32;
    if (norm_w || H % 32 || NB > 32 * V7_PARTS || k < 1 || k > CU_MAX_TOPK || T < 1 || I < 1) return 0;
    int P = T * k, bx = g_v7_sms / P;
    if (bx < 1) bx = 1;
    int PR = (I + bx - 1) / bx;
    bx = (I + PR - 1) / PR;
    size_t smem = (size_t)(i8 ? 0 : MOE_TAB_BYTES) + (size_t)(V7_PARTS + 1) * 2 * PR * sizeof(float);
    if (smem > (size_t)g_v7_smem_max) return 0;
    dim3 grid(bx, P);
    if (i8)
        cu_launch_serial(k_moe_gate_up_v7<true, V7_G_I8>, grid, dim3(V7_THREADS), smem, s, blocks, scales, bias, h,
                  logits, E, sel_e, sel_w, act, k, H, I, limit, alpha, PR);
    else {
        int sh = 0;
#define V7_GU(G, NW)                                                                                     \
    if (sh++ == g_v7_gu_shape)                                                                           \
        cu_launch_serial(k_moe_gate_up_v7<false, G, NW>, grid, dim3(NW * 32), smem, s, blocks, scales, bias, \
                         h, logits, E, sel_e, sel_w, act, k, H, I, limit, alpha, PR);
        V7_SHAPES(V7_GU)
#undef V7_GU
    }
    return 1;
}

int cu_moe_down_decode_v7(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                          const float *act, const int *sel_e, const float *sel_w, float *x, int T,
                          int k, int H, int I, int i8, cudaStream_t s) {
    int NB = I / 32;
    if (I % 32 || NB > 32 * V7_PARTS || (k != 1 && k != 2 && k != 4 && k != 8) || T < 1 || H < 1) return 0;
    int bx = g_v7_sms / T;
    if (bx < 1) bx = 1;
    int RB = (H + bx - 1) / bx;
    bx = (H + RB - 1) / RB;
    size_t smem = (size_t)(i8 ? 0 : MOE_TAB_BYTES) + ((size_t)k * V7_PARTS + k + 1) * RB * sizeof(float);
    if (smem > (size_t)g_v7_smem_max) return 0;
    dim3 grid(bx, T);
    if (i8)
        cu_launch_serial(k_moe_down_v7<true, V7_G_I8>, grid, dim3(V7_THREADS), smem, s, blocks, scales, bias, act,
                  sel_e, sel_w, x, k, H, I, RB);
    else {
        /* the shape's warps must split evenly over the k experts and 3 parts */
        int sh = 0, want = g_v7_shapes[g_v7_dn_shape][1] % (3 * k) ? 0 : g_v7_dn_shape;
#define V7_DN(G, NW)                                                                                     \
    if (sh++ == want)                                                                                    \
        cu_launch_serial(k_moe_down_v7<false, G, NW>, grid, dim3(NW * 32), smem, s, blocks, scales, bias, act, \
                         sel_e, sel_w, x, k, H, I, RB);
        V7_SHAPES(V7_DN)
#undef V7_DN
    }
    return 1;
}
