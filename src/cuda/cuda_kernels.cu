/* cuda_kernels.cu - element-wise, normalisation, bf16 matvec, RoPE/KV and
 * attention kernels of the CUDA backend. Numerics: ../shared/docs/gpt-oss-spec.md
 * section 3 (fp32 accumulation everywhere). */
#include "cuda_internal.h"
#include "cuda_matvec.cuh"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ helpers */

/* Block-wide sum for blockDim.x a multiple of 32 (<= 1024). */
__device__ float block_sum(float v) {
    __shared__ float red[32];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) red[w] = v;
    __syncthreads();
    float t = lane < nw ? red[lane] : 0.0f;
    return warp_sum(t);
}

/* ------------------------------------------------------------ embed / norm */

__global__ void k_embed(const bf16 *embed, const int *tok, float *x, int H) {
    int t = blockIdx.x;
    const bf16 *row = embed + (size_t)tok[t] * H;
    for (int i = threadIdx.x; i < H; i += blockDim.x) x[(size_t)t * H + i] = __bfloat162float(row[i]);
}

void cu_embed(const bf16 *embed, const int *tok, float *x, int T, int H, cudaStream_t s) {
    k_embed<<<T, 256, 0, s>>>(embed, tok, x, H);
}

__device__ __forceinline__ void store_hi_lo(bf16 *hi, bf16 *lo, size_t i, float v) {
    bf16 h = __float2bfloat16_rn(v);
    if (hi) hi[i] = h;
    if (lo) lo[i] = __float2bfloat16_rn(v - __bfloat162float(h));
}

__global__ void k_rmsnorm(float *x, const float *add_bias, const float *w, float *out_f,
                          bf16 *out_b, bf16 *out_lo, const int *rows, int H, float eps) {
    int t = blockIdx.x;
    int r = rows ? rows[t] : t;
    float *xr = x + (size_t)r * H;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < H; i += blockDim.x) {
        float v = xr[i];
        if (add_bias) { v += add_bias[i]; xr[i] = v; }
        ss += v * v;
    }
    ss = block_sum(ss);
    float inv = rsqrtf(ss / (float)H + eps);
    for (int i = threadIdx.x; i < H; i += blockDim.x) {
        float y = xr[i] * inv * w[i];
        if (out_f) out_f[(size_t)t * H + i] = y;
        store_hi_lo(out_b, out_lo, (size_t)t * H + i, y);
    }
}

void cu_rmsnorm(float *x, const float *add_bias, const float *w, float *out_f, bf16 *out_b,
                bf16 *out_lo, const int *rows, int T, int H, float eps, cudaStream_t s) {
    k_rmsnorm<<<T, 256, 0, s>>>(x, add_bias, w, out_f, out_b, out_lo, rows, H, eps);
}

__global__ void k_f32_to_bf16(const float *in, bf16 *out, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = __float2bfloat16_rn(in[i]);
}

__global__ void k_split_bf16(const float *in, bf16 *hi, bf16 *lo, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) store_hi_lo(hi, lo, i, in[i]);
}

void cu_split_bf16(const float *in, bf16 *hi, bf16 *lo, size_t n, cudaStream_t s) {
    if (n) k_split_bf16<<<(unsigned)((n + 255) / 256), 256, 0, s>>>(in, hi, lo, n);
}

void cu_f32_to_bf16(const float *in, bf16 *out, size_t n, cudaStream_t s) {
    if (n) k_f32_to_bf16<<<(unsigned)((n + 255) / 256), 256, 0, s>>>(in, out, n);
}

__global__ void k_add_bias_rows(float *x, const float *bias, int N, int ld) {
    int t = blockIdx.y;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N; i += gridDim.x * blockDim.x)
        x[(size_t)t * ld + i] += bias[i];
}

void cu_add_bias_rows(float *x, const float *bias, int T, int N, int ld, cudaStream_t s) {
    dim3 g((N + 255) / 256 < 64 ? (N + 255) / 256 : 64, T);
    k_add_bias_rows<<<g, 256, 0, s>>>(x, bias, N, ld);
}

/* ----------------------------------------------------------- bf16 matvec
 * Warp per R rows; lanes stride the row in 16-byte chunks (8 bf16); the T
 * input vectors sit in shared memory as fp32. Four chunks per lane are loaded
 * before any is used, so 4*R 16-byte loads are in flight per lane. */
