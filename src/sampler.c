/* sampler.c - token selection from logits: greedy, temperature, top-k, top-p
 * (nucleus), min-p, with a seeded, platform-independent PRNG.
 *
 * Order of the filters (as in transformers and vLLM): the logits are divided
 * by the temperature, then top-k keeps the k most likely tokens, then top-p
 * keeps the smallest most-likely prefix whose probability (renormalized over
 * the top-k set) reaches p, then min-p drops tokens whose probability is below
 * min_p times the top probability. The top token always survives. Ties are
 * ordered by lower id first, so every set is well defined.
 *
 * Reproducibility: the weights come from a float exp() of our own (plain IEEE
 * adds and multiplies, no contraction into FMA, relative error ~2e-7) and are
 * summed in double in a fixed order (per 256-token chunk, then a pairwise
 * tree over chunks) that the CUDA reduction reproduces (sampler_internal.h);
 * the random draw comes from xoshiro256** seeded by splitmix64, one draw per
 * non-greedy sample. So the same seed and logits give the same choices on
 * any IEEE machine, whatever its libm, and on the GPU path.
 *
 * Cost on a 201088-token vocabulary: a vectorizable max pass and exp pass;
 * top-k uses quickselect and top-p a mass-weighted quickselect (both O(n),
 * no full sort).
 */
#include "sampler_internal.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* GCC does not contract in ISO C mode */
#elif defined(__GNUC__)
/* Lets the exp loops vectorize (selects on float compares); changes no result. */
#pragma GCC optimize("no-trapping-math")
#endif

typedef struct {
    double w;   /* fexp((logit - max) / temperature) */
    float l;    /* raw logit */
    int32_t id;
} cand;

struct gptoss_sampler {
    gptoss_sampler_params p;
    uint64_t rng[4];
    cand *c;    /* scratch, [cap] */
    float *block_max; /* scratch, [cap / CHUNK + 1] */
    double *csum;     /* scratch, [cap / CHUNK + 1] chunk sums */
    int cap;
};

/* ------------------------------------------------------------------ PRNG */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(uint64_t s[4]) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Uniform in [0, 1) with 53 random bits. */
static double uniform01(uint64_t s[4]) { return (double)(xoshiro_next(s) >> 11) * 0x1.0p-53; }

/* exp(x) for x <= 0 (0 below -87 or for NaN): Cody-Waite reduction by ln 2,
 * degree-6 Taylor polynomial on [-ln2/2, ln2/2], exponent bits for 2^r. */
