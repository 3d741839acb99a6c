/* kernels_avx2.c - AVX2 + FMA kernels (8 lanes). Same structure as the
 * AVX-512 ones with blocks of up to 4 rows x 2 tokens (16 ymm registers);
 * K tails that are not a multiple of 8 are finished in scalar code.
 * MXFP4: the E2M1 magnitude comes from an 8-entry permute, the sign from
 * bit 3 of the code moved to the float sign bit. */
#include "cpu/cpu_internal.h"

#include <immintrin.h>

#define T256 __attribute__((target("avx2,fma")))
#define INL static inline __attribute__((always_inline))

T256 INL float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float bf(uint16_t h) {
    union { uint32_t u; float f; } v = { (uint32_t)h << 16 };
    return v.f;
}

T256 INL __m256 ld_bf16(const uint16_t *p) {
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
static inline float sc_bf16(const uint16_t *p) { return bf(*p); }

#define DOT_BLOCK(NAME, WT, LOADW, SCALARW)                                                   \
    T256 INL void NAME(const int NR, const int NT, const WT *W, size_t ldw, int K,             \
                       const float *X, size_t ldx, float *Y, size_t ldy) {                    \
        __m256 acc[4][2];                                                                      \
        for (int r = 0; r < NR; r++)                                                           \
            for (int t = 0; t < NT; t++) acc[r][t] = _mm256_setzero_ps();                      \
        int k = 0;                                                                             \
        for (; k + 8 <= K; k += 8) {                                                           \
            __m256 x[2];                                                                       \
            for (int t = 0; t < NT; t++) x[t] = _mm256_loadu_ps(X + (size_t)t * ldx + k);      \
            for (int r = 0; r < NR; r++) {                                                     \
                __m256 w = LOADW(W + (size_t)r * ldw + k);                                     \
                for (int t = 0; t < NT; t++) acc[r][t] = _mm256_fmadd_ps(w, x[t], acc[r][t]);  \
            }                                                                                  \
        }                                                                                      \
        for (int r = 0; r < NR; r++)                                                           \
            for (int t = 0; t < NT; t++) {                                                     \
                float s = hsum(acc[r][t]);                                                     \
                for (int j = k; j < K; j++)                                                    \
                    s += SCALARW(W + (size_t)r * ldw + j) * X[(size_t)t * ldx + j];            \
                Y[(size_t)t * ldy + r] = s;                                                    \
            }                                                                                  \
    }

DOT_BLOCK(bf16_block, uint16_t, ld_bf16, sc_bf16)

#define DISPATCH(BLOCK, nr, nt, ...)                                                           \
    switch ((nr) * 8 + (nt)) {                                                                 \
    case 9: BLOCK(1, 1, __VA_ARGS__); break;  case 10: BLOCK(1, 2, __VA_ARGS__); break;        \
    case 17: BLOCK(2, 1, __VA_ARGS__); break; case 18: BLOCK(2, 2, __VA_ARGS__); break;        \
    case 25: BLOCK(3, 1, __VA_ARGS__); break; case 26: BLOCK(3, 2, __VA_ARGS__); break;        \
    case 33: BLOCK(4, 1, __VA_ARGS__); break; case 34: BLOCK(4, 2, __VA_ARGS__); break;        \
    default: break;                                                                            \
    }

static inline int mn(int a, int b) { return a < b ? a : b; }

T256 static void a_matvec_bf16(const uint16_t *W, size_t ldw, int rows, int K, const float *X,
                               size_t ldx, int nt, float *Y, size_t ldy) {
    for (int r = 0; r < rows; r += 4)
        for (int t = 0; t < nt; t += 2)
            DISPATCH(bf16_block, mn(rows - r, 4), mn(nt - t, 2), W + (size_t)r * ldw, ldw, K,
                     X + (size_t)t * ldx, ldx, Y + (size_t)t * ldy + r, ldy)
}

/* Outer-product kernel on tokens packed in blocks of 16 and weights in
 * panels of 6 rows (see the AVX-512 file): NR rows x NV*8 tokens of
 * accumulators, NR <= 6. */
#define PK_TB 16
#define PK_RB 6

T256 INL void pk_step(const int NR, const int NV, const float *w, const float *x,
                      __m256 acc[PK_RB][2]) {
    __m256 x0 = _mm256_loadu_ps(x), x1 = x0;
    if (NV > 1) x1 = _mm256_loadu_ps(x + 8);
    for (int r = 0; r < NR; r++) {
        __m256 wv = _mm256_broadcast_ss(w + r * 16);
        acc[r][0] = _mm256_fmadd_ps(wv, x0, acc[r][0]);
        if (NV > 1) acc[r][1] = _mm256_fmadd_ps(wv, x1, acc[r][1]);
    }
}

T256 INL void pk_block(const int NR, const int NV, const float *Wp, int K, const float *XP, int nt,
                       float *Y, size_t ldy) {
    __m256 acc[PK_RB][2];
    for (int r = 0; r < NR; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = _mm256_setzero_ps();
    int c = 0;
    for (; c + 16 <= K; c += 16) {
        const float *w = Wp + (size_t)c * PK_RB, *x = XP + (size_t)c * PK_TB;
        for (int kk = 0; kk < 16; kk++) pk_step(NR, NV, w + kk, x + kk * PK_TB, acc);
    }
    for (int kk = 0; c + kk < K; kk++)
        pk_step(NR, NV, Wp + (size_t)c * PK_RB + kk, XP + (size_t)(c + kk) * PK_TB, acc);
    float tmp[8];
    for (int r = 0; r < NR; r++)
        for (int v = 0; v < NV; v++) {
            _mm256_storeu_ps(tmp, acc[r][v]);
            for (int l = 0; l < 8 && v * 8 + l < nt; l++) Y[(size_t)(v * 8 + l) * ldy + r] = tmp[l];
        }
}

#define PK_CASE(n)                                                                             \
    case n:                                                                                    \
        if (nv == 1) pk_block(n, 1, Wp, K, XP, nt, Y, ldy);                                    \
        else pk_block(n, 2, Wp, K, XP, nt, Y, ldy);                                            \
        break;

T256 static void pk_dispatch(int nr, int nv, const float *Wp, int K, const float *XP, int nt,
                             float *Y, size_t ldy) {
    switch (nr) {
        PK_CASE(1) PK_CASE(2) PK_CASE(3) PK_CASE(4) PK_CASE(5) PK_CASE(6)
    default: break;
    }
}

T256 static void a_gemm_packed(const float *Wt, int rows, int K, const float *XP, int nt, float *Y,
                               size_t ldy) {
    size_t K16 = cpu_k16(K);
    for (int t = 0; t < nt; t += PK_TB) {
        int bt = nt - t < PK_TB ? nt - t : PK_TB;
        for (int r = 0; r < rows; r += PK_RB)
            pk_dispatch(rows - r < PK_RB ? rows - r : PK_RB, bt > 8 ? 2 : 1, Wt + (size_t)r * K16,
                        K, XP + (size_t)t * K, bt, Y + (size_t)t * ldy + r, ldy);
    }
}

/* ------------------------------------------------------------------ MXFP4 */
/* Values of 8 codes: magnitude by permute (low 3 bits), sign from bit 3. */
T256 INL __m256 fp4_lo(__m256i q, __m256 mag) {
    __m256 v = _mm256_permutevar8x32_ps(mag, q);
    __m256i sign = _mm256_and_si256(_mm256_slli_epi32(q, 28), _mm256_set1_epi32((int)0x80000000u));
    return _mm256_xor_ps(v, _mm256_castsi256_ps(sign));
}
T256 INL __m256 fp4_hi(__m256i q, __m256 mag) {
    __m256 v = _mm256_permutevar8x32_ps(mag, _mm256_srli_epi32(q, 4));
    __m256i sign = _mm256_and_si256(_mm256_slli_epi32(q, 24), _mm256_set1_epi32((int)0x80000000u));
    return _mm256_xor_ps(v, _mm256_castsi256_ps(sign));
}

/* The 32 values of one block: w[0] = even weights 0..14, w[1] = even 16..30,
 * w[2] = odd 1..15, w[3] = odd 17..31 (the deinterleaved order). */
T256 INL void fp4_decode(const uint8_t *blk, float scale, __m256 w[4]) {
    __m256 mag = _mm256_mul_ps(_mm256_loadu_ps(cpu_fp4), _mm256_set1_ps(scale));
    __m256i q0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)blk));
    __m256i q1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(blk + 8)));
    w[0] = fp4_lo(q0, mag);
    w[1] = fp4_lo(q1, mag);
    w[2] = fp4_hi(q0, mag);
    w[3] = fp4_hi(q1, mag);
}

