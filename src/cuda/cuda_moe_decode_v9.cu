/* cuda_moe_decode_v9.cu - MXFP4 decode expert kernels on tensor cores
 * (GPTOSS_CUDA_MOE_DECODE=v9, opt-in; not yet run on a GPU when written).
 *
 * Why: the CUDA-core versions (v4..v7f) spend ~2 instructions and a table
 * load per weight on turning codes into operands. Here the weights are the A
 * operand of mma.sync m16n8k16 (16 rows x 16 k), converted in registers by
 * the exact bit placement of the prefill GEMM v2 (cuda_mxfp4_mma.cuh), the
 * scale included, so that the MMA accumulates over K in fp32; the input
 * vector x enters as B with two columns, bf16 hi and bf16 lo (x = hi + lo to
 * ~16 bits; columns 2..7 are zero), and a row's result is C[row][0] +
 * C[row][1].
 *
 * k order. A "step" is one super-block: 16 rows x 4 MXFP4 blocks (128 k).
 * Lane l = 4g + t loads block 4sb + t of rows g and g + 8 with one 16-byte
 * streaming load each (a warp reads 64 contiguous bytes per row), plus the
 * two scale bytes. Word w of that block (elements 8w..8w+7, nibble i =
 * element 8w + i) gives two MMAs: the first takes the element pairs (0, 4)
 * at k 2t, 2t+1 and (1, 5) at k 2t+8, 2t+9, the second (2, 6) and (3, 7).
 * Every lane's k slots thus hold elements of its own block, so the per-block
 * scale can sit in A. B is stored in shared memory in the same order, per
 * (block, word) the 8 bf16 [x0 x4 x1 x5 x2 x6 x3 x7], so that a lane's two
 * MMAs of a word take one 16-byte load (lanes 0-3: hi, 4-7: lo; the chunk
 * index is XOR-swizzled so that these 8 loads hit 8 distinct bank groups).
 *
 * Work split. A block holds a list of "items" (16-row tiles: gate_up, of one
 * token/expert pair; down, tile x expert of one token) and the steps
 * item x super-block in item-major order; warp w takes the contiguous range
 * [w S / 24, (w+1) S / 24) of the S steps, so every warp streams the same
 * amount and K is split wherever a range boundary falls. Three steps are in
 * registers: two loading while the third is multiplied. A warp writes its
 * partial row sums of each item it touches to shared memory; after the
 * barrier the partials of an item are added in warp order (= K order), so
 * the result does not depend on timing.
 *
 * Conversion cost per 8 codes (4 A registers): one shift, 4 x (and, imad,
 * and) and 4 bf16x2 multiplies = 17 instructions (~2.1 per weight); a warp
 * that meets a scale byte > 128 (scales > 2, not seen in checkpoints) takes
 * v2's two-multiply path for that step (21 per 8 codes). */
#include "cuda_moe_common.cuh"
#include "cuda_mxfp4_mma.cuh"

#define V9_THREADS 768
#define V9_WARPS 24
#define V9_DEPTH 3 /* steps in registers: DEPTH - 1 loading while one is multiplied */

static int g_v9_sms = 132;
static int g_v9_smem_max = 48 * 1024;

/* Codes and scale bytes of one step: rows g and g + 8 of the lane's block. */
struct V9Buf {
    uint4 q0, q1;
    uint32_t s0, s1;
};

/* Where an item's rows live: expert base pointers, first row, B vector. */
struct V9Item {
    const uint8_t *bl, *sc;
    int row0, vec;
};

/* Shared-memory bytes of one B vector (hi, then lo 32 bytes off the 128-byte
 * grid so that hi and lo loads use different banks). */
static __host__ __device__ __forceinline__ int v9_vec_bytes(int NSB) { return NSB * 512 + 128; }
static __device__ __forceinline__ int v9_lo_off(int NSB) { return NSB * 256 + 32; }

/* 16-byte chunk of (block, word) within a vector half */
static __device__ __forceinline__ int v9_chunk(int blk, int w) { return blk * 4 + (w ^ ((blk >> 1) & 1)); }

