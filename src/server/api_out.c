/* api_out.c - the request object and everything it sends back: SSE chunks while
 * the scheduler generates (its callbacks run on the scheduler thread) and the
 * whole-response JSON; plus the waits of the HTTP threads. */
#include "server/api_internal.h"
#include "util.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A JSON string from bytes that may not be valid UTF-8 (bad bytes -> U+FFFD). */
static json_t *jstr(const char *s, size_t n) {
    json_t *v = json_stringn(s ? s : "", s ? n : 0);
    if (v) return v;
    strbuf b = {0};
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x80) strbuf_add(&b, s + i, 1);
        else strbuf_add(&b, "\xEF\xBF\xBD", 3);
    }
    v = json_stringn(b.p ? b.p : "", b.len);
    free(b.p);
    return v;
}

api_req *api_req_new(srv_ctx *c, int kind) {
    api_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->c = c;
    r->kind = kind;
    r->fd = -1;
    r->t_arrival = now_seconds();
    r->script = -1;
    atomic_init(&r->refs, 1);
    atomic_init(&r->cancel, 0);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    chatloop_params_default(&r->job.params);
    r->job.params.cancel = &r->cancel;
    unsigned long n = atomic_fetch_add(&c->seq, 1);
    r->created = (long long)time(NULL);
    snprintf(r->id, sizeof r->id, "%s-%llx%06lx", kind == API_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)r->created, n & 0xffffff);
    r->lp_pending = json_array();
    r->lp_all = json_array();
    return r;
}

void api_req_ref(api_req *r) { atomic_fetch_add(&r->refs, 1); }

void api_req_unref(api_req *r) {
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1) return;
    gptoss_free(r->prompt);
    for (int i = 0; i < CHATLOOP_MAX_STOP; i++) free(r->stops[i]);
    free(r->out.p);
    free(r->pending.p);
    free(r->body);
    json_decref(r->lp_pending);
    json_decref(r->lp_all);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

int api_req_is_stream(const api_req *r) { return r->stream; }
void api_req_set_fd(api_req *r, int fd) { r->fd = fd; }
void api_req_set_client(api_req *r, const char *who) {
    snprintf(r->job.key, sizeof r->job.key, "%s", who ? who : "");
}
void api_req_cancel(api_req *r) { atomic_store(&r->cancel, 1); }

void api_req_summary(api_req *r, int *prompt, int *completion, double *ttft, const char **finish) {
    pthread_mutex_lock(&r->mu);
    /* a cancelled generation ends within a step: wait (briefly) to log its numbers */
    for (int i = 0; i < 10 && !r->done && atomic_load(&r->cancel); i++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    }
    *prompt = r->stats.prompt_tokens ? r->stats.prompt_tokens : (int)r->n_prompt;
    *completion = r->stats.completion_tokens;
    *ttft = r->stats.t_first_token > 0 ? r->stats.t_first_token - r->stats.t_start : 0;
    *finish = chatloop_finish_name(r->finish);
    pthread_mutex_unlock(&r->mu);
}

/* --------------------------------------------------------------- formatting */

static const char *finish_reason(chatloop_finish f) {
    switch (f) {
    case CHATLOOP_FINISH_LENGTH: return "length";
    case CHATLOOP_FINISH_TOOL_CALLS: return "tool_calls";
    default: return "stop";
    }
}

static json_t *token_item(api_req *r, int32_t id, float lp) {
    size_t n = 0;
    const char *b = gptoss_token_bytes(r->c->tok, id, &n);
    json_t *bytes = json_array();
    for (size_t i = 0; b && i < n; i++) json_array_append_new(bytes, json_integer((unsigned char)b[i]));
    return json_pack("{s:o,s:f,s:o}", "token", jstr(b, b ? n : 0), "logprob", (double)lp, "bytes", bytes);
}

