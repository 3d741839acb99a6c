/* test_cuda_parity.c - CUDA kernels and the whole CUDA forward against
 * independent CPU references (double precision written here, and the CPU
 * backend for the whole model). Every case skips when the build has no CUDA
 * backend or no GPU is visible (CI). Sizes are deliberately awkward: rows not
 * a multiple of the tile, odd block counts, window boundaries, several slots,
 * split-KV attention, awkward logits rows for device sampling. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <jansson.h>
#include <unistd.h>

#include "backend.h"
#include "util.h"
#ifdef GPTOSS_CUDA
#include "cuda/cuda_test.h"
#endif

#ifdef GPTOSS_CUDA

static uint64_t rs = 0x1234567;
static float frand(void) { /* uniform [-1, 1) */
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rs >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}
static uint32_t urand(void) {
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rs >> 33);
}
static float bfr(float f) { return bf16_to_f32(f32_to_bf16(f)); }

static void need_gpu(void) {
    if (!cuda_test_device()) skip();
}

/* max |a-b| / max(|b|) */
static double rel_max(const float *a, const double *b, size_t n) {
    double m = 0, d = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i])) return INFINITY;
        if (fabs(b[i]) > m) m = fabs(b[i]);
        if (fabs(a[i] - b[i]) > d) d = fabs(a[i] - b[i]);
    }
    return d / (m > 0 ? m : 1);
}

static void check_linear(int N, int K, int T, int with_resid) {
    uint16_t *W = malloc((size_t)N * K * 2);
    float *x = malloc((size_t)T * K * 4), *bias = malloc((size_t)N * 4);
    float *resid = malloc((size_t)T * N * 4), *out = malloc((size_t)T * N * 4);
    double *ref = malloc((size_t)T * N * 8);
    for (size_t i = 0; i < (size_t)N * K; i++) W[i] = f32_to_bf16(frand() * 0.05f);
    for (size_t i = 0; i < (size_t)T * K; i++) x[i] = frand();
    for (int i = 0; i < N; i++) bias[i] = frand();
    for (size_t i = 0; i < (size_t)T * N; i++) { resid[i] = frand(); out[i] = NAN; }
    for (int t = 0; t < T; t++)
        for (int n = 0; n < N; n++) {
            double s = bias[n] + (with_resid ? resid[(size_t)t * N + n] : 0);
            for (int k = 0; k < K; k++) {
                float xv = T > 4 ? bfr(x[(size_t)t * K + k]) : x[(size_t)t * K + k];
                s += (double)bf16_to_f32(W[(size_t)n * K + k]) * xv;
            }
            ref[(size_t)t * N + n] = s;
        }
    assert_int_equal(cuda_test_linear(W, N, K, x, T, bias, with_resid ? resid : NULL, out), 0);
    double r = rel_max(out, ref, (size_t)T * N);
    printf("linear N=%d K=%d T=%d: rel err %.3g\n", N, K, T, r);
    assert_true(r < 1e-5);
    free(W); free(x); free(bias); free(resid); free(out); free(ref);
}

static void test_linear(void **state) {
    (void)state;
    need_gpu();
    check_linear(333, 296, 1, 0);
    check_linear(1000, 2880, 3, 1);
    check_linear(70000, 64, 2, 0);  /* the 4-rows-per-warp variant, tail rows */
    check_linear(517, 4096, 4, 1);
    check_linear(301, 2880, 37, 1); /* cuBLAS path */
    check_linear(32, 2880, 1, 0);   /* K split over a block's warps (router) */
    check_linear(128, 1096, 4, 1);
    check_linear(7, 12296, 2, 1);   /* ... with more than 64 chunks per warp */
    check_linear(12000, 2952, 1, 1); /* two rows per warp, predicated last round */
}

static void test_rmsnorm(void **state) {
    (void)state;
    need_gpu();
    int T = 3, H = 2912;
    float *x = malloc((size_t)T * H * 4), *w = malloc((size_t)H * 4), *out = malloc((size_t)T * H * 4);
    double *ref = malloc((size_t)T * H * 8);
    for (int i = 0; i < T * H; i++) x[i] = frand() * 3;
    for (int i = 0; i < H; i++) w[i] = frand();
    for (int t = 0; t < T; t++) {
        double ss = 0;
        for (int i = 0; i < H; i++) ss += (double)x[t * H + i] * x[t * H + i];
        double inv = 1.0 / sqrt(ss / H + 1e-5);
        for (int i = 0; i < H; i++) ref[t * H + i] = x[t * H + i] * inv * w[i];
    }
    assert_int_equal(cuda_test_rmsnorm(x, w, T, H, 1e-5f, out), 0);
    assert_true(rel_max(out, ref, (size_t)T * H) < 1e-5);
    free(x); free(w); free(out); free(ref);
}

/* Tolerance and label of check_attention (test_attention_tc changes them). */
static double attn_tol = 1e-4;
static const char *attn_label = "";

/* RoPE + cache write, then attention over the caches, against a double
 * reference that reads the same bf16 caches. */
