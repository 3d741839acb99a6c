/* kernels_avx512.c - AVX-512 kernels. Every function carries its own target
 * attribute so the rest of the binary stays portable; they are only called
 * after cpu_kernels_supported() said yes.
 *
 * Matrix-vector kernels (decode, few tokens) compute blocks of NR rows x NT
 * tokens (NR, NT <= 4) with one 16-lane accumulator per (row, token) running
 * along K, reduced at the end; the matrix-matrix kernel (prefill) is an outer
 * product over packed tokens. always_inline with constant block shapes gives
 * register-resident accumulators for every tail shape. */
#include "cpu/cpu_internal.h"

#include <immintrin.h>

#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))
#define INL static inline __attribute__((always_inline))

T512 INL __m512 ld_bf16(const uint16_t *p) {
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
T512 INL __m512 ld_bf16_m(const uint16_t *p, __mmask16 m) {
    __m256i h = _mm256_maskz_loadu_epi16(m, p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* ------------------------------------------------------------ bf16 / f32 */
#define DOT_BLOCK(NAME, WT, LOADW, LOADW_M, PF)                                                   \
    T512 INL void NAME(const int NR, const int NT, const WT *W, size_t ldw, int K,             \
                       const float *X, size_t ldx, float *Y, size_t ldy) {                    \
        __m512 acc[4][4];                                                                      \
        for (int r = 0; r < NR; r++)                                                           \
            for (int t = 0; t < NT; t++) acc[r][t] = _mm512_setzero_ps();                      \
        int k = 0;                                                                             \
        for (; k + 16 <= K; k += 16) {                                                         \
            __m512 x[4];                                                                       \
            if (PF && (k & 31) == 0)                                                           \
                for (int r = 0; r < NR; r++)                                                   \
                    _mm_prefetch((const char *)(W + (size_t)(r + PF_ROWS) * ldw + k), _MM_HINT_T0); \
            for (int t = 0; t < NT; t++) x[t] = _mm512_loadu_ps(X + (size_t)t * ldx + k);      \
            for (int r = 0; r < NR; r++) {                                                     \
                __m512 w = LOADW(W + (size_t)r * ldw + k);                                     \
                for (int t = 0; t < NT; t++) acc[r][t] = _mm512_fmadd_ps(w, x[t], acc[r][t]);  \
            }                                                                                  \
        }                                                                                      \
        if (k < K) {                                                                           \
            __mmask16 m = (__mmask16)((1u << (K - k)) - 1u);                                   \
            __m512 x[4];                                                                       \
            for (int t = 0; t < NT; t++)                                                       \
                x[t] = _mm512_maskz_loadu_ps(m, X + (size_t)t * ldx + k);                      \
            for (int r = 0; r < NR; r++) {                                                     \
                __m512 w = LOADW_M(W + (size_t)r * ldw + k, m);                                \
                for (int t = 0; t < NT; t++) acc[r][t] = _mm512_fmadd_ps(w, x[t], acc[r][t]);  \
            }                                                                                  \
        }                                                                                      \
        for (int r = 0; r < NR; r++)                                                           \
            for (int t = 0; t < NT; t++) Y[(size_t)t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]); \
    }

#ifndef PF_ROWS
#define PF_ROWS 8 /* software prefetch distance of the matrix-vector kernel, rows */
#endif
DOT_BLOCK(bf16_block, uint16_t, ld_bf16, ld_bf16_m, 1)

/* Calls BLOCK with constant (nr, nt) for nr, nt in 1..4. */
#define DISPATCH(BLOCK, nr, nt, ...)                                                           \
    switch ((nr) * 8 + (nt)) {                                                                 \
    case 9: BLOCK(1, 1, __VA_ARGS__); break;  case 10: BLOCK(1, 2, __VA_ARGS__); break;        \
    case 11: BLOCK(1, 3, __VA_ARGS__); break; case 12: BLOCK(1, 4, __VA_ARGS__); break;        \
    case 17: BLOCK(2, 1, __VA_ARGS__); break; case 18: BLOCK(2, 2, __VA_ARGS__); break;        \
    case 19: BLOCK(2, 3, __VA_ARGS__); break; case 20: BLOCK(2, 4, __VA_ARGS__); break;        \
    case 25: BLOCK(3, 1, __VA_ARGS__); break; case 26: BLOCK(3, 2, __VA_ARGS__); break;        \
    case 27: BLOCK(3, 3, __VA_ARGS__); break; case 28: BLOCK(3, 4, __VA_ARGS__); break;        \
    case 33: BLOCK(4, 1, __VA_ARGS__); break; case 34: BLOCK(4, 2, __VA_ARGS__); break;        \
    case 35: BLOCK(4, 3, __VA_ARGS__); break; case 36: BLOCK(4, 4, __VA_ARGS__); break;        \
    default: break;                                                                            \
    }

static inline int min4(int a) { return a < 4 ? a : 4; }

/* Rows outer (each weight row is read from memory once), tokens inner. */
T512 static void v_matvec_bf16(const uint16_t *W, size_t ldw, int rows, int K, const float *X,
                               size_t ldx, int nt, float *Y, size_t ldy) {
    for (int r = 0; r < rows; r += 4)
        for (int t = 0; t < nt; t += 4) {
            int a = min4(rows - r), b = min4(nt - t);
            DISPATCH(bf16_block, a, b, W + (size_t)r * ldw, ldw, K, X + (size_t)t * ldx, ldx,
                     Y + (size_t)t * ldy + r, ldy)
        }
}

/* Outer-product kernel for many tokens: XP holds the tokens packed in
 * blocks of 32 ([K][32] each, zero padded; cpu_pack_tokens), the weights are
 * a tile of panels of 14 rows (cpu_tile_put). A block of NR rows x NV*16
 * tokens keeps its NR*NV accumulators (lanes = tokens) in registers; each
 * step along K loads NV token vectors and broadcasts one weight per row
 * (constant offsets from one panel pointer), so no horizontal sums. */
#define PK_TB 32
#define PK_RB 14

T512 INL void pk_step(const int NR, const int NV, const float *w, const float *x,
                      __m512 acc[PK_RB][2]) {
    __m512 x0 = _mm512_loadu_ps(x), x1 = x0;
    if (NV > 1) x1 = _mm512_loadu_ps(x + 16);
    for (int r = 0; r < NR; r++) {
        __m512 wv = _mm512_set1_ps(w[r * 16]);
        acc[r][0] = _mm512_fmadd_ps(wv, x0, acc[r][0]);
        if (NV > 1) acc[r][1] = _mm512_fmadd_ps(wv, x1, acc[r][1]);
    }
}

T512 INL void pk_block(const int NR, const int NV, const float *Wp, int K, const float *XP, int nt,
                       float *Y, size_t ldy) {
    __m512 acc[PK_RB][2];
    for (int r = 0; r < NR; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    int c = 0;
    for (; c + 16 <= K; c += 16) {
        const float *w = Wp + (size_t)c * PK_RB, *x = XP + (size_t)c * PK_TB;
        for (int kk = 0; kk < 16; kk++) pk_step(NR, NV, w + kk, x + kk * PK_TB, acc);
    }
    for (int kk = 0; c + kk < K; kk++)
        pk_step(NR, NV, Wp + (size_t)c * PK_RB + kk, XP + (size_t)(c + kk) * PK_TB, acc);
    float tmp[16];
    for (int r = 0; r < NR; r++)
        for (int v = 0; v < NV; v++) {
            _mm512_storeu_ps(tmp, acc[r][v]);
            for (int l = 0; l < 16 && v * 16 + l < nt; l++) Y[(size_t)(v * 16 + l) * ldy + r] = tmp[l];
        }
}

#define PK_CASE(n)                                                                             \
    case n:                                                                                    \
        if (nv == 1) pk_block(n, 1, Wp, K, XP, nt, Y, ldy);                                    \
        else pk_block(n, 2, Wp, K, XP, nt, Y, ldy);                                            \
        break;

T512 static void pk_dispatch(int nr, int nv, const float *Wp, int K, const float *XP, int nt,
                             float *Y, size_t ldy) {
    switch (nr) {
        PK_CASE(1) PK_CASE(2) PK_CASE(3) PK_CASE(4) PK_CASE(5) PK_CASE(6) PK_CASE(7)
        PK_CASE(8) PK_CASE(9) PK_CASE(10) PK_CASE(11) PK_CASE(12) PK_CASE(13) PK_CASE(14)
    default: break;
    }
}

T512 static void v_gemm_packed(const float *Wt, int rows, int K, const float *XP, int nt, float *Y,
                               size_t ldy) {
    size_t K16 = cpu_k16(K);
    for (int t = 0; t < nt; t += PK_TB) {
        int bt = nt - t < PK_TB ? nt - t : PK_TB;
        for (int r = 0; r < rows; r += PK_RB)
            pk_dispatch(rows - r < PK_RB ? rows - r : PK_RB, bt > 16 ? 2 : 1, Wt + (size_t)r * K16,
                        K, XP + (size_t)t * K, bt, Y + (size_t)t * ldy + r, ldy);
    }
}

/* ------------------------------------------------------------------ MXFP4 */
#ifndef PF_HINT
#define PF_HINT _MM_HINT_T1 /* into L2: measured slightly better than L1 */
#endif
#ifndef PF_GROUPS
#define PF_GROUPS 8
#endif

/* MXFP4 decode without a byte-expanding shuffle: the block's 16 bytes are
 * broadcast to the four 128-bit lanes and lane j shifted right by
 * 8 * (j / 4), so its low byte is byte 4 * (j % 4) + j / 4 of the block.
 * The activations are permuted to match (v_mx_order). */
T512 INL __m512i fp4_shifts(void) {
    return _mm512_setr_epi32(0, 0, 0, 0, 8, 8, 8, 8, 16, 16, 16, 16, 24, 24, 24, 24);
}
T512 INL __m512i fp4_bytes(const uint8_t *p, __m512i shifts) {
    return _mm512_srlv_epi32(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)p)), shifts);
}

