/* tokenizer_load.c - reads a Hugging Face byte-level BPE tokenizer.json.
 *
 * The file is 27 MB, almost all of it model.vocab (199998 entries) and
 * model.merges (446189 pairs). jansson needs ~0.6 s for the whole file, so a
 * small strict scanner walks the top level, records where each value lies,
 * and reads vocab and merges directly; the small sections (added_tokens,
 * pre_tokenizer, normalizer, model scalars) are handed to jansson. Every
 * structural surprise is a GPTOSS_ERR_FORMAT naming the field and byte offset;
 * a valid file with features we do not implement is GPTOSS_ERR_UNSUPPORTED.
 */
#include "tokenizer_internal.h"
#include "util.h"

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    const char *p, *end, *base, *name;
    gptoss_status st;
} jcur;

typedef struct {
    const char *start;
    size_t len;
} extent;

static int cur_fail(jcur *c, const char *what) {
    if (c->st == GPTOSS_OK)
        c->st = gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: %s at byte %zu", c->name, what,
                                 (size_t)(c->p - c->base));
    return 0;
}

static void ws(jcur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t')) c->p++;
}

static int expect(jcur *c, char ch) {
    ws(c);
    if (c->p >= c->end || *c->p != ch) {
        char msg[32];
        snprintf(msg, sizeof msg, "expected '%c'", ch);
        return cur_fail(c, msg);
    }
    c->p++;
    return 1;
}

static int hex4(const char *p, uint32_t *v) {
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char ch = p[i];
        int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
              : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
        if (d < 0) return 0;
        *v = *v << 4 | (uint32_t)d;
    }
    return 1;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | (cp >> 6 & 63));
        o[2] = (char)(0x80 | (cp & 63)); return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | (cp >> 12 & 63));
    o[2] = (char)(0x80 | (cp >> 6 & 63)); o[3] = (char)(0x80 | (cp & 63)); return 4;
}

/* Reads a JSON string at the cursor into buf (UTF-8, cap bytes). buf may be
 * NULL to only skip it. */
static int read_string(jcur *c, char *buf, size_t cap, size_t *len) {
    ws(c);
    if (c->p >= c->end || *c->p != '"') return cur_fail(c, "expected a string");
    c->p++;
    size_t n = 0;
    for (;;) {
        if (c->p >= c->end) return cur_fail(c, "unterminated string");
        /* Fast path: a run of plain characters. */
        const char *r = c->p;
        while (r < c->end && (unsigned char)*r >= 0x20 && *r != '"' && *r != '\\') r++;
        if (r > c->p) {
            size_t k = (size_t)(r - c->p);
            if (buf) {
                if (n + k > cap) return cur_fail(c, "string too long");
                memcpy(buf + n, c->p, k);
            }
            n += k;
            c->p = r;
            continue;
        }
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '"') { c->p++; break; }
        if (ch < 0x20) return cur_fail(c, "control character in string");
        char tmp[4];
        size_t k = 1;
        if (ch != '\\') {
            tmp[0] = (char)ch;
            c->p++;
        } else {
            if (c->p + 1 >= c->end) return cur_fail(c, "unterminated string");
            char e = c->p[1];
            c->p += 2;
            switch (e) {
            case '"': tmp[0] = '"'; break;
            case '\\': tmp[0] = '\\'; break;
            case '/': tmp[0] = '/'; break;
            case 'b': tmp[0] = '\b'; break;
            case 'f': tmp[0] = '\f'; break;
            case 'n': tmp[0] = '\n'; break;
            case 'r': tmp[0] = '\r'; break;
            case 't': tmp[0] = '\t'; break;
            case 'u': {
                uint32_t cp, lo;
                if (c->end - c->p < 4 || !hex4(c->p, &cp)) return cur_fail(c, "bad \\u escape");
                c->p += 4;
                if (cp >= 0xD800 && cp < 0xDC00) {
                    if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u' || !hex4(c->p + 2, &lo) ||
                        lo < 0xDC00 || lo > 0xDFFF)
                        return cur_fail(c, "unpaired surrogate in \\u escape");
                    c->p += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp < 0xE000) {
                    return cur_fail(c, "unpaired surrogate in \\u escape");
                }
                k = put_utf8(tmp, cp);
                break;
            }
            default: return cur_fail(c, "bad escape in string");
            }
        }
        if (buf) {
            if (n + k > cap) return cur_fail(c, "string too long");
            memcpy(buf + n, tmp, k);
        }
        n += k;
    }
    if (len) *len = n;
    return 1;
}

