/* cuda_matvec.cuh - device helpers shared by the decode kernels: warp
 * reductions, streaming loads, and the bf16 matvec core (T <= 4 input vectors
 * in shared memory, R rows per warp). */
#ifndef GPTOSS_CUDA_MATVEC_CUH
#define GPTOSS_CUDA_MATVEC_CUH

#include "cuda_internal.h"

static __device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
static __device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Programmatic dependent launch (see cu_launch): wait for the predecessor
 * grid's completion and memory; let the successor grid start its prologue.
 * Both are no-ops when the kernel was launched without the attribute. */
static __device__ __forceinline__ void pdl_wait(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
/* c_pdl_late (this translation unit's copy, set by pdl_mode_upload from
 * g_cu_pdl_late): 0 = the successor may launch when this kernel starts
 * (pdl_trigger at the top), 1 = only when its main work is done
 * (pdl_trigger_end after the loop), so that at most one waiting grid holds
 * multiprocessor resources next to a running one. */
static __constant__ int c_pdl_late;
static inline void pdl_mode_upload(void) {
    int late = g_cu_pdl_late;
    cudaMemcpyToSymbol(c_pdl_late, &late, sizeof late);
}
static __device__ __forceinline__ void pdl_launch_dependents(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}
static __device__ __forceinline__ void pdl_trigger(void) {
    if (!c_pdl_late) pdl_launch_dependents();
}
static __device__ __forceinline__ void pdl_trigger_end(void) {
    if (c_pdl_late) pdl_launch_dependents();
}

/* Thread-block clusters (sm_90+; launched with cu_launch_cluster, which
 * callers only use on such devices). cluster_sync: every thread of every
 * block of the cluster arrives; shared-memory writes before it are visible
 * to the cluster's blocks after it. ld_cluster_f32: a float at the same
 * shared-memory offset as `local`, in the block of cluster rank `rank`. */
static __device__ __forceinline__ void cluster_sync(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
#endif
}
static __device__ __forceinline__ float ld_cluster_f32(const float *local, unsigned rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    uint32_t a = (uint32_t)__cvta_generic_to_shared(local), r;
    float v;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(rank));
    asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(r) : "memory");
    return v;
#else
    (void)rank;
    return *local;
#endif
}

/* Streaming 16-byte load that skips L1 (weights are read once per step).
 * (An L2 evict-first policy on these loads, createpolicy + .L2::cache_hint,
 * measured 2-4 % slower than this plain form in the fifth session.) */
static __device__ __forceinline__ uint4 ld_stream(const void *p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    return r;
}

/* cp.async (sm_80+): 16 bytes (L2 only) or 4 bytes global -> shared, the
 * bytes past `bytes` zero-filled (0: all zeros); commit a group; wait until
 * at most N groups are pending; commit and wait for all. */
static __device__ __forceinline__ void cu_cp16(uint32_t smem, const void *gmem, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem), "l"(gmem), "r"(bytes));
}
static __device__ __forceinline__ void cu_cp16(void *smem, const void *gmem, int bytes) {
    cu_cp16((uint32_t)__cvta_generic_to_shared(smem), gmem, bytes);
}
static __device__ __forceinline__ void cu_cp4(uint32_t smem, const void *gmem, int bytes) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem), "l"(gmem), "r"(bytes));
}
static __device__ __forceinline__ void cu_cp4(void *smem, const void *gmem, int bytes) {
    cu_cp4((uint32_t)__cvta_generic_to_shared(smem), gmem, bytes);
}
static __device__ __forceinline__ void cu_cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> static __device__ __forceinline__ void cu_cp_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
static __device__ __forceinline__ void cu_cp_wait_all() {
    asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;" ::: "memory");
}

/* PTX prmt without the selector masking __byte_perm adds: bit 3 of a
 * selector nibble then replicates the sign of the chosen byte. */
static __device__ __forceinline__ uint32_t cu_prmt(uint32_t a, uint32_t b, uint32_t c) {
    uint32_t d;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

/* E8M0 scale byte -> 2^(s-127) (s = 0 gives the denormal 2^-127). */
static __device__ __forceinline__ float e8m0_scale(uint32_t s) {
    return s ? __uint_as_float(s << 23) : __uint_as_float(0x00400000u);
}

/* gpt-oss clamped SwiGLU: gate capped at limit, up clamped to +-limit, the +1 on up. */
static __device__ __forceinline__ float swiglu(float gate, float up, float limit, float alpha) {
    gate = fminf(gate, limit);
    up = fminf(fmaxf(up, -limit), limit);
    return gate / (1.0f + expf(-alpha * gate)) * (up + 1.0f);
}

static __device__ __forceinline__ float bf_lo(uint32_t u) { return __uint_as_float(u << 16); }
static __device__ __forceinline__ float bf_hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }

/* xs4 <- x [T][K] (fp32), RMS-normalised and scaled by norm_w when non-NULL.
 * Ends with __syncthreads(). blockDim.x == 256. (Batching the loads of this
 * staging, 8 per thread before any store, measured 2.7 % slower overall.) */