/* Lane j of a block holds byte 4*(j%4) + j/4: low nibble = weight 2*byte,
 * high nibble = weight 2*byte + 1. */
static void v_mx_order(const float *x, float *d, int K) {
    for (int b = 0; b < K; b += 32)
        for (int j = 0; j < 16; j++) {
            int byte = 4 * (j % 4) + j / 4;
            d[b + j] = x[b + 2 * byte];
            d[b + 16 + j] = x[b + 2 * byte + 1];
        }
}

/* NR rows x NT tokens. For NT <= 2 the low- and high-nibble products go to
 * separate accumulators (shorter FMA dependency chains). pf: prefetch the
 * rows PF_GROUPS groups ahead (only when they belong to this call). */
T512 INL void fp4_block(const int NR, const int NT, const uint8_t *blocks, const uint8_t *scales,
                        int nblk, const float *Xd, size_t ldx, float *Y, size_t ldy, int pf_on) {
    const __m512i shifts = fp4_shifts();
    const int DUAL = NT <= 2;
    __m512 acc[4][4], acc2[4][2];
    for (int r = 0; r < NR; r++)
        for (int t = 0; t < NT; t++) {
            acc[r][t] = _mm512_setzero_ps();
            if (DUAL) acc2[r][t] = _mm512_setzero_ps();
        }
    const char *pf = (const char *)blocks + (size_t)NR * nblk * 16 * PF_GROUPS;
    const char *pfs = (const char *)scales + (size_t)NR * nblk * PF_GROUPS;
    for (int b = 0; b < nblk; b++) {
        /* Software prefetch of the row group PF_GROUPS ahead: NR/4 lines of
         * codes per block step, and its scales. */
        if (pf_on) {
            for (int r = 0; r < NR; r += 4) _mm_prefetch(pf + (size_t)(b * NR + r) * 16, PF_HINT);
            if (b % 16 == 0) _mm_prefetch(pfs + (size_t)b * NR, PF_HINT);
        }
        __m512 xl[4], xh[4];
        for (int t = 0; t < NT; t++) {
            xl[t] = _mm512_loadu_ps(Xd + (size_t)t * ldx + b * 32);
            xh[t] = _mm512_loadu_ps(Xd + (size_t)t * ldx + b * 32 + 16);
        }
        for (int r = 0; r < NR; r++) {
            const size_t row = (size_t)r * nblk + b;
            __m512i q = fp4_bytes(blocks + row * 16, shifts);
            __m512 sl = _mm512_load_ps(cpu_fp4_scaled[scales[row]]);
            __m512 wl = _mm512_permutexvar_ps(q, sl); /* the permute reads the low 4 bits */
            __m512 wh = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), sl);
            for (int t = 0; t < NT; t++) {
                acc[r][t] = _mm512_fmadd_ps(wl, xl[t], acc[r][t]);
                if (DUAL) acc2[r][t] = _mm512_fmadd_ps(wh, xh[t], acc2[r][t]);
                else acc[r][t] = _mm512_fmadd_ps(wh, xh[t], acc[r][t]);
            }
        }
    }
    for (int r = 0; r < NR; r++)
        for (int t = 0; t < NT; t++) {
            __m512 a = DUAL ? _mm512_add_ps(acc[r][t], acc2[r][t]) : acc[r][t];
            Y[(size_t)t * ldy + r] = _mm512_reduce_add_ps(a);
        }
}