/* Skips a string without decoding it (only the parts we read are decoded,
 * and the small sections are validated again by jansson). */
static int skip_string(jcur *c) {
    c->p++;
    for (;;) {
        const char *q = memchr(c->p, '"', (size_t)(c->end - c->p));
        if (!q) return cur_fail(c, "unterminated string");
        size_t bs = 0;
        while (q - bs > c->p && q[-1 - (ptrdiff_t)bs] == '\\') bs++;
        c->p = q + 1;
        if (bs % 2 == 0) return 1;
    }
}

static int skip_number(jcur *c) {
    const char *p = c->p, *e = c->end;
    if (p < e && *p == '-') p++;
    if (p < e && *p == '0') p++;
    else if (p < e && *p >= '1' && *p <= '9') while (p < e && *p >= '0' && *p <= '9') p++;
    else return cur_fail(c, "bad number");
    if (p < e && *p == '.') {
        if (++p >= e || *p < '0' || *p > '9') { c->p = p; return cur_fail(c, "bad number"); }
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || *p < '0' || *p > '9') { c->p = p; return cur_fail(c, "bad number"); }
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    c->p = p;
    return 1;
}

static int skip_value(jcur *c, int depth) {
    ws(c);
    if (c->p >= c->end) return cur_fail(c, "unexpected end of file");
    if (depth > 64) return cur_fail(c, "nesting too deep");
    char ch = *c->p;
    if (ch == '"') return skip_string(c);
    if (ch == '{' || ch == '[') {
        char close = ch == '{' ? '}' : ']';
        c->p++;
        ws(c);
        if (c->p < c->end && *c->p == close) { c->p++; return 1; }
        for (;;) {
            if (ch == '{') {
                ws(c);
                if (c->p >= c->end || *c->p != '"') return cur_fail(c, "expected a string");
                if (!skip_string(c) || !expect(c, ':')) return 0;
            }
            if (!skip_value(c, depth + 1)) return 0;
            ws(c);
            if (c->p < c->end && *c->p == ',') { c->p++; continue; }
            return expect(c, close);
        }
    }
    static const char *const lit[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(lit[i]);
        if ((size_t)(c->end - c->p) >= n && !memcmp(c->p, lit[i], n)) { c->p += n; return 1; }
    }
    if (ch == '-' || (ch >= '0' && ch <= '9')) return skip_number(c);
    return cur_fail(c, "unexpected character");
}

/* Iterates an object: call with *first = 1; returns 1 with the key in key
 * and the cursor at its value, 0 at the closing brace or on error (c->st). */
static int next_member(jcur *c, int *first, char *key, size_t cap) {
    ws(c);
    if (*first) {
        if (!expect(c, '{')) return 0;
        ws(c);
        if (c->p < c->end && *c->p == '}') { c->p++; return 0; }
        *first = 0;
    } else {
        if (c->p < c->end && *c->p == '}') { c->p++; return 0; }
        if (!expect(c, ',')) return 0;
    }
    size_t n;
    if (!read_string(c, key, cap - 1, &n)) return 0;
    key[n] = 0;
    return expect(c, ':');
}

static int take_extent(jcur *c, extent *e) {
    ws(c);
    e->start = c->p;
    if (!skip_value(c, 0)) return 0;
    e->len = (size_t)(c->p - e->start);
    return 1;
}