static __device__ __forceinline__ uint32_t v9_pack(__nv_bfloat16 a, __nv_bfloat16 b) {
    return (uint32_t)__bfloat16_as_ushort(a) | ((uint32_t)__bfloat16_as_ushort(b) << 16);
}

/* x[0..K) (fp32, K % 32 == 0) -> B vector at vb, zero-filled to NSB * 128. */
static __device__ void v9_build_b(unsigned char *vb, const float *x, int K, int NSB) {
    int lo_off = v9_lo_off(NSB);
    for (int c = threadIdx.x; c < NSB * 16; c += blockDim.x) {
        int e0 = c * 8, blk = c >> 2, w = c & 3;
        float v[8];
        if (e0 < K) {
            float4 a = __ldg(reinterpret_cast<const float4 *>(x + e0));
            float4 b = __ldg(reinterpret_cast<const float4 *>(x + e0) + 1);
            v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
            v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
        } else {
#pragma unroll
            for (int i = 0; i < 8; i++) v[i] = 0.0f;
        }
        __nv_bfloat16 hi[8], lo[8];
#pragma unroll
        for (int i = 0; i < 8; i++) {
            hi[i] = __float2bfloat16_rn(v[i]);
            lo[i] = __float2bfloat16_rn(v[i] - __bfloat162float(hi[i]));
        }
        int off = v9_chunk(blk, w) * 16;
        *reinterpret_cast<uint4 *>(vb + off) =
            make_uint4(v9_pack(hi[0], hi[4]), v9_pack(hi[1], hi[5]), v9_pack(hi[2], hi[6]), v9_pack(hi[3], hi[7]));
        *reinterpret_cast<uint4 *>(vb + lo_off + off) =
            make_uint4(v9_pack(lo[0], lo[4]), v9_pack(lo[1], lo[5]), v9_pack(lo[2], lo[6]), v9_pack(lo[3], lo[7]));
    }
}

/* Geometry shared by the loads and the multiplies of one warp. */
struct V9Geo {
    int NSB, NB, nrows;
    size_t rowbytes;
    int g, t;
};

template <class ItemF>
static __device__ __forceinline__ void v9_load(V9Buf &b, int f, const V9Geo &G, ItemF item_of) {
    int it = f / G.NSB, blk = 4 * (f - it * G.NSB) + G.t;
    V9Item I = item_of(it);
    int r0 = I.row0 + G.g, r1 = r0 + 8;
    bool okb = blk < G.NB, ok0 = okb && r0 < G.nrows, ok1 = okb && r1 < G.nrows;
    const uint4 z = make_uint4(0, 0, 0, 0);
    b.q0 = ok0 ? ld_stream(I.bl + (size_t)r0 * G.rowbytes + (size_t)blk * 16) : z;
    b.q1 = ok1 ? ld_stream(I.bl + (size_t)r1 * G.rowbytes + (size_t)blk * 16) : z;
    b.s0 = ok0 ? (uint32_t)__ldg(I.sc + (size_t)r0 * G.NB + blk) : 0u;
    b.s1 = ok1 ? (uint32_t)__ldg(I.sc + (size_t)r1 * G.NB + blk) : 0u;
}

/* The 8 MMAs of one step: acc += W[16 rows, 128 k] x [hi lo 0 ...]. */
template <bool SLOW>
static __device__ __forceinline__ void v9_mma_step(float (&acc)[4], const V9Buf &b, const unsigned char *vb,
                                                   int lo_off, int blk, int g) {
    uint4 x[4];
#pragma unroll
    for (int w = 0; w < 4; w++) /* lanes 0-3: hi column, 4-7: lo column, others: zero columns */
        x[w] = g < 2 ? *reinterpret_cast<const uint4 *>(vb + (g ? lo_off : 0) + v9_chunk(blk, w) * 16)
                     : make_uint4(0, 0, 0, 0);
    uint32_t m0 = SLOW ? mx_scale2(b.s0) : mx_fast2(b.s0), m1 = SLOW ? mx_scale2(b.s1) : mx_fast2(b.s1);
    const uint32_t q0[4] = { b.q0.x, b.q0.y, b.q0.z, b.q0.w }, q1[4] = { b.q1.x, b.q1.y, b.q1.z, b.q1.w };
#pragma unroll
    for (int w = 0; w < 4; w++) {
        uint32_t a0[4], a1[4]; /* rows g, g + 8: (element j, element j + 4), j = 0..3 */
        mx_convert<SLOW>(q0[w], m0, a0);
        mx_convert<SLOW>(q1[w], m1, a1);
        mx_mma(acc, a0[0], a1[0], a0[1], a1[1], x[w].x, x[w].y);
        mx_mma(acc, a0[2], a1[2], a0[3], a1[3], x[w].z, x[w].w);
    }
}

