/*
 * chatloop.h - the generation loop shared by `gptoss run`, `gptoss chat` and
 * `gptoss serve`: prompt (rendered chat or raw text) -> tokens -> prefix reuse
 * against the session's cache -> prefill -> sample -> harmony parse -> events.
 *
 * A generation (chatgen) is a small state machine so that the server can drive
 * many of them through one gptoss_decode_batch call per step:
 *
 *   chatgen_create(...); chatgen_set_prompt(g, ids, n);
 *   while (!chatgen_prefill(g, chunk, &done) && !done) {}   // first token sampled
 *   while ((id = chatgen_next(g)) >= 0) {                   // token to append
 *       append id to the session (alone or in a batch) -> logits
 *       chatgen_feed(g, logits);                            // samples the next one
 *   }
 *
 * chatloop_run() does all of that for one session. Library-style: no printing.
 */
#ifndef GPTOSS_CHATLOOP_H
#define GPTOSS_CHATLOOP_H

#include "gptoss.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    CHATLOOP_REASONING = 0, /* analysis channel text delta */
    CHATLOOP_CONTENT,       /* final answer (or raw completion) text delta */
    CHATLOOP_TOOL_START,    /* a function call begins: text = function name */
    CHATLOOP_TOOL_ARGS,     /* arguments delta of the current call */
    CHATLOOP_TOOL_END,      /* the call is complete: text = full arguments */
} chatloop_event;

typedef struct {
    /* Text deltas. tool_index: 0-based index of the call for TOOL_* events. */
    void (*on_event)(void *user, chatloop_event ev, int tool_index, const char *text, size_t len);
    /* Every sampled token (may be NULL). kind: the event kind its text went to, or -1 for
     * structural tokens. top_*: n_top alternatives when top_logprobs > 0. */
    void (*on_token)(void *user, int32_t id, int kind, float logprob, const int32_t *top_ids,
                     const float *top_lps, int n_top);
    void *user;
} chatloop_callbacks;

#define CHATLOOP_MAX_STOP 8

typedef struct {
    gptoss_sampler_params sampling;
    int max_tokens;                      /* 0 = until the context is full */
    const char *stop[CHATLOOP_MAX_STOP]; /* stop strings on the answer text (kept alive by caller) */
    int n_stop;
    int top_logprobs;                    /* 0 = none; alternatives per token otherwise (<= 20) */
    int raw;                             /* 1: raw completion, no harmony parsing */
    const int32_t *script;               /* scripted mode: ids replayed instead of sampling */
    size_t n_script;
    /* Tokens the answer is forced to begin with (e.g. a function-call header for
     * tool_choice). The caller ends the prompt with them; they are parsed as if
     * generated (their events are delivered) but not counted as completion. */
    const int32_t *forced;
    size_t n_forced;
    atomic_int *cancel;                  /* checked before every token; may be NULL */
} chatloop_params;

void chatloop_params_default(chatloop_params *p);

typedef enum {
    CHATLOOP_RUNNING = 0,
    CHATLOOP_FINISH_STOP,      /* stop token, stop string or end of script */
    CHATLOOP_FINISH_LENGTH,    /* max_tokens or the context is full */
    CHATLOOP_FINISH_TOOL_CALLS,/* ended with a function call */
    CHATLOOP_FINISH_CANCELLED,
    CHATLOOP_FINISH_ERROR,
} chatloop_finish;

/* "stop", "length", "tool_calls", "cancelled", "error" (NULL while running). */
const char *chatloop_finish_name(chatloop_finish f);

typedef struct chatgen chatgen;

typedef struct {
    int prompt_tokens;     /* tokens of the prompt */
    int cached_tokens;     /* of which reused from the session's cache */
    int completion_tokens; /* tokens sampled (including the stop token) */
    double t_start, t_first_token, t_end; /* now_seconds() clock */
} chatloop_stats;

/* Renders a chat request (JSON with "messages", optional "tools",
 * "reasoning_effort"; effort overrides it when not NULL) and tokenizes it with
 * special tokens. *ids is freed with gptoss_free. */
gptoss_status chatloop_tokenize_chat(const gptoss_tokenizer *t, const char *request_json,
                                     size_t len, const char *effort, int32_t **ids, size_t *n);

/* model: to learn the context size and vocabulary; session: the cache to use. */
gptoss_status chatgen_create(gptoss_model *m, gptoss_session *s, const gptoss_tokenizer *t,
                             const chatloop_params *p, const chatloop_callbacks *cb,
                             chatgen **out);
void chatgen_free(chatgen *g);

/* Sets the prompt (copied). Reuses the longest prefix the session already holds
 * (truncating it, or resetting when truncation is not possible). Fails with
 * GPTOSS_ERR_CONTEXT_FULL when the prompt leaves no room for one token. */
gptoss_status chatgen_set_prompt(chatgen *g, const int32_t *ids, size_t n);
/* Appends up to max_chunk prompt tokens (0 = all). When the prompt is complete,
 * samples the first token and sets *done. */
gptoss_status chatgen_prefill(chatgen *g, size_t max_chunk, int *done);
/* Prompt tokens not yet appended. */
size_t chatgen_prefill_left(const chatgen *g);
/* Token to append next, or -1 when the generation has finished. */
int32_t chatgen_next(const chatgen *g);
/* Logits [vocab] after chatgen_next()'s token was appended: samples the next. */
gptoss_status chatgen_feed(chatgen *g, const float *logits);
/* The sampler of g when its next token may be sampled on the device (no
 * script, no top logprobs), else NULL; then chatgen_feed_id takes the id and
 * logprob that gptoss_decode_sample chose with it, in place of chatgen_feed. */
gptoss_sampler *chatgen_device_sampler(chatgen *g);
gptoss_status chatgen_feed_id(chatgen *g, int32_t id, float logprob);
/* Marks the generation finished (e.g. the caller failed to append). */
void chatgen_abort(chatgen *g, chatloop_finish why);
/* One decode step of this generation alone (append + feed). */
gptoss_status chatgen_step(chatgen *g);

chatloop_finish chatgen_finish(const chatgen *g);
const chatloop_stats *chatgen_stats(const chatgen *g);
gptoss_session *chatgen_session(const chatgen *g);
/* Accumulated texts (NUL-terminated; valid until chatgen_free). */
const char *chatgen_reasoning(const chatgen *g);
const char *chatgen_content(const chatgen *g);
int chatgen_n_tool_calls(const chatgen *g);
const char *chatgen_tool_name(const chatgen *g, int i);
const char *chatgen_tool_args(const chatgen *g, int i);

/* Whole generation for one session: prompt -> finished. Returns the first
 * error (the finish reason tells cancelled/length/...). */
gptoss_status chatloop_run(chatgen *g, const int32_t *ids, size_t n);

/* Parses a script: whitespace/comma separated token ids, or else harmony text
 * tokenized with special tokens. Several scripts are separated by lines that
 * hold only "---". *scripts[i] / *lens[i]; free with chatloop_scripts_free. */
gptoss_status chatloop_load_scripts(const gptoss_tokenizer *t, const char *path,
                                    int32_t ***scripts, size_t **lens, int *n_scripts);
void chatloop_scripts_free(int32_t **scripts, size_t *lens, int n_scripts);

#endif