static json_t *parse_extent(const extent *e, const char *name, const char *field, gptoss_status *st) {
    json_error_t err;
    json_t *v = json_loadb(e->start, e->len, JSON_DECODE_ANY, &err);
    if (!v) *st = gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: %s: %s", name, field, err.text);
    return v;
}

/* GPT-2 byte-level alphabet: code point -> byte, -1 outside the alphabet. */
static void byte_level_table(int16_t inv[324]) {
    for (int i = 0; i < 324; i++) inv[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        inv[printable ? b : 256 + extra++] = (int16_t)b;
    }
}

/* UTF-8 of a byte-level string -> raw bytes (in place; output is never longer). */
static int unmap_bytes(const int16_t inv[324], char *s, size_t *n) {
    size_t o = 0;
    for (size_t i = 0; i < *n;) {
        unsigned char ch = (unsigned char)s[i];
        uint32_t cp;
        if (ch < 0x80) { cp = ch; i++; }
        else if ((ch & 0xE0) == 0xC0 && i + 1 < *n) { cp = (uint32_t)(ch & 31) << 6 | (s[i + 1] & 63); i += 2; }
        else return 0;
        if (cp >= 324 || inv[cp] < 0) return 0;
        s[o++] = (char)inv[cp];
    }
    *n = o;
    return 1;
}

static gptoss_status load_vocab(struct gptoss_tokenizer *t, jcur *c, const int16_t inv[324]) {
    size_t cap_ids = 1 << 18, n = 0, bytes_cap = 1 << 21, bytes_n = 0;
    int32_t *ids = malloc(cap_ids * sizeof *ids);
    uint32_t *off = malloc((cap_ids + 1) * sizeof *off);
    char *bytes = malloc(bytes_cap);
    char key[1024];
    int first = 1;
    gptoss_status st = GPTOSS_OK;
    if (!ids || !off || !bytes) { st = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "%s: vocab", c->name); goto out; }
    while (next_member(c, &first, key, sizeof key)) {
        size_t klen = strlen(key);
        const char *at = c->p;
        if (!unmap_bytes(inv, key, &klen)) {
            c->p = at;
            cur_fail(c, "model.vocab: key outside the byte-level alphabet");
            break;
        }
        ws(c);
        char *e;
        long id = strtol(c->p, &e, 10);
        if (e == c->p || id < 0 || id >= (1 << 24) || (*e == '.' || *e == 'e' || *e == 'E')) {
            cur_fail(c, "model.vocab: expected a non-negative integer id");
            break;
        }
        c->p = e;
        if (n == cap_ids) {
            cap_ids *= 2;
            int32_t *ni = realloc(ids, cap_ids * sizeof *ids);
            uint32_t *no = realloc(off, (cap_ids + 1) * sizeof *off);
            if (ni) ids = ni;
            if (no) off = no;
            if (!ni || !no) { st = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "%s: vocab", c->name); goto out; }
        }
        if (bytes_n + klen > bytes_cap) {
            bytes_cap *= 2;
            char *nb = realloc(bytes, bytes_cap);
            if (!nb) { st = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "%s: vocab", c->name); goto out; }
            bytes = nb;
        }
        memcpy(bytes + bytes_n, key, klen);
        ids[n] = (int32_t)id;
        off[n] = (uint32_t)bytes_n;
        bytes_n += klen;
        n++;
    }
    if (c->st) { st = c->st; goto out; }
    if (n == 0) { st = gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: model.vocab is empty", c->name); goto out; }
    off[n] = (uint32_t)bytes_n;
    /* Ids must be exactly 0..n-1. */
    t->n_ranked = (int)n;
    t->tok_off = calloc(n + 2, sizeof *t->tok_off);
    t->tok_bytes = malloc(bytes_n + 1);
    int32_t *where = malloc(n * sizeof *where);
    if (!t->tok_off || !t->tok_bytes || !where) {
        free(where);
        st = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "%s: vocab", c->name);
        goto out;
    }
    for (size_t i = 0; i < n; i++) where[i] = -1;
    for (size_t i = 0; i < n; i++) {
        if ((size_t)ids[i] >= n || where[ids[i]] >= 0) {
            st = gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: model.vocab: id %d is %s (ids must be 0..%zu, each once)",
                                  c->name, ids[i], (size_t)ids[i] >= n ? "out of range" : "repeated", n - 1);
            free(where);
            goto out;
        }
        where[ids[i]] = (int32_t)i;
    }
    size_t o = 0;
    for (size_t id = 0; id < n; id++) {
        size_t i = (size_t)where[id], len = off[i + 1] - off[i];
        t->tok_off[id] = (uint32_t)o;
        memcpy(t->tok_bytes + o, bytes + off[i], len);
        o += len;
    }
    t->tok_off[n] = (uint32_t)o;
    free(where);
    /* Hash of bytes -> id. */
    uint32_t size = 1;
    while (size < 2 * n) size <<= 1;
    t->vocab_mask = size - 1;
    t->vocab_slots = malloc(size * sizeof *t->vocab_slots);
    if (!t->vocab_slots) { st = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "%s: vocab", c->name); goto out; }
    memset(t->vocab_slots, 0xff, size * sizeof *t->vocab_slots);
    for (size_t id = 0; id < n; id++) {
        size_t len;
        const char *p = tok_bytes_of(t, (int32_t)id, &len);
        if (tok_vocab_find(t, p, len) >= 0) {
            st = gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: model.vocab: token %zu repeats the bytes of token %d",
                                  c->name, id, tok_vocab_find(t, p, len));
            goto out;
        }
        uint32_t h = (uint32_t)tok_hash((const uint8_t *)p, len) & t->vocab_mask;
        while (t->vocab_slots[h] >= 0) h = (h + 1) & t->vocab_mask;
        t->vocab_slots[h] = (int32_t)id;
    }
