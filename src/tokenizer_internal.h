/* tokenizer_internal.h - the loaded o200k_harmony tokenizer, shared by
 * tokenizer.c (encode/decode, public API), tokenizer_load.c (tokenizer.json)
 * and tokenizer_stream.c (streaming decoder). */
#ifndef GPTOSS_TOKENIZER_INTERNAL_H
#define GPTOSS_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "gptoss.h"
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define TOK_MAX_SPECIAL 64

/* One BPE merge: the pair (left id, right id) -> merged id, with its priority
 * (the index in model.merges; lower merges first). key == TOK_EMPTY_KEY: free slot. */
typedef struct {
    uint64_t key; /* (uint64)left << 32 | right */
    int32_t rank;
    int32_t id;
} tok_merge_slot;
#define TOK_EMPTY_KEY UINT64_MAX

struct gptoss_tokenizer {
    int n_ranked;          /* ids [0, n_ranked) come from model.vocab */
    int n_tokens;          /* all ids, specials included: max id + 1 */
    uint32_t *tok_off;     /* [n_tokens + 1] offsets of each token's bytes in tok_bytes */
    char *tok_bytes;       /* raw bytes of every token (specials: their text) */
    uint8_t *tok_kind;     /* [n_tokens] 0 = unused id, 1 = ranked, 2 = added/special */
    int32_t *vocab_slots;  /* open addressing: ranked token bytes -> id, -1 = free */
    uint32_t vocab_mask;
    tok_merge_slot *merges;
    uint32_t merge_mask;
    int32_t byte_tok[256]; /* id of the token made of one byte */
    int ignore_merges;
    int n_special;
    int32_t special_ids[TOK_MAX_SPECIAL]; /* added tokens, matched in text when allowed */
    pcre2_code *re;        /* the pre-tokenizer split regex (UTF + UCP) */
    int re_jit;            /* JIT compiled */
};

/* Fast hash of a byte string. */
static inline uint64_t tok_hash(const uint8_t *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, p, n);
    h = (h ^ v) * 0x94d049bb133111ebull;
    return h ^ (h >> 29);
}

static inline const char *tok_bytes_of(const struct gptoss_tokenizer *t, int32_t id, size_t *len) {
    *len = t->tok_off[id + 1] - t->tok_off[id];
    return t->tok_bytes + t->tok_off[id];
}

/* Ranked (non-special) token with exactly these bytes, or -1. */
static inline int32_t tok_vocab_find(const struct gptoss_tokenizer *t, const char *p, size_t n) {
    uint32_t i = (uint32_t)tok_hash((const uint8_t *)p, n) & t->vocab_mask;
    for (;;) {
        int32_t id = t->vocab_slots[i];
        if (id < 0) return -1;
        if (t->tok_off[id + 1] - t->tok_off[id] == n && !memcmp(t->tok_bytes + t->tok_off[id], p, n))
            return id;
        i = (i + 1) & t->vocab_mask;
    }
}

static inline uint32_t tok_merge_hash(uint64_t key, uint32_t mask) {
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 40) & mask;
}

/* The merge of (left, right), or NULL. */
static inline const tok_merge_slot *tok_merge_find(const struct gptoss_tokenizer *t, int32_t left,
                                                   int32_t right) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint32_t i = tok_merge_hash(key, t->merge_mask);
    for (;;) {
        const tok_merge_slot *s = &t->merges[i];
        if (s->key == key) return s;
        if (s->key == TOK_EMPTY_KEY) return NULL;
        i = (i + 1) & t->merge_mask;
    }
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if the bytes at p
 * (n available) are not a complete valid sequence. *incomplete is set when
 * they are a valid but truncated prefix. */
size_t tok_utf8_seq(const uint8_t *p, size_t n, int *incomplete);

/* A byte range [off, off + len) of a text. */
typedef struct {
    size_t off, len;
} tok_span;

/* Encodes text where exactly the n_marks spans (ascending, non-overlapping)
 * are special tokens: each must be the exact text of one (else
 * GPTOSS_ERR_INVALID_ARGUMENT); everything else, special-token text included,
 * is encoded as plain text. Used by gptoss_render_chat_ids. */
gptoss_status tok_encode_marked(const gptoss_tokenizer *t, const char *text, size_t len, const tok_span *marks,
                                size_t n_marks, int32_t **ids, size_t *n_ids);

/* tokenizer_load.c: parses tokenizer.json text (len bytes, NUL-terminated)
 * into t (zeroed by the caller). `name` is used in error messages. */
gptoss_status tok_load_json(struct gptoss_tokenizer *t, const char *json, size_t len,
                            const char *name);
void tok_release(struct gptoss_tokenizer *t);

#endif