template <int T>
static __device__ __forceinline__ void mv_load_x(float4 *xs4, const float *x, int K,
                                                 const float *norm_w, float eps) {
    __shared__ float red[8][T];
    int K4 = K / 4;
    if (!norm_w) {
        for (int i = threadIdx.x; i < T * K4; i += blockDim.x)
            xs4[i] = reinterpret_cast<const float4 *>(x)[i];
        __syncthreads();
        return;
    }
    float ss[T];
#pragma unroll
    for (int t = 0; t < T; t++) ss[t] = 0.0f;
#pragma unroll
    for (int t = 0; t < T; t++)
        for (int i = threadIdx.x; i < K4; i += blockDim.x) {
            float4 v = reinterpret_cast<const float4 *>(x)[t * K4 + i];
            xs4[t * K4 + i] = v;
            ss[t] += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
        }
#pragma unroll
    for (int t = 0; t < T; t++) {
        float v = warp_sum(ss[t]);
        if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5][t] = v;
    }
    __syncthreads();
    float inv[T];
#pragma unroll
    for (int t = 0; t < T; t++) {
        float v = 0.0f;
        for (int w = 0; w < (int)(blockDim.x >> 5); w++) v += red[w][t];
        inv[t] = rsqrtf(v / (float)K + eps);
    }
#pragma unroll
    for (int t = 0; t < T; t++)
        for (int i = threadIdx.x; i < K4; i += blockDim.x) {
            float4 v = xs4[t * K4 + i], g = reinterpret_cast<const float4 *>(norm_w)[i];
            v.x *= inv[t] * g.x; v.y *= inv[t] * g.y; v.z *= inv[t] * g.z; v.w *= inv[t] * g.w;
            xs4[t * K4 + i] = v;
        }
    __syncthreads();
}

template <int T, int R>
static __device__ __forceinline__ void mv_fma8(float (&acc)[R][T], const uint4 (&w)[R],
                                               const float4 *xs4, int K4, int c) {
#pragma unroll
    for (int t = 0; t < T; t++) {
        float4 a = xs4[t * K4 + 2 * c], b = xs4[t * K4 + 2 * c + 1];
#pragma unroll
        for (int r = 0; r < R; r++) {
            uint4 q = w[r];
            float s = acc[r][t];
            s = fmaf(bf_lo(q.x), a.x, s); s = fmaf(bf_hi(q.x), a.y, s);
            s = fmaf(bf_lo(q.y), a.z, s); s = fmaf(bf_hi(q.y), a.w, s);
            s = fmaf(bf_lo(q.z), b.x, s); s = fmaf(bf_hi(q.z), b.y, s);
            s = fmaf(bf_lo(q.w), b.z, s); s = fmaf(bf_hi(q.w), b.w, s);
            acc[r][t] = s;
        }
    }
}

/* The first four 16-byte chunks per row of this lane (chunks lane + 32u),
 * issued before the input vector is staged so that their latency overlaps it. */
template <int R> struct mv_first {
    uint4 w[4][R];
};

template <int R>
static __device__ __forceinline__ void mv_issue_first(const uint4 *const (&wr)[R], int K,
                                                      mv_first<R> &f) {
    int K8 = K / 8, lane = threadIdx.x & 31;
#pragma unroll
    for (int u = 0; u < 4; u++)
#pragma unroll
        for (int r = 0; r < R; r++)
            f.w[u][r] = lane + 32 * u < K8 ? ld_stream(wr[r] + lane + 32 * u) : make_uint4(0, 0, 0, 0);
}

/* acc[r][t] = W_row[r] . x[t], reduced over the warp (every lane holds it).
 * Lanes stride the rows in 16-byte chunks; a round loads four chunks per row
 * (4*R loads in flight per lane) before any is used, the last round
 * predicated (no serial tail of single loads); the first round comes from
 * mv_issue_first. */
template <int T, int R>
static __device__ __forceinline__ void mv_rows(const uint4 *const (&wr)[R], const float4 *xs4, int K,
                                               const mv_first<R> &f, float (&acc)[R][T]) {
    int K4 = K / 4, K8 = K / 8, lane = threadIdx.x & 31;
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < T; t++) acc[r][t] = 0.0f;
#pragma unroll
    for (int u = 0; u < 4; u++)
        if (lane + 32 * u < K8) mv_fma8<T, R>(acc, f.w[u], xs4, K4, lane + 32 * u);
    for (int c = lane + 128; c - lane < K8; c += 128) {
        uint4 w[4][R];
#pragma unroll
        for (int u = 0; u < 4; u++)
#pragma unroll
            for (int r = 0; r < R; r++)
                w[u][r] = c + 32 * u < K8 ? ld_stream(wr[r] + c + 32 * u) : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int u = 0; u < 4; u++)
            if (c + 32 * u < K8) mv_fma8<T, R>(acc, w[u], xs4, K4, c + 32 * u);
    }
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < T; t++) acc[r][t] = warp_sum(acc[r][t]);
}

#endif