T512 static void v_matvec_mxfp4(const uint8_t *blocks, const uint8_t *scales, int rows, int nblk,
                                const float *Xd, size_t ldx, int nt, float *Y, size_t ldy) {
    for (int r = 0; r < rows; r += 4) {
        int pf_on = r + 4 * (PF_GROUPS + 1) <= rows;
        for (int t = 0; t < nt; t += 4) {
            int a = min4(rows - r), b = min4(nt - t);
            DISPATCH(fp4_block, a, b, blocks + (size_t)r * nblk * 16, scales + (size_t)r * nblk,
                     nblk, Xd + (size_t)t * ldx, ldx, Y + (size_t)t * ldy + r, ldy, pf_on)
        }
    }
}

T512 static void v_mxfp4_to_f32(const uint8_t *blocks, const uint8_t *scales, int nblk,
                                float *dst, size_t cstride) {
    const __m512i shifts = fp4_shifts();
    for (int b = 0; b < nblk; b++) {
        __m512i q = fp4_bytes(blocks + b * 16, shifts);
        __m512 sl = _mm512_load_ps(cpu_fp4_scaled[scales[b]]);
        float *lo = dst + (size_t)2 * b * cstride;
        _mm512_storeu_ps(lo, _mm512_permutexvar_ps(q, sl));
        _mm512_storeu_ps(lo + cstride, _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), sl));
    }
}

