/* test_sampler.c - the sampler against probabilities computed here in double:
 * greedy and ties, temperature / top-k / top-p / min-p distributions
 * (chi-square over seeded draws), truncation sets, reproducibility, logprobs,
 * and the host side of device sampling (sampler_pick_*) against the full row. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "gptoss.h"
#include "sampler_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NL 8
static const float L8[NL] = {1.0f, 2.5f, -0.5f, 2.0f, 0.25f, 3.0f, -2.0f, 1.5f};

/* Exact reference: probabilities of logits/t, then the filters applied by
 * definition (top-k by rank, nucleus on the renormalized top-k set, min-p
 * relative to the maximum), renormalized. */
static void reference(const float *l, int n, double t, int top_k, double top_p, double min_p,
                      double *prob) {
    int *order = malloc((size_t)n * sizeof *order);
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = 0; i < n; i++) /* selection sort: by logit desc, id asc */
        for (int j = i + 1; j < n; j++)
            if (l[order[j]] > l[order[i]]) {
                int x = order[i];
                order[i] = order[j];
                order[j] = x;
            }
    double mx = l[order[0]];
    int keep = (top_k > 0 && top_k < n) ? top_k : n;
    double tot = 0;
    for (int r = 0; r < keep; r++) tot += exp((l[order[r]] - mx) / t);
    double cum = 0;
    int nuc = keep;
    for (int r = 0; r < keep; r++) {
        cum += exp((l[order[r]] - mx) / t) / tot;
        if (cum >= top_p - 1e-12) {
            nuc = r + 1;
            break;
        }
    }
    for (int i = 0; i < n; i++) prob[i] = 0;
    double s = 0;
    for (int r = 0; r < nuc; r++) {
        double w = exp((l[order[r]] - mx) / t);
        if (w >= min_p) {
            prob[order[r]] = w;
            s += w;
        }
    }
    for (int i = 0; i < n; i++) prob[i] /= s;
    free(order);
}

static gptoss_sampler *make(float t, int k, float p, float minp, uint64_t seed) {
    gptoss_sampler_params sp;
    gptoss_sampler_params_default(&sp);
    sp.temperature = t;
    sp.top_k = k;
    sp.top_p = p;
    sp.min_p = minp;
    sp.seed = seed;
    gptoss_sampler *s = NULL;
    assert_int_equal(gptoss_sampler_create(&sp, &s), GPTOSS_OK);
    return s;
}

/* Draws `draws` tokens and checks: tokens of zero probability never appear,
 * and the chi-square statistic against `prob` stays under `bound`. */
static void check_distribution_n(gptoss_sampler *s, const float *l, int n, const double *prob,
                                 int draws, double bound) {
    long *count = calloc((size_t)n, sizeof *count);
    for (int d = 0; d < draws; d++) {
        int32_t id = gptoss_sampler_sample(s, l, n, NULL);
        assert_true(id >= 0 && id < n);
        if (prob[id] == 0.0) fail_msg("id %d has probability 0 but was drawn", id);
        count[id]++;
    }
    double chi2 = 0;
    for (int i = 0; i < n; i++) {
        if (prob[i] == 0.0) continue;
        double e = draws * prob[i];
        chi2 += (count[i] - e) * (count[i] - e) / e;
    }
    if (chi2 > bound) {
        for (int i = 0; i < n && i < 16; i++)
            fprintf(stderr, "id %d: observed %ld expected %.1f\n", i, count[i], draws * prob[i]);
        fail_msg("chi-square %.1f exceeds %.1f", chi2, bound);
    }
    free(count);
}

/* df <= 7; the 1e-6 upper quantile for df 7 is about 38. */
static void check_distribution(gptoss_sampler *s, const float *l, int n, const double *prob,
                               int draws) {
    check_distribution_n(s, l, n, prob, draws, 40.0);
}

