/* tokenizer.c - o200k_harmony byte-level BPE: encode, decode, public API.
 *
 * Encoding, as the Hugging Face tokenizer does it:
 *   1. (allow_special) split out added-token text, leftmost-longest;
 *   2. split each remaining segment with the pre-tokenizer regex (PCRE2, UTF +
 *      UCP, JIT); matches and the gaps between them are pieces ("Isolated");
 *   3. a piece that is itself a token is emitted whole (ignore_merges);
 *      otherwise BPE over its bytes: repeatedly merge the adjacent pair of
 *      lowest merge rank (index in model.merges), leftmost on ties.
 * Input must be valid UTF-8: otherwise GPTOSS_ERR_FORMAT with the message
 * "text: invalid UTF-8 at byte offset N" (N = offset of the first bad byte).
 */
#include "tokenizer_internal.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* ------------------------------------------------------------------ UTF-8 */

size_t tok_utf8_seq(const uint8_t *p, size_t n, int *incomplete) {
    *incomplete = 0;
    if (n == 0) return 0;
    uint8_t b = p[0];
    if (b < 0x80) return 1;
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (b >= 0xC2 && b <= 0xDF) need = 2;
    else if (b >= 0xE0 && b <= 0xEF) {
        need = 3;
        if (b == 0xE0) lo = 0xA0;      /* no overlongs */
        if (b == 0xED) hi = 0x9F;      /* no surrogates */
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 4;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;      /* <= U+10FFFF */
    } else return 0;
    for (size_t i = 1; i < need; i++) {
        if (i >= n) { *incomplete = 1; return 0; }
        uint8_t c = p[i];
        if (i == 1 ? (c < lo || c > hi) : (c & 0xC0) != 0x80) return 0;
    }
    return need;
}

/* Offset of the first invalid byte, or len when all is valid. */
static size_t utf8_check(const uint8_t *p, size_t len) {
    size_t i = 0;
    while (i < len) {
        if (p[i] < 0x80) { i++; continue; }
        int inc;
        size_t k = tok_utf8_seq(p + i, len - i, &inc);
        if (!k) return i;
        i += k;
    }
    return len;
}

/* ---------------------------------------------------------------- loading */

gptoss_status gptoss_tokenizer_load(const char *path, gptoss_tokenizer **out) {
    if (!path || !out) return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "tokenizer_load: NULL argument");
    *out = NULL;
    char file[4096];
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        snprintf(file, sizeof file, "%s/tokenizer.json", path);
    else
        snprintf(file, sizeof file, "%s", path);
    char *json;
    size_t len;
    gptoss_status st = read_file(file, &json, &len);
    if (st) return st;
    gptoss_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        free(json);
        return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "%s: tokenizer", file);
    }
    st = tok_load_json(t, json, len, file);
    free(json);
    if (st) {
        gptoss_tokenizer_free(t);
        return st;
    }
    *out = t;
    return GPTOSS_OK;
}

void gptoss_tokenizer_free(gptoss_tokenizer *t) {
    if (!t) return;
    tok_release(t);
    free(t);
}

int gptoss_tokenizer_vocab_size(const gptoss_tokenizer *t) { return t ? t->n_tokens : 0; }

const char *gptoss_token_bytes(const gptoss_tokenizer *t, int32_t id, size_t *len) {
    if (!t || id < 0 || id >= t->n_tokens || !t->tok_kind[id]) return NULL;
    size_t n;
    const char *p = tok_bytes_of(t, id, &n);
    if (len) *len = n;
    return p;
}

int32_t gptoss_token_special(const gptoss_tokenizer *t, const char *text) {
    if (!t || !text) return -1;
    size_t n = strlen(text);
    for (int i = 0; i < t->n_special; i++) {
        size_t len;
        const char *p = tok_bytes_of(t, t->special_ids[i], &len);
        if (len == n && !memcmp(p, text, n)) return t->special_ids[i];
    }
    return -1;
}

/* gptoss_is_stop_token lives in harmony_parse.c. */

/* --------------------------------------------------------------- encoding */