out:
    free(ids);
    free(off);
    free(bytes);
    return st;
}

static int merge_side(struct gptoss_tokenizer *t, jcur *c, const int16_t inv[324], char *buf, size_t cap,
                      size_t *len, int32_t *id) {
    const char *at = c->p;
    if (!read_string(c, buf, cap, len)) return 0;
    if (!unmap_bytes(inv, buf, len)) { c->p = at; return cur_fail(c, "model.merges: outside the byte-level alphabet"); }
    *id = tok_vocab_find(t, buf, *len);
    if (*id < 0) { c->p = at; return cur_fail(c, "model.merges: token not in model.vocab"); }
    return 1;
}

static gptoss_status load_merges(struct gptoss_tokenizer *t, jcur *c, const int16_t inv[324]) {
    uint32_t size = 1 << 20;
    for (;;) {
        t->merges = malloc(size * sizeof *t->merges);
        if (!t->merges) return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "%s: merges", c->name);
        for (uint32_t i = 0; i < size; i++) t->merges[i].key = TOK_EMPTY_KEY;
        t->merge_mask = size - 1;
        jcur c0 = *c;
        size_t n = 0, used = 0;
        char buf[2048];
        if (!expect(c, '[')) return c->st;
        ws(c);
        if (c->p < c->end && *c->p == ']') { c->p++; return GPTOSS_OK; }
        for (;;) {
            int32_t l, r;
            size_t ll, rl;
            ws(c);
            if (c->p < c->end && *c->p == '[') {
                c->p++;
                if (!merge_side(t, c, inv, buf, 1024, &ll, &l) || !expect(c, ',') ||
                    !merge_side(t, c, inv, buf + ll, 1024, &rl, &r) || !expect(c, ']'))
                    return c->st;
            } else {
                /* Older form: "left right". */
                const char *at = c->p;
                size_t len;
                if (!read_string(c, buf, 2048, &len)) return c->st;
                char *sp = memchr(buf, ' ', len);
                if (!sp) { c->p = at; cur_fail(c, "model.merges: expected \"left right\""); return c->st; }
                ll = (size_t)(sp - buf);
                rl = len - ll - 1;
                memmove(sp, sp + 1, rl);
                size_t l2 = ll, r2 = rl;
                if (!unmap_bytes(inv, buf, &l2) || !unmap_bytes(inv, sp, &r2)) {
                    c->p = at; cur_fail(c, "model.merges: outside the byte-level alphabet"); return c->st;
                }
                memmove(buf + l2, sp, r2);
                ll = l2, rl = r2;
                l = tok_vocab_find(t, buf, ll);
                r = tok_vocab_find(t, buf + ll, rl);
                if (l < 0 || r < 0) { c->p = at; cur_fail(c, "model.merges: token not in model.vocab"); return c->st; }
            }
            int32_t m = tok_vocab_find(t, buf, ll + rl);
            if (m < 0) {
                char msg[96];
                snprintf(msg, sizeof msg, "model.merges[%zu]: merged token %d+%d not in model.vocab", n, l, r);
                cur_fail(c, msg);
                return c->st;
            }
            uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
            uint32_t h = tok_merge_hash(key, t->merge_mask);
            while (t->merges[h].key != TOK_EMPTY_KEY && t->merges[h].key != key) h = (h + 1) & t->merge_mask;
            if (t->merges[h].key == TOK_EMPTY_KEY) used++;
            /* A repeated pair keeps its last rank, as the Hugging Face loader does. */
            t->merges[h] = (tok_merge_slot){key, (int32_t)n, m};
            n++;
            if (used * 4 > (size_t)size * 3) break; /* too full: grow and start over */
            ws(c);
            if (c->p < c->end && *c->p == ',') { c->p++; continue; }
            if (!expect(c, ']')) return c->st;
            return GPTOSS_OK;
        }
        free(t->merges);
        t->merges = NULL;
        *c = c0;
        size *= 4;
    }
}