static void test_defaults_and_validation(void **state) {
    (void)state;
    gptoss_sampler_params p;
    gptoss_sampler_params_default(&p);
    assert_true(p.temperature == 1.0f && p.top_p == 1.0f && p.top_k == 0 && p.min_p == 0.0f);
    assert_true(p.seed == 0);
    struct {
        float t, top_p, min_p;
        int k;
        const char *field;
    } bad[] = {
        {-0.1f, 1.0f, 0.0f, 0, "temperature"}, {NAN, 1.0f, 0.0f, 0, "temperature"},
        {INFINITY, 1.0f, 0.0f, 0, "temperature"}, {1.0f, 0.0f, 0.0f, 0, "top_p"},
        {1.0f, 1.5f, 0.0f, 0, "top_p"}, {1.0f, NAN, 0.0f, 0, "top_p"},
        {1.0f, 1.0f, -0.1f, 0, "min_p"}, {1.0f, 1.0f, 1.1f, 0, "min_p"},
        {1.0f, 1.0f, 0.0f, -1, "top_k"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gptoss_sampler_params q = p;
        q.temperature = bad[i].t;
        q.top_p = bad[i].top_p;
        q.min_p = bad[i].min_p;
        q.top_k = bad[i].k;
        gptoss_sampler *s = (gptoss_sampler *)1;
        assert_int_equal(gptoss_sampler_create(&q, &s), GPTOSS_ERR_INVALID_ARGUMENT);
        assert_null(s);
        assert_non_null(strstr(gptoss_last_error(), bad[i].field));
    }
    gptoss_sampler *s = NULL;
    assert_int_equal(gptoss_sampler_create(NULL, &s), GPTOSS_OK); /* NULL = defaults */
    assert_int_equal(gptoss_sampler_sample(s, NULL, 4, NULL), -1);
    assert_int_equal(gptoss_sampler_sample(s, L8, 0, NULL), -1);
    float all_neg_inf[3] = {-INFINITY, -INFINITY, -INFINITY};
    assert_int_equal(gptoss_sampler_sample(s, all_neg_inf, 3, NULL), -1);
    gptoss_sampler_free(s);
}

static void test_greedy_and_ties(void **state) {
    (void)state;
    gptoss_sampler *s = make(0.0f, 0, 1.0f, 0.0f, 7);
    assert_int_equal(gptoss_sampler_sample(s, L8, NL, NULL), 5);
    float ties[6] = {0.5f, 3.0f, -1.0f, 3.0f, 3.0f, 2.0f};
    for (int i = 0; i < 10; i++) assert_int_equal(gptoss_sampler_sample(s, ties, 6, NULL), 1);
    float nan_first[4] = {NAN, 1.0f, -INFINITY, 0.5f};
    assert_int_equal(gptoss_sampler_sample(s, nan_first, 4, NULL), 1);
    gptoss_sampler_free(s);
    /* top_k = 1 is greedy at any temperature */
    s = make(5.0f, 1, 1.0f, 0.0f, 7);
    for (int i = 0; i < 20; i++) assert_int_equal(gptoss_sampler_sample(s, ties, 6, NULL), 1);
    gptoss_sampler_free(s);
    /* a tiny top_p keeps only the top token */
    s = make(1.0f, 0, 0.01f, 0.0f, 9);
    for (int i = 0; i < 20; i++) assert_int_equal(gptoss_sampler_sample(s, L8, NL, NULL), 5);
    gptoss_sampler_free(s);
}

static void test_temperature_distributions(void **state) {
    (void)state;
    const float temps[] = {1.0f, 0.6f, 2.0f};
    double prob[NL];
    for (int i = 0; i < 3; i++) {
        reference(L8, NL, temps[i], 0, 1.0, 0.0, prob);
        gptoss_sampler *s = make(temps[i], 0, 1.0f, 0.0f, 100 + (uint64_t)i);
        check_distribution(s, L8, NL, prob, 100000);
        gptoss_sampler_free(s);
    }
    /* the check can fail: T=0.6 draws do not match the T=1 distribution */
    reference(L8, NL, 1.0, 0, 1.0, 0.0, prob);
    gptoss_sampler *s = make(0.6f, 0, 1.0f, 0.0f, 1);
    long count[NL] = {0};
    for (int d = 0; d < 50000; d++) count[gptoss_sampler_sample(s, L8, NL, NULL)]++;
    double chi2 = 0;
    for (int i = 0; i < NL; i++) chi2 += pow(count[i] - 50000 * prob[i], 2) / (50000 * prob[i]);
    assert_true(chi2 > 200.0);
    gptoss_sampler_free(s);
}

static void test_truncation_distributions(void **state) {
    (void)state;
    struct {
        float t;
        int k;
        float p, minp;
        int support; /* expected size of the kept set */
    } cases[] = {
        {1.0f, 3, 1.0f, 0.0f, 3},  {1.0f, 0, 0.8f, 0.0f, 0},  {0.7f, 0, 0.9f, 0.0f, 0},
        {1.0f, 0, 1.0f, 0.2f, 0},  {1.5f, 5, 0.9f, 0.0f, 0},  {1.0f, 6, 0.95f, 0.3f, 0},
        {1.0f, 20, 1.0f, 0.0f, 8},  {1.0f, 0, 1.0f, 0.24f, 3}, /* exp(-1.5)=0.223 just out */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        double prob[NL];
        reference(L8, NL, cases[c].t, cases[c].k, cases[c].p, cases[c].minp, prob);
        int support = 0;
        for (int i = 0; i < NL; i++) support += prob[i] > 0;
        if (cases[c].support) assert_int_equal(support, cases[c].support);
        assert_true(support >= 1 && support <= NL);
        gptoss_sampler *s = make(cases[c].t, cases[c].k, cases[c].p, cases[c].minp, 1000 + c);
        check_distribution(s, L8, NL, prob, 60000);
        gptoss_sampler_free(s);
    }
    /* the sets by hand: logits sorted 5(3.0) 1(2.5) 3(2.0) 7(1.5) 0(1.0) ...
     * min_p 0.5 at T=1 keeps w = exp(l-3) >= 0.5: 5 and 1 only (exp(-1) < 0.5) */
    double prob[NL];
    reference(L8, NL, 1.0, 0, 1.0, 0.5, prob);
    for (int i = 0; i < NL; i++) assert_true((prob[i] > 0) == (i == 5 || i == 1));
    gptoss_sampler *s = make(1.0f, 0, 1.0f, 0.5f, 3);
    for (int d = 0; d < 2000; d++) {
        int32_t id = gptoss_sampler_sample(s, L8, NL, NULL);
        assert_true(id == 5 || id == 1);
    }
    gptoss_sampler_free(s);
}

/* 1000 tokens (several blocks of the sampler's pre-filter): six large logits
 * spread over the blocks, the rest small, so the nucleus holds the six plus
 * about a hundred small ones. Exact sets and distributions against the
 * reference. */
static void test_truncation_many_tokens(void **state) {
    (void)state;
    enum { N = 1000 };
    static float l[N];
    static double prob[N];
    const int big[6] = {3, 300, 301, 555, 800, 999};
    uint64_t x = 99;
    for (int i = 0; i < N; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        l[i] = -3.0f + (float)((double)(x >> 11) * 0x1.0p-53) - 0.5f;
    }
    for (int k = 0; k < 6; k++) l[big[k]] = 5.0f - 0.5f * k;
    struct {
        float t;
        int k;
        float p, minp;
    } cases[] = {{1.0f, 3, 1.0f, 0.0f}, {1.0f, 0, 0.9f, 0.0f}, {0.8f, 0, 0.97f, 0.0f},
                 {1.0f, 50, 0.95f, 0.0f}, {1.0f, 0, 0.9f, 0.002f}, {1.0f, 0, 1.0f, 0.001f},
                 {1.0f, 0, 0.5f, 0.0f}, {1.0f, 2, 1.0f, 0.0f}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        reference(l, N, cases[c].t, cases[c].k, cases[c].p, cases[c].minp, prob);
        int support = 0;
        for (int i = 0; i < N; i++) support += prob[i] > 0;
        assert_true(support >= 2);
        /* chi-square bound: df + 8 standard deviations */
        double bound = (support - 1) + 8.0 * sqrt(2.0 * (support - 1)) + 10.0;
        gptoss_sampler *s = make(cases[c].t, cases[c].k, cases[c].p, cases[c].minp, 500 + c);
        check_distribution_n(s, l, N, prob, 40000, bound);
        gptoss_sampler_free(s);
    }
}

static void test_reproducible(void **state) {
    (void)state;
    int32_t a[200], b[200];
    gptoss_sampler *s1 = make(1.0f, 0, 0.95f, 0.0f, 42), *s2 = make(1.0f, 0, 0.95f, 0.0f, 42);
    gptoss_sampler *s3 = make(1.0f, 0, 0.95f, 0.0f, 43);
    int differ = 0;
    for (int i = 0; i < 200; i++) {
        a[i] = gptoss_sampler_sample(s1, L8, NL, NULL);
        b[i] = gptoss_sampler_sample(s2, L8, NL, NULL);
        differ += gptoss_sampler_sample(s3, L8, NL, NULL) != a[i];
    }
    assert_memory_equal(a, b, sizeof a);
    assert_true(differ > 20);
    gptoss_sampler_free(s1);
    gptoss_sampler_free(s2);
    gptoss_sampler_free(s3);
}

static void test_logprobs(void **state) {
    (void)state;
    double mx = 3.0, sum = 0;
    for (int i = 0; i < NL; i++) sum += exp(L8[i] - mx);
    double lse = mx + log(sum);
    gptoss_sampler *s = make(0.5f, 3, 0.9f, 0.0f, 5); /* filters do not change the logprob */
    for (int d = 0; d < 50; d++) {
        float lp = 1.0f;
        int32_t id = gptoss_sampler_sample(s, L8, NL, &lp);
        assert_float_equal(lp, L8[id] - lse, 1e-6);
    }
    gptoss_sampler_free(s);

    int32_t ids[NL + 2];
    float lps[NL + 2];
    assert_int_equal(gptoss_top_logprobs(L8, NL, 3, ids, lps), 3);
    assert_int_equal(ids[0], 5);
    assert_int_equal(ids[1], 1);
    assert_int_equal(ids[2], 3);
    for (int i = 0; i < 3; i++) assert_float_equal(lps[i], L8[ids[i]] - lse, 1e-6);
    assert_int_equal(gptoss_top_logprobs(L8, NL, NL + 2, ids, lps), NL); /* clamped to n */
    for (int i = 1; i < NL; i++) assert_true(lps[i] <= lps[i - 1]);
    float ties[5] = {1.0f, 2.0f, 2.0f, 0.0f, 2.0f};
    assert_int_equal(gptoss_top_logprobs(ties, 5, 2, ids, lps), 2);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 2);
    assert_int_equal(gptoss_top_logprobs(ties, 5, -1, ids, lps), -1);
}