typedef struct {
    int32_t *ids;
    size_t n, cap;
} idvec;

static int push_id(idvec *v, int32_t id) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 256;
        int32_t *p = realloc(v->ids, cap * sizeof *p);
        if (!p) return 0;
        v->ids = p;
        v->cap = cap;
    }
    v->ids[v->n++] = id;
    return 1;
}

typedef struct {
    int32_t id, prev, next, len; /* len 0: merged into its left neighbour */
} bpe_sym;

typedef struct {
    int32_t rank, pos, left, right; /* left/right: the ids the pair had when pushed */
} bpe_cand;

/* Per-call scratch: symbols, candidate heap, a direct-mapped piece cache. */
#define CACHE_IDS 12
typedef struct {
    const char *piece;
    uint32_t len, n_ids;
    int32_t ids[CACHE_IDS];
} cache_slot;
#define CACHE_SLOTS 4096

typedef struct {
    bpe_sym *sym;
    bpe_cand *heap;
    size_t cap, n_heap;
    cache_slot *cache;
} scratch;

static int cand_less(const bpe_cand *a, const bpe_cand *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(scratch *s, bpe_cand c) {
    size_t i = s->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!cand_less(&c, &s->heap[parent])) break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = c;
}

static bpe_cand heap_pop(scratch *s) {
    bpe_cand top = s->heap[0], last = s->heap[--s->n_heap];
    size_t i = 0, n = s->n_heap;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        const bpe_cand *best = &last;
        if (l < n && cand_less(&s->heap[l], best)) { m = l; best = &s->heap[l]; }
        if (l + 1 < n && cand_less(&s->heap[l + 1], best)) m = l + 1;
        if (m == i) break;
        s->heap[i] = s->heap[m];
        i = m;
    }
    if (n) s->heap[i] = last;
    return top;
}

static void try_pair(const gptoss_tokenizer *t, scratch *s, int32_t pos) {
    if (pos < 0) return;
    int32_t nx = s->sym[pos].next;
    if (nx < 0) return;
    const tok_merge_slot *m = tok_merge_find(t, s->sym[pos].id, s->sym[nx].id);
    if (m) heap_push(s, (bpe_cand){m->rank, pos, s->sym[pos].id, s->sym[nx].id});
}

/* BPE of one piece of n >= 2 bytes that is not itself a token. */
static int bpe_piece(const gptoss_tokenizer *t, scratch *s, const uint8_t *p, size_t n, idvec *out) {
    if (n > s->cap) {
        size_t cap = n < 256 ? 256 : n;
        bpe_sym *sym = realloc(s->sym, cap * sizeof *sym);
        if (sym) s->sym = sym;
        bpe_cand *heap = realloc(s->heap, 3 * cap * sizeof *heap); /* pushes <= (n-1) + 2 per merge */
        if (heap) s->heap = heap;
        if (!sym || !heap) return 0;
        s->cap = cap;
    }
    for (size_t i = 0; i < n; i++)
        s->sym[i] = (bpe_sym){t->byte_tok[p[i]], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1, 1};
    s->n_heap = 0;
    for (size_t i = 0; i + 1 < n; i++) try_pair(t, s, (int32_t)i);
    while (s->n_heap) {
        bpe_cand c = heap_pop(s);
        bpe_sym *a = &s->sym[c.pos];
        if (a->len == 0 || a->id != c.left || a->next < 0 || s->sym[a->next].id != c.right) continue;
        bpe_sym *b = &s->sym[a->next];
        a->id = tok_merge_find(t, c.left, c.right)->id;
        a->len += b->len;
        b->len = 0;
        a->next = b->next;
        if (b->next >= 0) s->sym[b->next].prev = c.pos;
        try_pair(t, s, a->prev);
        try_pair(t, s, c.pos);
    }
    for (int32_t i = 0; i >= 0; i = s->sym[i].next)
        if (!push_id(out, s->sym[i].id)) return 0;
    return 1;
}