static void check_attention(int hd, int nh, int nkv, int window, int cap, int T, const int *pos,
                            const int *slot) {
    int slots = 2, width = (nh + 2 * nkv) * hd, kvw = nkv * hd, half = hd / 2;
    size_t cache = (size_t)slots * cap * kvw;
    float *kc = malloc(cache * 4), *vc = malloc(cache * 4);
    for (size_t i = 0; i < cache; i++) { kc[i] = frand(); vc[i] = frand(); }
    float *qkv = malloc((size_t)T * width * 4), *orig = malloc((size_t)T * width * 4);
    float *bias = malloc((size_t)width * 4), *inv = malloc((size_t)half * 4), sinks[64];
    for (int i = 0; i < T * width; i++) orig[i] = qkv[i] = frand() * 2;
    for (int i = 0; i < width; i++) bias[i] = frand() * 0.1f;
    for (int i = 0; i < half; i++) inv[i] = powf(10000.0f, -2.0f * i / hd);
    for (int h = 0; h < nh; h++) sinks[h] = frand() * 2;
    float conc = 1.3f;
    assert_int_equal(cuda_test_rope_kv(qkv, bias, inv, conc, pos, slot, kc, vc, slots, cap, T, nh, nkv, hd), 0);
    /* rope reference */
    double *rq = malloc((size_t)T * width * 8);
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < width; i++) rq[(size_t)t * width + i] = (double)orig[(size_t)t * width + i] + bias[i];
        for (int head = 0; head < nh + nkv; head++)
            for (int i = 0; i < half; i++) {
                /* the angle in fp32 (spec: fp32 or better), then exact cos/sin */
                double ang = (double)((float)pos[t] * inv[i]), c = cos(ang) * conc, s = sin(ang) * conc;
                double *p = rq + (size_t)t * width + head * hd;
                double x1 = p[i], x2 = p[i + half];
                p[i] = x1 * c - x2 * s; p[i + half] = x2 * c + x1 * s;
            }
        /* cache rows written */
        size_t base = ((size_t)slot[t] * cap + pos[t] % cap) * kvw;
        for (int i = 0; i < kvw; i++) {
            double kr = rq[(size_t)t * width + nh * hd + i], vr = rq[(size_t)t * width + (nh + nkv) * hd + i];
            assert_true(fabs(kc[base + i] - kr) <= 1e-4 * fabs(kr) + 1e-4);
            assert_true(fabs(vc[base + i] - vr) <= 1e-4 * fabs(vr) + 1e-4);
        }
    }
    assert_true(rel_max(qkv, rq, (size_t)T * width) < 1e-4);
    /* attention */
    float *out = malloc((size_t)T * nh * hd * 4);
    double *ref = calloc((size_t)T * nh * hd, 8);
    assert_int_equal(cuda_test_attention(qkv, width, kc, vc, slots, cap, pos, slot, sinks, T, nh, nkv,
                                         hd, window, out), 0);
    for (int t = 0; t < T; t++) {
        int p = pos[t], lo = window ? (p - window + 1 > 0 ? p - window + 1 : 0) : 0;
        for (int h = 0; h < nh; h++) {
            int g = h / (nh / nkv);
            double m = sinks[h], *sc = malloc((size_t)(p + 1) * 8);
            for (int j = lo; j <= p; j++) {
                const float *kr = kc + ((size_t)slot[t] * cap + j % cap) * kvw + g * hd;
                double d = 0;
                for (int i = 0; i < hd; i++) d += (double)qkv[(size_t)t * width + h * hd + i] * kr[i];
                sc[j] = d / sqrt((double)hd);
                if (sc[j] > m) m = sc[j];
            }
            double l = exp(sinks[h] - m);
            for (int j = lo; j <= p; j++) l += exp(sc[j] - m);
            for (int j = lo; j <= p; j++) {
                const float *vr = vc + ((size_t)slot[t] * cap + j % cap) * kvw + g * hd;
                double pj = exp(sc[j] - m) / l;
                for (int i = 0; i < hd; i++) ref[((size_t)t * nh + h) * hd + i] += pj * vr[i];
            }
            free(sc);
        }
    }
    double r = rel_max(out, ref, (size_t)T * nh * hd);
    printf("attention%s hd=%d nh=%d nkv=%d window=%d T=%d pos0=%d: rel err %.3g\n", attn_label, hd, nh,
           nkv, window, T, pos[0], r);
    assert_true(r < attn_tol);
    free(kc); free(vc); free(qkv); free(orig); free(bias); free(inv); free(rq); free(out); free(ref);
}

static void test_attention(void **state) {
    (void)state;
    need_gpu();
    int prev = cuda_test_attention_variant(1); /* k_attention (tensor cores: test_attention_tc) */
    int pos1[] = { 0, 7, 8, 9, 130 }, slot1[] = { 0, 1, 0, 1, 1 };
    check_attention(16, 4, 2, 8, 520, 5, pos1, slot1);           /* tiny shapes, window 8 */
    int pos2[] = { 127, 128, 129, 600 }, slot2[] = { 1, 0, 1, 0 };
    check_attention(64, 64, 8, 128, 300, 4, pos2, slot2);        /* ring wraps at 600 */
    int pos3[] = { 0, 255, 256, 1000, 3000 }, slot3[] = { 0, 0, 1, 1, 0 };
    check_attention(64, 64, 8, 0, 4096, 5, pos3, slot3);         /* full: split-KV */
    check_attention(64, 64, 8, 0, 4096, 4, pos3 + 1, slot3 + 1); /* decode sizes: split-KV + combine */
    int pos5[] = { 577 }, slot5[] = { 1 };
    check_attention(16, 6, 3, 0, 700, 1, pos5, slot5);           /* one token, 10 splits */
    check_attention(64, 64, 8, 128, 300, 1, pos2 + 3, slot2 + 3); /* one token, ring wrapped */
    /* decode in clusters on sm_90 (cuda_attn_decode.cu, up to 1024 keys):
     * uneven splits (578 keys over 16), a split of 64 keys, a lone key */
    check_attention(64, 64, 8, 0, 1100, 1, pos5, slot5);
    int pos6[] = { 0, 1023, 31 }, slot6[] = { 0, 1, 0 };
    check_attention(64, 64, 8, 0, 1100, 3, pos6, slot6);
    int pos7[] = { 40, 64 }, slot7[] = { 1, 0 };
    check_attention(64, 16, 4, 0, 1100, 2, pos7, slot7);          /* G = 4 */
    int pos4[12], slot4[12];
    for (int i = 0; i < 12; i++) { pos4[i] = 300 + i; slot4[i] = 1; }
    check_attention(64, 16, 2, 0, 1024, 12, pos4, slot4);        /* a prefill chunk */
    cuda_test_attention_variant(prev);
}

/* Tensor-core prefill attention (cuda_attn_prefill.cu, the default):
 * the T > 4 cases above plus query counts off its 16-token tiles (5, 37, 130,
 * 512), chunks after earlier tokens (pos 100, 700: sliding windows cross the
 * ring of 128 + 512), full and sliding layers, G = 8, 2 and 1, and passes
 * mixing two sequences (slots). Tolerance 2e-5 (k_attention: 1e-4, measured
 * <= 4.7e-7): scores come from fp16 hi + lo products of Q and K (~2^-22 per
 * product), outputs from bf16 hi + lo products of P and V (~2^-16), lo x lo
 * dropped, fp32 accumulation; an emulation of these splits on this data gave
 * <= 5.3e-6 per row, so 2e-5 leaves ~4x for accumulation order and __expf. */
static void check_attention_run(int nh, int nkv, int window, int cap, int T, int start) {
    int *pos = malloc((size_t)T * sizeof(int)), *slot = malloc((size_t)T * sizeof(int));
    for (int i = 0; i < T; i++) { pos[i] = start + i; slot[i] = 1; }
    check_attention(64, nh, nkv, window, cap, T, pos, slot);
    free(pos); free(slot);
}