/* One warp's steps [f0, f1): partial sums of each touched item go to
 * part[(warp * nitems + item) * 16 + row] (lanes t == 0 hold columns 0, 1). */
template <class ItemF>
static __device__ __forceinline__ void v9_walk(V9Buf (&buf)[V9_DEPTH], int f0, int f1, const V9Geo &G,
                                               ItemF item_of, const unsigned char *smem_b, int vbytes,
                                               float *part, int nitems, int warp) {
    float acc[4] = { 0.0f, 0.0f, 0.0f, 0.0f };
    int lo_off = v9_lo_off(G.NSB);
    for (int f = f0; f < f1; f += V9_DEPTH) {
#pragma unroll
        for (int d = 0; d < V9_DEPTH; d++) {
            int fc = f + d;
            if (fc >= f1) break;
            if (fc + V9_DEPTH - 1 < f1) v9_load(buf[(d + V9_DEPTH - 1) % V9_DEPTH], fc + V9_DEPTH - 1, G, item_of);
            int it = fc / G.NSB, sb = fc - it * G.NSB;
            const unsigned char *vb = smem_b + (size_t)item_of(it).vec * vbytes;
            const V9Buf &b = buf[d];
            /* warp-uniform: v2's exact two-multiply path only when a scale exceeds 2 */
            if (__any_sync(0xffffffffu, b.s0 > 128u || b.s1 > 128u))
                v9_mma_step<true>(acc, b, vb, lo_off, 4 * sb + G.t, G.g);
            else
                v9_mma_step<false>(acc, b, vb, lo_off, 4 * sb + G.t, G.g);
            if (sb == G.NSB - 1 || fc == f1 - 1) { /* the item ends here for this warp */
                if (G.t == 0) {
                    float *p = part + ((size_t)warp * nitems + it) * 16;
                    p[G.g] = acc[0] + acc[1];
                    p[G.g + 8] = acc[2] + acc[3];
                }
#pragma unroll
                for (int i = 0; i < 4; i++) acc[i] = 0.0f;
            }
        }
    }
}

/* Steps [f0, f1) of warp w among S. */
static __device__ __forceinline__ int v9_range(int w, int S) { return (int)(((long long)w * S) / V9_WARPS); }

/* Row rr of item it: the partials of the warps whose ranges meet the item, in warp order. */
static __device__ __forceinline__ float v9_row_sum(const float *part, int it, int rr, int S, int NSB, int nitems) {
    int lo = it * NSB, hi = lo + NSB;
    float v = 0.0f;
    for (int w = 0; w < V9_WARPS; w++) {
        int a = v9_range(w, S), b = v9_range(w + 1, S); /* empty ranges write nothing */
        if (a < b && a < hi && b > lo) v += part[((size_t)w * nitems + it) * 16 + rr];
    }
    return v;
}

/* grid (bx, T*k), 768 threads; block bx: tiles [bx*TPB, +TPB) of the 2I
 * interleaved gate/up rows of one token/expert pair. smem: one B vector,
 * 24 x TPB x 16 partials, the expert. */
