/* kernels_scalar.c - portable kernels (the reference the SIMD ones are tested
 * against), the shared tables, and the run-time choice of kernel set. */
#include "cpu/cpu_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

const float cpu_fp4[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                           -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
float cpu_e8m0[256];
_Alignas(64) float cpu_fp4_scaled[256][16];

static pthread_once_t tables_once = PTHREAD_ONCE_INIT;
static void tables_build(void) {
    for (int s = 0; s < 256; s++) {
        cpu_e8m0[s] = ldexpf(1.0f, s - 127);
        for (int c = 0; c < 16; c++) cpu_fp4_scaled[s][c] = cpu_fp4[c] * cpu_e8m0[s];
    }
}
void cpu_tables_init(void) { pthread_once(&tables_once, tables_build); }

void cpu_deinterleave32(const float *x, float *d, int K) {
    for (int b = 0; b < K; b += 32)
        for (int i = 0; i < 16; i++) {
            d[b + i] = x[b + 2 * i];
            d[b + 16 + i] = x[b + 2 * i + 1];
        }
}

void cpu_pack_block(const float *X, size_t ldx, int nt, int K, int tb, int b, float *XP) {
    float *dst = XP + (size_t)b * K * tb;
    /* In slabs of 16 columns, so the tb x 16 piece being transposed stays in
     * L1 (a whole column of the block is K * tb floats). */
    for (int k0 = 0; k0 < K; k0 += 16) {
        int k1 = K - k0 < 16 ? K : k0 + 16;
        for (int j = 0; j < tb; j++) {
            int t = b * tb + j;
            if (t < nt) {
                const float *x = X + (size_t)t * ldx;
                for (int k = k0; k < k1; k++) dst[(size_t)k * tb + j] = x[k];
            } else {
                for (int k = k0; k < k1; k++) dst[(size_t)k * tb + j] = 0.0f;
            }
        }
    }
}

void cpu_pack_tokens(const float *X, size_t ldx, int nt, int K, int tb, float *XP) {
    for (int b = 0; b * tb < nt; b++) cpu_pack_block(X, ldx, nt, K, tb, b, XP);
}

void cpu_tile_put(const float *row, int K, int rb, int r, float *tile) {
    float *dst = tile + (size_t)(r / rb) * rb * cpu_k16(K) + (size_t)(r % rb) * 16;
    const size_t step = (size_t)rb * 16;
    int c = 0;
    /* Whole chunks with a constant-size copy (inlined as vector moves). */
    for (; c + 16 <= K; c += 16, dst += step) memcpy(dst, row + c, 16 * sizeof(float));
    if (c < K) {
        int n = K - c;
        memcpy(dst, row + c, sizeof(float) * (size_t)n);
        for (int j = n; j < 16; j++) dst[j] = 0.0f;
    }
}

static inline float bf(uint16_t h) {
    union { uint32_t u; float f; } v = { (uint32_t)h << 16 };
    return v.f;
}

static void s_matvec_bf16(const uint16_t *W, size_t ldw, int rows, int K, const float *X,
                          size_t ldx, int nt, float *Y, size_t ldy) {
    for (int r = 0; r < rows; r++) {
        const uint16_t *w = W + (size_t)r * ldw;
        for (int t = 0; t < nt; t++) {
            const float *x = X + (size_t)t * ldx;
            float s = 0.0f;
            for (int k = 0; k < K; k++) s += bf(w[k]) * x[k];
            Y[(size_t)t * ldy + r] = s;
        }
    }
}

static void s_matvec_mxfp4(const uint8_t *blocks, const uint8_t *scales, int rows, int nblk,
                           const float *Xd, size_t ldx, int nt, float *Y, size_t ldy) {
    for (int r = 0; r < rows; r++) {
        const uint8_t *bl = blocks + (size_t)r * nblk * 16;
        const uint8_t *sc = scales + (size_t)r * nblk;
        for (int t = 0; t < nt; t++) {
            const float *x = Xd + (size_t)t * ldx;
            float s = 0.0f;
            for (int b = 0; b < nblk; b++) {
                float bs = 0.0f;
                for (int i = 0; i < 16; i++) {
                    uint8_t q = bl[b * 16 + i];
                    bs += cpu_fp4[q & 15] * x[b * 32 + i] + cpu_fp4[q >> 4] * x[b * 32 + 16 + i];
                }
                s += bs * cpu_e8m0[sc[b]];
            }
            Y[(size_t)t * ldy + r] = s;
        }
    }
}

#define S_TB 8

#define S_RB 4

static void s_gemm_packed(const float *Wt, int rows, int K, const float *XP, int nt, float *Y,
                          size_t ldy) {
    size_t K16 = cpu_k16(K);
    for (int t0 = 0; t0 < nt; t0 += S_TB) {
        const float *xp = XP + (size_t)t0 * K;
        for (int r = 0; r < rows; r++) {
            const float *w = Wt + (size_t)(r / S_RB) * S_RB * K16 + (size_t)(r % S_RB) * 16;
            float acc[S_TB] = {0};
            for (int k = 0; k < K; k++) {
                float wk = w[(size_t)(k / 16) * S_RB * 16 + k % 16];
                for (int j = 0; j < S_TB; j++) acc[j] += wk * xp[(size_t)k * S_TB + j];
            }
            for (int j = 0; j < S_TB && t0 + j < nt; j++) Y[(size_t)(t0 + j) * ldy + r] = acc[j];
        }
    }
}

static void s_bf16_to_f32(const uint16_t *src, float *dst, int n) {
    for (int i = 0; i < n; i++) dst[i] = bf(src[i]);
}

static void s_mxfp4_to_f32(const uint8_t *blocks, const uint8_t *scales, int nblk, float *dst,
                           size_t cstride) {
    for (int b = 0; b < nblk; b++) {
        float s = cpu_e8m0[scales[b]];
        float *lo = dst + (size_t)2 * b * cstride, *hi = lo + cstride;
        for (int i = 0; i < 16; i++) {
            uint8_t q = blocks[b * 16 + i];
            lo[i] = cpu_fp4[q & 15] * s;
            hi[i] = cpu_fp4[q >> 4] * s;
        }
    }
}

static void s_axpy(float a, const float *x, float *y, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static float s_exp_sum(float *x, int n, float m) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        s += x[i];
    }
    return s;
}