static void test_attention_tc(void **state) {
    (void)state;
    need_gpu();
    int prev = cuda_test_attention_variant(2);
    attn_tol = 2e-5;
    attn_label = " tc";
    int pos3[] = { 0, 255, 256, 1000, 3000 }, slot3[] = { 0, 0, 1, 1, 0 };
    check_attention(64, 64, 8, 0, 4096, 5, pos3, slot3);  /* three slot walks in one block */
    int pos4[12], slot4[12];
    for (int i = 0; i < 12; i++) { pos4[i] = 300 + i; slot4[i] = 1; }
    check_attention(64, 16, 2, 0, 1024, 12, pos4, slot4);
    /* nh 64 / nkv 8 (16 tokens a block) */
    check_attention_run(64, 8, 0, 1024, 5, 0);
    check_attention_run(64, 8, 128, 640, 5, 700);
    check_attention_run(64, 8, 128, 640, 37, 100);
    check_attention_run(64, 8, 0, 2048, 37, 700);
    check_attention_run(64, 8, 128, 640, 130, 0);
    check_attention_run(64, 8, 128, 640, 130, 700);       /* window crosses the ring end */
    check_attention_run(64, 8, 0, 1024, 512, 0);
    check_attention_run(64, 8, 128, 640, 512, 100);
    check_attention_run(64, 8, 128, 640, 512, 700);
    /* nh 4 / nkv 2 (64 tokens a block), nh 8 / nkv 8 (128 tokens a block) */
    check_attention_run(4, 2, 0, 1024, 5, 0);
    check_attention_run(4, 2, 128, 640, 37, 700);
    check_attention_run(4, 2, 0, 1024, 130, 100);
    check_attention_run(4, 2, 128, 640, 512, 700);
    check_attention_run(4, 2, 0, 2048, 512, 700);
    check_attention_run(8, 8, 128, 640, 130, 100);
    /* two sequences in one pass (batched sessions), interleaved in blocks */
    int pos5[37], slot5[37];
    for (int i = 0; i < 37; i++) {
        pos5[i] = i % 3 ? 700 + i : 40 + i;
        slot5[i] = i % 3 ? 1 : 0;
    }
    check_attention(64, 64, 8, 128, 640, 37, pos5, slot5);
    check_attention(64, 4, 2, 0, 1024, 37, pos5, slot5);
    attn_tol = 1e-4;
    attn_label = "";
    cuda_test_attention_variant(prev);
}

/* Router top-k: descending, lowest index on ties (the coarse values of the
 * second case make ties common), softmax over the chosen logits. */
static void check_topk(int T, int E, int k, int coarse) {
    float *lg = malloc((size_t)T * E * 4), *w = malloc((size_t)T * k * 4);
    int *e = malloc((size_t)T * k * sizeof(int));
    for (int i = 0; i < T * E; i++) lg[i] = coarse ? (float)(urand() % 5) : frand() * 4;
    assert_int_equal(cuda_test_topk(lg, T, E, k, e, w), 0);
    for (int t = 0; t < T; t++) {
        int used[256] = { 0 };
        double sum = 0, ex[8];
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int i = 0; i < E; i++)
                if (!used[i] && (best < 0 || lg[t * E + i] > lg[t * E + best])) best = i;
            used[best] = 1;
            assert_int_equal(e[t * k + j], best);
            ex[j] = exp(lg[t * E + best] - lg[t * E + e[t * k]]);
            sum += ex[j];
        }
        for (int j = 0; j < k; j++) assert_true(fabs(w[t * k + j] - ex[j] / sum) < 1e-6);
    }
    free(lg); free(w); free(e);
}

static void test_topk(void **state) {
    (void)state;
    need_gpu();
    check_topk(5, 128, 4, 0);
    check_topk(7, 32, 4, 1);
    check_topk(3, 200, 8, 1);
    check_topk(2, 33, 3, 0);
}

/* MXFP4 reference */
static const float fp4v[16] = { 0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6 };
static double mx_dot(const uint8_t *blocks, const uint8_t *scales, int row, int K, const double *x) {
    int NB = K / 32;
    double s = 0;
    for (int b = 0; b < NB; b++) {
        double sc = ldexp(1.0, (int)scales[(size_t)row * NB + b] - 127);
        const uint8_t *q = blocks + ((size_t)row * NB + b) * 16;
        for (int i = 0; i < 32; i++) {
            int code = (i & 1) ? q[i / 2] >> 4 : q[i / 2] & 15;
            s += fp4v[code] * sc * x[b * 32 + i];
        }
    }
    return s;
}

/* scale bytes of check_moe: moe_sc_lo + [0, moe_sc_span); with moe_wide, also
 * some zero scales (2^-127) and 0x88 bytes (two negative-zero codes) */
static int moe_sc_lo = 120, moe_sc_span = 4, moe_wide = 0;
static const char *moe_label = "";
static int moe_tc = 0; /* the decode kernels in use run on tensor cores (v9) */
static int moe_i8 = 0; /* the decode kernels in use take int8 hi + lo inputs (v6, v7) */

