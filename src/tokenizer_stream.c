/* tokenizer_stream.c - streaming detokenizer: token ids in, complete UTF-8 out.
 *
 * A character may span several tokens (emoji, CJK: the byte-level vocab cuts
 * inside characters). Bytes that are a valid but unfinished UTF-8 prefix are
 * held back until the next token completes them. Bytes that can never become
 * valid are replaced by U+FFFD, one per maximal invalid subpart (the W3C /
 * Unicode "substitution of maximal subparts" practice), so the output is
 * always valid UTF-8. flush() turns a held-back unfinished tail into U+FFFD.
 */
#include "tokenizer_internal.h"
#include "util.h"

#include <stdlib.h>

struct gptoss_detok_stream {
    const gptoss_tokenizer *t;
    uint8_t held[4];
    size_t n_held;
    uint8_t *work; /* held bytes + the new token's bytes */
    size_t work_cap;
    char *out;
    size_t out_cap;
};

gptoss_status gptoss_detok_stream_create(const gptoss_tokenizer *t, gptoss_detok_stream **out) {
    if (!t || !out) return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "detok_stream_create: NULL argument");
    gptoss_detok_stream *d = calloc(1, sizeof *d);
    if (!d) return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "detok_stream_create: out of memory");
    d->t = t;
    *out = d;
    return GPTOSS_OK;
}

void gptoss_detok_stream_free(gptoss_detok_stream *d) {
    if (!d) return;
    free(d->work);
    free(d->out);
    free(d);
}

static int reserve(void **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *p = realloc(*buf, c);
    if (!p) return 0;
    *buf = p;
    *cap = c;
    return 1;
}

/* Length of the longest prefix of p that could start a valid sequence (>= 1). */
static size_t maximal_subpart(const uint8_t *p, size_t n) {
    size_t k = 1;
    while (k < n && k < 4) {
        int inc;
        if (tok_utf8_seq(p, k + 1, &inc) == 0 && !inc) break;
        k++;
    }
    return k;
}

static const char fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

gptoss_status gptoss_detok_stream_push(gptoss_detok_stream *d, int32_t id, const char **out, size_t *len) {
    if (!d || !out) return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "detok_stream_push: NULL argument");
    size_t tl;
    const char *tb = gptoss_token_bytes(d->t, id, &tl);
    if (!tb)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "detok_stream_push: id %d is not a token (valid: 0..%d)", id,
                                gptoss_tokenizer_vocab_size(d->t) - 1);
    size_t n = d->n_held + tl;
    if (!reserve((void **)&d->work, &d->work_cap, n + 1) || !reserve((void **)&d->out, &d->out_cap, 3 * n + 1))
        return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "detok_stream_push: out of memory");
    memcpy(d->work, d->held, d->n_held);
    memcpy(d->work + d->n_held, tb, tl);
    d->n_held = 0;
    const uint8_t *p = d->work;
    size_t i = 0, o = 0;
    while (i < n) {
        if (p[i] < 0x80) { d->out[o++] = (char)p[i++]; continue; }
        int inc;
        size_t k = tok_utf8_seq(p + i, n - i, &inc);
        if (k) {
            memcpy(d->out + o, p + i, k);
            o += k;
            i += k;
        } else if (inc) { /* unfinished: wait for the next token */
            memcpy(d->held, p + i, n - i);
            d->n_held = n - i;
            break;
        } else {
            memcpy(d->out + o, fffd, 3);
            o += 3;
            i += maximal_subpart(p + i, n - i);
        }
    }
    d->out[o] = 0;
    *out = d->out;
    if (len) *len = o;
    return GPTOSS_OK;
}

gptoss_status gptoss_detok_stream_flush(gptoss_detok_stream *d, const char **out, size_t *len) {
    if (!d || !out) return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "detok_stream_flush: NULL argument");
    if (!reserve((void **)&d->out, &d->out_cap, 4))
        return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "detok_stream_flush: out of memory");
    size_t o = 0;
    if (d->n_held) { /* a valid but unfinished prefix is one maximal subpart */
        memcpy(d->out, fffd, 3);
        o = 3;
        d->n_held = 0;
    }
    d->out[o] = 0;
    *out = d->out;
    if (len) *len = o;
    return GPTOSS_OK;
}