static inline float fexp(float x) {
    float xc = x >= -87.0f ? x : -87.0f;
    float r = (xc * 1.44269504f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float f = (xc - r * 0.693145752f) - r * 1.42860677e-6f;
    float p = 1.0f + f * (1.0f + f * (0.5f + f * (1.0f / 6 + f * (1.0f / 24 + f * (1.0f / 120 +
              f * (1.0f / 720))))));
    int32_t bits = ((int32_t)r + 127) * (1 << 23);
    float e;
    memcpy(&e, &bits, sizeof e);
    float y = p * e;
    return x >= -87.0f ? y : 0.0f;
}

#define CHUNK PICK_CHUNK /* 256 */

/* w[i] = fexp((l[i] - sub) * mul) for i < n <= CHUNK (vectorized). */
static void fexp_chunk(const float *restrict l, float *restrict w, int n, float sub, float mul) {
    for (int i = 0; i < n; i++) w[i] = fexp((l[i] - sub) * mul);
}

/* Sum of one chunk's weights (m <= CHUNK), terms below min_w counted as 0:
 * eight partial sums over i % 8 in order, combined pairwise. Fixed so that
 * a GPU (8 lanes per chunk, src/cuda/cuda_sample.cu) gets the same double. */
static double chunk_sum(const float *w, int m, float min_w) {
    double acc[8] = {0};
    int i = 0;
    for (; i + 8 <= m; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += w[i + k] >= min_w ? w[i + k] : 0.0f;
    for (int k = 0; i < m; i++, k++) acc[k] += w[i] >= min_w ? w[i] : 0.0f;
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* Pairwise tree over chunk sums, pushed in order: the perfect binary tree
 * padded with zeros (x + 0 == x), kept as a binary counter of partial nodes,
 * so a GPU block reducing in shared memory gets the same double. */
typedef struct {
    double node[40];
    uint64_t count;
} tree_sum;

static void tree_push(tree_sum *t, double x) {
    int lv = 0;
    for (; (t->count >> lv) & 1; lv++) x = t->node[lv] + x;
    t->node[lv] = x;
    t->count++;
}

static double tree_total(const tree_sum *t) {
    double acc = 0.0;
    int have = 0;
    for (int lv = 0; lv < 40; lv++)
        if ((t->count >> lv) & 1) {
            acc = have ? t->node[lv] + acc : t->node[lv];
            have = 1;
        }
    return acc;
}

/* Sum over i of fexp((l[i] - sub) * mul), terms below min_w counted as 0, in
 * double: chunk_sum per CHUNK, then tree_push. Vectorizable and the same
 * result on every IEEE machine, CPU or GPU. csum (may be NULL) receives the
 * chunk sums [(n + CHUNK - 1) / CHUNK]. */
static double sum_fexp(const float *l, int n, float sub, float mul, float min_w, double *csum) {
    float w[CHUNK];
    tree_sum t = {{0}, 0};
    for (int i0 = 0; i0 < n; i0 += CHUNK) {
        int m = n - i0 < CHUNK ? n - i0 : CHUNK;
        fexp_chunk(l + i0, w, m, sub, mul);
        double c = chunk_sum(w, m, min_w);
        if (csum) csum[i0 / CHUNK] = c;
        tree_push(&t, c);
    }
    return tree_total(&t);
}

/* ---------------------------------------------------------------- params */

void gptoss_sampler_params_default(gptoss_sampler_params *p) {
    if (!p) return;
    p->temperature = 1.0f;
    p->top_k = 0;
    p->top_p = 1.0f;
    p->min_p = 0.0f;
    p->seed = 0;
}

gptoss_status gptoss_sampler_create(const gptoss_sampler_params *p, gptoss_sampler **out) {
    if (!out) return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "sampler: out is NULL");
    *out = NULL;
    gptoss_sampler_params d;
    if (!p) {
        gptoss_sampler_params_default(&d);
        p = &d;
    }
    if (!(p->temperature >= 0.0f) || isinf(p->temperature))
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT,
                                "sampler: temperature must be a finite number >= 0, got %g",
                                (double)p->temperature);
    if (p->top_k < 0)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT,
                                "sampler: top_k must be >= 0 (0 = off), got %d", p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT,
                                "sampler: top_p must be in (0, 1], got %g", (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT,
                                "sampler: min_p must be in [0, 1], got %g", (double)p->min_p);
    gptoss_sampler *s = calloc(1, sizeof *s);
    if (!s) return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "sampler: out of memory");
    s->p = *p;
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
    *out = s;
    return GPTOSS_OK;
}

void gptoss_sampler_free(gptoss_sampler *s) {
    if (!s) return;
    free(s->c);
    free(s->block_max);
    free(s->csum);
    free(s);
}

/* ------------------------------------------------------------- selection */

/* a ranks before b: higher logit first, lower id on ties. */
static inline int before(const cand *a, const cand *b) {
    return a->l > b->l || (a->l == b->l && a->id < b->id);
}

static int cmp_cand(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    return before(a, b) ? -1 : before(b, a) ? 1 : 0;
}

static inline void swap_cand(cand *a, cand *b) {
    cand t = *a;
    *a = *b;
    *b = t;
}

/* One quickselect step on c[lo..hi] (lo < hi) around a median-of-three pivot:
 * afterwards c[lo..*j] rank before-or-equal the pivot, c[*i..hi] after-or-equal,
 * and anything between equals it. */
static void partition(cand *c, int lo, int hi, int *pi, int *pj) {
    int mid = lo + (hi - lo) / 2;
    if (before(&c[mid], &c[lo])) swap_cand(&c[mid], &c[lo]);
    if (before(&c[hi], &c[lo])) swap_cand(&c[hi], &c[lo]);
    if (before(&c[hi], &c[mid])) swap_cand(&c[hi], &c[mid]);
    cand pivot = c[mid];
    int i = lo, j = hi;
    while (i <= j) {
        while (before(&c[i], &pivot)) i++;
        while (before(&pivot, &c[j])) j--;
        if (i <= j) swap_cand(&c[i++], &c[j--]);
    }
    *pi = i;
    *pj = j;
}