static void check_moe(int T, int E, int k, int H, int I, int grouped) {
    /* the same data for a shape whichever test or kernel version runs it */
    rs = 0x9e3779b97f4a7c15ull ^ ((uint64_t)T << 40) ^ ((uint64_t)E << 28) ^ ((uint64_t)k << 24) ^
         ((uint64_t)H << 12) ^ (uint64_t)I ^ ((uint64_t)moe_wide << 60);
    size_t gub = (size_t)E * 2 * I * H / 2, gus = (size_t)E * 2 * I * H / 32;
    size_t dnb = (size_t)E * H * I / 2, dns = (size_t)E * H * I / 32;
    uint8_t *gb = malloc(gub), *gs = malloc(gus), *db = malloc(dnb), *ds = malloc(dns);
    for (size_t i = 0; i < gub; i++) gb[i] = (uint8_t)urand();
    for (size_t i = 0; i < gus; i++) gs[i] = (uint8_t)(moe_sc_lo + urand() % moe_sc_span);
    for (size_t i = 0; i < dnb; i++) db[i] = (uint8_t)urand();
    for (size_t i = 0; i < dns; i++) ds[i] = (uint8_t)(moe_sc_lo + urand() % moe_sc_span);
    if (moe_wide) {
        for (size_t i = 0; i < gub; i += 7) gb[i] = 0x88;
        for (size_t i = 0; i < dnb; i += 7) db[i] = 0x88;
        for (size_t i = 0; i < gus; i += 97) gs[i] = 0;
        for (size_t i = 0; i < dns; i += 97) ds[i] = 0;
    }
    float *gbias = malloc((size_t)E * 2 * I * 4), *dbias = malloc((size_t)E * H * 4);
    for (int i = 0; i < E * 2 * I; i++) gbias[i] = frand();
    for (int i = 0; i < E * H; i++) dbias[i] = frand();
    float *h = malloc((size_t)T * H * 4), *lg = malloc((size_t)T * E * 4), *x = malloc((size_t)T * H * 4);
    for (int i = 0; i < T * H; i++) { h[i] = frand() * 2; x[i] = frand(); }
    for (int i = 0; i < T * E; i++) lg[i] = frand() * 4;
    double *ref = malloc((size_t)T * H * 8), *hx = malloc((size_t)H * 8), *act = malloc((size_t)I * 8);
    for (int t = 0; t < T; t++) {
        int used[256] = { 0 }, sel[8];
        double wsum = 0, wts[8];
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int i = 0; i < E; i++)
                if (!used[i] && (best < 0 || lg[t * E + i] > lg[t * E + best])) best = i;
            used[best] = 1; sel[j] = best;
            wts[j] = exp(lg[t * E + best] - lg[t * E + sel[0]]);
            wsum += wts[j];
        }
        for (int i = 0; i < H; i++) { ref[(size_t)t * H + i] = x[(size_t)t * H + i]; hx[i] = h[t * H + i]; }
        for (int j = 0; j < k; j++) {
            int e = sel[j];
            for (int i = 0; i < I; i++) {
                double g = mx_dot(gb + (size_t)e * 2 * I * H / 2, gs + (size_t)e * 2 * I * H / 32, 2 * i, H, hx) + gbias[e * 2 * I + 2 * i];
                double u = mx_dot(gb + (size_t)e * 2 * I * H / 2, gs + (size_t)e * 2 * I * H / 32, 2 * i + 1, H, hx) + gbias[e * 2 * I + 2 * i + 1];
                if (g > 7) g = 7;
                if (u > 7) u = 7;
                if (u < -7) u = -7;
                double a = g / (1 + exp(-1.702 * g)) * (u + 1);
                act[i] = a;
            }
            for (int r = 0; r < H; r++) {
                double y = mx_dot(db + (size_t)e * H * I / 2, ds + (size_t)e * H * I / 32, r, I, act) + dbias[e * H + r];
                ref[(size_t)t * H + r] += wts[j] / wsum * y;
            }
        }
    }
    assert_int_equal(cuda_test_moe(gb, gs, gbias, db, ds, dbias, h, lg, x, T, E, k, H, I, 7.0f, 1.702f, grouped), 0);
    double r = rel_max(x, ref, (size_t)T * H);
    printf("moe %s%s T=%d E=%d k=%d H=%d I=%d: rel err %.3g\n", grouped == 1 ? "grouped" : grouped ? "fused-topk" : "decode", moe_label, T, E, k, H, I, r);
    /* With scales spread over 2^-23..2^13 a few rows dominate and the sums
     * cancel, so error relative to the largest output is ill-conditioned:
     * such cases (moe_wide) get a looser bound. */
    /* grouped and v9 decode kernels: bf16 hi + lo inputs on tensor cores;
     * v6, v7: int8 hi + lo inputs, each within max|x| / 64516 of x */
    /* wide scales: v1 and v2 of the grouped GEMM measured 9.2e-4 / 8.8e-4 on
     * the first wide case (same data) and v2 3.95e-3 on the second */
    double wide_tol = moe_i8 ? 2e-2 : grouped == 1 ? 5e-3 : 2e-3;
    assert_true(r < (moe_wide ? wide_tol : moe_i8 ? 2e-4 : grouped == 1 || moe_tc ? 3e-5 : 1e-5));
    free(gb); free(gs); free(db); free(ds); free(gbias); free(dbias); free(h); free(lg); free(x);
    free(ref); free(hx); free(act);
}

static void test_moe_decode(void **state) {
    (void)state;
    need_gpu();
    int cur = cuda_test_moe_decode_variant(4); /* the version in use (environment) */
    cuda_test_moe_decode_variant(cur);
    moe_tc = cur == 9 || cur == 11;
    moe_i8 = cur == 6 || cur == 7;
    check_moe(1, 32, 4, 2880, 2880, 0);
    check_moe(3, 8, 2, 96, 160, 0);
    check_moe(4, 128, 4, 1088, 1056, 0);
    check_moe(2, 32, 4, 2880, 2880, 2);  /* top-k fused into gate_up */
    check_moe(3, 6, 3, 64, 96, 2);
    if (cur == 11) { /* whether the sm_90 cluster forms run here (0: they do not) */
        int dn, a4, a16;
        cuda_test_cluster_caps(&dn, &a4, &a16);
        printf("clusters resident at once: v11 down (1,4) %d, attention (1,1,4) %d, (1,1,16) %d\n", dn, a4, a16);
    }
    moe_tc = moe_i8 = 0;
}

/* The awkward decode shapes every decode kernel version runs (see below). */
static void check_moe_decode_cases(void) {
    check_moe(1, 32, 4, 2880, 2880, 2);
    check_moe(4, 8, 4, 2880, 2880, 0);
    check_moe(3, 8, 2, 96, 160, 0);
    check_moe(4, 128, 4, 1088, 1056, 2);
    check_moe(3, 6, 3, 64, 96, 2);
    check_moe(2, 12, 5, 160, 224, 0);
    check_moe(1, 16, 8, 320, 352, 2);
    check_moe(2, 4, 2, 3072, 3072, 0);
    check_moe(1, 4, 2, 3104, 3136, 0);
    moe_sc_lo = 104; moe_sc_span = 37; moe_wide = 1;
    check_moe(2, 16, 4, 2880, 544, 2);
    check_moe(3, 8, 4, 1056, 2880, 0);
    moe_sc_lo = 120; moe_sc_span = 4; moe_wide = 0;
}

/* The decode kernel versions (GPTOSS_CUDA_MOE_DECODE=v1|v4|v6|v7|v7f) against the
 * double reference: rows and K not multiples of the tiles, 1..4 tokens,
 * k = 2..8 (k = 3 and 5: v4's down kernel falls back to v1), K = 3072 (the
 * limit of v4) and 3104 (it falls back to v1), scales from 2^-127 to
 * 2^13 with negative-zero codes. */