/* chat-style items -> the legacy completions logprobs object */
static json_t *legacy_logprobs(json_t *items) {
    json_t *toks = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    size_t i, j, off = 0;
    json_t *it, *t;
    json_array_foreach(items, i, it) {
        json_t *tok = json_object_get(it, "token");
        json_array_append(toks, tok);
        json_array_append(lps, json_object_get(it, "logprob"));
        json_t *top = json_object();
        json_array_foreach(json_object_get(it, "top_logprobs"), j, t)
            json_object_set(top, json_string_value(json_object_get(t, "token")), json_object_get(t, "logprob"));
        json_array_append_new(tops, top);
        json_array_append_new(offs, json_integer((json_int_t)off));
        off += json_string_length(tok);
    }
    return json_pack("{s:o,s:o,s:o,s:o}", "tokens", toks, "token_logprobs", lps, "top_logprobs", tops,
                     "text_offset", offs);
}

static void sse_send(api_req *r, json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s) return;
    strbuf_add(&r->out, "data: ", 6);
    strbuf_add(&r->out, s, strlen(s));
    strbuf_add(&r->out, "\n\n", 2);
    free(s);
    pthread_cond_broadcast(&r->cv);
}

/* One chunk. chat: delta (stolen); completion: text (stolen). lp stolen or NULL. */
static void chunk(api_req *r, json_t *delta_or_text, json_t *lp, const char *finish) {
    json_t *choice = json_pack("{s:i,s:o,s:o}", "index", 0, "logprobs", lp ? lp : json_null(),
                               "finish_reason", finish ? json_string(finish) : json_null());
    json_object_set_new(choice, r->kind == API_CHAT ? "delta" : "text", delta_or_text);
    sse_send(r, json_pack("{s:s,s:s,s:I,s:s,s:[o]}", "id", r->id, "object",
                          r->kind == API_CHAT ? "chat.completion.chunk" : "text_completion",
                          "created", (json_int_t)r->created, "model", r->c->model_name, "choices",
                          choice));
}

static void ensure_role(api_req *r) {
    if (r->role_sent || r->kind != API_CHAT || !r->stream) return;
    r->role_sent = 1;
    chunk(r, json_pack("{s:s,s:s}", "role", "assistant", "content", ""), NULL, NULL);
}

/* Sends the answer text held so far (with the logprobs of its tokens). */
static void flush_pending(api_req *r) {
    if (r->pending.len == 0) return;
    json_t *lp = NULL;
    if (r->logprobs) {
        lp = r->kind == API_CHAT ? json_pack("{s:O}", "content", r->lp_pending)
                                 : legacy_logprobs(r->lp_pending);
        json_array_clear(r->lp_pending);
    }
    json_t *text = jstr(r->pending.p, r->pending.len);
    r->pending.len = 0;
    chunk(r, r->kind == API_CHAT ? json_pack("{s:o}", "content", text) : text, lp, NULL);
}

static json_t *usage(api_req *r) {
    const chatloop_stats *s = &r->stats;
    return json_pack("{s:i,s:i,s:i,s:{s:i},s:{s:i}}", "prompt_tokens", s->prompt_tokens,
                     "completion_tokens", s->completion_tokens, "total_tokens",
                     s->prompt_tokens + s->completion_tokens, "prompt_tokens_details",
                     "cached_tokens", s->cached_tokens, "completion_tokens_details",
                     "reasoning_tokens", r->reasoning_tokens);
}

/* ---------------------------------------------------- scheduler callbacks */

