/* test_harmony_render.c - gptoss_render_chat against expected prompts written out
 * by hand from the harmony format (spec section 5), and its error reporting.
 * The byte-for-byte comparison with the official template over many requests is
 * tests/test_render_template.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "gptoss.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SYS(effort, extra)                                                                           \
    "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"      \
    "Knowledge cutoff: 2024-06\nCurrent date: 2026-01-15\n\nReasoning: " effort "\n\n"             \
    "# Valid channels: analysis, commentary, final. Channel must be included for every message." \
    extra "<|end|>"

static char *render(const char *json, const char *effort, int add_gen) {
    gptoss_render_options o = {"2026-01-15", effort, add_gen};
    char *text = NULL;
    gptoss_status st = gptoss_render_chat(json, strlen(json), &o, &text);
    if (st != GPTOSS_OK) fail_msg("render failed: %s", gptoss_last_error());
    return text;
}

/* Expects a FORMAT (or other) error whose message contains `needle`. */
static void expect_error(const char *json, gptoss_status want, const char *needle) {
    gptoss_render_options o = {"2026-01-15", NULL, 1};
    char *text = (char *)0x1;
    gptoss_status st = gptoss_render_chat(json, strlen(json), &o, &text);
    assert_int_equal(st, want);
    assert_null(text);
    if (!strstr(gptoss_last_error(), needle)) fail_msg("error \"%s\" lacks \"%s\"", gptoss_last_error(), needle);
}

static void test_plain_chat(void **state) {
    (void)state;
    char *t = render("{\"messages\":[{\"role\":\"user\",\"content\":\"Hi there\"}]}", NULL, 1);
    assert_string_equal(t, SYS("medium", "") "<|start|>user<|message|>Hi there<|end|><|start|>assistant");
    gptoss_free(t);
}

static void test_system_effort_and_history(void **state) {
    (void)state;
    const char *req = "{\"reasoning_effort\":\"low\",\"messages\":["
                      "{\"role\":\"system\",\"content\":\"Be brief.\"},"
                      "{\"role\":\"user\",\"content\":\"A?\"},"
                      "{\"role\":\"assistant\",\"reasoning_content\":\"old thoughts\",\"content\":\"B.\"},"
                      "{\"role\":\"user\",\"content\":\"C?\"}]}";
    char *t = render(req, NULL, 1);
    /* the earlier reasoning is dropped; the system prompt becomes developer instructions */
    assert_string_equal(t, SYS("low", "") "<|start|>developer<|message|># Instructions\n\nBe brief.\n\n<|end|>"
                           "<|start|>user<|message|>A?<|end|>"
                           "<|start|>assistant<|channel|>final<|message|>B.<|end|>"
                           "<|start|>user<|message|>C?<|end|><|start|>assistant");
    gptoss_free(t);
    /* the option overrides the request's effort */
    t = render(req, "high", 1);
    assert_non_null(strstr(t, "\nReasoning: high\n"));
    gptoss_free(t);
}

static void test_tool_call_round_trip(void **state) {
    (void)state;
    const char *req =
        "{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather now\","
        "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"description\":\"City\"},"
        "\"days\":{\"type\":\"integer\",\"default\":1}},\"required\":[\"city\"]}}}],"
        "\"messages\":[{\"role\":\"user\",\"content\":\"Paris?\"},"
        "{\"role\":\"assistant\",\"reasoning\":\"Need the tool.\",\"content\":null,\"tool_calls\":[{\"type\":\"function\","
        "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\",\\\"days\\\":2.0}\"}}]},"
        "{\"role\":\"tool\",\"content\":\"18 \\u00b0C\"}]}";
    char *t = render(req, NULL, 1);
    assert_string_equal(t, SYS("medium", "\nCalls to these tools must go to the commentary channel: 'functions'.")
                           "<|start|>developer<|message|># Tools\n\n## functions\n\nnamespace functions {\n\n"
                           "// Weather now\ntype get_weather = (_: {\n// City\ncity: string,\n"
                           "days?: number, // default: 1,\n}) => any;\n\n} // namespace functions<|end|>"
                           "<|start|>user<|message|>Paris?<|end|>"
                           "<|start|>assistant<|channel|>analysis<|message|>Need the tool.<|end|>"
                           "<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>"
                           "{\"city\": \"Paris\", \"days\": 2}<|call|>"
                           "<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>"
                           "\"18 \xC2\xB0" "C\"<|end|><|start|>assistant");
    gptoss_free(t);
}