static gptoss_status load_added(struct gptoss_tokenizer *t, json_t *arr, const char *name) {
    if (!json_is_array(arr)) return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: added_tokens: expected an array", name);
    size_t i;
    json_t *a;
    int max_id = t->n_ranked - 1;
    size_t extra = 0;
    json_array_foreach(arr, i, a) {
        json_t *id = json_object_get(a, "id"), *content = json_object_get(a, "content");
        if (!json_is_integer(id) || !json_is_string(content) || json_string_length(content) == 0)
            return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: added_tokens[%zu]: needs an integer id and a non-empty content", name, i);
        json_int_t v = json_integer_value(id);
        if (v < t->n_ranked || v >= (1 << 24))
            return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED, "%s: added_tokens[%zu]: id %lld inside the BPE vocab or too large",
                                    name, i, (long long)v);
        static const char *const flags[] = {"single_word", "lstrip", "rstrip", "normalized"};
        for (int f = 0; f < 4; f++)
            if (json_is_true(json_object_get(a, flags[f])))
                return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED, "%s: added_tokens[%zu]: %s is not supported", name, i, flags[f]);
        if (!json_is_true(json_object_get(a, "special")))
            return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED, "%s: added_tokens[%zu]: non-special added tokens are not supported", name, i);
        if (t->n_special == TOK_MAX_SPECIAL)
            return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED, "%s: more than %d added tokens", name, TOK_MAX_SPECIAL);
        t->special_ids[t->n_special++] = (int32_t)v;
        if (v > max_id) max_id = (int)v;
        extra += json_string_length(content);
    }
    t->n_tokens = max_id + 1;
    uint32_t *off = realloc(t->tok_off, ((size_t)t->n_tokens + 1) * sizeof *off);
    t->tok_kind = calloc((size_t)t->n_tokens, 1);
    if (!off || !t->tok_kind) {
        if (off) t->tok_off = off;
        return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "%s: added_tokens", name);
    }
    t->tok_off = off;
    size_t ranked_bytes = off[t->n_ranked];
    char *bytes = realloc(t->tok_bytes, ranked_bytes + extra + 1);
    if (!bytes) return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "%s: added_tokens", name);
    t->tok_bytes = bytes;
    memset(t->tok_kind, 1, (size_t)t->n_ranked);
    /* Lay out ids n_ranked..n_tokens-1 in order; unused ids have no bytes. */
    size_t o = ranked_bytes;
    for (int id = t->n_ranked; id < t->n_tokens; id++) {
        off[id] = (uint32_t)o;
        json_array_foreach(arr, i, a) {
            if (json_integer_value(json_object_get(a, "id")) != id) continue;
            if (t->tok_kind[id])
                return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: added_tokens: id %d appears twice", name, id);
            json_t *content = json_object_get(a, "content");
            memcpy(bytes + o, json_string_value(content), json_string_length(content));
            o += json_string_length(content);
            t->tok_kind[id] = 2;
        }
    }
    off[t->n_tokens] = (uint32_t)o;
    return GPTOSS_OK;
}