static void on_event(void *user, chatloop_event ev, int idx, const char *text, size_t len) {
    api_req *r = user;
    pthread_mutex_lock(&r->mu);
    if (ev == CHATLOOP_TOOL_START && idx < API_MAX_TOOLS) {
        r->n_tools = idx + 1;
        unsigned long long h = (unsigned long long)r->created * 6364136223846793005ull ^
                               (unsigned long long)(uintptr_t)r ^ (unsigned long long)idx;
        h ^= h >> 29;
        h *= 0xBF58476D1CE4E5B9ull;
        snprintf(r->tool_ids[idx], sizeof r->tool_ids[idx], "call_%016llx", h);
    }
    if (ev == CHATLOOP_CONTENT) {
        strbuf_add(&r->pending, text, len);
    } else if (r->stream && r->kind == API_CHAT) {
        ensure_role(r);
        flush_pending(r);
        if (ev == CHATLOOP_REASONING)
            chunk(r, json_pack("{s:o}", "reasoning_content", jstr(text, len)), NULL, NULL);
        else if (ev == CHATLOOP_TOOL_START && idx < API_MAX_TOOLS)
            chunk(r, json_pack("{s:[{s:i,s:s,s:s,s:{s:o,s:s}}]}", "tool_calls", "index", idx, "id",
                               r->tool_ids[idx], "type", "function", "function", "name",
                               jstr(text, len), "arguments", ""),
                  NULL, NULL);
        else if (ev == CHATLOOP_TOOL_ARGS && idx < API_MAX_TOOLS)
            chunk(r, json_pack("{s:[{s:i,s:{s:o}}]}", "tool_calls", "index", idx, "function",
                               "arguments", jstr(text, len)),
                  NULL, NULL);
    }
    pthread_mutex_unlock(&r->mu);
}

static void on_token(void *user, int32_t id, int kind, float lp, const int32_t *top_ids,
                     const float *top_lps, int n_top) {
    api_req *r = user;
    pthread_mutex_lock(&r->mu);
    if (kind == CHATLOOP_REASONING) r->reasoning_tokens++;
    if (r->logprobs && kind == CHATLOOP_CONTENT) {
        json_t *item = token_item(r, id, lp), *tops = json_array();
        for (int i = 0; i < n_top; i++) json_array_append_new(tops, token_item(r, top_ids[i], top_lps[i]));
        json_object_set_new(item, "top_logprobs", tops);
        json_array_append_new(r->stream ? r->lp_pending : r->lp_all, item);
    }
    if (r->stream) {
        ensure_role(r);
        flush_pending(r);
    }
    pthread_mutex_unlock(&r->mu);
}

static char *whole_body(api_req *r, chatgen *g) {
    json_t *choice;
    const char *content = chatgen_content(g);
    if (r->kind == API_CHAT) {
        int n = chatgen_n_tool_calls(g);
        json_t *msg = json_pack("{s:s,s:o}", "role", "assistant", "content",
                                *content || n == 0 ? jstr(content, strlen(content)) : json_null());
        const char *reasoning = chatgen_reasoning(g);
        if (*reasoning) json_object_set_new(msg, "reasoning_content", jstr(reasoning, strlen(reasoning)));
        if (n > 0) {
            json_t *calls = json_array();
            for (int i = 0; i < n && i < API_MAX_TOOLS; i++) {
                const char *args = chatgen_tool_args(g, i);
                json_array_append_new(calls, json_pack("{s:s,s:s,s:{s:s,s:o}}", "id", r->tool_ids[i],
                                                       "type", "function", "function", "name",
                                                       chatgen_tool_name(g, i), "arguments",
                                                       jstr(args, strlen(args))));
            }
            json_object_set_new(msg, "tool_calls", calls);
        }
        choice = json_pack("{s:i,s:o,s:o,s:s}", "index", 0, "message", msg, "logprobs",
                           r->logprobs ? json_pack("{s:O}", "content", r->lp_all) : json_null(),
                           "finish_reason", finish_reason(r->finish));
    } else {
        choice = json_pack("{s:i,s:o,s:o,s:s}", "index", 0, "text", jstr(content, strlen(content)),
                           "logprobs", r->logprobs ? legacy_logprobs(r->lp_all) : json_null(),
                           "finish_reason", finish_reason(r->finish));
    }
    json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:[o],s:o}", "id", r->id, "object",
                          r->kind == API_CHAT ? "chat.completion" : "text_completion", "created",
                          (json_int_t)r->created, "model", r->c->model_name, "choices", choice,
                          "usage", usage(r));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

