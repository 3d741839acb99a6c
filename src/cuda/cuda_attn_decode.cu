/* cuda_attn_decode.cu - decode attention (T <= CU_DECODE_MAX_T tokens) in
 * thread-block clusters: split-KV with the merge of the splits inside the
 * launch (sm_90+; GPTOSS_CUDA_ATTN_CLUSTER=0 turns it off).
 *
 * Why: k_attention (cuda_kernels.cu) splits the keys into 32-key blocks and
 * k_attn_combine merges the partials in a second launch: for ~1 MB of keys
 * per layer the pair took ~5.8 us above two empty launches (eighth session).
 * Here the Z splits of one (token, KV head) form one cluster (1, 1, Z); each
 * block scores its keys (all loaded in one pass, at most KMAX), keeps its
 * per-head partial (m, l, o[HD]) in shared memory, and after a cluster
 * barrier block z merges the heads w with w % Z == z by reading the Z
 * partials through distributed shared memory. A second barrier keeps every
 * partial alive until the others have read it.
 *
 * The splits follow the token's own key count (n keys: splits of ceil(n / Z)),
 * so a 640-key decode step uses 40 keys a block, not the graph bucket's.
 * Numerics as k_attention: fp32 scores and online softmax per split, the sink
 * in split 0, the merge M = max m, L = sum l e^(m - M), out = sum o e^(m - M) / L. */
#include "cuda_internal.h"
#include "cuda_matvec.cuh"

#include <stdlib.h>
#include <string.h>

#define AD_HD 64     /* head_dim covered (gpt-oss) */
#define AD_KMAX 64   /* keys per block */
#define AD_ZMAX 16   /* splits per cluster (above 8: a non-portable cluster size) */
#define AD_KP (AD_HD + 4) /* padded fp32 key row: conflict-free 16-byte reads */

static int g_ad_on = -1; /* -1: cu_attn_decode_init not run yet */
/* 1: the keys of earlier passes are requested before griddepcontrol.wait
 * (GPTOSS_CUDA_ATTN_EARLY=0: after it, as everything else) */
static __constant__ int c_ad_early;
/* 1: o_proj may launch when this kernel starts (GPTOSS_CUDA_ATTN_RELEASE=start) */
static __constant__ int c_ad_start;
/* keys a block aims at (GPTOSS_CUDA_ATTN_CL_KEYS, 16..64; the cluster has up to 16 blocks) */
static int g_ad_keys = 32;
static int g_ad_cap[AD_ZMAX + 1]; /* clusters of Z blocks (256 threads) resident at once; 0 = refused */

/* grid (T, nkv, Z), cluster (1, 1, Z), G warps (one per query head of the
 * KV head). Shared memory: q [G][HD], K and V [KMAX][KP], partials
 * [G][HD + 2] (m, l, o). */