/* Rearranges c[0..n) so that its k best (by `before`) come first, in any
 * order. Deterministic: median-of-three pivots, no randomness. */
static void select_top(cand *c, int n, int k) {
    int lo = 0, hi = n - 1;
    if (k <= 0 || k >= n) return;
    while (hi > lo) {
        int i, j;
        partition(c, lo, hi, &i, &j);
        /* now c[lo..j] rank before-or-equal pivot, c[i..hi] after-or-equal */
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else return;
    }
}

/* Top-p: rearranges c[0..n) so that the smallest best-first set whose weight
 * reaches `target` comes first (in any order); returns its size. A quickselect
 * that partitions by rank and descends by mass: O(n) expected. */
static int nucleus(cand *c, int n, double target) {
    int lo = 0, hi = n - 1;
    double acc = 0.0; /* weight of c[0..lo), all ranked before c[lo..hi] */
    while (lo < hi) {
        int i, j;
        partition(c, lo, hi, &i, &j);
        double left = 0.0;
        for (int k = lo; k <= j; k++) left += c[k].w;
        if (acc + left >= target) {
            hi = j;
            continue;
        }
        acc += left;
        if (i > j + 1) { /* the pivot alone sits between the parts */
            acc += c[j + 1].w;
            if (acc >= target) return j + 2;
        }
        lo = i;
        if (lo > hi) return n; /* rounding kept the sum just short: keep all */
    }
    return lo + 1;
}

/* Index of the largest logit (NaN ignored), lowest id on ties; -1 when every
 * logit is NaN or -inf. The max pass vectorizes (maxps semantics). */
static int argmax(const float *l, int n) {
    float mk[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                   -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) mk[k] = l[i + k] > mk[k] ? l[i + k] : mk[k];
    float m = -INFINITY;
    for (; i < n; i++) m = l[i] > m ? l[i] : m;
    for (int k = 0; k < 8; k++) m = mk[k] > m ? mk[k] : m;
    if (m == -INFINITY) return -1;
    for (int i = 0; i < n; i++)
        if (l[i] == m) return i;
    return -1;
}

static double log_sum_exp(const float *l, int n, float max) {
    return (double)max + log(sum_fexp(l, n, max, 1.0f, 0.0f, NULL));
}

static float raw_logprob(const float *l, int n, float max, int id) {
    if (isinf(max)) return l[id] == max ? 0.0f : -INFINITY; /* +inf dominates */
    return (float)((double)l[id] - log_sum_exp(l, n, max));
}

static int cmp_float_desc(const void *pa, const void *pb) {
    float a = *(const float *)pa, b = *(const float *)pb;
    return a > b ? -1 : a < b ? 1 : 0;
}

/* A logit below which no token can be kept, from the maxima of CHUNK-sized
 * blocks (each a distinct token): at least top_k tokens reach the top_k-th
 * largest block maximum, and the best block maxima whose weight reaches
 * `target` already make a set of that weight, so the nucleus cannot go below
 * the last of them. -inf when the bound does not help. */
static float keep_threshold(gptoss_sampler *s, const float *logits, int n, float lmax,
                            float inv_t, int top_k, double target) {
    int nb = (n + CHUNK - 1) / CHUNK;
    if (nb < 2) return -INFINITY;
    for (int b = 0; b < nb; b++) {
        const float *l = logits + (size_t)b * CHUNK;
        int len = n - b * CHUNK < CHUNK ? n - b * CHUNK : CHUNK, i = 0;
        float mk[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                       -INFINITY, -INFINITY, -INFINITY, -INFINITY};
        for (; i + 8 <= len; i += 8)
            for (int k = 0; k < 8; k++) mk[k] = l[i + k] > mk[k] ? l[i + k] : mk[k];
        float m = -INFINITY;
        for (; i < len; i++) m = l[i] > m ? l[i] : m;
        for (int k = 0; k < 8; k++) m = mk[k] > m ? mk[k] : m;
        s->block_max[b] = m;
    }
    qsort(s->block_max, (size_t)nb, sizeof *s->block_max, cmp_float_desc);
    if (top_k > 0) return top_k <= nb ? s->block_max[top_k - 1] : -INFINITY;
    double cum = 0.0;
    for (int b = 0; b < nb && s->block_max[b] > -INFINITY; b++) {
        cum += fexp((s->block_max[b] - lmax) * inv_t);
        if (cum >= target) return s->block_max[b];
    }
    return -INFINITY;
}