static void test_moe_decode_versions(void **state) {
    (void)state;
    need_gpu();
    int prev = cuda_test_moe_decode_variant(4);
    static const char *const labels[] = { "", " v1", "", "", " v4", "", " v6", " v7", " v7f", " v9", "", " v11" };
    static const int versions[] = { 1, 4, 6, 7, 8 };
    for (int vi = 0; vi < 5; vi++) {
        int v = versions[vi];
        cuda_test_moe_decode_variant(v);
        moe_label = labels[v];
        moe_i8 = v == 6 || v == 7;
        check_moe_decode_cases();
    }
    moe_label = "";
    moe_tc = 0;
    moe_i8 = 0;
    cuda_test_moe_decode_variant(prev);
}

/* v7f with every compiled kernel shape (rows per group x warps; the default
 * is g4w15 for gate_up and g4w12 for down; down shapes whose warps do not
 * split over 3 parts x k experts fall back to g2w24) on the same cases. */
static void test_moe_decode_v7_shapes(void **state) {
    (void)state;
    need_gpu();
    int prev = cuda_test_moe_decode_variant(8);
    static const char *const shapes[] = { "g2w24", "g4w18", "g4w15", "g4w12", "g8w12", "g8w9" };
    char label[32];
    for (int i = 0; i < 6; i++) {
        cuda_test_moe_v7_shapes(shapes[i], shapes[i]);
        snprintf(label, sizeof label, " v7f %s", shapes[i]);
        moe_label = label;
        check_moe_decode_cases();
    }
    cuda_test_moe_v7_shapes(NULL, NULL);
    moe_label = "";
    cuda_test_moe_decode_variant(prev);
}

/* v9 (tensor cores, bf16 hi + lo inputs) on the same cases as
 * test_moe_decode_versions, with the tensor-core (hi + lo bf16) tolerance. */
/* Runs fn (the cases) with tensor-core decode version v in use, labelled. */
static void with_tc_version(int v, const char *label, void (*fn)(void)) {
    int prev = cuda_test_moe_decode_variant(v);
    moe_label = label;
    moe_tc = 1;
    moe_i8 = 0;
    fn();
    moe_label = "";
    moe_tc = 0;
    cuda_test_moe_decode_variant(prev);
}

static void test_moe_decode_v9(void **state) {
    (void)state;
    need_gpu();
    with_tc_version(9, " v9", check_moe_decode_cases);
}

/* v11 (int8 tensor cores, x as three int8 limbs: exact to 2^-21 of each
 * 128-element max) on the same cases (K = 3072..3136 exceed its 23 warps and
 * fall back to v7f / v4), plus gate_up and down each alone at K = 2880 (the
 * compile-time-offset instantiation) against an awkward K on the other side. */
static void v11_cases(void) {
    check_moe_decode_cases();
    check_moe(2, 8, 4, 544, 2880, 0);
    check_moe(1, 8, 2, 2880, 160, 2);
}

static void test_moe_decode_v11(void **state) {
    (void)state;
    need_gpu();
    with_tc_version(11, " v11", v11_cases);
}

static void test_moe_grouped(void **state) {
    (void)state;
    need_gpu();
    int prev = cuda_test_moe_gemm_variant(1); /* cuda_moe_gemm.cu (v2: the test below) */
    moe_sc_lo = 120, moe_sc_span = 4, moe_wide = 0;
    moe_label = " v1";
    check_moe(37, 8, 4, 96, 160, 1);     /* K tails (3 and 5 blocks), N tails */
    check_moe(24, 32, 4, 2880, 2880, 1);
    check_moe(9, 4, 2, 64, 96, 1);
    /* scales 2^-23 .. 2^13 with zero scales (2^-127, a bf16 subnormal in the
     * dequantised tile) and negative-zero codes */
    moe_sc_lo = 104; moe_sc_span = 37; moe_wide = 1;
    check_moe(20, 16, 4, 1056, 544, 1);
    check_moe(37, 8, 2, 544, 2880, 1);
    moe_sc_lo = 120; moe_sc_span = 4; moe_wide = 0;
    moe_label = "";
    if (prev > 0) cuda_test_moe_gemm_variant(prev);
}

/* The grouped GEMM v2 (GPTOSS_CUDA_MOE_GEMM=v2) on test_moe_grouped's cases and
 * more: 1..300 tokens (experts with 0, 1, 9 and ~150 rows: 64-row tiles full,
 * partial and single), E = 4..128, k = 2/4, K tails of 32 (96, 160, 544,
 * 1056) against its 64-wide stages, N tails against its 256-row blocks (2I =
 * 192, 320, 1088; H = 64, 96, 1056, 2880) and exact ones (3072, 6144). */
static void check_moe_grouped_tc(int variant, const char *label) {
    int prev = cuda_test_moe_gemm_variant(variant);
    if (prev < 0) skip(); /* v2: shared memory per block too small; v4: no sm_90a GPU */
    moe_sc_lo = 120, moe_sc_span = 4, moe_wide = 0;
    moe_label = label;
    check_moe(37, 8, 4, 96, 160, 1);
    check_moe(24, 32, 4, 2880, 2880, 1);
    check_moe(9, 4, 2, 64, 96, 1);
    check_moe(1, 32, 4, 1056, 544, 1);
    check_moe(7, 128, 4, 1056, 544, 1);
    check_moe(7, 4, 2, 3072, 3072, 1);
    check_moe(37, 4, 2, 160, 1056, 1);
    check_moe(300, 4, 2, 96, 160, 1);
    check_moe(300, 128, 4, 64, 96, 1);
    check_moe(300, 32, 4, 544, 160, 1);
    check_moe(300, 4, 2, 2880, 64, 1);
    moe_sc_lo = 104; moe_sc_span = 37; moe_wide = 1;
    check_moe(20, 16, 4, 1056, 544, 1);
    check_moe(37, 8, 2, 544, 2880, 1);
    moe_sc_lo = 120; moe_sc_span = 4; moe_wide = 0;
    moe_label = "";
    cuda_test_moe_gemm_variant(prev);
}

static void test_moe_grouped_v2(void **state) {
    (void)state;
    need_gpu();
    check_moe_grouped_tc(2, " v2");
}

/* v4 (wgmma, sm_90a only: skipped elsewhere) on the same cases (its 64-row
 * m tiles meet N tails inside a block: 2I = 192, 320, one or more warpgroups
 * without rows; K tails end on half a stage) and experts of 2 and 3 128-row
 * pieces (~150 and ~300 rows): every MMA width 16 .. 128 occurs */