static int encode_piece(const gptoss_tokenizer *t, scratch *s, const char *p, size_t n, idvec *out) {
    if (n == 0) return 1;
    if (n == 1) return push_id(out, t->byte_tok[(uint8_t)p[0]]);
    if (t->ignore_merges) {
        int32_t id = tok_vocab_find(t, p, n);
        if (id >= 0) return push_id(out, id);
    }
    cache_slot *cs = NULL;
    if (s->cache) {
        cs = &s->cache[tok_hash((const uint8_t *)p, n) & (CACHE_SLOTS - 1)];
        if (cs->piece && cs->len == n && !memcmp(cs->piece, p, n)) {
            for (uint32_t i = 0; i < cs->n_ids; i++)
                if (!push_id(out, cs->ids[i])) return 0;
            return 1;
        }
    }
    size_t before = out->n;
    if (!bpe_piece(t, s, (const uint8_t *)p, n, out)) return 0;
    if (cs && out->n - before <= CACHE_IDS) {
        cs->piece = p;
        cs->len = (uint32_t)n;
        cs->n_ids = (uint32_t)(out->n - before);
        memcpy(cs->ids, out->ids + before, cs->n_ids * sizeof *cs->ids);
    }
    return 1;
}

/* Pre-tokenizes and encodes a segment without special tokens. */
static gptoss_status encode_segment(const gptoss_tokenizer *t, scratch *s, pcre2_match_data *md,
                                    const char *text, size_t len, size_t base, idvec *out) {
    size_t pos = 0;
    while (pos < len) {
        int rc = t->re_jit ? pcre2_jit_match(t->re, (PCRE2_SPTR)text, len, pos, 0, md, NULL)
                           : pcre2_match(t->re, (PCRE2_SPTR)text, len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        size_t ms = len, me = len;
        if (rc >= 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            ms = ov[0];
            me = ov[1];
        } else if (rc != PCRE2_ERROR_NOMATCH) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED, "tokenize: pre-tokenizer regex failed at byte %zu: %s",
                                    base + pos, (char *)msg);
        }
        if (ms > pos && !encode_piece(t, s, text + pos, ms - pos, out)) goto oom; /* unmatched gap */
        if (me == ms) { /* empty match (not possible with o200k): step one character */
            if (ms >= len) break;
            int inc;
            me = ms + tok_utf8_seq((const uint8_t *)text + ms, len - ms, &inc);
        }
        if (!encode_piece(t, s, text + ms, me - ms, out)) goto oom;
        pos = me;
    }
    return GPTOSS_OK;
oom:
    return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "tokenize: out of memory");
}

/* Longest special token starting at p, or -1. */
static int32_t special_at(const gptoss_tokenizer *t, const char *p, size_t avail, size_t *len) {
    int32_t best = -1;
    size_t best_len = 0;
    for (int i = 0; i < t->n_special; i++) {
        size_t n;
        const char *s = tok_bytes_of(t, t->special_ids[i], &n);
        if (n > best_len && n <= avail && !memcmp(p, s, n)) {
            best = t->special_ids[i];
            best_len = n;
        }
    }
    *len = best_len;
    return best;
}

/* The special token whose text is exactly p[0..n), or -1. */
static int32_t special_exact(const gptoss_tokenizer *t, const char *p, size_t n) {
    for (int i = 0; i < t->n_special; i++) {
        size_t k;
        const char *s = tok_bytes_of(t, t->special_ids[i], &k);
        if (k == n && !memcmp(p, s, n)) return t->special_ids[i];
    }
    return -1;
}

/* Encodes text. marks == NULL: specials are matched anywhere (allow_special)
 * or nowhere; otherwise only the n_marks given spans are specials. */