/* Grows the scratch to n logits; -1 (message set) when memory runs out. */
static int reserve(gptoss_sampler *s, int n) {
    if (s->cap >= n) return 0;
    size_t nb = (size_t)n / CHUNK + 1;
    cand *c = realloc(s->c, (size_t)n * sizeof *c);
    if (c) s->c = c;
    float *bm = realloc(s->block_max, nb * sizeof *bm);
    if (bm) s->block_max = bm;
    double *cs = realloc(s->csum, nb * sizeof *cs);
    if (cs) s->csum = cs;
    if (!c || !bm || !cs) {
        gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "sampler: cannot allocate scratch for %d logits", n);
        return -1;
    }
    s->cap = n;
    return 0;
}

/* Top-k / top-p / min-p over c[0..m), the tokens at or above the keep
 * threshold in id order (the order matters: it fixes the summation and walk
 * order). total: the weight of the whole row when top_k == 0. Returns the
 * index in c of the pick. */
static int finish_truncated(gptoss_sampler *s, cand *c, int m, float lmax, float inv_t,
                            double total, double u01) {
    if (s->p.top_k > 0 && s->p.top_k < m) {
        select_top(c, m, s->p.top_k);
        m = s->p.top_k;
    }
    for (int i = 0; i < m; i++) c[i].w = fexp((c[i].l - lmax) * inv_t);
    if (s->p.top_k > 0)
        for (int i = 0; i < m; i++) total += c[i].w;
    if (s->p.top_p < 1.0f) m = nucleus(c, m, (double)s->p.top_p * total);
    if (s->p.min_p > 0.0f) { /* the top token has w == 1 */
        int k = 0;
        for (int i = 0; i < m; i++)
            if (c[i].w >= (double)s->p.min_p) c[k++] = c[i];
        m = k;
    }
    total = 0.0;
    for (int i = 0; i < m; i++) total += c[i].w;
    double u = u01 * total, cum = 0.0;
    for (int i = 0; i < m; i++) {
        cum += c[i].w;
        if (u < cum) return i;
    }
    return m - 1;
}

/* Top-k / top-p (and min-p) sampling over the full row (scratch reserved). */
static int32_t sample_truncated(gptoss_sampler *s, const float *logits, int n, float lmax,
                                float inv_t, double u01) {
    /* top-p alone is relative to the weight of the whole vocabulary */
    double total = s->p.top_k > 0 ? 0.0 : sum_fexp(logits, n, lmax, inv_t, 0.0f, NULL);
    float tau = keep_threshold(s, logits, n, lmax, inv_t, s->p.top_k, (double)s->p.top_p * total);
    cand *c = s->c;
    int m = 0;
    for (int i = 0; i < n; i++)
        if (logits[i] >= tau && logits[i] > -INFINITY) c[m++] = (cand){0.0, logits[i], i};
    return c[finish_truncated(s, c, m, lmax, inv_t, total, u01)].id;
}

/* Temperature (+ min-p) pick for the uniform draw u01: the chunk sums and
 * their tree total, then the first chunk whose running sum passes
 * u01 * total, then the first counted token in it whose running sum does
 * (its last counted token when rounding leaves the walk short). Two passes,
 * csum [chunks] as scratch; *total_out (may be NULL) gets the total. */
static int32_t temp_pick(const float *logits, int n, float lmax, float inv_t, float min_p,
                         double u01, double *csum, double *total_out) {
    int nb = (n + CHUNK - 1) / CHUNK, b = 0, last = 0;
    double total = sum_fexp(logits, n, lmax, inv_t, min_p, csum);
    if (total_out) *total_out = total;
    double u = u01 * total, cum = 0.0, cum_last = 0.0;
    for (; b < nb; b++) {
        if (csum[b] > 0.0) {
            last = b;
            cum_last = cum;
        }
        if (u < cum + csum[b]) break;
        cum += csum[b];
    }
    if (b == nb) {
        b = last;
        cum = cum_last;
    }
    float w[CHUNK];
    int i0 = b * CHUNK, m = n - i0 < CHUNK ? n - i0 : CHUNK;
    int32_t pick = -1;
    fexp_chunk(logits + i0, w, m, lmax, inv_t);
    for (int i = 0; i < m; i++) {
        if (w[i] < min_p || w[i] == 0.0f) continue;
        pick = i0 + i;
        cum += w[i];
        if (u < cum) break;
    }
    return pick;
}

