/* fuzz_harmony_parse.c - random token streams into the harmony parser.
 * Each input byte picks a token from a small alphabet of harmony specials and
 * text pieces (including split UTF-8 and header words); the top bits of the
 * first byte choose expect_start_after_role and the max_events per push.
 * Checks: no crash/leak/hang, event counts within bounds, CONTENT deltas are
 * valid UTF-8 with the advertised length. */
#include "gptoss.h"
#include "harmony_parse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const TEXT[] = {
    "assistant", "analysis", "final", "commentary", " to=functions.get_weather", " json", "json",
    "Hello", " ", "{\"a\": 1}", "\xE2\x82", "\xAC", "\xF0\x9F", "\x98\x80", "\xFF", "to=", "functions.x",
    "user", "\n", "<|constrain|>", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
};
#define N_TEXT ((int)(sizeof TEXT / sizeof TEXT[0]))
static const int32_t SPECIAL[] = {
    GPTOSS_TOK_START, GPTOSS_TOK_CHANNEL, GPTOSS_TOK_MESSAGE, GPTOSS_TOK_END, GPTOSS_TOK_RETURN,
    GPTOSS_TOK_CALL, GPTOSS_TOK_CONSTRAIN, GPTOSS_TOK_ENDOFTEXT, GPTOSS_TOK_STARTOFTEXT, 200010,
    GPTOSS_TOK_ENDOFPROMPT, 200019, -1, 100000,
};
#define N_SPECIAL ((int)(sizeof SPECIAL / sizeof SPECIAL[0]))

static const char *bytes_of(void *user, int32_t id, size_t *len) {
    (void)user;
    if (id < 1 || id > N_TEXT) return NULL;
    *len = strlen(TEXT[id - 1]);
    return TEXT[id - 1];
}

static int valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3
                   : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        if (!len || i + len > n) return 0;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return 0;
        i += len;
    }
    return 1;
}

static void check(const gptoss_harmony_event *ev, int n, int max) {
    if (n < 0 || n > max) abort();
    for (int i = 0; i < n; i++) {
        if (!ev[i].role || !ev[i].channel || !ev[i].recipient || !ev[i].content_type || !ev[i].text) abort();
        if (strlen(ev[i].text) != ev[i].text_len) abort();
        if (ev[i].type == GPTOSS_HEV_CONTENT && !valid_utf8((const unsigned char *)ev[i].text, ev[i].text_len))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    int expect = data[0] & 1;
    int max = (data[0] >> 1) & 7; /* 0..7 events per call */
    gptoss_harmony_parser *p = NULL;
    if (harmony_parser_create_cb(bytes_of, NULL, expect, &p) != GPTOSS_OK) abort();
    gptoss_harmony_event ev[8];
    for (size_t i = 1; i < size; i++) {
        uint8_t b = data[i];
        int32_t id = b < 128 ? (int32_t)(1 + b % N_TEXT) : SPECIAL[(b - 128) % N_SPECIAL];
        check(ev, gptoss_harmony_parser_push(p, id, ev, max), max);
    }
    check(ev, gptoss_harmony_parser_finish(p, ev, max), max);
    gptoss_harmony_result r;
    gptoss_harmony_parser_result(p, &r);
    if (!r.reasoning || !r.final || r.n_tool_calls < 0 || r.n_tool_calls > 16) abort();
    if (!valid_utf8((const unsigned char *)r.final, strlen(r.final))) abort();
    for (int i = 0; i < r.n_tool_calls; i++)
        if (!r.tool_calls[i].name || !r.tool_calls[i].arguments) abort();
    gptoss_harmony_parser_free(p);
    return 0;
}