/* ------------------------------------------------------------- vector ops */
T512 static void v_bf16_to_f32(const uint16_t *src, float *dst, int n) {
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, ld_bf16(src + i));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(dst + i, m, ld_bf16_m(src + i, m));
    }
}

T512 static float v_dot(const float *a, const float *b, int n) {
    __m512 acc = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16)
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

T512 static void v_axpy(float a, const float *x, float *y, int n) {
    __m512 va = _mm512_set1_ps(a);
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        __m512 r = _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i));
        _mm512_mask_storeu_ps(y + i, m, r);
    }
}

/* exp(x) for x <= 0: 2^n * p(r), r = x - n ln2 in [-ln2/2, ln2/2], p the
 * degree-7 Taylor polynomial (relative error ~2e-8 before rounding). */
T512 INL __m512 exp512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

T512 static float v_exp_sum(float *x, int n, float m) {
    __m512 vm = _mm512_set1_ps(m), acc = _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
        _mm512_storeu_ps(x + i, e);
        acc = _mm512_add_ps(acc, e);
    }
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm));
        _mm512_mask_storeu_ps(x + i, k, e);
        acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(k, e));
    }
    return _mm512_reduce_add_ps(acc);
}

/* Scores of NH heads (<= 8) against one tile of 16 transposed keys. */
T512 INL void sc_block(const int NH, const float *q, size_t ldq, int hd, const float *Kt, float *S,
                       size_t lds) {
    __m512 acc[8];
    for (int h = 0; h < NH; h++) acc[h] = _mm512_setzero_ps();
    for (int d = 0; d < hd; d++) {
        __m512 kv = _mm512_loadu_ps(Kt + (size_t)d * 16);
        for (int h = 0; h < NH; h++) acc[h] = _mm512_fmadd_ps(_mm512_set1_ps(q[h * ldq + d]), kv, acc[h]);
    }
    for (int h = 0; h < NH; h++) _mm512_storeu_ps(S + h * lds, acc[h]);
}