static gptoss_status encode_text(const gptoss_tokenizer *t, const char *text, size_t len, int allow_special,
                                 const tok_span *marks, size_t n_marks, int32_t **ids, size_t *n_ids) {
    if (!t || (!text && len) || !ids || !n_ids || (!marks && n_marks))
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "tokenize: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    size_t bad = utf8_check((const uint8_t *)text, len);
    if (bad < len)
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "text: invalid UTF-8 at byte offset %zu (byte 0x%02x)", bad,
                                (unsigned)(uint8_t)text[bad]);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(t->re, NULL);
    scratch s = {0};
    idvec out = {0};
    gptoss_status st = GPTOSS_OK;
    if (!md) { st = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "tokenize: out of memory"); goto done; }
    if (len >= 4096) s.cache = calloc(CACHE_SLOTS, sizeof *s.cache); /* optional: NULL just means no cache */
    size_t seg = 0;
    if (marks) {
        for (size_t k = 0; k < n_marks; k++) {
            size_t at = marks[k].off, sl = marks[k].len;
            if (at < seg || sl > len || at > len - sl) {
                st = gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "tokenize: special span %zu (offset %zu, length %zu) "
                                      "is out of order or out of range", k, at, sl);
                goto done;
            }
            int32_t sp = special_exact(t, text + at, sl);
            if (sp < 0) {
                st = gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "tokenize: \"%.*s\" at byte offset %zu is not a "
                                      "special token", (int)(sl < 40 ? sl : 40), text + at, at);
                goto done;
            }
            if ((st = encode_segment(t, &s, md, text + seg, at - seg, seg, &out))) goto done;
            if (!push_id(&out, sp)) { st = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "tokenize: out of memory"); goto done; }
            seg = at + sl;
        }
        allow_special = 0;
    }
    uint8_t first[256] = {0};
    if (allow_special)
        for (int i = 0; i < t->n_special; i++) first[(uint8_t)t->tok_bytes[t->tok_off[t->special_ids[i]]]] = 1;
    for (size_t i = 0; allow_special && i < len; i++) {
        if (!first[(uint8_t)text[i]]) continue;
        size_t sl;
        int32_t sp = special_at(t, text + i, len - i, &sl);
        if (sp < 0) continue;
        if ((st = encode_segment(t, &s, md, text + seg, i - seg, seg, &out))) goto done;
        if (!push_id(&out, sp)) { st = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "tokenize: out of memory"); goto done; }
        i += sl - 1;
        seg = i + 1;
    }
    if ((st = encode_segment(t, &s, md, text + seg, len - seg, seg, &out))) goto done;
    if (!out.ids && !(out.ids = malloc(sizeof *out.ids))) st = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "tokenize: out of memory");
done:
    if (md) pcre2_match_data_free(md);
    free(s.sym);
    free(s.heap);
    free(s.cache);
    if (st) {
        free(out.ids);
        return st;
    }
    *ids = out.ids;
    *n_ids = out.n;
    return GPTOSS_OK;
}

gptoss_status gptoss_tokenize(const gptoss_tokenizer *t, const char *text, size_t len,
                              int allow_special, int32_t **ids, size_t *n_ids) {
    return encode_text(t, text, len, allow_special, NULL, 0, ids, n_ids);
}

gptoss_status tok_encode_marked(const gptoss_tokenizer *t, const char *text, size_t len, const tok_span *marks,
                                size_t n_marks, int32_t **ids, size_t *n_ids) {
    static const tok_span none = {0, 0};
    if (!marks && !n_marks) marks = &none; /* no specials at all, still the marked mode */
    return encode_text(t, text, len, 0, marks, n_marks, ids, n_ids);
}

/* --------------------------------------------------------------- decoding */

gptoss_status gptoss_detokenize(const gptoss_tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len) {
    if (!t || (!ids && n) || !text)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "detokenize: NULL argument");
    *text = NULL;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_tokens || !t->tok_kind[ids[i]])
            return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "detokenize: ids[%zu] = %d is not a token (valid: 0..%d)",
                                    i, ids[i], t->n_tokens - 1);
        total += t->tok_off[ids[i] + 1] - t->tok_off[ids[i]];
    }
    char *buf = malloc(total + 1);
    if (!buf) return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "detokenize: cannot allocate %zu bytes", total);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k;
        const char *p = tok_bytes_of(t, ids[i], &k);
        memcpy(buf + o, p, k);
        o += k;
    }
    buf[o] = 0;
    *text = buf;
    if (len) *len = o;
    return GPTOSS_OK;
}