template <int T, int R>
__global__ void __launch_bounds__(256) k_matvec(const bf16 *__restrict__ W, int N, int K,
                                                const float *__restrict__ x,
                                                const float *__restrict__ bias,
                                                const float *resid, float *out, int ldo,
                                                const float *__restrict__ norm_w, float eps,
                                                float *xn_out) {
    extern __shared__ float4 xs4[]; /* [T][K/4] */
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int n0 = (blockIdx.x * 8 + warp) * R;
    const uint4 *wr[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        int n = n0 + r < N ? n0 + r : N - 1;
        wr[r] = reinterpret_cast<const uint4 *>(W + (size_t)n * K);
    }
    mv_first<R> f;
    mv_issue_first<R>(wr, K, f);
    pdl_trigger();
    pdl_wait(); /* x is the predecessor's output */
    /* the epilogue's operands are requested now: one memory latency less at
     * the end of the launch (the fifth session measured ~3.5 us of fixed cost
     * in each matvec launch of the decode graph; an empty kernel costs 0.8) */
    float bs[R], rs[R][T];
#pragma unroll
    for (int r = 0; r < R; r++) {
        int n = n0 + r < N ? n0 + r : N - 1;
        bs[r] = lane == 0 && bias ? bias[n] : 0.0f;
#pragma unroll
        for (int t = 0; t < T; t++) rs[r][t] = lane == 0 && resid ? resid[(size_t)t * ldo + n] : 0.0f;
    }
    mv_load_x<T>(xs4, x, K, norm_w, eps);
    if (xn_out && blockIdx.x == 0) /* the normalised input, for the next kernel */
        for (int i = threadIdx.x; i < T * K / 4; i += blockDim.x) reinterpret_cast<float4 *>(xn_out)[i] = xs4[i];
    if (n0 >= N) return;
    float acc[R][T];
    mv_rows<T, R>(wr, xs4, K, f, acc);
    pdl_trigger_end();
    if (lane == 0) {
#pragma unroll
        for (int r = 0; r < R; r++) {
            int n = n0 + r;
            if (n >= N) break;
#pragma unroll
            for (int t = 0; t < T; t++) {
                float v = acc[r][t];
                if (bias) v += bs[r];
                if (resid) v += rs[r][t];
                out[(size_t)t * ldo + n] = v;
            }
        }
    }
}

/* Small N (the router): block n computes row n with its 8 warps splitting K
 * (each warp's chunks are loaded before the input is staged), so that the
 * whole row arrives in about one memory latency instead of three rounds. */
template <int T>
__global__ void __launch_bounds__(256) k_matvec_splitk(const bf16 *__restrict__ W, int N, int K,
                                                       const float *__restrict__ x,
                                                       const float *__restrict__ bias,
                                                       const float *resid, float *out, int ldo,
                                                       const float *__restrict__ norm_w, float eps,
                                                       float *xn_out) {
    extern __shared__ float4 xs4[]; /* [T][K/4] */
    __shared__ float red[8][T];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n = blockIdx.x;
    int K4 = K / 4, K8 = K / 8, cpw = (K8 + 7) / 8;
    int c0 = warp * cpw, c1 = min(K8, c0 + cpw);
    const uint4 *wr = reinterpret_cast<const uint4 *>(W + (size_t)n * K);
    uint4 w[2];
#pragma unroll
    for (int u = 0; u < 2; u++) {
        int c = c0 + lane + 32 * u;
        w[u] = c < c1 ? ld_stream(wr + c) : make_uint4(0, 0, 0, 0);
    }
    pdl_trigger();
    pdl_wait(); /* x is the predecessor's output */
    float bs = 0.0f, rs = 0.0f; /* epilogue operands, requested early (see k_matvec) */
    if (threadIdx.x < T) {
        if (bias) bs = bias[n];
        if (resid) rs = resid[(size_t)threadIdx.x * ldo + n];
    }
    mv_load_x<T>(xs4, x, K, norm_w, eps);
    if (xn_out && blockIdx.x == 0)
        for (int i = threadIdx.x; i < T * K / 4; i += blockDim.x) reinterpret_cast<float4 *>(xn_out)[i] = xs4[i];
    float acc[1][T];
#pragma unroll
    for (int t = 0; t < T; t++) acc[0][t] = 0.0f;
#pragma unroll
    for (int u = 0; u < 2; u++) {
        int c = c0 + lane + 32 * u;
        if (c < c1) {
            uint4 one[1] = { w[u] };
            mv_fma8<T, 1>(acc, one, xs4, K4, c);
        }
    }
    for (int c = c0 + lane + 64; c < c1; c += 32) { /* K beyond 8 warps x 64 chunks */
        uint4 one[1] = { ld_stream(wr + c) };
        mv_fma8<T, 1>(acc, one, xs4, K4, c);
    }
    pdl_trigger_end();
#pragma unroll
    for (int t = 0; t < T; t++) {
        float v = warp_sum(acc[0][t]);
        if (lane == 0) red[warp][t] = v;
    }
    __syncthreads();
    if (threadIdx.x < T) {
        int t = threadIdx.x;
        float v = 0.0f;
        for (int i = 0; i < 8; i++) v += red[i][t];
        if (bias) v += bs;
        if (resid) v += rs;
        out[(size_t)t * ldo + n] = v;
    }
}