/* A real-size vocabulary: the pick lies in the independently computed
 * nucleus, logprobs match a direct log-softmax, and sampling is fast. */
static void test_large_vocab(void **state) {
    (void)state;
    const int n = 201088;
    float *l = malloc((size_t)n * sizeof *l);
    uint64_t x = 12345;
    for (int i = 0; i < n; i++) { /* a peaked distribution: a few big logits */
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        double u = (double)(x >> 11) * 0x1.0p-53;
        l[i] = (float)(u * 4.0 + (i % 997 == 0 ? 8.0 : 0.0));
    }
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++) mx = l[i] > mx ? l[i] : mx;
    for (int i = 0; i < n; i++) sum += exp(l[i] - mx);
    double lse = mx + log(sum);
    /* independent nucleus at p = 0.5: threshold logit by sorting a copy */
    float *sorted = malloc((size_t)n * sizeof *sorted);
    memcpy(sorted, l, (size_t)n * sizeof *sorted);
    for (int gap = n / 2; gap > 0; gap /= 2) /* shell sort, descending */
        for (int i = gap; i < n; i++) {
            float v = sorted[i];
            int j = i;
            for (; j >= gap && sorted[j - gap] < v; j -= gap) sorted[j] = sorted[j - gap];
            sorted[j] = v;
        }
    double cum = 0;
    float cut = sorted[0];
    for (int i = 0; i < n; i++) {
        cum += exp(sorted[i] - mx) / sum;
        cut = sorted[i];
        if (cum >= 0.5) break;
    }
    gptoss_sampler *s = make(1.0f, 0, 0.5f, 0.0f, 77);
    clock_t t0 = clock();
    for (int d = 0; d < 20; d++) {
        float lp;
        int32_t id = gptoss_sampler_sample(s, l, n, &lp);
        assert_true(id >= 0 && id < n);
        assert_true(l[id] >= cut);
        assert_float_equal(lp, l[id] - lse, 1e-4);
    }
    double ms = 1000.0 * (double)(clock() - t0) / CLOCKS_PER_SEC / 20;
    gptoss_sampler_free(s);
    /* top_k = 40: the pick is among the 40 largest */
    s = make(1.0f, 40, 1.0f, 0.0f, 78);
    for (int d = 0; d < 20; d++) assert_true(l[gptoss_sampler_sample(s, l, n, NULL)] >= sorted[39]);
    gptoss_sampler_free(s);
    int32_t ids[100];
    float lps[100];
    assert_int_equal(gptoss_top_logprobs(l, n, 100, ids, lps), 100); /* the large-k path */
    for (int i = 0; i < 100; i++) {
        assert_true(l[ids[i]] == sorted[i]);
        assert_float_equal(lps[i], sorted[i] - lse, 1e-4);
    }
    fprintf(stderr, "sampler: %.2f ms per top_p=0.5 draw over %d logits\n", ms, n);
    assert_true(ms < 100.0);
    free(sorted);
    free(l);
}