static void test_moe_grouped_v4(void **state) {
    (void)state;
    need_gpu();
    check_moe_grouped_tc(4, " v4");
    int prev = cuda_test_moe_gemm_variant(4);
    check_moe(300, 4, 4, 160, 96, 1);
    check_moe(129, 2, 2, 96, 64, 1);
    cuda_test_moe_gemm_variant(prev);
}

/* ------------------------------------------------- whole forward vs CPU */

static char tmpdir[256];

static int run_cmd(const char *fmt, ...) {
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

/* prefill n0 tokens (all logits), decode steps, then a 2-slot batch; compare */
static void compare_model(const char *dir, int n0, int ndec, double tol_prefill, double tol_decode) {
    model_weights w;
    assert_int_equal(weights_load(dir, &w), GPTOSS_OK);
    backend_params p = { .n_threads = 2, .max_context = 1024, .max_sequences = 2 };
    backend *cpu = NULL, *gpu = NULL;
    assert_int_equal(cpu_backend_ops.create(&w, &p, &cpu), GPTOSS_OK);
    gptoss_status st = cuda_backend_ops.create(&w, &p, &gpu);
    if (st) fprintf(stderr, "cuda create: %s\n", gptoss_last_error());
    assert_int_equal(st, GPTOSS_OK);
    { /* the device bandwidth probe of `gptoss bench`: any real GPU copies > 100 GB/s */
        double bw = 0.0;
        assert_null(cpu_backend_ops.mem_bandwidth);
        st = cuda_backend_ops.mem_bandwidth(gpu, &bw);
        if (st) fprintf(stderr, "cuda mem_bandwidth: %s\n", gptoss_last_error());
        assert_int_equal(st, GPTOSS_OK);
        printf("device copy bandwidth %.0f GB/s\n", bw);
        assert_true(bw > 100.0 && bw < 100000.0);
    }
    int V = w.cfg.vocab_size;
    int total = n0 + ndec;
    int32_t *toks = malloc((size_t)total * 4);
    for (int i = 0; i < total; i++) toks[i] = (int32_t)(urand() % (uint32_t)V);
    float *lc = malloc((size_t)n0 * V * 4), *lg = malloc((size_t)n0 * V * 4);
    backend_item it = { .slot = 0, .pos = 0, .n = n0, .tokens = toks, .logits_all = 1 };
    assert_int_equal(cpu_backend_ops.forward(cpu, &it, 1, lc), GPTOSS_OK);
    assert_int_equal(cuda_backend_ops.forward(gpu, &it, 1, lg), GPTOSS_OK);
    double md = 0, mr = 0;
    for (size_t i = 0; i < (size_t)n0 * V; i++) {
        if (fabs(lc[i]) > mr) mr = fabs(lc[i]);
        if (!(fabs(lc[i] - lg[i]) <= md)) md = fabs(lc[i] - lg[i]);
    }
    printf("forward %s prefill %d: max |cpu-gpu| %.4g (max |logit| %.3g)\n", dir, n0, md, mr);
    /* decode steps on slot 0, and the same tokens on slot 1 from a 1-token prefill */
    double mdd = 0;
    for (int s = 0; s < ndec; s++) {
        backend_item d = { .slot = 0, .pos = n0 + s, .n = 1, .tokens = toks + n0 + s, .logits_all = 0 };
        assert_int_equal(cpu_backend_ops.forward(cpu, &d, 1, lc), GPTOSS_OK);
        assert_int_equal(cuda_backend_ops.forward(gpu, &d, 1, lg), GPTOSS_OK);
        for (int i = 0; i < V; i++)
            if (!(fabs(lc[i] - lg[i]) <= mdd)) mdd = fabs(lc[i] - lg[i]);
    }
    /* batched: slot 1 starts, then slots 0 and 1 decode together */
    backend_item b1 = { .slot = 1, .pos = 0, .n = 3, .tokens = toks, .logits_all = 0 };
    assert_int_equal(cpu_backend_ops.forward(cpu, &b1, 1, lc), GPTOSS_OK);
    assert_int_equal(cuda_backend_ops.forward(gpu, &b1, 1, lg), GPTOSS_OK);
    backend_item two[2] = {
        { .slot = 0, .pos = total, .n = 1, .tokens = toks + 5, .logits_all = 0 },
        { .slot = 1, .pos = 3, .n = 1, .tokens = toks + 6, .logits_all = 0 },
    };
    float *lc2 = malloc((size_t)2 * V * 4), *lg2 = malloc((size_t)2 * V * 4);
    assert_int_equal(cpu_backend_ops.forward(cpu, two, 2, lc2), GPTOSS_OK);
    assert_int_equal(cuda_backend_ops.forward(gpu, two, 2, lg2), GPTOSS_OK);
    for (int i = 0; i < 2 * V; i++)
        if (!(fabs(lc2[i] - lg2[i]) <= mdd)) mdd = fabs(lc2[i] - lg2[i]);
    printf("forward %s decode: max |cpu-gpu| %.4g\n", dir, mdd);
    assert_true(md <= tol_prefill * (mr > 1 ? mr : 1));
    assert_true(mdd <= tol_decode * (mr > 1 ? mr : 1));
    /* argument checks */
    backend_item bad = { .slot = 5, .pos = 0, .n = 1, .tokens = toks, .logits_all = 0 };
    assert_int_equal(cuda_backend_ops.forward(gpu, &bad, 1, lg), GPTOSS_ERR_INVALID_ARGUMENT);
    backend_item full = { .slot = 0, .pos = 1024, .n = 1, .tokens = toks, .logits_all = 0 };
    assert_int_equal(cuda_backend_ops.forward(gpu, &full, 1, lg), GPTOSS_ERR_CONTEXT_FULL);
    cuda_backend_ops.destroy(gpu);
    cpu_backend_ops.destroy(cpu);
    weights_free(&w);
    free(toks); free(lc); free(lg); free(lc2); free(lg2);
}

static void test_forward_vs_cpu(void **state) {
    (void)state;
    need_gpu();
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    snprintf(tmpdir, sizeof tmpdir, "/tmp/gptoss-cuda-parity-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    /* tiny: window 8, head_dim 16, 4 experts top-2 */
    assert_int_equal(run_cmd("%s/gen_checkpoint --preset tiny --seed 11 --out %s/tiny >/dev/null", build, tmpdir), 0);
    /* wider: 20b-like head/expert shapes, few layers, small vocab */
    assert_int_equal(run_cmd("%s/gen_checkpoint --preset 20b --layers 2 --vocab 3000 --seed 12 --out %s/mid >/dev/null",
                             build, tmpdir), 0);
    char d[512];
    snprintf(d, sizeof d, "%s/tiny", tmpdir);
    compare_model(d, 37, 12, 2e-3, 1e-3);
    snprintf(d, sizeof d, "%s/mid", tmpdir);
    compare_model(d, 150, 4, 2e-3, 1e-3);
    run_cmd("rm -rf %s", tmpdir);
}

/* The CUDA backend against transformers' float32 logits in tests/fixtures
 * (made by tools/make_reference_fixtures.py): prefill of all ids (GEMM path)
 * and token-by-token decode (decode kernels, CUDA graph). */
static void check_fixture(const char *json_path, const char *build) {
    json_error_t jerr;
    json_t *fx = json_load_file(json_path, 0, &jerr);
    assert_non_null(fx);
    const char *name = json_string_value(json_object_get(fx, "name"));
    json_t *args = json_object_get(fx, "gen_args"), *ids_j = json_object_get(fx, "ids");
    char cmd[2048], dir[512], lpath[512];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, name);
    int n = snprintf(cmd, sizeof cmd, "%s/gen_checkpoint --out %s", build, dir);
    for (size_t i = 0; i < json_array_size(args); i++)
        n += snprintf(cmd + n, sizeof cmd - (size_t)n, " %s", json_string_value(json_array_get(args, i)));
    snprintf(cmd + n, sizeof cmd - (size_t)n, " >/dev/null");
    assert_int_equal(system(cmd), 0);
    int T = (int)json_array_size(ids_j);
    int32_t *ids = malloc((size_t)T * 4);
    for (int i = 0; i < T; i++) ids[i] = (int32_t)json_integer_value(json_array_get(ids_j, i));
    model_weights w;
    assert_int_equal(weights_load(dir, &w), GPTOSS_OK);
    int V = w.cfg.vocab_size;
    float *ref = malloc((size_t)T * V * 4), *got = malloc((size_t)T * V * 4);
    snprintf(lpath, sizeof lpath, "%.*s/%s", (int)(strrchr(json_path, '/') - json_path), json_path,
             json_string_value(json_object_get(fx, "logits_file")));
    FILE *f = fopen(lpath, "rb");
    assert_non_null(f);
    assert_int_equal(fread(ref, 4, (size_t)T * V, f), (size_t)T * V);
    fclose(f);
    backend_params p = { .max_context = 512, .max_sequences = 2 };
    backend *gpu = NULL;
    gptoss_status st = cuda_backend_ops.create(&w, &p, &gpu);
    if (st == GPTOSS_ERR_UNSUPPORTED) {
        printf("fixture %s: %s (skipped)\n", name, gptoss_last_error());
    } else {
        assert_int_equal(st, GPTOSS_OK);
        for (int mode = 0; mode < 2; mode++) {
            if (mode == 0) {
                backend_item it = { .slot = 0, .pos = 0, .n = T, .tokens = ids, .logits_all = 1 };
                assert_int_equal(cuda_backend_ops.forward(gpu, &it, 1, got), GPTOSS_OK);
            } else {
                for (int i = 0; i < T; i++) {
                    backend_item it = { .slot = 1, .pos = i, .n = 1, .tokens = ids + i, .logits_all = 0 };
                    assert_int_equal(cuda_backend_ops.forward(gpu, &it, 1, got + (size_t)i * V), GPTOSS_OK);
                }
            }
            double md = 0, mr = 0;
            int sure = 0, agree = 0;
            for (int t = 0; t < T; t++) {
                const float *r = ref + (size_t)t * V, *g = got + (size_t)t * V;
                int a1 = 0, a2 = -1, ga = 0;
                for (int i = 0; i < V; i++) {
                    if (!(fabs(r[i] - g[i]) <= md)) md = fabs(r[i] - g[i]);
                    if (fabs(r[i]) > mr) mr = fabs(r[i]);
                    if (g[i] > g[ga]) ga = i;
                    if (r[i] > r[a1]) { a2 = a1; a1 = i; }
                    else if (i != a1 && (a2 < 0 || r[i] > r[a2])) a2 = i;
                }
                if (a2 >= 0 && r[a1] - r[a2] > 0.05) { sure++; agree += ga == a1; }
            }
            printf("fixture %s %s: max |gpu-transformers| %.4g (max |logit| %.3g), argmax %d/%d\n", name,
                   mode ? "decode" : "prefill", md, mr, agree, sure);
            assert_true(md <= (mode ? 5e-3 : 1e-2));
            assert_int_equal(agree, sure);
        }
        cuda_backend_ops.destroy(gpu);
    }
    weights_free(&w);
    free(ids); free(ref); free(got);
    json_decref(fx);
}

static void test_fixtures(void **state) {
    (void)state;
    need_gpu();
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    snprintf(tmpdir, sizeof tmpdir, "/tmp/gptoss-cuda-fixtures-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    DIR *d = opendir("tests/fixtures");
    if (!d) skip();
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l > 5 && !strcmp(de->d_name + l - 5, ".json") && strncmp(de->d_name, "README", 6)) {
            char path[600];
            snprintf(path, sizeof path, "tests/fixtures/%s", de->d_name);
            check_fixture(path, build);
            n++;
        }
    }
    closedir(d);
    run_cmd("rm -rf %s", tmpdir);
    if (!n) skip();
}

