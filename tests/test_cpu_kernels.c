/* test_cpu_kernels.c - the CPU backend's kernels and forward pass.
 *
 * 1. Every kernel of every kernel set this CPU supports (scalar, avx2,
 *    avx512) against a plain double-precision reference written here, on
 *    awkward sizes (rows/K/tokens not multiples of the vector widths, MXFP4
 *    rows of 1..n blocks), and each SIMD set against the scalar set.
 * 2. The whole CPU forward pass of a tiny random in-memory model (2 layers:
 *    sliding + full, GQA, YaRN, sinks, MoE) against an independent
 *    double-precision forward written directly from the spec: one prefill
 *    with all logits, prefill + token-by-token decode, several items in one
 *    call, truncation rules and argument validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu/cpu_internal.h"
#include "util.h"

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float urand(void) { return (float)(rnd() % 2000001) / 1000000.0f - 1.0f; } /* [-1, 1] */

static const cpu_kernels *const SETS[] = {&cpu_kernels_scalar, &cpu_kernels_avx2, &cpu_kernels_avx512};
#define NSETS 3

/* Independent decode of E2M1 / E8M0 (spec section 2). */
static double fp4_ref(int code) {
    static const double mag[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
    return (code & 8 ? -1.0 : 1.0) * mag[code & 7];
}
static double mx_weight(const uint8_t *blocks, const uint8_t *scales, int k) {
    uint8_t byte = blocks[(k / 32) * 16 + (k % 32) / 2];
    int code = k % 2 == 0 ? byte & 15 : byte >> 4;
    return fp4_ref(code) * ldexp(1.0, scales[k / 32] - 127);
}

/* |got - want| <= tol * (scale of the sum). */
static void near(double got, double want, double mag, double tol) {
    double err = fabs(got - want), lim = tol * (mag + 1e-30);
    if (!(err <= lim)) fail_msg("got %.9g want %.9g (|err| %.3g > %.3g)", got, want, err, lim);
}

static void test_matvec_bf16(void **state) {
    (void)state;
    const int rows_l[] = {1, 3, 4, 5, 13, 17, 33}, K_l[] = {1, 7, 15, 16, 17, 31, 33, 100, 257},
              nt_l[] = {1, 2, 3, 4, 5, 9, 17, 33, 40};
    for (size_t a = 0; a < 7; a++)
        for (size_t bb = 0; bb < 9; bb++)
            for (size_t c = 0; c < 9; c++) {
                int rows = rows_l[a], K = K_l[bb], nt = nt_l[c];
                size_t ldw = (size_t)K + 3, ldx = (size_t)K + 5, ldy = (size_t)rows + 2;
                uint16_t *W = malloc(sizeof *W * ldw * rows);
                float *X = malloc(sizeof *X * ldx * nt), *Y = malloc(sizeof *Y * ldy * nt);
                float *Wf = malloc(sizeof *Wf * ldw * rows), *XP = malloc(sizeof *XP * (nt + 32) * K);
                float *Wt = malloc(sizeof *Wt * ((size_t)rows + 16) * cpu_k16(K)); /* any pack_rb <= 16 */
                for (size_t i = 0; i < ldw * rows; i++) W[i] = f32_to_bf16(urand());
                for (size_t i = 0; i < ldw * rows; i++) Wf[i] = bf16_to_f32(W[i]);
                for (size_t i = 0; i < ldx * nt; i++) X[i] = urand();
                for (int s = 0; s < NSETS; s++) {
                    if (!cpu_kernels_supported(SETS[s])) continue;
                    for (int pass = 0; pass < 2; pass++) {
                        for (size_t i = 0; i < ldy * nt; i++) Y[i] = 12345.0f;
                        if (pass == 0) SETS[s]->matvec_bf16(W, ldw, rows, K, X, ldx, nt, Y, ldy);
                        else {
                            cpu_pack_tokens(X, ldx, nt, K, SETS[s]->pack_tb, XP);
                            for (int r = 0; r < rows; r++) cpu_tile_put(Wf + r * ldw, K, SETS[s]->pack_rb, r, Wt);
                            SETS[s]->gemm_packed(Wt, rows, K, XP, nt, Y, ldy);
                        }
                        for (int t = 0; t < nt; t++)
                            for (size_t r = 0; r < ldy; r++) {
                                if ((int)r >= rows) { /* padding untouched */
                                    assert_true(Y[t * ldy + r] == 12345.0f);
                                    continue;
                                }
                                double ref = 0, mag = 0;
                                for (int k = 0; k < K; k++) {
                                    double p = (double)bf16_to_f32(W[r * ldw + k]) * X[t * ldx + k];
                                    ref += p;
                                    mag += fabs(p);
                                }
                                near(Y[t * ldy + r], ref, mag, 2e-6);
                            }
                    }
                }
                free(W); free(X); free(Y); free(Wf); free(XP); free(Wt);
            }
}

static void test_pack_tokens(void **state) {
    (void)state;
    int nt = 37, K = 19, tb = 16;
    size_t ldx = 23;
    float *X = malloc(sizeof *X * ldx * nt), *XP = malloc(sizeof *XP * 48 * K);
    for (size_t i = 0; i < ldx * nt; i++) X[i] = urand();
    for (int i = 0; i < 48 * K; i++) XP[i] = 777.0f;
    cpu_pack_tokens(X, ldx, nt, K, tb, XP);
    for (int b = 0; b < 3; b++)
        for (int k = 0; k < K; k++)
            for (int j = 0; j < tb; j++) {
                int t = b * tb + j;
                assert_true(XP[((size_t)b * K + k) * tb + j] == (t < nt ? X[t * ldx + k] : 0.0f));
            }
    free(X); free(XP);
}

static void test_mxfp4(void **state) {
    (void)state;
    cpu_tables_init();
    const int rows_l[] = {1, 2, 3, 5, 9}, nblk_l[] = {1, 2, 3, 5, 90}, nt_l[] = {1, 2, 3, 4, 5, 7};
    for (size_t a = 0; a < 5; a++)
        for (size_t bb = 0; bb < 5; bb++)
            for (size_t c = 0; c < 6; c++) {
                int rows = rows_l[a], nblk = nblk_l[bb], nt = nt_l[c], K = 32 * nblk;
                size_t ldx = (size_t)K + 32, ldy = (size_t)rows + 1;
                uint8_t *bl = malloc((size_t)rows * nblk * 16), *sc = malloc((size_t)rows * nblk);
                float *X = malloc(sizeof *X * ldx * nt), *Xd = malloc(sizeof *Xd * ldx * nt);
                float *Y = malloc(sizeof *Y * ldy * nt), *row = malloc(sizeof *row * K);
                float *nat = malloc(sizeof *nat * K), *perm = malloc(sizeof *perm * K);
                for (int i = 0; i < rows * nblk * 16; i++) bl[i] = (uint8_t)rnd();
                for (int i = 0; i < rows * nblk; i++) sc[i] = (uint8_t)(117 + rnd() % 20);
                if (rows * nblk > 2) sc[1] = 0; /* the denormal scale 2^-127 */
                for (size_t i = 0; i < ldx * nt; i++) X[i] = urand();
                for (int s = 0; s < NSETS; s++) {
                    if (!cpu_kernels_supported(SETS[s])) continue;
                    for (int t = 0; t < nt; t++) SETS[s]->mx_order(X + t * ldx, Xd + t * ldx, K);
                    SETS[s]->matvec_mxfp4(bl, sc, rows, nblk, Xd, ldx, nt, Y, ldy);
                    for (int t = 0; t < nt; t++)
                        for (int r = 0; r < rows; r++) {
                            double ref = 0, mag = 0;
                            for (int k = 0; k < K; k++) {
                                double p = mx_weight(bl + (size_t)r * nblk * 16, sc + (size_t)r * nblk, k) *
                                           X[t * ldx + k];
                                ref += p;
                                mag += fabs(p);
                            }
                            near(Y[t * ldy + r], ref, mag, 2e-6);
                        }
                    for (int r = 0; r < rows; r++) { /* exact decode of one row, in mx order */
                        SETS[s]->mxfp4_to_f32(bl + (size_t)r * nblk * 16, sc + (size_t)r * nblk, nblk, row, 16);
                        for (int k = 0; k < K; k++) nat[k] = (float)mx_weight(bl + (size_t)r * nblk * 16, sc + (size_t)r * nblk, k);
                        SETS[s]->mx_order(nat, perm, K);
                        for (int k = 0; k < K; k++) assert_true(row[k] == perm[k]);
                    }
                }
                free(bl); free(sc); free(X); free(Xd); free(Y); free(row); free(nat); free(perm);
            }
}

static void test_vector_ops(void **state) {
    (void)state;
    const int n_l[] = {1, 2, 7, 8, 9, 15, 16, 17, 31, 64, 100, 1000};
    for (size_t a = 0; a < 12; a++) {
        int n = n_l[a];
        float *x = malloc(sizeof *x * n), *y = malloc(sizeof *y * n), *z = malloc(sizeof *z * n);
        uint16_t *h = malloc(sizeof *h * n);
        for (int i = 0; i < n; i++) {
            x[i] = urand() * 3;
            y[i] = urand();
            h[i] = f32_to_bf16(urand() * 100);
        }
        for (int s = 0; s < NSETS; s++) {
            const cpu_kernels *k = SETS[s];
            if (!cpu_kernels_supported(k)) continue;
            double ss = 0;
            for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
            near(k->sumsq(x, n), ss, ss, 2e-6);
            memcpy(z, y, sizeof *z * n);
            k->axpy(0.37f, x, z, n);
            for (int i = 0; i < n; i++) near(z[i], y[i] + 0.37 * x[i], fabs(y[i]) + fabs(0.37 * x[i]), 1e-6);
            k->bf16_to_f32(h, z, n);
            for (int i = 0; i < n; i++) assert_true(z[i] == bf16_to_f32(h[i]));
            /* exp(x - m) with m >= max, including far-underflow inputs. */
            double m = 2.5, es = 0;
            for (int i = 0; i < n; i++) z[i] = i % 11 == 10 ? -200.0f : x[i];
            float got = k->exp_sum(z, n, (float)m);
            for (int i = 0; i < n; i++) {
                double e = exp((i % 11 == 10 ? -200.0 : x[i]) - m);
                es += e;
                near(z[i], e, e, 1e-6);
            }
            near(got, es, es, 2e-6);
        }
        free(x); free(y); free(z); free(h);
    }
}

/* Attention pieces: scores against keys transposed in tiles of 16, and the
 * probability-weighted sum of value rows, for G heads at once. */
static void test_attention_kernels(void **state) {
    (void)state;
    const int G_l[] = {1, 3, 5, 8, 9}, hd_l[] = {1, 8, 12, 16, 24, 64, 70}, n_l[] = {1, 15, 16, 17, 40};
    for (size_t a = 0; a < 5; a++)
        for (size_t bb = 0; bb < 7; bb++)
            for (size_t c = 0; c < 5; c++) {
                int G = G_l[a], hd = hd_l[bb], n = n_l[c], nt = (n + 15) / 16;
                size_t ldq = (size_t)hd + 3, lds = (size_t)nt * 16 + 5, ldv = (size_t)hd + 7, ldo = (size_t)hd + 2;
                float *q = malloc(sizeof *q * G * ldq), *Kt = malloc(sizeof *Kt * nt * 16 * hd);
                float *S = malloc(sizeof *S * G * lds), *P = malloc(sizeof *P * G * lds);
                float *V = malloc(sizeof *V * n * ldv), *out = malloc(sizeof *out * G * ldo);
                for (size_t i = 0; i < G * ldq; i++) q[i] = urand();
                for (int i = 0; i < nt * 16 * hd; i++) Kt[i] = urand();
                for (size_t i = 0; i < G * lds; i++) P[i] = urand();
                for (size_t i = 0; i < n * ldv; i++) V[i] = urand();
                for (int s = 0; s < NSETS; s++) {
                    if (!cpu_kernels_supported(SETS[s])) continue;
                    SETS[s]->attn_scores(q, ldq, G, hd, Kt, nt, S, lds);
                    for (int h = 0; h < G; h++)
                        for (int j = 0; j < nt * 16; j++) {
                            double ref = 0, mag = 0; /* key j: element d at Kt[(j/16*hd + d)*16 + j%16] */
                            for (int d = 0; d < hd; d++) {
                                double pr = (double)q[h * ldq + d] * Kt[((size_t)(j / 16) * hd + d) * 16 + j % 16];
                                ref += pr;
                                mag += fabs(pr);
                            }
                            near(S[h * lds + j], ref, mag, 2e-6);
                        }
                    for (size_t i = 0; i < G * ldo; i++) out[i] = 0.25f;
                    SETS[s]->attn_pv(P, lds, G, n, V, ldv, hd, out, ldo);
                    for (int h = 0; h < G; h++)
                        for (size_t d = 0; d < ldo; d++) {
                            if ((int)d >= hd) { /* padding untouched */
                                assert_true(out[h * ldo + d] == 0.25f);
                                continue;
                            }
                            double ref = 0.25, mag = 0.25;
                            for (int i = 0; i < n; i++) {
                                double pr = (double)P[h * lds + i] * V[i * ldv + d];
                                ref += pr;
                                mag += fabs(pr);
                            }
                            near(out[h * ldo + d], ref, mag, 2e-6);
                        }
                }
                free(q); free(Kt); free(S); free(P); free(V); free(out);
            }
}

/* SIMD sets give the scalar set's results up to rounding. */
static void test_simd_vs_scalar(void **state) {
    (void)state;
    cpu_tables_init();
    int rows = 37, K = 2880, nt = 7, nblk = K / 32;
    uint16_t *W = malloc(sizeof *W * rows * K);
    uint8_t *bl = malloc((size_t)rows * nblk * 16), *sc = malloc((size_t)rows * nblk);
    float *X = malloc(sizeof *X * nt * K), *Xd = malloc(sizeof *Xd * nt * K);
    float *y0 = malloc(sizeof *y0 * nt * rows), *y1 = malloc(sizeof *y1 * nt * rows);
    for (int i = 0; i < rows * K; i++) W[i] = f32_to_bf16(urand());
    for (int i = 0; i < rows * nblk * 16; i++) bl[i] = (uint8_t)rnd();
    for (int i = 0; i < rows * nblk; i++) sc[i] = (uint8_t)(120 + rnd() % 10);
    for (int i = 0; i < nt * K; i++) X[i] = urand();
    float *XP = malloc(sizeof *XP * (nt + 32) * K), *Wf = malloc(sizeof *Wf * K);
    float *Wt = malloc(sizeof *Wt * ((size_t)rows + 16) * cpu_k16(K)); /* any pack_rb <= 16 */
    for (int s = 1; s < NSETS; s++) {
        if (!cpu_kernels_supported(SETS[s])) continue;
        for (int which = 0; which < 3; which++) {
            if (which == 0) {
                cpu_kernels_scalar.matvec_bf16(W, K, rows, K, X, K, nt, y0, rows);
                SETS[s]->matvec_bf16(W, K, rows, K, X, K, nt, y1, rows);
            } else if (which == 1) {
                for (int t = 0; t < nt; t++) cpu_kernels_scalar.mx_order(X + t * K, Xd + t * K, K);
                cpu_kernels_scalar.matvec_mxfp4(bl, sc, rows, nblk, Xd, K, nt, y0, rows);
                for (int t = 0; t < nt; t++) SETS[s]->mx_order(X + t * K, Xd + t * K, K);
                SETS[s]->matvec_mxfp4(bl, sc, rows, nblk, Xd, K, nt, y1, rows);
            } else { /* dequantized tiles x packed tokens, the prefill path */
                const cpu_kernels *ks[2] = {&cpu_kernels_scalar, SETS[s]};
                for (int v = 0; v < 2; v++) {
                    /* scalar: contiguous row + cpu_tile_put; SIMD: straight into the
                     * tile (the backend's path), which must give the same tile. */
                    const int rb = ks[v]->pack_rb;
                    for (size_t i = 0; i < ((size_t)rows + 16) * cpu_k16(K); i++) Wt[i] = NAN;
                    for (int r = 0; r < rows; r++) {
                        const uint8_t *rbl = bl + (size_t)r * nblk * 16, *rsc = sc + (size_t)r * nblk;
                        if (v == 0) {
                            ks[v]->mxfp4_to_f32(rbl, rsc, nblk, Wf, 16);
                            cpu_tile_put(Wf, K, rb, r, Wt);
                        } else {
                            ks[v]->mxfp4_to_f32(rbl, rsc, nblk, Wt + (size_t)(r / rb) * rb * K + (size_t)(r % rb) * 16,
                                                (size_t)rb * 16);
                        }
                    }
                    for (int t = 0; t < nt; t++) ks[v]->mx_order(X + t * K, Xd + t * K, K);
                    cpu_pack_tokens(Xd, K, nt, K, ks[v]->pack_tb, XP);
                    ks[v]->gemm_packed(Wt, rows, K, XP, nt, v ? y1 : y0, rows);
                }
            }
            for (int i = 0; i < nt * rows; i++) near(y1[i], y0[i], 1.0 + fabs(y0[i]), 1e-4);
        }
    }
    free(W); free(bl); free(sc); free(X); free(Xd); free(y0); free(y1); free(XP); free(Wf); free(Wt);
}

static void test_kernel_select(void **state) {
    (void)state;
    const char *why;
    setenv("GPTOSS_CPU_KERNELS", "scalar", 1);
    const cpu_kernels *k = cpu_kernels_select(&why);
    assert_non_null(k);
    assert_string_equal(k->name, "scalar");
    setenv("GPTOSS_CPU_KERNELS", "bogus", 1);
    assert_null(cpu_kernels_select(&why));
    assert_non_null(why);
    unsetenv("GPTOSS_CPU_KERNELS");
    k = cpu_kernels_select(&why);
    assert_non_null(k);
    assert_true(cpu_kernels_supported(k));
    assert_true(k == &cpu_kernels_avx512 || !cpu_kernels_supported(&cpu_kernels_avx512));
}

/* ------------------------------------------------------------ tiny model */
enum { TH = 96, TI = 64, TNH = 6, TNKV = 2, THD = 12, TE = 5, TK = 2, TV = 41, TL = 2, TWIN = 4 };
#define TQD (TNH * THD)
#define TKVD (TNKV * THD)

typedef struct {
    model_weights w;
    layer_weights lw[TL];
    unsigned char sliding[TL];
    void *bufs[64];
    int nbufs;
} tiny_model;

static tensor_view tv_bf16(tiny_model *m, size_t n, float scale, float offset) {
    uint16_t *d = malloc(n * 2);
    for (size_t i = 0; i < n; i++) d[i] = f32_to_bf16(offset + scale * urand());
    m->bufs[m->nbufs++] = d;
    return (tensor_view){d, DTYPE_BF16, 1, {(int64_t)n}, n * 2};
}
static tensor_view tv_u8(tiny_model *m, size_t n, int lo, int span) {
    uint8_t *d = malloc(n);
    for (size_t i = 0; i < n; i++) d[i] = (uint8_t)(span ? lo + (int)(rnd() % (uint32_t)span) : (int)rnd());
    m->bufs[m->nbufs++] = d;
    return (tensor_view){d, DTYPE_U8, 1, {(int64_t)n}, n};
}

static void tiny_init(tiny_model *m) {
    memset(m, 0, sizeof *m);
    gptoss_config *c = &m->w.cfg;
    *c = (gptoss_config){.n_layers = TL, .hidden = TH, .intermediate = TI, .n_heads = TNH,
                         .n_kv_heads = TNKV, .head_dim = THD, .n_experts = TE,
                         .experts_per_token = TK, .vocab_size = TV, .sliding_window = TWIN,
                         .max_position = 4096, .rms_eps = 1e-5f, .swiglu_limit = 7.0f,
                         .swiglu_alpha = 1.702f, .rope_theta = 150000.0f, .yarn_factor = 32.0f,
                         .yarn_beta_fast = 32.0f, .yarn_beta_slow = 1.0f,
                         .yarn_original_ctx = 4096, .yarn_truncate = 0};
    m->sliding[0] = 1;
    m->sliding[1] = 0;
    c->layer_is_sliding = m->sliding;
    m->w.embed = tv_bf16(m, (size_t)TV * TH, 1.0f, 0.0f);
    m->w.final_norm = tv_bf16(m, TH, 0.2f, 1.0f);
    m->w.lm_head = tv_bf16(m, (size_t)TV * TH, 0.3f, 0.0f);
    for (int l = 0; l < TL; l++) {
        layer_weights *L = &m->lw[l];
        L->attn_norm = tv_bf16(m, TH, 0.2f, 1.0f);
        L->q_w = tv_bf16(m, (size_t)TQD * TH, 0.25f, 0.0f);
        L->q_b = tv_bf16(m, TQD, 0.1f, 0.0f);
        L->k_w = tv_bf16(m, (size_t)TKVD * TH, 0.25f, 0.0f);
        L->k_b = tv_bf16(m, TKVD, 0.1f, 0.0f);
        L->v_w = tv_bf16(m, (size_t)TKVD * TH, 0.25f, 0.0f);
        L->v_b = tv_bf16(m, TKVD, 0.1f, 0.0f);
        L->o_w = tv_bf16(m, (size_t)TH * TQD, 0.15f, 0.0f);
        L->o_b = tv_bf16(m, TH, 0.1f, 0.0f);
        L->sinks = tv_bf16(m, TNH, 1.0f, 0.0f);
        L->mlp_norm = tv_bf16(m, TH, 0.2f, 1.0f);
        L->router_w = tv_bf16(m, (size_t)TE * TH, 0.3f, 0.0f);
        L->router_b = tv_bf16(m, TE, 0.1f, 0.0f);
        /* Experts 1 and 3 route identically: exact ties go to the lower index. */
        memcpy((uint16_t *)L->router_w.data + 3 * TH, (const uint16_t *)L->router_w.data + TH, TH * 2);
        ((uint16_t *)L->router_b.data)[3] = ((const uint16_t *)L->router_b.data)[1];
        L->gate_up_blocks = tv_u8(m, (size_t)TE * 2 * TI * (TH / 32) * 16, 0, 0);
        L->gate_up_scales = tv_u8(m, (size_t)TE * 2 * TI * (TH / 32), 124, 3); /* |g| > 7 happens */
        L->gate_up_bias = tv_bf16(m, (size_t)TE * 2 * TI, 2.0f, 0.0f);
        L->down_blocks = tv_u8(m, (size_t)TE * TH * (TI / 32) * 16, 0, 0);
        L->down_scales = tv_u8(m, (size_t)TE * TH * (TI / 32), 121, 3);
        L->down_bias = tv_bf16(m, (size_t)TE * TH, 0.2f, 0.0f);
    }
    m->w.layers = m->lw;
}
static void tiny_free(tiny_model *m) {
    for (int i = 0; i < m->nbufs; i++) free(m->bufs[i]);
}

static double bfv(const tensor_view *t, size_t i) { return bf16_to_f32(((const uint16_t *)t->data)[i]); }

static void ref_rmsnorm(const double *x, const tensor_view *w, double *y) {
    double ss = 0;
    for (int i = 0; i < TH; i++) ss += x[i] * x[i];
    double inv = 1.0 / sqrt(ss / TH + 1e-5);
    for (int i = 0; i < TH; i++) y[i] = x[i] * inv * bfv(w, (size_t)i);
}
static void ref_linear(const tensor_view *W, const tensor_view *b, int rows, int K, const double *x, double *y) {
    for (int r = 0; r < rows; r++) {
        double s = b ? bfv(b, (size_t)r) : 0;
        for (int k = 0; k < K; k++) s += bfv(W, (size_t)r * K + k) * x[k];
        y[r] = s;
    }
}
static void ref_rope(double *x, int pos) { /* YaRN, half-split, concentration on cos and sin */
    double lo = THD * log(4096 / (32 * 2 * M_PI)) / (2 * log(150000.0));
    double hi = THD * log(4096 / (1 * 2 * M_PI)) / (2 * log(150000.0));
    double conc = 0.1 * log(32.0) + 1;
    for (int i = 0; i < THD / 2; i++) {
        double f = pow(150000.0, -2.0 * i / THD), r = (i - lo) / (hi - lo);
        r = r < 0 ? 0 : r > 1 ? 1 : r;
        double inv = f * (1 - r) + f / 32 * r, a = pos * inv;
        double c = cos(a) * conc, s = sin(a) * conc, x1 = x[i], x2 = x[i + THD / 2];
        x[i] = x1 * c - x2 * s;
        x[i + THD / 2] = x2 * c + x1 * s;
    }
}

/* Logits [T, TV] of ids[0..T) by direct formulas, O(T^2) attention. */
static void ref_forward(const tiny_model *m, const int32_t *ids, int T, double *logits) {
    double *x = calloc((size_t)T * TH, 8), *q = calloc((size_t)T * TQD, 8), *k = calloc((size_t)T * TKVD, 8);
    double *v = calloc((size_t)T * TKVD, 8), *p = calloc((size_t)T + 1, 8);
    double h[TH], att[TQD], o[TH], gu[2 * TI], act[TI], y[TH], rl[TE];
    for (int t = 0; t < T; t++)
        for (int i = 0; i < TH; i++) x[t * TH + i] = bfv(&m->w.embed, (size_t)ids[t] * TH + i);
    for (int l = 0; l < TL; l++) {
        const layer_weights *L = &m->lw[l];
        for (int t = 0; t < T; t++) {
            ref_rmsnorm(x + t * TH, &L->attn_norm, h);
            ref_linear(&L->q_w, &L->q_b, TQD, TH, h, q + t * TQD);
            ref_linear(&L->k_w, &L->k_b, TKVD, TH, h, k + t * TKVD);
            ref_linear(&L->v_w, &L->v_b, TKVD, TH, h, v + t * TKVD);
            for (int hh = 0; hh < TNH; hh++) ref_rope(q + t * TQD + hh * THD, t);
            for (int g = 0; g < TNKV; g++) ref_rope(k + t * TKVD + g * THD, t);
        }
        for (int t = 0; t < T; t++) {
            for (int hh = 0; hh < TNH; hh++) {
                int g = hh / (TNH / TNKV);
                double sink = bfv(&L->sinks, (size_t)hh), mx = sink, den = 0;
                for (int j = 0; j <= t; j++) {
                    p[j] = -INFINITY;
                    if (m->sliding[l] && j <= t - TWIN) continue;
                    double s = 0;
                    for (int d = 0; d < THD; d++) s += q[t * TQD + hh * THD + d] * k[j * TKVD + g * THD + d];
                    p[j] = s / sqrt((double)THD);
                    if (p[j] > mx) mx = p[j];
                }
                den = exp(sink - mx);
                for (int j = 0; j <= t; j++) den += exp(p[j] - mx);
                for (int d = 0; d < THD; d++) {
                    double s = 0;
                    for (int j = 0; j <= t; j++) s += exp(p[j] - mx) / den * v[j * TKVD + g * THD + d];
                    att[hh * THD + d] = s;
                }
            }
            ref_linear(&L->o_w, &L->o_b, TH, TQD, att, o);
            for (int i = 0; i < TH; i++) x[t * TH + i] += o[i];
            ref_rmsnorm(x + t * TH, &L->mlp_norm, h);
            ref_linear(&L->router_w, &L->router_b, TE, TH, h, rl);
            int sel[TK];
            for (int j = 0; j < TK; j++) {
                sel[j] = -1;
                for (int e = 0; e < TE; e++) {
                    int used = 0;
                    for (int i = 0; i < j; i++) used |= sel[i] == e;
                    if (!used && (sel[j] < 0 || rl[e] > rl[sel[j]])) sel[j] = e;
                }
            }
            double den = 0;
            for (int j = 0; j < TK; j++) den += exp(rl[sel[j]] - rl[sel[0]]);
            for (int j = 0; j < TK; j++) {
                int e = sel[j];
                double wgt = exp(rl[e] - rl[sel[0]]) / den;
                const uint8_t *gb = L->gate_up_blocks.data, *gs = L->gate_up_scales.data;
                const uint8_t *db = L->down_blocks.data, *ds = L->down_scales.data;
                for (int r = 0; r < 2 * TI; r++) {
                    size_t row = (size_t)e * 2 * TI + r;
                    double s = bfv(&L->gate_up_bias, row);
                    for (int kk = 0; kk < TH; kk++) s += mx_weight(gb + row * (TH / 32) * 16, gs + row * (TH / 32), kk) * h[kk];
                    gu[r] = s;
                }
                for (int i = 0; i < TI; i++) {
                    double gt = fmin(gu[2 * i], 7.0), up = fmax(fmin(gu[2 * i + 1], 7.0), -7.0);
                    act[i] = gt / (1 + exp(-1.702 * gt)) * (up + 1);
                }
                for (int r = 0; r < TH; r++) {
                    size_t row = (size_t)e * TH + r;
                    double s = bfv(&L->down_bias, row);
                    for (int kk = 0; kk < TI; kk++) s += mx_weight(db + row * (TI / 32) * 16, ds + row * (TI / 32), kk) * act[kk];
                    y[r] = s;
                }
                for (int i = 0; i < TH; i++) x[t * TH + i] += wgt * y[i];
            }
        }
    }
    for (int t = 0; t < T; t++) {
        ref_rmsnorm(x + t * TH, &m->w.final_norm, h);
        ref_linear(&m->w.lm_head, NULL, TV, TH, h, logits + (size_t)t * TV);
    }
    free(x); free(q); free(k); free(v); free(p);
}

static void check_logits(const float *got, const double *want, int rows, const char *what) {
    for (int i = 0; i < rows * TV; i++)
        if (!(fabs(got[i] - want[i]) <= 2e-4 * (1 + fabs(want[i]))))
            fail_msg("%s: logit %d (row %d) got %.7g want %.7g (kernels %s)", what, i, i / TV, got[i],
                     want[i], getenv("GPTOSS_CPU_KERNELS"));
}

static backend *tiny_backend(const tiny_model *m, int max_ctx, int slots, int threads) {
    backend_params bp = {.n_threads = threads, .max_context = max_ctx, .max_sequences = slots};
    backend *b = NULL;
    gptoss_status st = cpu_backend_ops.create(&m->w, &bp, &b);
    if (st) fail_msg("create: %s", gptoss_last_error());
    return b;
}

#define TLONG 530 /* past the sliding ring (window 4 + 512) */

/* One prefill chunk with all logits, then the rest token by token, under
 * every supported kernel set and 1 or 3 threads. */
static void test_forward_prefill(void **state) {
    (void)state;
    tiny_model m;
    tiny_init(&m);
    int32_t ids[TLONG];
    for (int t = 0; t < TLONG; t++) ids[t] = (int32_t)(rnd() % TV);
    double *ref = malloc(sizeof *ref * TLONG * TV);
    ref_forward(&m, ids, TLONG, ref);
    float *lg = malloc(sizeof *lg * BACKEND_MAX_CHUNK * TV);
    for (int s = 0; s < NSETS; s++) {
        if (!cpu_kernels_supported(SETS[s])) continue;
        setenv("GPTOSS_CPU_KERNELS", SETS[s]->name, 1);
        backend *b = tiny_backend(&m, 600, 1, s == 0 ? 1 : 3);
        assert_string_equal(cpu_backend_ops.kernels(b), SETS[s]->name);
        backend_item it = {0, 0, BACKEND_MAX_CHUNK, ids, 1};
        assert_int_equal(cpu_backend_ops.forward(b, &it, 1, lg), GPTOSS_OK);
        check_logits(lg, ref, BACKEND_MAX_CHUNK, "prefill");
        for (int t = BACKEND_MAX_CHUNK; t < TLONG; t++) {
            backend_item d = {0, t, 1, ids + t, 0};
            assert_int_equal(cpu_backend_ops.forward(b, &d, 1, lg), GPTOSS_OK);
            check_logits(lg, ref + (size_t)t * TV, 1, "decode past the ring");
        }
        cpu_backend_ops.destroy(b);
    }
    unsetenv("GPTOSS_CPU_KERNELS");
    free(ref); free(lg); tiny_free(&m);
}

/* Several slots in one call: prefills (last row and all rows) mixed with
 * single-token decodes; both matrix paths (few and many tokens) are used. */
static void test_forward_decode_batched(void **state) {
    (void)state;
    tiny_model m;
    tiny_init(&m);
    enum { NS = 3, T = 23 };
    int32_t ids[NS][T];
    double *ref = malloc(sizeof *ref * NS * T * TV);
    for (int q = 0; q < NS; q++) {
        for (int t = 0; t < T; t++) ids[q][t] = (int32_t)(rnd() % TV);
        ref_forward(&m, ids[q], T, ref + (size_t)q * T * TV);
    }
    float *lg = malloc(sizeof *lg * NS * T * TV);
    for (int s = 0; s < NSETS; s++) {
        if (!cpu_kernels_supported(SETS[s])) continue;
        setenv("GPTOSS_CPU_KERNELS", SETS[s]->name, 1);
        backend *b = tiny_backend(&m, 64, 4, 2);
        /* slot 3 <- seq 0 (all logits, 21 tokens), slot 1 <- seq 1 (last only, 2),
         * slot 0 <- seq 2 (1): 24 tokens, over GEMM_MIN. */
        backend_item a[3] = {{3, 0, 21, ids[0], 1}, {1, 0, 2, ids[1], 0}, {0, 0, 1, ids[2], 0}};
        assert_int_equal(cpu_backend_ops.forward(b, a, 3, lg), GPTOSS_OK);
        check_logits(lg, ref, 21, "batched prefill all rows");
        check_logits(lg + 21 * TV, ref + ((size_t)T + 1) * TV, 1, "batched prefill last row");
        check_logits(lg + 22 * TV, ref + (size_t)2 * T * TV, 1, "batched single token");
        int pos[3] = {21, 2, 1}, slot[3] = {3, 1, 0};
        while (pos[0] < T || pos[1] < T || pos[2] < T) {
            backend_item d[3];
            int n = 0, seq[3];
            for (int q = 0; q < NS; q++) {
                if (pos[q] >= T) continue;
                int len = q == 1 && pos[q] + 3 <= T ? 3 : 1; /* seq 1 advances in chunks of 3 */
                d[n] = (backend_item){slot[q], pos[q], len, ids[q] + pos[q], 0};
                seq[n++] = q;
            }
            assert_int_equal(cpu_backend_ops.forward(b, d, n, lg), GPTOSS_OK);
            for (int i = 0; i < n; i++) {
                int q = seq[i];
                pos[q] += d[i].n;
                check_logits(lg + (size_t)i * TV, ref + ((size_t)q * T + pos[q] - 1) * TV, 1, "batched decode");
            }
        }
        cpu_backend_ops.destroy(b);
    }
    unsetenv("GPTOSS_CPU_KERNELS");
    free(ref); free(lg); tiny_free(&m);
}

/* More tokens in one call than one internal pass takes (2048): the items
 * run in groups and the logits rows still land in item order. */
static void test_forward_many_items(void **state) {
    (void)state;
    tiny_model m;
    tiny_init(&m);
    enum { NS = 5, T = BACKEND_MAX_CHUNK };
    int32_t *ids = malloc(sizeof *ids * NS * T);
    double *ref = malloc(sizeof *ref * NS * T * TV);
    for (int i = 0; i < NS * T; i++) ids[i] = (int32_t)(rnd() % TV);
    for (int q = 0; q < NS; q++) ref_forward(&m, ids + q * T, T, ref + (size_t)q * T * TV);
    float *lg = malloc(sizeof *lg * (T + NS) * TV);
    for (int s = 0; s < NSETS; s++) {
        if (!cpu_kernels_supported(SETS[s])) continue;
        setenv("GPTOSS_CPU_KERNELS", SETS[s]->name, 1);
        backend *b = tiny_backend(&m, T, NS, 2);
        backend_item it[NS];
        for (int q = 0; q < NS; q++) it[q] = (backend_item){NS - 1 - q, 0, T, ids + q * T, q == 2};
        assert_int_equal(cpu_backend_ops.forward(b, it, NS, lg), GPTOSS_OK);
        float *row = lg;
        for (int q = 0; q < NS; q++) {
            int rows = q == 2 ? T : 1;
            check_logits(row, ref + ((size_t)q * T + T - rows) * TV, rows, "many items");
            row += (size_t)rows * TV;
        }
        cpu_backend_ops.destroy(b);
    }
    unsetenv("GPTOSS_CPU_KERNELS");
    free(ids); free(ref); free(lg); tiny_free(&m);
}

static void test_truncate_rules(void **state) {
    (void)state;
    tiny_model m;
    tiny_init(&m);
    int32_t ids[TLONG], alt[TLONG];
    for (int t = 0; t < TLONG; t++) ids[t] = alt[t] = (int32_t)(rnd() % TV);
    for (int t = 15; t < 20; t++) alt[t] = (int32_t)((ids[t] + 1) % TV);
    double *ref = malloc(sizeof *ref * 20 * TV);
    ref_forward(&m, alt, 20, ref);
    float *lg = malloc(sizeof *lg * BACKEND_MAX_CHUNK * TV);
    backend *b = tiny_backend(&m, 600, 2, 2);
    /* Roll back 5 tokens and continue differently. */
    backend_item it = {1, 0, 20, ids, 0};
    assert_int_equal(cpu_backend_ops.forward(b, &it, 1, lg), GPTOSS_OK);
    assert_int_equal(cpu_backend_ops.truncate(b, 1, 15, 20), GPTOSS_OK);
    it = (backend_item){1, 15, 5, alt + 15, 1};
    assert_int_equal(cpu_backend_ops.forward(b, &it, 1, lg), GPTOSS_OK);
    check_logits(lg, ref + 15 * TV, 5, "after truncate");
    /* Argument checks. */
    assert_int_equal(cpu_backend_ops.truncate(b, 1, 21, 20), GPTOSS_ERR_INVALID_ARGUMENT);
    assert_int_equal(cpu_backend_ops.truncate(b, 2, 0, 0), GPTOSS_ERR_INVALID_ARGUMENT);
    it = (backend_item){0, 3, 1, ids, 0}; /* slot 0 holds 0 positions */
    assert_int_equal(cpu_backend_ops.forward(b, &it, 1, lg), GPTOSS_ERR_INVALID_ARGUMENT);
    int32_t bad = TV;
    it = (backend_item){0, 0, 1, &bad, 0};
    assert_int_equal(cpu_backend_ops.forward(b, &it, 1, lg), GPTOSS_ERR_INVALID_ARGUMENT);
    it = (backend_item){0, 0, BACKEND_MAX_CHUNK + 1, ids, 0};
    assert_int_equal(cpu_backend_ops.forward(b, &it, 1, lg), GPTOSS_ERR_INVALID_ARGUMENT);
    backend_item two[2] = {{0, 0, 1, ids, 0}, {0, 0, 1, ids, 0}};
    assert_int_equal(cpu_backend_ops.forward(b, two, 2, lg), GPTOSS_ERR_INVALID_ARGUMENT);
    /* Fill slot 0 to 530: the ring (516) no longer holds what position 10 needs. */
    it = (backend_item){0, 0, BACKEND_MAX_CHUNK, ids, 0};
    assert_int_equal(cpu_backend_ops.forward(b, &it, 1, lg), GPTOSS_OK);
    it = (backend_item){0, BACKEND_MAX_CHUNK, TLONG - BACKEND_MAX_CHUNK, ids + BACKEND_MAX_CHUNK, 0};
    assert_int_equal(cpu_backend_ops.forward(b, &it, 1, lg), GPTOSS_OK);
    assert_int_equal(cpu_backend_ops.truncate(b, 0, 10, TLONG), GPTOSS_ERR_UNSUPPORTED);
    assert_int_equal(cpu_backend_ops.truncate(b, 0, TLONG - BACKEND_MAX_CHUNK, TLONG), GPTOSS_OK);
    it = (backend_item){0, TLONG - BACKEND_MAX_CHUNK, 100, ids, 0};
    assert_int_equal(cpu_backend_ops.forward(b, &it, 1, lg), GPTOSS_OK);
    it = (backend_item){0, TLONG - BACKEND_MAX_CHUNK + 100, 600, ids, 0};
    assert_int_equal(cpu_backend_ops.forward(b, &it, 1, lg), GPTOSS_ERR_INVALID_ARGUMENT);
    it = (backend_item){0, TLONG - BACKEND_MAX_CHUNK + 100, 500, ids, 0};
    assert_int_equal(cpu_backend_ops.forward(b, &it, 1, lg), GPTOSS_ERR_CONTEXT_FULL);
    cpu_backend_ops.destroy(b);
    free(ref); free(lg); tiny_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matvec_bf16),
        cmocka_unit_test(test_pack_tokens),
        cmocka_unit_test(test_mxfp4),
        cmocka_unit_test(test_vector_ops),
        cmocka_unit_test(test_attention_kernels),
        cmocka_unit_test(test_simd_vs_scalar),
        cmocka_unit_test(test_kernel_select),
        cmocka_unit_test(test_forward_prefill),
        cmocka_unit_test(test_forward_decode_batched),
        cmocka_unit_test(test_forward_many_items),
        cmocka_unit_test(test_truncate_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