template <int T, int R>
static void launch_matvec(const bf16 *W, int N, int K, const float *x, const float *bias,
                          const float *resid, float *out, int ldo, const float *norm_w, float eps,
                          float *xn_out, cudaStream_t s) {
    size_t smem = (size_t)T * K * sizeof(float);
    int rows_per_block = 8 * R;
    cu_launch(k_matvec<T, R>, dim3((N + rows_per_block - 1) / rows_per_block), dim3(256), smem, s,
              W, N, K, x, bias, resid, out, ldo, norm_w, eps, xn_out);
}

template <int T, int R> static void config_matvec(void) {
    cudaFuncSetAttribute(k_matvec<T, R>, cudaFuncAttributeMaxDynamicSharedMemorySize, 160 * 1024);
    if (R == 1)
        cudaFuncSetAttribute(k_matvec_splitk<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, 160 * 1024);
}

int g_cu_pdl = 0;
static int g_attn_split = 32; /* decode split-KV length (GPTOSS_CUDA_ATTN_SPLIT) */
int g_cu_pdl_late = 0;

void cu_device_limits(int *sms, int *smem_optin) {
    int dev = 0;
    *sms = 132;
    *smem_optin = 48 * 1024;
    if (cudaGetDevice(&dev) == cudaSuccess) {
        if (cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || *sms < 1)
            *sms = 132;
        if (cudaDeviceGetAttribute(smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess)
            *smem_optin = 48 * 1024;
    }
    cudaGetLastError();
}

int cu_device_major(void) {
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return major;
}

void cu_kernels_init(void) {
    int major = cu_device_major();
    const char *pdl = getenv("GPTOSS_CUDA_PDL");
    if (major)
        g_cu_pdl = major < 9 ? 0 : !pdl || !strcmp(pdl, "3") || !strcmp(pdl, "2") ? 2 : !strcmp(pdl, "1") ? 1 : 0;
    /* level 3 (the default on sm_90+): every decode kernel launched with PDL,
     * the successor released after the main loop; 2: released at the start;
     * 1: as 2 without the v7 MoE kernels; 0 (GPTOSS_CUDA_PDL=0): no PDL */
    g_cu_pdl_late = g_cu_pdl == 2 && !(pdl && !strcmp(pdl, "2"));
    pdl_mode_upload();
    {
        const char *sp = getenv("GPTOSS_CUDA_ATTN_SPLIT");
        int v = sp ? atoi(sp) : 32;
        g_attn_split = v == 0 ? 0 : v < 32 ? 32 : v > 4096 ? 4096 : v;
    }
    cudaGetLastError();
    config_matvec<1, 1>(); config_matvec<2, 1>(); config_matvec<3, 1>(); config_matvec<4, 1>();
    config_matvec<1, 2>(); config_matvec<1, 4>(); config_matvec<2, 2>(); config_matvec<2, 4>();
    config_matvec<3, 2>(); config_matvec<3, 4>(); config_matvec<4, 2>(); config_matvec<4, 4>();
    cu_decode_init();
    cu_attn_decode_init();
    cu_moe_decode_init();
    cu_moe_gemm_init();
}

void cu_matvec_bf16(const bf16 *W, int N, int K, const float *x, int T, const float *bias,
                    const float *resid, float *out, int ldo, cudaStream_t s) {
    cu_matvec_norm_bf16(W, N, K, x, T, bias, resid, out, ldo, NULL, 0.0f, NULL, s);
}

void cu_matvec_norm_bf16(const bf16 *W, int N, int K, const float *x, int T, const float *bias,
                         const float *resid, float *out, int ldo, const float *norm_w, float eps,
                         float *xn_out, cudaStream_t s) {
    /* rows per warp: 4 for the vocabulary, 1 up to 8192 rows (more blocks:
     * o_proj's 2880 rows fill 360 blocks), K split over a block's warps for
     * tiny matrices (router) */
    int rpw = N >= 65536 ? 4 : N <= 8192 ? 1 : 2;
    bool splitk = N <= 128 && K % 8 == 0;
#define MV(TT)                                                                              \
    case TT:                                                                                \
        if (splitk)                                                                         \
            cu_launch(k_matvec_splitk<TT>, dim3(N), dim3(256), (size_t)TT * K * sizeof(float), s, W, N, K, \
                      x, bias, resid, out, ldo, norm_w, eps, xn_out);                       \
        else if (rpw == 4) launch_matvec<TT, 4>(W, N, K, x, bias, resid, out, ldo, norm_w, eps, xn_out, s); \
        else if (rpw == 2) launch_matvec<TT, 2>(W, N, K, x, bias, resid, out, ldo, norm_w, eps, xn_out, s); \
        else launch_matvec<TT, 1>(W, N, K, x, bias, resid, out, ldo, norm_w, eps, xn_out, s);       \
        break;
    switch (T) {
        MV(1) MV(2) MV(3) MV(4)
    default: break;
    }
#undef MV
}

/* ---------------------------------------------------------------- RoPE / KV */

__global__ void k_rope_kv(float *qkv, const float *bias, const float *inv_freq, float conc,
                          const int *pos, const int *slot, kv_t *kc, kv_t *vc, int cap, int nh,
                          int nkv, int hd) {
    int t = blockIdx.x;
    int width = (nh + 2 * nkv) * hd, half = hd / 2;
    float *row = qkv + (size_t)t * width;
    int p = pos[t];
    if (bias) {
        for (int i = threadIdx.x; i < width; i += blockDim.x) row[i] += bias[i];
        __syncthreads();
    }
    size_t base = ((size_t)slot[t] * cap + (size_t)(p % cap)) * (size_t)(nkv * hd);
    /* q and k heads: pairs (i, i+half) */
    int npairs = (nh + nkv) * half;
    for (int j = threadIdx.x; j < npairs; j += blockDim.x) {
        int head = j / half, i = j % half;
        float ang = (float)p * inv_freq[i];
        float sn, cs;
        sincosf(ang, &sn, &cs);
        cs *= conc; sn *= conc;
        float *hp = row + head * hd;
        float x1 = hp[i], x2 = hp[i + half];
        float o1 = x1 * cs - x2 * sn, o2 = x2 * cs + x1 * sn;
        hp[i] = o1; hp[i + half] = o2;
        if (head >= nh) {
            int kh = head - nh;
            kc[base + kh * hd + i] = o1;
            kc[base + kh * hd + i + half] = o2;
        }
    }
    const float *v = row + (nh + nkv) * hd;
    for (int i = threadIdx.x; i < nkv * hd; i += blockDim.x) vc[base + i] = v[i];
}

void cu_rope_kv(float *qkv, const float *bias, const float *inv_freq, float conc, const int *pos,
                const int *slot, kv_t *kc, kv_t *vc, int cap, int T, int nh, int nkv, int hd,
                cudaStream_t s) {
    k_rope_kv<<<T, 256, 0, s>>>(qkv, bias, inv_freq, conc, pos, slot, kc, vc, cap, nh, nkv, hd);
}

/* ---------------------------------------------------------------- attention
 * Block = (token, kv head, split); one warp per query head of the group.
 * Keys are processed 32 at a time: K/V tiles go to shared memory, lane j
 * scores key j, the warp keeps an online softmax whose state starts at the
 * sink (split 0 only), and each lane accumulates the output dims d = lane + 32i.
 * With several splits, partials (m, l, o[hd]) go to `part` and k_attn_combine
 * merges them. */
template <int HD>
__global__ void k_attention(cu_attn_args a, int nsplit, int split_len) {
    constexpr int KP = HD + 4;              /* padded fp32 row: conflict-free 16-byte reads */
    constexpr int ND = (HD + 31) / 32;      /* output dims per lane */
    extern __shared__ __align__(16) unsigned char smem_raw[];
    int G = a.nh / a.nkv;
    float *qs = reinterpret_cast<float *>(smem_raw);                 /* [G][HD] */
    float *ks = qs + G * HD;                                         /* [32][KP] */
    float *vs = ks + 32 * KP;                                        /* [32][KP] */

    int t = blockIdx.x, kvh = blockIdx.y, z = blockIdx.z;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    int h = kvh * G + w;
    pdl_trigger();
    pdl_wait(); /* q and this token's K/V come from the predecessor */
    int p = a.pos[t];
    int lo = a.window > 0 ? max(0, p - a.window + 1) : 0;
    int begin = lo + z * split_len, end = min(p + 1, lo + (z + 1) * split_len);

    for (int i = threadIdx.x; i < G * HD; i += blockDim.x)
        qs[i] = a.q[(size_t)t * a.ldq + kvh * G * HD + i];

    const float scale = rsqrtf((float)HD);
    float m, l;
    if (z == 0) { m = a.sinks[h]; l = 1.0f; } else { m = -1e30f; l = 0.0f; }
    float o[ND];
#pragma unroll
    for (int i = 0; i < ND; i++) o[i] = 0.0f;

    size_t kvw = (size_t)a.nkv * HD;
    const kv_t *kbase = a.kc + (size_t)a.slot[t] * a.cap * kvw + kvh * HD;
    const kv_t *vbase = a.vc + (size_t)a.slot[t] * a.cap * kvw + kvh * HD;
    const float *qw = qs + w * HD;

    for (int k0 = begin; k0 < end; k0 += 32) {
        __syncthreads();
        /* tile load: 32 keys x HD floats for K and V, 16-byte chunks */
        constexpr int CPR = HD / 4; /* chunks per row */
        for (int c = threadIdx.x; c < 32 * CPR; c += blockDim.x) {
            int j = c / CPR, part = c % CPR;
            int key = k0 + j;
            float4 kv = make_float4(0, 0, 0, 0), vv = make_float4(0, 0, 0, 0);
            if (key < end) {
                size_t off = (size_t)(key % a.cap) * kvw + part * 4;
                kv = *reinterpret_cast<const float4 *>(kbase + off);
                vv = *reinterpret_cast<const float4 *>(vbase + off);
            }
            *reinterpret_cast<float4 *>(ks + j * KP + part * 4) = kv;
            *reinterpret_cast<float4 *>(vs + j * KP + part * 4) = vv;
        }
        __syncthreads();
        int key = k0 + lane;
        float sc = -1e30f;
        if (key < end) {
            float d = 0.0f;
            const float4 *kr = reinterpret_cast<const float4 *>(ks + lane * KP);
            const float4 *q4 = reinterpret_cast<const float4 *>(qw);
#pragma unroll
            for (int c = 0; c < HD / 4; c++) {
                float4 kk = kr[c], qq = q4[c];
                d = fmaf(kk.x, qq.x, d); d = fmaf(kk.y, qq.y, d);
                d = fmaf(kk.z, qq.z, d); d = fmaf(kk.w, qq.w, d);
            }
            sc = d * scale;
        }
        float mnew = fmaxf(m, warp_max(sc));
        float corr = __expf(m - mnew);
        float pj = key < end ? __expf(sc - mnew) : 0.0f;
        l = l * corr + warp_sum(pj);
        m = mnew;
#pragma unroll
        for (int i = 0; i < ND; i++) o[i] *= corr;
        int nk = min(32, end - k0);
        for (int j = 0; j < nk; j++) {
            float pb = __shfl_sync(0xffffffffu, pj, j);
#pragma unroll
            for (int i = 0; i < ND; i++) {
                int d = lane + 32 * i;
                if (d < HD) o[i] = fmaf(pb, vs[j * KP + d], o[i]);
            }
        }
    }
    pdl_trigger_end();
    if (nsplit == 1) {
        float inv = 1.0f / l;
#pragma unroll
        for (int i = 0; i < ND; i++) {
            int d = lane + 32 * i;
            if (d < HD) {
                size_t idx = (size_t)t * a.nh * HD + (size_t)h * HD + d;
                if (a.out) a.out[idx] = o[i] * inv;
                store_hi_lo(a.out_b, a.out_lo, idx, o[i] * inv);
            }
        }
    } else {
        float *pp = a.part + (((size_t)t * a.nh + h) * nsplit + z) * (HD + 2);
        if (lane == 0) { pp[0] = m; pp[1] = l; }
#pragma unroll
        for (int i = 0; i < ND; i++) {
            int d = lane + 32 * i;
            if (d < HD) pp[2 + d] = o[i];
        }
    }
}

__global__ void k_attn_combine(cu_attn_args a, int nsplit, int hd) {
    int t = blockIdx.x, h = blockIdx.y;
    pdl_trigger();
    pdl_wait();
    pdl_trigger_end(); /* tiny: the successor may start at once */
    const float *pp = a.part + ((size_t)t * a.nh + h) * nsplit * (hd + 2);
    float M = -1e30f;
    for (int z = 0; z < nsplit; z++) M = fmaxf(M, pp[z * (hd + 2)]);
    float L = 0.0f;
    for (int z = 0; z < nsplit; z++) L += pp[z * (hd + 2) + 1] * __expf(pp[z * (hd + 2)] - M);
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float acc = 0.0f;
        for (int z = 0; z < nsplit; z++)
            acc += pp[z * (hd + 2) + 2 + d] * __expf(pp[z * (hd + 2)] - M);
        size_t idx = (size_t)t * a.nh * hd + (size_t)h * hd + d;
        if (a.out) a.out[idx] = acc / L;
        store_hi_lo(a.out_b, a.out_lo, idx, acc / L);
    }
}