static void on_done(void *user, chatgen *g, gptoss_status st, const char *err) {
    api_req *r = user;
    pthread_mutex_lock(&r->mu);
    r->st = st;
    r->finish = g ? chatgen_finish(g) : CHATLOOP_FINISH_ERROR;
    if (g) r->stats = *chatgen_stats(g);
    if (g && r->c->metrics)
        metrics_generation(r->c->metrics, r->stats.prompt_tokens, r->stats.cached_tokens, r->stats.completion_tokens,
                           r->stats.t_first_token > 0 ? r->stats.t_first_token - r->t_arrival : -1);
    int failed = st != GPTOSS_OK && st != GPTOSS_ERR_CANCELLED;
    api_error e;
    if (failed)
        api_fail(&e, st == GPTOSS_ERR_CONTEXT_FULL ? 400 : 500,
                 st == GPTOSS_ERR_CONTEXT_FULL ? "invalid_request_error" : "server_error", NULL,
                 st == GPTOSS_ERR_CONTEXT_FULL ? "context_length_exceeded" : NULL, "%s",
                 err ? err : gptoss_status_name(st));
    if (r->stream) {
        ensure_role(r);
        flush_pending(r);
        if (failed) {
            char *s = api_error_json(&e);
            if (s) {
                strbuf_add(&r->out, "data: ", 6);
                strbuf_add(&r->out, s, strlen(s));
                strbuf_add(&r->out, "\n\n", 2);
                free(s);
            }
        } else {
            chunk(r, r->kind == API_CHAT ? json_object() : json_string(""), NULL, finish_reason(r->finish));
            if (r->include_usage)
                sse_send(r, json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", r->id, "object",
                                      r->kind == API_CHAT ? "chat.completion.chunk" : "text_completion",
                                      "created", (json_int_t)r->created, "model", r->c->model_name,
                                      "choices", "usage", usage(r)));
        }
        strbuf_add(&r->out, "data: [DONE]\n\n", 14);
    } else if (failed || !g) {
        if (!failed) api_fail(&e, 503, "server_error", NULL, NULL, "%s", err ? err : "cancelled");
        r->body = api_error_json(&e);
        r->body_status = e.status;
    } else {
        r->body = whole_body(r, g);
        r->body_status = r->body ? 200 : 500;
    }
    r->done = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    api_req_unref(r); /* the scheduler's reference */
}

int api_req_submit(api_req *r, api_error *e) {
    r->job.prompt = r->prompt;
    r->job.n_prompt = r->n_prompt;
    r->job.cb.on_event = on_event;
    r->job.cb.on_token = on_token;
    r->job.cb.user = r;
    r->job.on_done = on_done;
    r->job.user = r;
    api_req_ref(r);
    if (sched_submit(r->c->sched, &r->job) != 0) {
        api_req_unref(r);
        return api_fail(e, 503, "server_error", NULL, "server_overloaded",
                        "the server is busy (request queue full); retry later");
    }
    return 0;
}

/* ------------------------------------------------------------ HTTP waits */

static int client_gone(int fd) {
    if (fd < 0) return 0;
    struct pollfd p = {fd, POLLRDHUP, 0};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

/* Waits (mu held) a little; returns -1 when the client hung up. */
static int wait_a_bit(api_req *r) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 200 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) == ETIMEDOUT && client_gone(r->fd)) {
        atomic_store(&r->cancel, 1);
        return -1;
    }
    return 0;
}

ssize_t api_req_read(api_req *r, char *buf, size_t max) {
    pthread_mutex_lock(&r->mu);
    for (;;) {
        if (r->out_pos < r->out.len) {
            size_t n = r->out.len - r->out_pos;
            if (n > max) n = max;
            memcpy(buf, r->out.p + r->out_pos, n);
            r->out_pos += n;
            if (r->out_pos == r->out.len) r->out.len = r->out_pos = 0;
            pthread_mutex_unlock(&r->mu);
            return (ssize_t)n;
        }
        if (r->done) break;
        if (wait_a_bit(r) < 0) {
            pthread_mutex_unlock(&r->mu);
            return -1;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return 0;
}

char *api_req_wait_body(api_req *r, int *status) {
    pthread_mutex_lock(&r->mu);
    while (!r->done)
        if (wait_a_bit(r) < 0) {
            pthread_mutex_unlock(&r->mu);
            return NULL;
        }
    char *b = r->body;
    r->body = NULL;
    *status = r->body_status;
    pthread_mutex_unlock(&r->mu);
    return b;
}