/* The device path's host side: sampler_pick_reduce (what the GPU computes)
 * then sampler_pick_finish must give gptoss_sampler_sample's ids and
 * logprobs bit for bit, with the same stream; returns how often the row was
 * needed (the fallback). */
static int pick_path_matches(const float *l, int n, float t, int k, float p, float minp, int seeds,
                             int draws) {
    static int32_t cid[PICK_CAND_CAP];
    static float cl[PICK_CAND_CAP];
    int need_row = 0;
    for (int seed = 1; seed <= seeds; seed++) {
        gptoss_sampler *a = make(t, k, p, minp, (uint64_t)seed), *b = make(t, k, p, minp, (uint64_t)seed);
        for (int d = 0; d < draws; d++) {
            float lpa = 0, lpb = 0;
            int32_t ida = gptoss_sampler_sample(a, l, n, &lpa);
            pick_request rq;
            pick_result r;
            sampler_pick_request(b, 1, &rq);
            assert_int_equal(sampler_pick_reduce(b, l, n, &rq, cid, cl, &r), GPTOSS_OK);
            int32_t idb = sampler_pick_finish(b, &rq, &r, &lpb);
            if (idb == PICK_NEED_ROW) {
                need_row++;
                idb = gptoss_sampler_sample(b, l, n, &lpb);
            }
            if (ida != idb || memcmp(&lpa, &lpb, sizeof lpa))
                fail_msg("n=%d t=%g k=%d p=%g min_p=%g seed %d draw %d: full row %d (%.9g), pick path %d (%.9g)",
                         n, (double)t, k, (double)p, (double)minp, seed, d, ida, (double)lpa, idb, (double)lpb);
        }
        gptoss_sampler_free(a);
        gptoss_sampler_free(b);
    }
    return need_row;
}