/* ------------------------------------------------------ device sampling */

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Awkward rows: ties, -inf and NaN entries, one huge logit, all -inf, +inf. */
static void pick_row(float *l, int V, int kind) {
    for (int i = 0; i < V; i++) {
        l[i] = floorf(frand() * 16.0f) / 4.0f + (i % 89 == 1 ? 3.0f : 0.0f);
        if (i % 41 == 9) l[i] = -INFINITY;
        if (i % 173 == 2) l[i] = NAN;
    }
    l[V - 1] = l[V / 2] = 6.0f; /* tied maxima */
    if (kind == 1) l[V / 3] = 80.0f;                                   /* one huge logit */
    if (kind == 2) for (int i = 0; i < V; i++) l[i] = i % 2 ? -INFINITY : NAN; /* nothing above -inf */
    if (kind == 3) l[V / 4] = INFINITY;
    if (kind == 4) for (int i = 0; i < V; i++) l[i] = (float)(i % 5) * 0.001f; /* flat: top-p keeps most */
}

/* Device reduction of R rows against sampler_pick_reduce (every field exact),
 * and the ids sampler_pick_finish makes of it against gptoss_sampler_sample. */
static void check_pick(int V, int R, float t, int k, float p, float minp, int seeds) {
    float *l = malloc((size_t)R * V * sizeof *l);
    pick_request *rq = calloc((size_t)R, sizeof *rq);
    pick_result *dev = calloc((size_t)R, sizeof *dev);
    int32_t *cid = malloc((size_t)R * PICK_CAND_CAP * sizeof *cid), hid[PICK_CAND_CAP], sid[PICK_CAND_CAP];
    float *cl = malloc((size_t)R * PICK_CAND_CAP * sizeof *cl), hl[PICK_CAND_CAP];
    for (int r = 0; r < R; r++) pick_row(l + (size_t)r * V, V, r % 5);
    gptoss_sampler_params sp;
    gptoss_sampler_params_default(&sp);
    sp.temperature = t, sp.top_k = k, sp.top_p = p, sp.min_p = minp;
    for (int seed = 0; seed < seeds; seed++) {
        gptoss_sampler **a = calloc((size_t)R, sizeof *a), **b = calloc((size_t)R, sizeof *b), *scratch;
        for (int r = 0; r < R; r++) {
            sp.seed = (uint64_t)(seed * 1000 + r);
            assert_int_equal(gptoss_sampler_create(&sp, &a[r]), GPTOSS_OK);
            assert_int_equal(gptoss_sampler_create(&sp, &b[r]), GPTOSS_OK);
        }
        assert_int_equal(gptoss_sampler_create(&sp, &scratch), GPTOSS_OK);
        for (int draw = 0; draw < 3; draw++) {
            for (int r = 0; r < R; r++) sampler_pick_request(b[r], 1, &rq[r]);
            assert_int_equal(cuda_test_pick(l, R, V, rq, dev, cid, cl), 0);
            for (int r = 0; r < R; r++) {
                const float *row = l + (size_t)r * V;
                pick_result h;
                assert_int_equal(sampler_pick_reduce(scratch, row, V, &rq[r], hid, hl, &h), GPTOSS_OK);
                const pick_stats *d = &dev[r].st, *e = &h.st;
                if (d->argmax != e->argmax || (e->argmax >= 0 && memcmp(&d->max, &e->max, 4)))
                    fail_msg("V %d row %d: argmax %d (%g), host %d (%g)", V, r, d->argmax, (double)d->max,
                             e->argmax, (double)e->max);
                if (e->argmax < 0 || isinf(e->max)) goto finish;
                if (d->lse_sum != e->lse_sum) /* same order of the same doubles: exact, not 1e-5 */
                    fail_msg("V %d row %d: lse sum %.17g, host %.17g", V, r, d->lse_sum, e->lse_sum);
                if (d->total != e->total || d->pick != e->pick || d->n_cand != e->n_cand)
                    fail_msg("V %d row %d mode %d: total %.17g pick %d cand %d, host %.17g %d %d", V, r,
                             rq[r].mode, d->total, d->pick, d->n_cand, e->total, e->pick, e->n_cand);
                if (rq[r].mode == PICK_TRUNC && e->n_cand <= PICK_CAND_CAP) { /* same set, any order */
                    memcpy(sid, dev[r].cand_id, (size_t)e->n_cand * sizeof *sid);
                    qsort(sid, (size_t)e->n_cand, sizeof *sid, cmp_i32);
                    qsort(hid, (size_t)e->n_cand, sizeof *hid, cmp_i32);
                    assert_memory_equal(sid, hid, (size_t)e->n_cand * sizeof *sid);
                    for (int i = 0; i < e->n_cand; i++) {
                        int32_t id = dev[r].cand_id[i];
                        assert_memory_equal(&dev[r].cand_logit[i], &row[id], 4);
                    }
                }
            finish:;
                float lpa = 0, lpb = 0;
                int32_t ida = gptoss_sampler_sample(a[r], row, V, &lpa);
                int32_t idb = sampler_pick_finish(b[r], &rq[r], &dev[r], &lpb);
                if (idb == PICK_NEED_ROW) idb = gptoss_sampler_sample(b[r], row, V, &lpb);
                if (ida != idb || (ida >= 0 && memcmp(&lpa, &lpb, 4)))
                    fail_msg("V %d row %d seed %d draw %d: sampler %d (%.9g), device path %d (%.9g)", V, r,
                             seed, draw, ida, (double)lpa, idb, (double)lpb);
            }
        }
        for (int r = 0; r < R; r++) {
            gptoss_sampler_free(a[r]);
            gptoss_sampler_free(b[r]);
        }
        free(a);
        free(b);
        gptoss_sampler_free(scratch);
    }
    free(l);
    free(rq);
    free(dev);
    free(cid);
    free(cl);
}