static void s_attn_scores(const float *q, size_t ldq, int G, int hd, const float *Kt, int ntiles,
                          float *S, size_t lds) {
    for (int i = 0; i < ntiles; i++)
        for (int h = 0; h < G; h++)
            for (int l = 0; l < 16; l++) {
                float s = 0.0f;
                for (int d = 0; d < hd; d++) s += q[h * ldq + d] * Kt[((size_t)i * hd + d) * 16 + l];
                S[h * lds + (size_t)i * 16 + l] = s;
            }
}

static void s_attn_pv(const float *P, size_t ldp, int G, int n, const float *V, size_t ldv, int hd,
                      float *out, size_t ldo) {
    for (int h = 0; h < G; h++)
        for (int i = 0; i < n; i++) {
            float p = P[h * ldp + i];
            for (int d = 0; d < hd; d++) out[h * ldo + d] += p * V[i * ldv + d];
        }
}

static float s_sumsq(const float *x, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += x[i] * x[i];
    return s;
}

const cpu_kernels cpu_kernels_scalar = {
    .name = "scalar",
    .matvec_bf16 = s_matvec_bf16,
    .matvec_mxfp4 = s_matvec_mxfp4,
    .bf16_to_f32 = s_bf16_to_f32,
    .mx_order = cpu_deinterleave32,
    .mxfp4_to_f32 = s_mxfp4_to_f32,
    .axpy = s_axpy,
    .exp_sum = s_exp_sum,
    .attn_scores = s_attn_scores,
    .attn_pv = s_attn_pv,
    .sumsq = s_sumsq,
    .pack_tb = S_TB,
    .pack_rb = S_RB,
    .gemm_packed = s_gemm_packed,
};

int cpu_kernels_supported(const cpu_kernels *k) {
    __builtin_cpu_init();
    if (k == &cpu_kernels_avx512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("fma");
    if (k == &cpu_kernels_avx2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return 1;
}

const cpu_kernels *cpu_kernels_select(const char **why) {
    static const cpu_kernels *const all[] = {&cpu_kernels_avx512, &cpu_kernels_avx2,
                                             &cpu_kernels_scalar};
    cpu_tables_init();
    const char *want = getenv("GPTOSS_CPU_KERNELS");
    *why = NULL;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (want && *want && strcmp(want, all[i]->name) != 0) continue;
        if (cpu_kernels_supported(all[i])) return all[i];
        if (want && *want) {
            *why = "GPTOSS_CPU_KERNELS names a kernel set this CPU does not support";
            return NULL;
        }
    }
    *why = "GPTOSS_CPU_KERNELS must be scalar, avx2 or avx512";
    return NULL;
}