template <int HD>
static void launch_attention(const cu_attn_args *a, cudaStream_t s) {
    int G = a->nh / a->nkv;
    int keys = a->max_keys < 1 ? 1 : a->max_keys;
    /* decode (few tokens): short splits so that many blocks share the keys;
     * prefill: the token dimension already fills the machine.
     * GPTOSS_CUDA_ATTN_SPLIT=n sets the decode split length (default 32, one
     * key tile per block: 521.5-522.7 tok/s on the 20b against 507.0-507.2
     * with 64, 492 with 128, 471 with 256, same call); 0 = one split up to 128
     * keys (a sliding layer: no combine launch), else 64 (slower) */
    int chunk = a->T > CU_DECODE_MAX_T ? 256 : g_attn_split > 0 ? g_attn_split : keys <= 128 ? 128 : 64;
    int nsplit = (keys + chunk - 1) / chunk;
    size_t per_split = (size_t)a->T * a->nh * (HD + 2);
    size_t cap_split = per_split ? a->part_floats / per_split : 1;
    if ((size_t)nsplit > cap_split) nsplit = (int)cap_split;
    if (nsplit > 1024) nsplit = 1024;
    if (nsplit < 1) nsplit = 1;
    int split_len = (keys + nsplit - 1) / nsplit;
    split_len = (split_len + 31) / 32 * 32;
    nsplit = (keys + split_len - 1) / split_len;
    size_t smem = (size_t)G * HD * 4 + 2 * 32 * (HD + 4) * sizeof(float);
    dim3 grid(a->T, a->nkv, nsplit);
    cu_launch(k_attention<HD>, grid, dim3(32 * G), smem, s, *a, nsplit, split_len);
    if (nsplit > 1) cu_launch(k_attn_combine, dim3(a->T, a->nh), dim3(64), 0, s, *a, nsplit, HD);
}