static void test_pick_path(void **state) {
    (void)state;
    const int sizes[] = {33, 1000, 201088};
    static float rows[3][201088];
    uint64_t x = 99;
    for (int r = 0; r < 3; r++) {
        int n = sizes[r];
        for (int i = 0; i < n; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            double u = (double)(x >> 11) * 0x1.0p-53;
            /* quantized: many ties; a few peaks, -inf and NaN entries */
            rows[r][i] = (float)(floor(u * 24.0) / 4.0 + (i % 97 == 3 ? 4.0 : 0.0));
            if (i % 53 == 7) rows[r][i] = -INFINITY;
            if (i % 211 == 5) rows[r][i] = NAN;
        }
        rows[r][n - 1] = rows[r][0] = 9.5f; /* tied maximum at both ends */
    }
    const struct {
        float t, p, minp;
        int k;
    } cfg[] = {
        {0.0f, 1.0f, 0.0f, 0},   {0.7f, 1.0f, 0.0f, 0},  {1.3f, 1.0f, 0.05f, 0}, {1.0f, 1.0f, 0.0f, 1},
        {1.0f, 1.0f, 0.0f, 5},   {0.8f, 1.0f, 0.0f, 256}, {1.0f, 0.9f, 0.0f, 0},  {1.0f, 0.5f, 0.0f, 0},
        {0.9f, 0.9f, 0.0f, 40},  {1.0f, 0.5f, 0.0f, 5},  {1.0f, 0.9f, 0.1f, 0},  {2.0f, 0.95f, 0.02f, 256},
    };
    for (int r = 0; r < 3; r++)
        for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++)
            pick_path_matches(rows[r], sizes[r], cfg[c].t, cfg[c].k, cfg[c].p, cfg[c].minp,
                              r == 2 ? 3 : 20, r == 2 ? 4 : 25);
    /* the fallback: a flat row, top_p = 0.9 keeps ~90 % of 201088 tokens */
    static float flat[201088];
    for (int i = 0; i < 201088; i++) flat[i] = (float)(i % 7) * 0.01f;
    assert_true(pick_path_matches(flat, 201088, 1.0f, 0, 0.9f, 0.0f, 2, 3) == 6);
    assert_true(pick_path_matches(flat, 201088, 1.0f, 300, 1.0f, 0.0f, 2, 3) == 6); /* ties beyond the cap */
    /* an infinite maximum is greedy and draws nothing; all -inf is an error on both paths */
    float inf_row[5] = {1.0f, INFINITY, 2.0f, INFINITY, 0.0f};
    pick_path_matches(inf_row, 5, 1.0f, 0, 0.9f, 0.0f, 3, 5);
    pick_path_matches(inf_row, 5, 1.0f, 0, 1.0f, 0.0f, 3, 5);
    float none[3] = {-INFINITY, NAN, -INFINITY};
    gptoss_sampler *s = make(1.0f, 0, 1.0f, 0.0f, 1);
    pick_request rq;
    pick_result res;
    sampler_pick_request(s, 0, &rq);
    assert_int_equal(sampler_pick_reduce(s, none, 3, &rq, (int32_t[PICK_CAND_CAP]){0}, (float[PICK_CAND_CAP]){0}, &res),
                     GPTOSS_OK);
    assert_int_equal(sampler_pick_finish(s, &rq, &res, NULL), -1);
    assert_non_null(strstr(gptoss_last_error(), "no value above -inf"));
    gptoss_sampler_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_validation),
        cmocka_unit_test(test_greedy_and_ties),
        cmocka_unit_test(test_temperature_distributions),
        cmocka_unit_test(test_truncation_distributions),
        cmocka_unit_test(test_truncation_many_tokens),
        cmocka_unit_test(test_reproducible),
        cmocka_unit_test(test_logprobs),
        cmocka_unit_test(test_large_vocab),
        cmocka_unit_test(test_pick_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