T512 static void v_attn_scores(const float *q, size_t ldq, int G, int hd, const float *Kt, int ntiles,
                               float *S, size_t lds) {
    for (int h0 = 0; h0 < G; h0 += 8) {
        int nh = G - h0 < 8 ? G - h0 : 8;
        for (int i = 0; i < ntiles; i++) {
            const float *kt = Kt + (size_t)i * hd * 16, *qq = q + h0 * ldq;
            float *ss = S + h0 * lds + (size_t)i * 16;
            switch (nh) {
            case 1: sc_block(1, qq, ldq, hd, kt, ss, lds); break;
            case 2: sc_block(2, qq, ldq, hd, kt, ss, lds); break;
            case 3: sc_block(3, qq, ldq, hd, kt, ss, lds); break;
            case 4: sc_block(4, qq, ldq, hd, kt, ss, lds); break;
            case 5: sc_block(5, qq, ldq, hd, kt, ss, lds); break;
            case 6: sc_block(6, qq, ldq, hd, kt, ss, lds); break;
            case 7: sc_block(7, qq, ldq, hd, kt, ss, lds); break;
            default: sc_block(8, qq, ldq, hd, kt, ss, lds); break;
            }
        }
    }
}

/* P . V for NH heads (<= 8) and 16 (masked) output dims at a time. */
T512 INL void pv_block(const int NH, const float *P, size_t ldp, int n, const float *V, size_t ldv,
                       __mmask16 m, float *out, size_t ldo) {
    __m512 acc[8];
    for (int h = 0; h < NH; h++) acc[h] = _mm512_maskz_loadu_ps(m, out + h * ldo);
    for (int i = 0; i < n; i++) {
        __m512 v = _mm512_maskz_loadu_ps(m, V + (size_t)i * ldv);
        for (int h = 0; h < NH; h++) acc[h] = _mm512_fmadd_ps(_mm512_set1_ps(P[h * ldp + i]), v, acc[h]);
    }
    for (int h = 0; h < NH; h++) _mm512_mask_storeu_ps(out + h * ldo, m, acc[h]);
}

T512 static void v_attn_pv(const float *P, size_t ldp, int G, int n, const float *V, size_t ldv,
                           int hd, float *out, size_t ldo) {
    for (int d = 0; d < hd; d += 16) {
        __mmask16 m = hd - d >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (hd - d)) - 1u);
        for (int h0 = 0; h0 < G; h0 += 8) {
            int nh = G - h0 < 8 ? G - h0 : 8;
            const float *pp = P + h0 * ldp;
            float *oo = out + h0 * ldo + d;
            switch (nh) {
            case 1: pv_block(1, pp, ldp, n, V + d, ldv, m, oo, ldo); break;
            case 2: pv_block(2, pp, ldp, n, V + d, ldv, m, oo, ldo); break;
            case 3: pv_block(3, pp, ldp, n, V + d, ldv, m, oo, ldo); break;
            case 4: pv_block(4, pp, ldp, n, V + d, ldv, m, oo, ldo); break;
            case 5: pv_block(5, pp, ldp, n, V + d, ldv, m, oo, ldo); break;
            case 6: pv_block(6, pp, ldp, n, V + d, ldv, m, oo, ldo); break;
            case 7: pv_block(7, pp, ldp, n, V + d, ldv, m, oo, ldo); break;
            default: pv_block(8, pp, ldp, n, V + d, ldv, m, oo, ldo); break;
            }
        }
    }
}

T512 static float v_sumsq(const float *x, int n) { return v_dot(x, x, n); }

const cpu_kernels cpu_kernels_avx512 = {
    .name = "avx512",
    .matvec_bf16 = v_matvec_bf16,
    .matvec_mxfp4 = v_matvec_mxfp4,
    .bf16_to_f32 = v_bf16_to_f32,
    .mx_order = v_mx_order,
    .mxfp4_to_f32 = v_mxfp4_to_f32,
    .axpy = v_axpy,
    .exp_sum = v_exp_sum,
    .attn_scores = v_attn_scores,
    .attn_pv = v_attn_pv,
    .sumsq = v_sumsq,
    .pack_tb = PK_TB,
    .pack_rb = PK_RB,
    .gemm_packed = v_gemm_packed,
};