static const char *str_field(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : "";
}

/* Accepts Split(Regex, Isolated) alone or as Sequence[Split, ByteLevel(use_regex false)]. */
static gptoss_status load_pretok(struct gptoss_tokenizer *t, json_t *pt, const char *name) {
    json_t *split = pt;
    if (!strcmp(str_field(pt, "type"), "Sequence")) {
        json_t *seq = json_object_get(pt, "pretokenizers");
        if (!json_is_array(seq) || json_array_size(seq) < 1 || json_array_size(seq) > 2)
            return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED, "%s: pre_tokenizer: expected Sequence[Split, ByteLevel]", name);
        split = json_array_get(seq, 0);
        json_t *bl = json_array_get(seq, 1);
        if (bl && (strcmp(str_field(bl, "type"), "ByteLevel") || json_is_true(json_object_get(bl, "use_regex")) ||
                   json_is_true(json_object_get(bl, "add_prefix_space"))))
            return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED,
                                    "%s: pre_tokenizer.pretokenizers[1]: only ByteLevel without regex or prefix space is supported", name);
    }
    json_t *pat = json_object_get(json_object_get(split, "pattern"), "Regex");
    if (strcmp(str_field(split, "type"), "Split") || !json_is_string(pat))
        return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED, "%s: pre_tokenizer: expected a Split with a Regex pattern", name);
    if (strcmp(str_field(split, "behavior"), "Isolated") || json_is_true(json_object_get(split, "invert")))
        return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED, "%s: pre_tokenizer: only behavior Isolated, invert false is supported", name);
    int err;
    PCRE2_SIZE eoff;
    t->re = pcre2_compile((PCRE2_SPTR)json_string_value(pat), json_string_length(pat),
                          PCRE2_UTF | PCRE2_UCP, &err, &eoff, NULL);
    if (!t->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: pre_tokenizer regex: %s at offset %zu", name, (char *)msg, (size_t)eoff);
    }
    t->re_jit = pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE) == 0;
    return GPTOSS_OK;
}

/* model: scalars go to jansson; vocab (and merges when vocab came first, as
 * it does in files written by Hugging Face) are read in place. */
static gptoss_status parse_model(struct gptoss_tokenizer *t, jcur *c, const int16_t inv[324], json_t *scalars,
                                 extent *merges, int *have_vocab, int *have_merges) {
    char key[256];
    int first = 1;
    gptoss_status st;
    while (next_member(c, &first, key, sizeof key)) {
        if (!strcmp(key, "vocab")) {
            if (*have_vocab) return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: model.vocab appears twice", c->name);
            if ((st = load_vocab(t, c, inv))) return st;
            *have_vocab = 1;
        } else if (!strcmp(key, "merges")) {
            if (*have_merges) return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: model.merges appears twice", c->name);
            *have_merges = 1;
            if (!*have_vocab) { if (!take_extent(c, merges)) break; }
            else {
                merges->start = NULL;
                if ((st = load_merges(t, c, inv))) return st;
            }
        } else {
            extent e;
            if (!take_extent(c, &e)) break;
            st = GPTOSS_OK;
            json_t *v = parse_extent(&e, c->name, key, &st);
            if (!v) return st;
            json_object_set_new(scalars, key, v);
        }
    }
    return c->st;
}