__global__ void __launch_bounds__(256) k_attn_decode_cl(cu_attn_args a) {
    extern __shared__ __align__(16) unsigned char ad_shm[];
    const int G = a.nh / a.nkv, Z = gridDim.z;
    float *qs = reinterpret_cast<float *>(ad_shm);  /* [G][HD] */
    float *ks = qs + G * AD_HD;                       /* [KMAX][KP] */
    float *vs = ks + AD_KMAX * AD_KP;                 /* [KMAX][KP] */
    float *ps = vs + AD_KMAX * AD_KP;                 /* [G][HD + 2] */
    int t = blockIdx.x, kvh = blockIdx.y, z = blockIdx.z;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, h = kvh * G + w;
    if (c_ad_start) pdl_launch_dependents();
    else pdl_trigger();
    /* positions and slots are the pass's parameters (copied before the graph) */
    int p = a.pos[t], sl_t = a.slot[t];
    int lo = a.window > 0 ? max(0, p - a.window + 1) : 0;
    int n = p + 1 - lo, sl = (n + Z - 1) / Z; /* sl <= KMAX: the launcher's bound */
    int begin = lo + z * sl, end = min(p + 1, begin + sl), nk = max(0, end - begin);
    size_t kvw = (size_t)a.nkv * AD_HD;
    const kv_t *kbase = a.kc + (size_t)sl_t * a.cap * kvw + kvh * AD_HD;
    const kv_t *vbase = a.vc + (size_t)sl_t * a.cap * kvw + kvh * AD_HD;
    constexpr int CPR = AD_HD / 4; /* 16-byte chunks per row */
    /* Keys before the first position this pass writes for the slot were
     * written by earlier passes: no kernel of this chain writes them (the
     * ring keeps sliding_window + a chunk positions, so this pass's writes
     * land elsewhere), so they may be requested before the wait (c_ad_early). */
    int fresh = begin; /* keys [begin, fresh) requested early */
    if (c_ad_early) {
        fresh = p;
        for (int u = 0; u < (int)gridDim.x; u++)
            if (a.slot[u] == sl_t) fresh = min(fresh, a.pos[u]);
        fresh = max(begin, min(fresh, end));
        for (int c = threadIdx.x; c < (fresh - begin) * CPR; c += blockDim.x) {
            int j = c / CPR, q4 = c % CPR;
            size_t off = (size_t)((begin + j) % a.cap) * kvw + q4 * 4;
            cu_cp16(ks + j * AD_KP + q4 * 4, kbase + off, 16);
            cu_cp16(vs + j * AD_KP + q4 * 4, vbase + off, 16);
        }
        cu_cp_commit();
    }
    pdl_wait(); /* q and this pass's K/V come from the predecessor */
    for (int i = threadIdx.x; i < G * AD_HD; i += blockDim.x) qs[i] = a.q[(size_t)t * a.ldq + kvh * G * AD_HD + i];
    for (int c = (fresh - begin) * CPR + threadIdx.x; c < nk * CPR; c += blockDim.x) {
        int j = c / CPR, q4 = c % CPR;
        size_t off = (size_t)((begin + j) % a.cap) * kvw + q4 * 4;
        *reinterpret_cast<float4 *>(ks + j * AD_KP + q4 * 4) = *reinterpret_cast<const float4 *>(kbase + off);
        *reinterpret_cast<float4 *>(vs + j * AD_KP + q4 * 4) = *reinterpret_cast<const float4 *>(vbase + off);
    }
    if (c_ad_early) cu_cp_wait_all();
    __syncthreads();

    const float scale = rsqrtf((float)AD_HD);
    float m = z == 0 ? a.sinks[h] : -1e30f, l = z == 0 ? 1.0f : 0.0f;
    float o0 = 0.0f, o1 = 0.0f; /* dims lane, lane + 32 */
    const float4 *q4p = reinterpret_cast<const float4 *>(qs + w * AD_HD);
    for (int k0 = 0; k0 < nk; k0 += 32) {
        int j = k0 + lane;
        float sc = -1e30f;
        if (j < nk) {
            float d = 0.0f;
            const float4 *kr = reinterpret_cast<const float4 *>(ks + j * AD_KP);
#pragma unroll
            for (int c = 0; c < AD_HD / 4; c++) {
                float4 kk = kr[c], qq = q4p[c];
                d = fmaf(kk.x, qq.x, d); d = fmaf(kk.y, qq.y, d);
                d = fmaf(kk.z, qq.z, d); d = fmaf(kk.w, qq.w, d);
            }
            sc = d * scale;
        }
        float mnew = fmaxf(m, warp_max(sc));
        float corr = __expf(m - mnew);
        float pj = j < nk ? __expf(sc - mnew) : 0.0f;
        l = l * corr + warp_sum(pj);
        m = mnew;
        o0 *= corr;
        o1 *= corr;
        int cnt = min(32, nk - k0);
        for (int jj = 0; jj < cnt; jj++) {
            float pb = __shfl_sync(0xffffffffu, pj, jj);
            const float *vr = vs + (k0 + jj) * AD_KP;
            o0 = fmaf(pb, vr[lane], o0);
            o1 = fmaf(pb, vr[lane + 32], o1);
        }
    }
    if (!c_ad_start) pdl_trigger_end();
    float *pw = ps + w * (AD_HD + 2);
    if (lane == 0) { pw[0] = m; pw[1] = l; }
    pw[2 + lane] = o0;
    pw[2 + lane + 32] = o1;
    cluster_sync();
    if (w % Z == z) { /* merge head w over the Z splits (rank r = split r) */
        float mr = lane < Z ? ld_cluster_f32(pw, (unsigned)lane) : -1e30f;
        float lr = lane < Z ? ld_cluster_f32(pw + 1, (unsigned)lane) : 0.0f;
        float M = warp_max(mr);
        float er = lane < Z ? __expf(mr - M) : 0.0f;
        float L = warp_sum(lr * er);
        float a0 = 0.0f, a1 = 0.0f;
        for (int r = 0; r < Z; r++) {
            float e = __shfl_sync(0xffffffffu, er, r);
            a0 += ld_cluster_f32(pw + 2 + lane, (unsigned)r) * e;
            a1 += ld_cluster_f32(pw + 2 + lane + 32, (unsigned)r) * e;
        }
        float *out = a.out + (size_t)t * a.nh * AD_HD + (size_t)h * AD_HD;
        out[lane] = a0 / L;
        out[lane + 32] = a1 / L;
    }
    cluster_sync();
}