/* PICK_GREEDY / PICK_TEMP / PICK_TRUNC from the parameters alone (an
 * infinite maximum logit also makes a sample greedy, seen later). */
static int pick_mode(const gptoss_sampler *s, float *inv_t) {
    *inv_t = 0.0f;
    if (!(s->p.temperature > 0.0f) || s->p.top_k == 1) return PICK_GREEDY;
    *inv_t = 1.0f / s->p.temperature;
    if (isinf(*inv_t)) return PICK_GREEDY; /* too small to divide by */
    return s->p.top_k > 0 || s->p.top_p < 1.0f ? PICK_TRUNC : PICK_TEMP;
}

int32_t gptoss_sampler_sample(gptoss_sampler *s, const float *logits, int n, float *logprob) {
    if (!s || !logits || n <= 0) {
        gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "sampler: %s", !s ? "sampler is NULL"
                         : !logits ? "logits is NULL" : "n must be > 0");
        return -1;
    }
    int top = argmax(logits, n);
    if (top < 0) {
        gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "sampler: logits: no value above -inf");
        return -1;
    }
    const float lmax = logits[top];
    int32_t pick = top;
    float inv_t;
    int mode = pick_mode(s, &inv_t);
    if (mode != PICK_GREEDY && !isinf(lmax)) {
        if (reserve(s, n)) return -1;
        double u01 = uniform01(s->rng); /* one draw per non-greedy sample */
        pick = mode == PICK_TRUNC ? sample_truncated(s, logits, n, lmax, inv_t, u01)
                                  : temp_pick(logits, n, lmax, inv_t, s->p.min_p, u01, s->csum, NULL);
    }
    if (logprob) *logprob = raw_logprob(logits, n, lmax, pick);
    return pick;
}

/* ------------------------------------------------- device-side reduction */

void sampler_pick_request(const gptoss_sampler *s, int want_logprob, pick_request *rq) {
    memset(rq, 0, sizeof *rq);
    rq->mode = pick_mode(s, &rq->inv_t);
    rq->want_lse = want_logprob != 0;
    rq->min_p = s->p.min_p;
    rq->top_k = s->p.top_k;
    rq->top_p = s->p.top_p;
    if (rq->mode != PICK_GREEDY) { /* peek: the stream advances in sampler_pick_finish */
        uint64_t st[4];
        memcpy(st, s->rng, sizeof st);
        rq->u = uniform01(st);
    }
}

static int cmp_cand_id(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    return (a->id > b->id) - (a->id < b->id);
}

int32_t sampler_pick_finish(gptoss_sampler *s, const pick_request *rq, const pick_result *r,
                            float *logprob) {
    if (!s || !rq || !r || (logprob && !rq->want_lse)) {
        gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "sampler: pick: %s",
                         logprob ? "logprob asked without want_lse" : "NULL argument");
        return -1;
    }
    const pick_stats *st = &r->st;
    if (st->argmax < 0) {
        gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "sampler: logits: no value above -inf");
        return -1;
    }
    const float lmax = st->max;
    float lpick = lmax;
    int32_t pick = st->argmax;
    if (rq->mode == PICK_TEMP && !isinf(lmax)) {
        if (st->pick < 0) return PICK_NEED_ROW; /* not computed: defensive */
        pick = st->pick;
        lpick = st->pick_logit;
        (void)uniform01(s->rng); /* the draw rq->u peeked */
    } else if (rq->mode == PICK_TRUNC && !isinf(lmax)) {
        int m = st->n_cand;
        if (m < 1 || m > PICK_CAND_CAP || !r->cand_id || !r->cand_logit) return PICK_NEED_ROW;
        if (reserve(s, m)) return -1;
        cand *c = s->c; /* rebuild the full-row path's array: id order */
        for (int i = 0; i < m; i++) c[i] = (cand){0.0, r->cand_logit[i], r->cand_id[i]};
        qsort(c, (size_t)m, sizeof *c, cmp_cand_id);
        double u01 = uniform01(s->rng);
        int k = finish_truncated(s, c, m, lmax, rq->inv_t, rq->top_k > 0 ? 0.0 : st->total, u01);
        pick = c[k].id;
        lpick = c[k].l;
    }
    if (logprob) {
        if (isinf(lmax)) *logprob = lpick == lmax ? 0.0f : -INFINITY;
        else *logprob = (float)((double)lpick - ((double)lmax + log(st->lse_sum)));
    }
    return pick;
}