T256 INL void fp4_block(const int NR, const int NT, const uint8_t *blocks, const uint8_t *scales,
                        int nblk, const float *Xd, size_t ldx, float *Y, size_t ldy) {
    __m256 acc[4][2];
    for (int r = 0; r < NR; r++)
        for (int t = 0; t < NT; t++) acc[r][t] = _mm256_setzero_ps();
    for (int b = 0; b < nblk; b++)
        for (int r = 0; r < NR; r++) {
            const size_t row = (size_t)r * nblk + b;
            __m256 w[4];
            fp4_decode(blocks + row * 16, cpu_e8m0[scales[row]], w);
            for (int t = 0; t < NT; t++) {
                const float *x = Xd + (size_t)t * ldx + b * 32;
                for (int j = 0; j < 4; j++)
                    acc[r][t] = _mm256_fmadd_ps(w[j], _mm256_loadu_ps(x + 8 * j), acc[r][t]);
            }
        }
    for (int r = 0; r < NR; r++)
        for (int t = 0; t < NT; t++) Y[(size_t)t * ldy + r] = hsum(acc[r][t]);
}

T256 static void a_matvec_mxfp4(const uint8_t *blocks, const uint8_t *scales, int rows, int nblk,
                                const float *Xd, size_t ldx, int nt, float *Y, size_t ldy) {
    for (int r = 0; r < rows; r += 4)
        for (int t = 0; t < nt; t += 2)
            DISPATCH(fp4_block, mn(rows - r, 4), mn(nt - t, 2), blocks + (size_t)r * nblk * 16,
                     scales + (size_t)r * nblk, nblk, Xd + (size_t)t * ldx, ldx,
                     Y + (size_t)t * ldy + r, ldy)
}