gptoss_status tok_load_json(struct gptoss_tokenizer *t, const char *json, size_t len, const char *name) {
    jcur c = {json, json + len, json, name, GPTOSS_OK};
    extent added = {0}, pretok = {0}, normalizer = {0}, merges = {0};
    int have_model = 0, have_vocab = 0, have_merges = 0;
    int16_t inv[324];
    byte_level_table(inv);
    json_t *scalars = json_object();
    char key[256];
    int first = 1;
    gptoss_status st = GPTOSS_OK;
    while (next_member(&c, &first, key, sizeof key)) {
        if (!strcmp(key, "model")) {
            have_model = 1;
            if ((st = parse_model(t, &c, inv, scalars, &merges, &have_vocab, &have_merges))) break;
            continue;
        }
        extent *e = !strcmp(key, "added_tokens") ? &added : !strcmp(key, "pre_tokenizer") ? &pretok
                  : !strcmp(key, "normalizer") ? &normalizer : NULL;
        if (e ? !take_extent(&c, e) : !skip_value(&c, 0)) break;
    }
    if (!st) st = c.st;
    if (!st) {
        ws(&c);
        if (c.p != c.end) { cur_fail(&c, "trailing data after the top-level object"); st = c.st; }
    }
    if (st) { json_decref(scalars); return st; }
    if (!have_model) st = gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: no \"model\" section", name);
    else if (!pretok.start) st = gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: no \"pre_tokenizer\" section", name);
    else if (normalizer.start && !(normalizer.len == 4 && !memcmp(normalizer.start, "null", 4)))
        st = gptoss_set_error(GPTOSS_ERR_UNSUPPORTED, "%s: normalizer: only null is supported", name);
    if (st) { json_decref(scalars); return st; }
    if (strcmp(str_field(scalars, "type"), "BPE"))
        st = gptoss_set_error(GPTOSS_ERR_UNSUPPORTED, "%s: model.type: only BPE is supported", name);
    else if (!have_vocab || !have_merges)
        st = gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: model: needs \"vocab\" and \"merges\"", name);
    else if (json_is_true(json_object_get(scalars, "byte_fallback")) ||
             json_is_string(json_object_get(scalars, "continuing_subword_prefix")) ||
             json_is_string(json_object_get(scalars, "end_of_word_suffix")) ||
             json_is_number(json_object_get(scalars, "dropout")))
        st = gptoss_set_error(GPTOSS_ERR_UNSUPPORTED,
                              "%s: model: byte_fallback, subword prefix/suffix and dropout are not supported", name);
    t->ignore_merges = json_is_true(json_object_get(scalars, "ignore_merges"));
    json_decref(scalars);
    if (st) return st;

    for (int b = 0; b < 256; b++) {
        char ch = (char)b;
        if ((t->byte_tok[b] = tok_vocab_find(t, &ch, 1)) < 0)
            return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: model.vocab: no token for byte 0x%02x", name, b);
    }
    if (merges.start) { /* merges came before vocab */
        jcur cm = {merges.start, merges.start + merges.len, json, name, GPTOSS_OK};
        if ((st = load_merges(t, &cm, inv))) return st;
    }

    json_t *v = NULL;
    if (added.start) {
        if (!(v = parse_extent(&added, name, "added_tokens", &st))) return st;
        st = load_added(t, v, name);
        json_decref(v);
    } else {
        st = load_added(t, v = json_array(), name);
        json_decref(v);
    }
    if (st) return st;
    if (!(v = parse_extent(&pretok, name, "pre_tokenizer", &st))) return st;
    st = load_pretok(t, v, name);
    json_decref(v);
    return st;
}

void tok_release(struct gptoss_tokenizer *t) {
    free(t->tok_off);
    free(t->tok_bytes);
    free(t->tok_kind);
    free(t->vocab_slots);
    free(t->merges);
    if (t->re) pcre2_code_free(t->re);
}