static size_t ad_smem(int G) {
    return sizeof(float) * ((size_t)G * AD_HD + 2 * AD_KMAX * AD_KP + (size_t)G * (AD_HD + 2));
}

/* Reads the environment, sets the kernel's attributes and asks how many
 * clusters of each size fit at once: outside graph capture (cu_kernels_init). */
void cu_attn_decode_init(void) {
    const char *v = getenv("GPTOSS_CUDA_ATTN_CLUSTER"), *ev = getenv("GPTOSS_CUDA_ATTN_EARLY");
    g_ad_on = cu_device_major() >= 9 && !(v && !strcmp(v, "0"));
    for (int z = 0; z <= AD_ZMAX; z++) g_ad_cap[z] = 0;
    if (g_ad_on) {
        int early = !(ev && !strcmp(ev, "0"));
        cudaMemcpyToSymbol(c_ad_early, &early, sizeof early);
        const char *rel = getenv("GPTOSS_CUDA_ATTN_RELEASE"), *kv = getenv("GPTOSS_CUDA_ATTN_CL_KEYS");
        int start = rel && !strcmp(rel, "start");
        cudaMemcpyToSymbol(c_ad_start, &start, sizeof start);
        g_ad_keys = kv ? atoi(kv) : 32;
        g_ad_keys = g_ad_keys < 16 ? 16 : g_ad_keys > AD_KMAX ? AD_KMAX : g_ad_keys;
        cudaFuncSetAttribute(k_attn_decode_cl, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
        cudaFuncSetAttribute(k_attn_decode_cl, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)ad_smem(8));
        for (int z = 1; z <= AD_ZMAX; z++)
            g_ad_cap[z] = cu_cluster_capacity(k_attn_decode_cl, dim3(256), dim3(1, 1, z), ad_smem(8));
    }
    cudaGetLastError();
}

int cu_attn_decode_cap(int z) { return z >= 1 && z <= AD_ZMAX ? g_ad_cap[z] : 0; }

/* 1 when it ran the call, 0 when the caller's kernels must. */
int cu_attention_cluster(const cu_attn_args *a, cudaStream_t s) {
    int G = a->nkv > 0 ? a->nh / a->nkv : 0;
    if (g_ad_on != 1 || a->T > CU_DECODE_MAX_T || a->hd != AD_HD || !a->out || a->out_b || a->out_lo || G < 1 ||
        G > 8 || G * a->nkv != a->nh || a->ldq % 4)
        return 0;
    int keys = a->max_keys < 1 ? 1 : a->max_keys;
    int Z = (keys + g_ad_keys - 1) / g_ad_keys; /* about g_ad_keys keys a block while that fits a cluster */
    if (Z > AD_ZMAX) Z = AD_ZMAX;
    if (keys > Z * AD_KMAX) return 0; /* long contexts: k_attention's many splits */
    if (g_ad_cap[Z] < 1) return 0;
    cudaError_t e = cu_launch_cluster(k_attn_decode_cl, dim3(a->T, a->nkv, Z), dim3(32 * G), dim3(1, 1, Z),
                                      ad_smem(G), g_cu_pdl != 0, s, *a);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return 1;
}