void cu_attention(const cu_attn_args *a, cudaStream_t s) {
    if (cu_attention_tc(a, s)) return; /* prefill hook: cuda_attn_prefill.cu (default; GPTOSS_CUDA_ATTN=v1: the kernels below) */
    if (cu_attention_cluster(a, s)) return; /* decode on sm_90: cuda_attn_decode.cu */
    switch (a->hd) {
    case 8: launch_attention<8>(a, s); break;
    case 16: launch_attention<16>(a, s); break;
    case 24: launch_attention<24>(a, s); break;
    case 48: launch_attention<48>(a, s); break;
    case 80: launch_attention<80>(a, s); break;
    case 96: launch_attention<96>(a, s); break;
    case 32: launch_attention<32>(a, s); break;
    case 64: launch_attention<64>(a, s); break;
    case 128: launch_attention<128>(a, s); break;
    default: break;
    }
}

/* --------------------------------------------------------------- router top-k
 * Warp per token: k rounds of arg-max (lowest index on ties), softmax over the
 * chosen logits. E <= 256. */
__global__ void k_topk(const float *logits, const float *bias, int T, int E, int k, int *sel_e,
                       float *sel_w) {
    int t = blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
    if (t >= T) return;
    int sel[CU_MAX_TOPK];
    float w[CU_MAX_TOPK];
    cu_warp_topk(logits + (size_t)t * E, bias, E, k, sel, w);
    if ((threadIdx.x & 31) == 0)
        for (int r = 0; r < k; r++) {
            sel_e[t * k + r] = sel[r];
            sel_w[t * k + r] = w[r];
        }
}

void cu_topk(const float *logits, const float *bias, int T, int E, int k, int *sel_e, float *sel_w,
             cudaStream_t s) {
    k_topk<<<(T + 3) / 4, 128, 0, s>>>(logits, bias, T, E, k, sel_e, sel_w);
}