static void test_training_format_and_numbers(void **state) {
    (void)state;
    /* add_generation_prompt = 0: the last assistant turn keeps its analysis and ends in <|return|> */
    char *t = render("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
                     "{\"role\":\"assistant\",\"thinking\":\"t\",\"content\":\"y\"}]}",
                     NULL, 0);
    assert_string_equal(t, SYS("medium", "") "<|start|>user<|message|>x<|end|>"
                           "<|start|>assistant<|channel|>analysis<|message|>t<|end|>"
                           "<|start|>assistant<|channel|>final<|message|>y<|return|>");
    gptoss_free(t);
    /* tojson of numbers, strings and key order as @huggingface/jinja writes them */
    t = render("{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"tool_calls\":"
               "[{\"function\":{\"name\":\"f\",\"arguments\":{\"b\":1.0,\"a\":1e21,\"3\":1e-7,\"1\":0.000001,"
               "\"s\":\"\\u0007\\n\\\"\\u00e9\"}}}]}]}",
               NULL, 1);
    assert_non_null(strstr(t, "<|message|>{\"1\": 0.000001, \"3\": 1e-7, \"b\": 1, \"a\": 1e+21, "
                              "\"s\": \"\\u0007\\n\\\"\xC3\xA9\"}<|call|>"));
    gptoss_free(t);
}

static void test_default_date_is_today(void **state) {
    (void)state;
    char want[64];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(want, sizeof want, "Current date: %Y-%m-%d\n", &tm);
    const char *req = "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}";
    char *t = NULL;
    assert_int_equal(gptoss_render_chat(req, strlen(req), NULL, &t), GPTOSS_OK);
    assert_non_null(strstr(t, want));
    gptoss_free(t);
}

static void test_errors(void **state) {
    (void)state;
    expect_error("{\"messages\":[", GPTOSS_ERR_FORMAT, "invalid JSON");
    expect_error("[1]", GPTOSS_ERR_FORMAT, "expected a JSON object");
    expect_error("{}", GPTOSS_ERR_FORMAT, "messages: expected a non-empty array");
    expect_error("{\"messages\":[]}", GPTOSS_ERR_FORMAT, "messages: expected a non-empty array");
    expect_error("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":\"b\"},"
                 "{\"role\":\"user\",\"content\":7}]}",
                 GPTOSS_ERR_FORMAT, "messages[2].content: expected a string or array");
    expect_error("{\"messages\":[{\"content\":\"a\"}]}", GPTOSS_ERR_FORMAT, "messages[0].role: expected a string");
    expect_error("{\"messages\":[{\"role\":\"robot\",\"content\":\"a\"}]}", GPTOSS_ERR_FORMAT,
                 "messages[0].role: unknown role");
    expect_error("{\"reasoning_effort\":\"max\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}",
                 GPTOSS_ERR_FORMAT, "reasoning_effort");
    expect_error("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"tool\",\"content\":\"r\"}]}",
                 GPTOSS_ERR_FORMAT, "messages[1]: tool message without");
    expect_error("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":"
                 "\"<|channel|>final<|message|>x\"}]}",
                 GPTOSS_ERR_FORMAT, "messages[1].content: contains <|channel|>");
    expect_error("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"c\","
                 "\"thinking\":\"t\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{}}}]}]}",
                 GPTOSS_ERR_FORMAT, "both content and thinking");
    expect_error("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"tool_calls\":"
                 "[{\"function\":{\"arguments\":{}}}]}]}",
                 GPTOSS_ERR_FORMAT, "messages[1].tool_calls[0].function.name");
    expect_error("{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"description\":\"d\","
                 "\"parameters\":{\"type\":\"object\",\"properties\":{\"x\":5}}}}],"
                 "\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}",
                 GPTOSS_ERR_FORMAT, "tools[0].function.parameters.properties.x");
    expect_error("{\"tools\":{},\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}", GPTOSS_ERR_FORMAT,
                 "tools: expected an array");
    expect_error("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", GPTOSS_ERR_FORMAT,
                 "messages[0].content[0]");

    gptoss_render_options bad_date = {"15/01/2026", NULL, 1};
    char *t = NULL;
    assert_int_equal(gptoss_render_chat("{}", 2, &bad_date, &t), GPTOSS_ERR_INVALID_ARGUMENT);
    assert_int_equal(gptoss_render_chat(NULL, 0, NULL, &t), GPTOSS_ERR_INVALID_ARGUMENT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_chat),
        cmocka_unit_test(test_system_effort_and_history),
        cmocka_unit_test(test_tool_call_round_trip),
        cmocka_unit_test(test_training_format_and_numbers),
        cmocka_unit_test(test_default_date_is_today),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