__global__ void __launch_bounds__(V9_THREADS, 1) k_moe_gate_up_v9(
    const uint8_t *__restrict__ blocks, const uint8_t *__restrict__ scales,
    const float *__restrict__ bias, const float *__restrict__ h, const float *__restrict__ logits,
    int E, int *sel_e, float *sel_w, float *__restrict__ act, int k, int H, int I, float limit,
    float alpha, int TPB) {
    extern __shared__ __align__(128) unsigned char v9_smem[];
    const int NB = H / 32, NSB = (NB + 3) / 4, N = 2 * I, NT = (N + 15) / 16, vbytes = v9_vec_bytes(NSB);
    float *part = reinterpret_cast<float *>(v9_smem + vbytes);
    int *s_expert = reinterpret_cast<int *>(part + (size_t)V9_WARPS * TPB * 16);
    int pair_idx = blockIdx.y, tok = pair_idx / k, jsel = pair_idx % k;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    pdl_trigger();
    pdl_wait(); /* router logits / selection and h come from the predecessor */
    if (warp == 0) { /* one warp picks the expert for the block */
        int ew = moe_pair_expert(logits, E, k, tok, jsel, sel_e, sel_w);
        if (lane == 0) *s_expert = ew;
    }
    __syncthreads();
    const int e = *s_expert, tile0 = blockIdx.x * TPB, nt = min(TPB, NT - tile0), S = nt * NSB;
    V9Geo G = { NSB, NB, N, (size_t)NB * 16, lane >> 2, lane & 3 };
    const uint8_t *bexp = blocks + (size_t)e * N * G.rowbytes, *sexp = scales + (size_t)e * N * NB;
    auto item_of = [&](int it) { return V9Item{ bexp, sexp, (tile0 + it) * 16, 0 }; };
    int f0 = v9_range(warp, S), f1 = v9_range(warp + 1, S);
    V9Buf buf[V9_DEPTH];
#pragma unroll
    for (int i = 0; i < V9_DEPTH - 1; i++) /* the first weights are in flight while B is built */
        if (f0 + i < f1) v9_load(buf[i], f0 + i, G, item_of);
    v9_build_b(v9_smem, h + (size_t)tok * H, H, NSB);
    __syncthreads();
    v9_walk(buf, f0, f1, G, item_of, v9_smem, vbytes, part, nt, warp);
    __syncthreads();
    const float *be = bias + (size_t)e * N;
    float *out = act + (size_t)pair_idx * I;
    int i0 = tile0 * 8, i1 = min(I, (tile0 + nt) * 8);
    for (int i = i0 + threadIdx.x; i < i1; i += blockDim.x) {
        int r = 2 * i - tile0 * 16, it = r >> 4, rr = r & 15; /* gate rr, up rr + 1: same tile */
        float gt = v9_row_sum(part, it, rr, S, NSB, nt), up = v9_row_sum(part, it, rr + 1, S, NSB, nt);
        out[i] = swiglu(gt + be[2 * i], up + be[2 * i + 1], limit, alpha);
    }
}

/* grid (bx, T), 768 threads; block bx: output tiles [bx*TPB, +TPB) for all k
 * experts of token blockIdx.y (item j * nt + tile: expert j's B vector j).
 * smem: k B vectors, 24 x k*TPB x 16 partials. */
