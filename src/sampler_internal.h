/* sampler_internal.h - the sampler split for device-side reduction (not public).
 *
 * gptoss_decode_sample lets a backend reduce each logits row on its device
 * (src/cuda/cuda_sample.cu) and return only a pick_result; the host then
 * finishes with sampler_pick_finish, which runs the sampler's own code on
 * what came back, so the choice, the random stream and the logprob are those
 * of gptoss_sampler_sample on the full row, bit for bit:
 *  - greedy: the argmax (lowest id among equal maxima, NaN ignored);
 *  - temperature (+ min-p): the device makes the inverse-CDF pick itself from
 *    the uniform draw the host peeked from the sampler's stream, with the
 *    sampler's fexp and its fixed summation order (chunk sums, pairwise tree,
 *    chunk-then-element walk);
 *  - top-k / top-p: the device applies the sampler's keep threshold (the
 *    top_k-th largest 256-token block maximum, or where the block maxima
 *    reach top_p of the total weight) and returns every token at or above it;
 *    the host rebuilds the exact candidate array (id order) that the full-row
 *    path builds and runs the same selection on it. More than
 *    PICK_CAND_CAP such tokens: the host needs the row (PICK_NEED_ROW).
 * The logprob comes from lse_sum, the same double the host would compute.
 */
#ifndef GPTOSS_SAMPLER_INTERNAL_H
#define GPTOSS_SAMPLER_INTERNAL_H

#include "gptoss.h"

#include <math.h>

enum { PICK_GREEDY = 0, PICK_TEMP = 1, PICK_TRUNC = 2 };

#define PICK_CHUNK 256      /* tokens per block of the sums and block maxima */
#define PICK_CAND_CAP 4096  /* candidates a device returns per row */
#define PICK_NEED_ROW (-2)  /* sampler_pick_finish: the full row is needed */

/* What the device computes for one row. */
typedef struct {
    int mode;       /* PICK_GREEDY / PICK_TEMP / PICK_TRUNC */
    int want_lse;   /* 1: lse_sum is needed (a logprob was asked for) */
    float inv_t;    /* 1 / temperature */
    float min_p;    /* PICK_TEMP: weights below min_p are dropped */
    int top_k;      /* PICK_TRUNC: the sampler's top_k (0 = off) and top_p */
    float top_p;
    double u;       /* PICK_TEMP: the uniform draw in [0, 1) (peeked, not consumed) */
} pick_request;

/* The device's answer for one row (plain data: copied back as is). */
typedef struct {
    int32_t argmax;     /* lowest id of the largest logit; -1: none above -inf */
    float max;          /* logits[argmax] */
    double lse_sum;     /* want_lse: sum of fexp(l - max), the sampler's order */
    double total;       /* TEMP: weight at temperature (min-p applied); TRUNC with
                         * top_k == 0: weight of the whole row at temperature */
    int32_t pick;       /* TEMP: the chosen id (-1 when not computed) */
    float pick_logit;   /* logits[pick] */
    int32_t n_cand;     /* TRUNC: tokens at or above the keep threshold */
    int32_t pad;
} pick_stats;

typedef struct {
    pick_stats st;
    const int32_t *cand_id;   /* TRUNC: [min(n_cand, PICK_CAND_CAP)], any order */
    const float *cand_logit;  /* their logits */
    const float *row;         /* the full row [vocab] when pick_needs_row(), else NULL */
} pick_result;

/* 1 when st cannot settle the sample (more candidates than returned, or no
 * pick): the backend then returns the full row. */
static inline int pick_needs_row(const pick_request *rq, const pick_stats *st) {
    if (st->argmax < 0 || st->max == INFINITY) return 0; /* error / greedy */
    if (rq->mode == PICK_TEMP) return st->pick < 0;
    return rq->mode == PICK_TRUNC && (st->n_cand < 1 || st->n_cand > PICK_CAND_CAP);
}

/* The request for the next sample of s (does not advance s). */
void sampler_pick_request(const gptoss_sampler *s, int want_logprob, pick_request *rq);

/* Finishes the sample from a device result: the id (and *logprob when
 * non-NULL), advancing s's stream exactly as gptoss_sampler_sample would;
 * PICK_NEED_ROW (s untouched) when r cannot settle it; -1 on error
 * (message set). */
int32_t sampler_pick_finish(gptoss_sampler *s, const pick_request *rq, const pick_result *r,
                            float *logprob);

/* The host reference of the device reduction (tests; the meaning of every
 * field). cand_id / cand_logit: caller buffers of PICK_CAND_CAP entries,
 * stored into r. Uses s only as scratch. */
gptoss_status sampler_pick_reduce(gptoss_sampler *s, const float *logits, int n,
                                  const pick_request *rq, int32_t *cand_id, float *cand_logit,
                                  pick_result *r);

#endif