static void test_pick(void **state) {
    (void)state;
    need_gpu();
    const struct {
        float t, p, minp;
        int k;
    } cfg[] = {
        {0.0f, 1.0f, 0.0f, 0},  {1.0f, 1.0f, 0.0f, 0},  {0.7f, 1.0f, 0.05f, 0}, {1.0f, 1.0f, 0.0f, 5},
        {1.0f, 1.0f, 0.0f, 256}, {1.0f, 0.9f, 0.0f, 0}, {1.0f, 0.5f, 0.0f, 40}, {1.5f, 0.9f, 0.1f, 0},
    };
    const int V[] = {33, 256, 257, 1000, 201088};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++)
        for (size_t v = 0; v < sizeof V / sizeof V[0]; v++)
            check_pick(V[v], V[v] == 33 ? 35 : 5, cfg[c].t, cfg[c].k, cfg[c].p, cfg[c].minp,
                       V[v] > 1000 ? 3 : 10);
}

#endif /* GPTOSS_CUDA */

static void test_no_gpu_build(void **state) {
    (void)state;
#ifndef GPTOSS_CUDA
    skip();
#else
    /* cuda_device_available agrees with the test probe */
    assert_int_equal(cuda_device_available() != 0, cuda_test_device() != 0);
#endif
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_gpu_build),
#ifdef GPTOSS_CUDA
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_attention_tc),
        cmocka_unit_test(test_topk),
        cmocka_unit_test(test_moe_decode),
        cmocka_unit_test(test_moe_decode_versions),
        cmocka_unit_test(test_moe_grouped),
        cmocka_unit_test(test_moe_grouped_v2),
        cmocka_unit_test(test_moe_grouped_v4),
        cmocka_unit_test(test_pick),
        cmocka_unit_test(test_fixtures),
        cmocka_unit_test(test_forward_vs_cpu),
        cmocka_unit_test(test_moe_decode_v7_shapes),
        cmocka_unit_test(test_moe_decode_v9),
        cmocka_unit_test(test_moe_decode_v11),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