gptoss_status sampler_pick_reduce(gptoss_sampler *s, const float *logits, int n,
                                  const pick_request *rq, int32_t *cand_id, float *cand_logit,
                                  pick_result *r) {
    if (!s || !logits || n <= 0 || !rq || !cand_id || !cand_logit || !r)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "sampler: pick reduce: bad argument");
    memset(r, 0, sizeof *r);
    r->cand_id = cand_id;
    r->cand_logit = cand_logit;
    r->st.pick = -1;
    r->st.argmax = argmax(logits, n);
    if (r->st.argmax < 0) return GPTOSS_OK;
    const float lmax = logits[r->st.argmax];
    r->st.max = lmax;
    if (isinf(lmax)) return GPTOSS_OK; /* +inf: greedy, logprob 0 or -inf */
    if (rq->want_lse) r->st.lse_sum = sum_fexp(logits, n, lmax, 1.0f, 0.0f, NULL);
    if (rq->mode == PICK_GREEDY) return GPTOSS_OK;
    if (reserve(s, n)) return GPTOSS_ERR_OUT_OF_MEMORY;
    if (rq->mode == PICK_TEMP) {
        r->st.pick = temp_pick(logits, n, lmax, rq->inv_t, rq->min_p, rq->u, s->csum, &r->st.total);
        r->st.pick_logit = logits[r->st.pick];
        return GPTOSS_OK;
    }
    double total = rq->top_k > 0 ? 0.0 : sum_fexp(logits, n, lmax, rq->inv_t, 0.0f, NULL);
    float tau = keep_threshold(s, logits, n, lmax, rq->inv_t, rq->top_k, (double)rq->top_p * total);
    int k = 0;
    for (int i = 0; i < n; i++)
        if (logits[i] >= tau && logits[i] > -INFINITY) {
            if (k < PICK_CAND_CAP) {
                cand_id[k] = i;
                cand_logit[k] = logits[i];
            }
            k++;
        }
    r->st.total = total;
    r->st.n_cand = k;
    return GPTOSS_OK;
}

/* ------------------------------------------------------------- logprobs */

int gptoss_top_logprobs(const float *logits, int n, int k, int32_t *ids, float *logprobs) {
    if (!logits || n <= 0 || k < 0 || (k > 0 && (!ids || !logprobs))) {
        gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "top_logprobs: invalid arguments (n=%d, k=%d)", n, k);
        return -1;
    }
    int top = argmax(logits, n);
    if (top < 0) {
        gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "top_logprobs: logits: no value above -inf");
        return -1;
    }
    if (k > n) k = n;
    if (k == 0) return 0;
    const float lmax = logits[top];
    /* Small k: insertion into a sorted array of the best k; large k:
     * quickselect then sort. NaN is treated as -inf. */
    int big = k > 64;
    cand *c = malloc((size_t)(big ? n : k) * sizeof *c);
    if (!c) {
        gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "top_logprobs: cannot allocate %d entries", k);
        return -1;
    }
    if (big) {
        for (int i = 0; i < n; i++) c[i] = (cand){0.0, logits[i] == logits[i] ? logits[i] : -INFINITY, i};
        select_top(c, n, k);
        qsort(c, (size_t)k, sizeof *c, cmp_cand);
    } else {
        int m = 0;
        for (int i = 0; i < n; i++) {
            cand x = {0.0, logits[i] == logits[i] ? logits[i] : -INFINITY, i};
            if (m == k && !before(&x, &c[k - 1])) continue;
            int j = m < k ? m++ : k - 1;
            while (j > 0 && before(&x, &c[j - 1])) {
                c[j] = c[j - 1];
                j--;
            }
            c[j] = x;
        }
    }
    double lse = isinf(lmax) ? 0.0 : log_sum_exp(logits, n, lmax);
    for (int i = 0; i < k; i++) {
        ids[i] = c[i].id;
        if (isinf(lmax)) logprobs[i] = c[i].l == lmax ? 0.0f : -INFINITY;
        else logprobs[i] = (float)((double)c[i].l - lse);
    }
    free(c);
    return k;
}
