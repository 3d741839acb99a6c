/* cuda_decode.cu - fused decode kernels: RMSNorm + QKV matvec + bias + RoPE +
 * KV-cache write in one launch (T <= 4 tokens). A warp computes the two rows
 * (i, i + head_dim/2) of one head, so the rotation needs no other warp. */
#include "cuda_internal.h"
#include "cuda_matvec.cuh"

#include <stdlib.h>
#include <string.h>

/* 1: the successor (attention, which requests earlier passes' keys before
 * its wait) may launch when this kernel starts (GPTOSS_CUDA_QKV_RELEASE=start);
 * 0: as every decode kernel (c_pdl_late) */
static __constant__ int c_qkv_start;

template <int T>
__global__ void __launch_bounds__(256) k_qkv_rope(const bf16 *__restrict__ W, int K,
                                                  const float *__restrict__ x,
                                                  const float *__restrict__ norm_w, float eps,
                                                  const float *__restrict__ bias,
                                                  const float *__restrict__ inv_freq, float conc,
                                                  const int *__restrict__ pos,
                                                  const int *__restrict__ slot, kv_t *kc, kv_t *vc,
                                                  int cap, int nh, int nkv, int hd, float *qkv) {
    extern __shared__ float4 xs4[];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int half = hd / 2, width = (nh + 2 * nkv) * hd, npairs = (nh + 2 * nkv) * half;
    int pi = blockIdx.x * 8 + warp;
    int pc = pi < npairs ? pi : npairs - 1;
    int head = pc / half, i = pc % half;
    int r1 = head * hd + i, r2 = r1 + half;
    const uint4 *const wr[2] = { reinterpret_cast<const uint4 *>(W + (size_t)r1 * K),
                                 reinterpret_cast<const uint4 *>(W + (size_t)r2 * K) };
    mv_first<2> f;
    mv_issue_first<2>(wr, K, f);
    if (c_qkv_start) pdl_launch_dependents();
    else pdl_trigger();
    pdl_wait(); /* x is the predecessor's output */
    /* lane t < T: its token's epilogue operands (bias, position, rotation,
     * slot) before the matvec, not after it (one memory latency less) */
    float b1 = 0.0f, b2 = 0.0f, sn = 0.0f, cs = 1.0f;
    int p = 0, sl = 0;
    if (lane < T && pi < npairs) {
        b1 = bias ? bias[r1] : 0.0f;
        b2 = bias ? bias[r2] : 0.0f;
        p = pos[lane];
        sl = slot[lane];
        if (head < nh + nkv) {
            sincosf((float)p * inv_freq[i], &sn, &cs);
            cs *= conc; sn *= conc;
        }
    }
    mv_load_x<T>(xs4, x, K, norm_w, eps);
    if (pi >= npairs) return;
    float acc[2][T];
    mv_rows<T, 2>(wr, xs4, K, f, acc);
    if (!c_qkv_start) pdl_trigger_end();
#pragma unroll
    for (int t = 0; t < T; t++) {
        if (lane != t) continue;
        float v1 = acc[0][t] + b1, v2 = acc[1][t] + b2;
        if (head < nh + nkv) {
            float o1 = v1 * cs - v2 * sn, o2 = v2 * cs + v1 * sn;
            v1 = o1; v2 = o2;
        }
        qkv[(size_t)t * width + r1] = v1;
        qkv[(size_t)t * width + r2] = v2;
        if (head >= nh) {
            size_t base = ((size_t)sl * cap + (size_t)(p % cap)) * (size_t)(nkv * hd);
            kv_t *dst = head < nh + nkv ? kc + base + (size_t)(head - nh) * hd
                                        : vc + base + (size_t)(head - nh - nkv) * hd;
            dst[i] = v1;
            dst[i + half] = v2;
        }
    }
}

template <int T> static void config_qkv(void) {
    cudaFuncSetAttribute(k_qkv_rope<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, 160 * 1024);
}

void cu_decode_init(void) {
    pdl_mode_upload();
    const char *rel = getenv("GPTOSS_CUDA_QKV_RELEASE");
    int start = rel && !strcmp(rel, "start");
    cudaMemcpyToSymbol(c_qkv_start, &start, sizeof start);
    config_qkv<1>(); config_qkv<2>(); config_qkv<3>(); config_qkv<4>();
}

void cu_qkv_rope(const bf16 *W, int K, const float *x, const float *norm_w, float eps,
                 const float *bias, const float *inv_freq, float conc, const int *pos,
                 const int *slot, kv_t *kc, kv_t *vc, int cap, int T, int nh, int nkv, int hd,
                 float *qkv, cudaStream_t s) {
    int pairs = (nh + 2 * nkv) * (hd / 2);
    dim3 grid((pairs + 7) / 8);
    size_t smem = (size_t)T * K * sizeof(float);
#define QK(TT) \
    case TT: cu_launch(k_qkv_rope<TT>, grid, dim3(256), smem, s, W, K, x, norm_w, eps, bias, inv_freq, \
                       conc, pos, slot, kc, vc, cap, nh, nkv, hd, qkv); break;
    switch (T) {
        QK(1) QK(2) QK(3) QK(4)
    default: break;
    }
#undef QK
}