T256 static void a_mxfp4_to_f32(const uint8_t *blocks, const uint8_t *scales, int nblk,
                                float *dst, size_t cstride) {
    for (int b = 0; b < nblk; b++) {
        __m256 w[4];
        fp4_decode(blocks + b * 16, cpu_e8m0[scales[b]], w);
        for (int j = 0; j < 4; j++)
            _mm256_storeu_ps(dst + (size_t)(2 * b + j / 2) * cstride + 8 * (j % 2), w[j]);
    }
}

/* ------------------------------------------------------------- vector ops */
T256 static void a_bf16_to_f32(const uint16_t *src, float *dst, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, ld_bf16(src + i));
    for (; i < n; i++) dst[i] = bf(src[i]);
}

T256 static float a_dot(const float *a, const float *b, int n) {
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    float s = hsum(acc);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

T256 static void a_axpy(float a, const float *x, float *y, int n) {
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

/* exp(x) for x <= 0, as in the AVX-512 version; 2^n built in the exponent. */
T256 INL __m256 exp256(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187045e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

T256 static float a_exp_sum(float *x, int n, float m) {
    __m256 vm = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float s = hsum(acc);
    for (; i < n; i++) {
        float buf[8] = {x[i] - m, 0, 0, 0, 0, 0, 0, 0};
        __m256 e = exp256(_mm256_loadu_ps(buf));
        x[i] = _mm_cvtss_f32(_mm256_castps256_ps128(e));
        s += x[i];
    }
    return s;
}

/* Scores of NH heads (<= 4) against one tile of 16 transposed keys. */
T256 INL void sc_block(const int NH, const float *q, size_t ldq, int hd, const float *Kt, float *S,
                       size_t lds) {
    __m256 acc[4][2];
    for (int h = 0; h < NH; h++) acc[h][0] = acc[h][1] = _mm256_setzero_ps();
    for (int d = 0; d < hd; d++) {
        __m256 k0 = _mm256_loadu_ps(Kt + (size_t)d * 16), k1 = _mm256_loadu_ps(Kt + (size_t)d * 16 + 8);
        for (int h = 0; h < NH; h++) {
            __m256 qv = _mm256_broadcast_ss(q + h * ldq + d);
            acc[h][0] = _mm256_fmadd_ps(qv, k0, acc[h][0]);
            acc[h][1] = _mm256_fmadd_ps(qv, k1, acc[h][1]);
        }
    }
    for (int h = 0; h < NH; h++) {
        _mm256_storeu_ps(S + h * lds, acc[h][0]);
        _mm256_storeu_ps(S + h * lds + 8, acc[h][1]);
    }
}

T256 static void a_attn_scores(const float *q, size_t ldq, int G, int hd, const float *Kt, int ntiles,
                               float *S, size_t lds) {
    for (int h0 = 0; h0 < G; h0 += 4) {
        int nh = G - h0 < 4 ? G - h0 : 4;
        for (int i = 0; i < ntiles; i++) {
            const float *kt = Kt + (size_t)i * hd * 16, *qq = q + h0 * ldq;
            float *ss = S + h0 * lds + (size_t)i * 16;
            switch (nh) {
            case 1: sc_block(1, qq, ldq, hd, kt, ss, lds); break;
            case 2: sc_block(2, qq, ldq, hd, kt, ss, lds); break;
            case 3: sc_block(3, qq, ldq, hd, kt, ss, lds); break;
            default: sc_block(4, qq, ldq, hd, kt, ss, lds); break;
            }
        }
    }
}

T256 static void a_attn_pv(const float *P, size_t ldp, int G, int n, const float *V, size_t ldv,
                           int hd, float *out, size_t ldo) {
    int d = 0;
    for (; d + 8 <= hd; d += 8)
        for (int h0 = 0; h0 < G; h0 += 4) {
            int nh = G - h0 < 4 ? G - h0 : 4;
            __m256 acc[4];
            for (int h = 0; h < nh; h++) acc[h] = _mm256_loadu_ps(out + (h0 + h) * ldo + d);
            for (int i = 0; i < n; i++) {
                __m256 v = _mm256_loadu_ps(V + (size_t)i * ldv + d);
                for (int h = 0; h < nh; h++)
                    acc[h] = _mm256_fmadd_ps(_mm256_broadcast_ss(P + (h0 + h) * ldp + i), v, acc[h]);
            }
            for (int h = 0; h < nh; h++) _mm256_storeu_ps(out + (h0 + h) * ldo + d, acc[h]);
        }
    for (; d < hd; d++)
        for (int h = 0; h < G; h++) {
            float s = out[h * ldo + d];
            for (int i = 0; i < n; i++) s += P[h * ldp + i] * V[(size_t)i * ldv + d];
            out[h * ldo + d] = s;
        }
}

T256 static float a_sumsq(const float *x, int n) { return a_dot(x, x, n); }

const cpu_kernels cpu_kernels_avx2 = {
    .name = "avx2",
    .matvec_bf16 = a_matvec_bf16,
    .matvec_mxfp4 = a_matvec_mxfp4,
    .bf16_to_f32 = a_bf16_to_f32,
    .mx_order = cpu_deinterleave32,
    .mxfp4_to_f32 = a_mxfp4_to_f32,
    .axpy = a_axpy,
    .exp_sum = a_exp_sum,
    .attn_scores = a_attn_scores,
    .attn_pv = a_attn_pv,
    .sumsq = a_sumsq,
    .pack_tb = PK_TB,
    .pack_rb = PK_RB,
    .gemm_packed = a_gemm_packed,
};