__global__ void __launch_bounds__(V9_THREADS, 1) k_moe_down_v9(
    const uint8_t *__restrict__ blocks, const uint8_t *__restrict__ scales,
    const float *__restrict__ bias, const float *__restrict__ act, const int *__restrict__ sel_e,
    const float *__restrict__ sel_w, float *x, int k, int H, int I, int TPB) {
    extern __shared__ __align__(128) unsigned char v9_smem[];
    const int NB = I / 32, NSB = (NB + 3) / 4, NT = (H + 15) / 16, vbytes = v9_vec_bytes(NSB);
    float *part = reinterpret_cast<float *>(v9_smem + (size_t)k * vbytes);
    int tok = blockIdx.y, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int tile0 = blockIdx.x * TPB, nt = min(TPB, NT - tile0), nitems = k * nt, S = nitems * NSB;
    V9Geo G = { NSB, NB, H, (size_t)NB * 16, lane >> 2, lane & 3 };
    pdl_trigger();
    pdl_wait(); /* selection, activations and x come from the predecessors */
    const int *se = sel_e + (size_t)tok * k;
    auto item_of = [&](int it) {
        int j = it / nt, e = __ldg(se + j);
        return V9Item{ blocks + (size_t)e * H * G.rowbytes, scales + (size_t)e * H * NB,
                       (tile0 + it - j * nt) * 16, j };
    };
    int f0 = v9_range(warp, S), f1 = v9_range(warp + 1, S);
    V9Buf buf[V9_DEPTH];
#pragma unroll
    for (int i = 0; i < V9_DEPTH - 1; i++)
        if (f0 + i < f1) v9_load(buf[i], f0 + i, G, item_of);
    for (int j = 0; j < k; j++) v9_build_b(v9_smem + (size_t)j * vbytes, act + ((size_t)tok * k + j) * I, I, NSB);
    __syncthreads();
    v9_walk(buf, f0, f1, G, item_of, v9_smem, vbytes, part, nitems, warp);
    __syncthreads();
    int r0 = tile0 * 16, r1 = min(H, (tile0 + nt) * 16);
    for (int r = r0 + threadIdx.x; r < r1; r += blockDim.x) {
        int tl = (r - r0) >> 4, rr = r & 15;
        float total = 0.0f;
        for (int j = 0; j < k; j++) { /* expert order, as v7 */
            float d = v9_row_sum(part, j * nt + tl, rr, S, NSB, nitems);
            total += sel_w[(size_t)tok * k + j] * (d + bias[(size_t)se[j] * H + r]);
        }
        x[(size_t)tok * H + r] += total;
    }
}

void cu_moe_decode_v9_init(void) {
    int sms, optin;
    cu_device_limits(&sms, &optin);
    g_v9_sms = sms;
    g_v9_smem_max = optin;
    cudaFuncSetAttribute(k_moe_gate_up_v9, cudaFuncAttributeMaxDynamicSharedMemorySize, optin);
    cudaFuncSetAttribute(k_moe_down_v9, cudaFuncAttributeMaxDynamicSharedMemorySize, optin);
    cudaGetLastError();
}

int cu_moe_gate_up_decode_v9(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                             const float *h, const float *norm_w, const float *logits, int E,
                             int *sel_e, float *sel_w, float *act, int T, int k, int H, int I,
                             float limit, float alpha, cudaStream_t s) {
    if (norm_w || H % 32 || H < 32 || k < 1 || k > CU_MAX_TOPK || T < 1 || I < 1) return 0;
    int NSB = (H / 32 + 3) / 4, P = T * k, bx, TPB;
    moe_tile_grid(g_v9_sms, (2 * I + 15) / 16, P, &bx, &TPB);
    size_t smem = (size_t)v9_vec_bytes(NSB) + (size_t)V9_WARPS * TPB * 16 * sizeof(float) + 16;
    if (smem > (size_t)g_v9_smem_max) return 0;
    cu_launch_serial(k_moe_gate_up_v9, dim3(bx, P), dim3(V9_THREADS), smem, s, blocks, scales, bias, h, logits,
                     E, sel_e, sel_w, act, k, H, I, limit, alpha, TPB);
    return 1;
}

int cu_moe_down_decode_v9(const uint8_t *blocks, const uint8_t *scales, const float *bias,
                          const float *act, const int *sel_e, const float *sel_w, float *x, int T,
                          int k, int H, int I, cudaStream_t s) {
    if (I % 32 || I < 32 || k < 1 || k > CU_MAX_TOPK || T < 1 || H < 1) return 0;
    int NSB = (I / 32 + 3) / 4, bx, TPB;
    moe_tile_grid(g_v9_sms, (H + 15) / 16, T, &bx, &TPB);
    size_t smem = (size_t)k * v9_vec_bytes(NSB) + (size_t)V9_WARPS * k * TPB * 16 * sizeof(float);
    if (smem > (size_t)g_v9_smem_max) return 0;
    cu_launch_serial(k_moe_down_v9, dim3(bx, T), dim3(V9_THREADS), smem, s, blocks, scales, bias, act, sel_e,
                     sel_w, x, k, H, I, TPB);
    return 1;
}
