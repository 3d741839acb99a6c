/* api_parse.c - OpenAI request bodies -> validated generation requests. Every
 * rejection names the field at fault (param) and gets the right HTTP status. */
#include "server/api_internal.h"
#include "util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int api_fail(api_error *e, int status, const char *type, const char *param, const char *code,
             const char *fmt, ...) {
    e->status = status;
    e->type = type;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return status;
}

#define BAD(e, param, ...) api_fail(e, 400, "invalid_request_error", param, NULL, __VA_ARGS__)

char *api_error_json(const api_error *e) {
    json_t *err = json_pack("{s:s,s:s,s:o,s:o}", "message", e->message, "type",
                            e->type ? e->type : "invalid_request_error", "param",
                            e->param[0] ? json_string(e->param) : json_null(), "code",
                            e->code ? json_string(e->code) : json_null());
    if (!err) /* message was not valid UTF-8 */
        err = json_pack("{s:s,s:s,s:n,s:n}", "message", "invalid request", "type",
                        e->type ? e->type : "invalid_request_error", "param", "code");
    json_t *o = json_pack("{s:o}", "error", err);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

json_t *api_parse_json(const char *body, size_t len, api_error *e) {
    json_error_t je;
    json_t *v = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!v) {
        BAD(e, NULL, "invalid JSON in the request body: %s (line %d, column %d)", je.text, je.line,
            je.column);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        BAD(e, NULL, "the request body must be a JSON object");
        return NULL;
    }
    return v;
}

/* number field: absent/null leaves *out; 0 ok, else 400. */
static int get_num(json_t *req, const char *key, double lo, double hi, int lo_open, double *out,
                   int *present, api_error *e) {
    json_t *v = json_object_get(req, key);
    if (present) *present = 0;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return BAD(e, key, "%s: expected a number", key);
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi || (lo_open && d <= lo))
        return BAD(e, key, "%s: %g is outside %s%g, %g]", key, d, lo_open ? "(" : "[", lo, hi);
    *out = d;
    if (present) *present = 1;
    return 0;
}

static int get_int(json_t *req, const char *key, long long lo, long long hi, long long *out,
                   int *present, api_error *e) {
    json_t *v = json_object_get(req, key);
    if (present) *present = 0;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v)) return BAD(e, key, "%s: expected an integer", key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return BAD(e, key, "%s: %lld is outside %lld..%lld", key, x, lo, hi);
    *out = x;
    if (present) *present = 1;
    return 0;
}

static int get_bool(json_t *req, const char *key, int *out, api_error *e) {
    json_t *v = json_object_get(req, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return BAD(e, key, "%s: expected true or false", key);
    *out = json_is_true(v);
    return 0;
}

/* content: string, null, or an array of {"type":"text","text":...} parts. */
static int norm_content(json_t *v, size_t i, json_t **out, api_error *e) {
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].content", i);
    if (!v || json_is_null(v)) {
        *out = NULL;
        return 0;
    }
    if (json_is_string(v)) {
        *out = json_incref(v);
        return 0;
    }
    if (!json_is_array(v)) return BAD(e, param, "%s: expected a string or an array of text parts", param);
    strbuf b = {0};
    size_t j;
    json_t *part;
    json_array_foreach(v, j, part) {
        const char *type = json_string_value(json_object_get(part, "type"));
        json_t *text = json_object_get(part, "text");
        if (!json_is_object(part) || !type || strcmp(type, "text") || !json_is_string(text)) {
            free(b.p);
            return BAD(e, param, "%s[%zu]: only {\"type\":\"text\",\"text\":...} parts are supported",
                       param, j);
        }
        strbuf_add(&b, json_string_value(text), json_string_length(text));
    }
    *out = json_stringn(b.p ? b.p : "", b.len);
    free(b.p);
    return 0;
}

static int norm_tool_calls(json_t *calls, size_t i, json_t **out, api_error *e) {
    char param[96];
    if (!json_is_array(calls)) {
        snprintf(param, sizeof param, "messages[%zu].tool_calls", i);
        return BAD(e, param, "%s: expected an array", param);
    }
    json_t *res = json_array();
    size_t j;
    json_t *tc;
    json_array_foreach(calls, j, tc) {
        json_t *fn = json_object_get(tc, "function");
        json_t *name = json_object_get(fn, "name"), *args = json_object_get(fn, "arguments");
        if (!json_is_object(tc) || !json_is_object(fn) || !json_is_string(name)) {
            snprintf(param, sizeof param, "messages[%zu].tool_calls[%zu].function.name", i, j);
            json_decref(res);
            return BAD(e, param, "%s: expected a string", param);
        }
        json_t *parsed = NULL;
        if (json_is_string(args)) /* OpenAI sends a JSON string; the template wants the value */
            parsed = json_loadb(json_string_value(args), json_string_length(args), JSON_DECODE_ANY, NULL);
        if (!parsed) parsed = args ? json_incref(args) : json_object();
        json_array_append_new(res, json_pack("{s:s,s:{s:O,s:o}}", "type", "function", "function",
                                             "name", name, "arguments", parsed));
    }
    *out = res;
    return 0;
}

/* 1 when tools (an array) has a function called name, and name is a plain
 * identifier (it goes into the prompt as text next to special tokens). */
static int tool_named(json_t *tools, const char *name) {
    size_t n = strlen(name), i;
    if (n == 0 || n > 64 || strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") != n)
        return 0;
    json_t *t;
    json_array_foreach(tools, i, t) {
        const char *tn = json_string_value(json_object_get(json_object_get(t, "function"), "name"));
        if (tn && !strcmp(tn, name)) return 1;
    }
    return 0;
}

/* Builds {"messages","tools","reasoning_effort"} for the renderer from an OpenAI
 * chat request: text parts joined, reasoning_content/reasoning -> thinking,
 * tool-call arguments parsed. */
static json_t *render_request(json_t *req, int *n_assistant, char *forced, size_t forced_cap,
                              api_error *e) {
    static const char *roles[] = {"system", "developer", "user", "assistant", "tool"};
    json_t *msgs = json_object_get(req, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        BAD(e, "messages", "messages: expected a non-empty array");
        return NULL;
    }
    json_t *out = json_array();
    *n_assistant = 0;
    size_t i;
    json_t *m;
    char param[96];
    json_array_foreach(msgs, i, m) {
        if (!json_is_object(m)) {
            snprintf(param, sizeof param, "messages[%zu]", i);
            BAD(e, param, "%s: expected an object", param);
            goto fail;
        }
        const char *role = json_string_value(json_object_get(m, "role"));
        int known = 0;
        for (size_t k = 0; role && k < sizeof roles / sizeof *roles; k++) known |= !strcmp(role, roles[k]);
        if (!known) {
            snprintf(param, sizeof param, "messages[%zu].role", i);
            BAD(e, param, "%s: expected one of system, developer, user, assistant, tool", param);
            goto fail;
        }
        json_t *content = NULL, *calls = NULL, *nm = json_pack("{s:s}", "role", role);
        json_array_append_new(out, nm);
        if (norm_content(json_object_get(m, "content"), i, &content, e)) goto fail;
        if (!strcmp(role, "assistant")) {
            (*n_assistant)++;
            json_t *th = json_object_get(m, "reasoning_content");
            if (!json_is_string(th)) th = json_object_get(m, "reasoning");
            if (!json_is_string(th)) th = json_object_get(m, "thinking");
            if (th && !json_is_null(th) && !json_is_string(th)) {
                snprintf(param, sizeof param, "messages[%zu].reasoning_content", i);
                BAD(e, param, "%s: expected a string", param);
                json_decref(content);
                goto fail;
            }
            json_t *tc = json_object_get(m, "tool_calls");
            if (tc && !json_is_null(tc) && !(json_is_array(tc) && json_array_size(tc) == 0)) {
                if (norm_tool_calls(tc, i, &calls, e)) {
                    json_decref(content);
                    goto fail;
                }
                json_object_set_new(nm, "tool_calls", calls);
                /* the template forbids both; the reasoning is what the model wrote */
                if (json_is_string(th) && json_string_length(th) > 0) {
                    json_decref(content);
                    content = NULL;
                }
            }
            if (json_is_string(th) && json_string_length(th) > 0) json_object_set(nm, "thinking", th);
            if (content || !calls) json_object_set_new(nm, "content", content ? content : json_string(""));
        } else {
            json_object_set_new(nm, "content", content ? content : json_string(""));
        }
    }
    json_t *r = json_pack("{s:o}", "messages", out);
    json_t *tools = json_object_get(req, "tools"), *choice = json_object_get(req, "tool_choice");
    if (choice && !json_is_null(choice)) {
        const char *cs = json_string_value(choice);
        int ok = cs ? !strcmp(cs, "none") || !strcmp(cs, "auto") || !strcmp(cs, "required")
                    : json_is_string(json_object_get(json_object_get(choice, "function"), "name"));
        if (!ok) {
            BAD(e, "tool_choice", "tool_choice: expected \"none\", \"auto\", \"required\" or "
                                  "{\"type\":\"function\",\"function\":{\"name\":...}}");
            json_decref(r);
            return NULL;
        }
        if (cs && !strcmp(cs, "none")) tools = NULL;
        /* "required" or a named function: the answer starts with a call header */
        const char *fn = json_string_value(json_object_get(json_object_get(choice, "function"), "name"));
        if (fn && strspn(fn, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") != strlen(fn)) {
            BAD(e, "tool_choice", "tool_choice: function name '%.64s' may only use letters, digits, '_', '-' and '.'", fn);
            json_decref(r);
            return NULL;
        }
        if (fn && !tool_named(tools, fn)) {
            BAD(e, "tool_choice", "tool_choice: function '%.64s' is not among the tools", fn);
            json_decref(r);
            return NULL;
        }
        if (tools && !json_is_null(tools) && (fn || (cs && !strcmp(cs, "required"))))
            snprintf(forced, forced_cap, "<|channel|>commentary to=functions.%s%s", fn ? fn : "",
                     fn ? " <|constrain|>json<|message|>" : "");
    }
    if (tools && !json_is_null(tools)) {
        if (!json_is_array(tools)) {
            BAD(e, "tools", "tools: expected an array");
            json_decref(r);
            return NULL;
        }
        json_t *t;
        json_array_foreach(tools, i, t) {
            const char *type = json_string_value(json_object_get(t, "type"));
            if (!type || strcmp(type, "function") ||
                !json_is_string(json_object_get(json_object_get(t, "function"), "name"))) {
                snprintf(param, sizeof param, "tools[%zu].function.name", i);
                BAD(e, param, "%s: expected {\"type\":\"function\",\"function\":{\"name\":...}}", param);
                json_decref(r);
                return NULL;
            }
        }
        if (json_array_size(tools)) json_object_set(r, "tools", tools);
    }
    json_t *eff = json_object_get(req, "reasoning_effort");
    if (eff && !json_is_null(eff)) {
        const char *s = json_string_value(eff);
        if (!s || (strcmp(s, "low") && strcmp(s, "medium") && strcmp(s, "high"))) {
            BAD(e, "reasoning_effort", "reasoning_effort: expected \"low\", \"medium\" or \"high\"");
            json_decref(r);
            return NULL;
        }
        json_object_set(r, "reasoning_effort", eff);
    }
    return r;
fail:
    json_decref(out);
    return NULL;
}

/* The renderer names the field at fault ("messages[2].role: ..."): keep it as the param. */
static int render_error(api_error *e) {
    const char *msg = gptoss_last_error();
    char param[128];
    size_t n = strcspn(msg, ": ");
    snprintf(param, sizeof param, "%.*s", (int)(n < sizeof param ? n : sizeof param - 1), msg);
    int named = !strncmp(param, "messages", 8) || !strncmp(param, "tools", 5);
    return BAD(e, named ? param : "messages", named ? "%s" : "messages: %s", msg);
}

/* The chat request as the renderer's JSON (caller frees with free()). */
static char *render_json(json_t *req, int *n_assistant, char *forced, size_t forced_cap, api_error *e) {
    json_t *r = render_request(req, n_assistant, forced, forced_cap, e);
    if (!r) return NULL;
    char *js = json_dumps(r, JSON_COMPACT);
    json_decref(r);
    if (!js) api_fail(e, 500, "server_error", NULL, NULL, "cannot encode the request");
    return js;
}

/* Renders the chat request to harmony text (caller frees with gptoss_free). */
static int render_text(json_t *req, char **text, int *n_assistant, char *forced, size_t forced_cap,
                       api_error *e) {
    char *js = render_json(req, n_assistant, forced, forced_cap, e);
    if (!js) return e->status;
    gptoss_render_options opt = {NULL, NULL, 1};
    gptoss_status st = gptoss_render_chat(js, strlen(js), &opt, text);
    free(js);
    return st == GPTOSS_OK ? 0 : render_error(e);
}

/* Renders the chat request to token ids: only the template's own markers become
 * special tokens; special-token text inside caller content stays plain text. */
static int render_ids(srv_ctx *c, json_t *req, int32_t **ids, size_t *n, int *n_assistant,
                      char *forced, size_t forced_cap, api_error *e) {
    char *js = render_json(req, n_assistant, forced, forced_cap, e);
    if (!js) return e->status;
    gptoss_render_options opt = {NULL, NULL, 1};
    gptoss_status st = gptoss_render_chat_ids(c->tok, js, strlen(js), &opt, ids, n);
    free(js);
    return st == GPTOSS_OK ? 0 : render_error(e);
}

static int tokenize_text(srv_ctx *c, const char *text, size_t len, int special, const char *param,
                         int32_t **ids, size_t *n, api_error *e) {
    gptoss_status st = gptoss_tokenize(c->tok, text, len, special, ids, n); /* thread-safe */
    if (st != GPTOSS_OK) return BAD(e, param, "%s: %s", param, gptoss_last_error());
    return 0;
}

int api_render_tokens(srv_ctx *c, json_t *req, int32_t **ids, size_t *n, int *n_assistant,
                      size_t *n_forced, api_error *e) {
    char forced[256] = "";
    *n_forced = 0;
    int rc = render_ids(c, req, ids, n, n_assistant, forced, sizeof forced, e);
    if (rc || !forced[0]) return rc;
    /* The forced tool-call header (tool_choice) follows "<|start|>assistant"; it
     * begins with a special token, so it tokenizes on its own. The function
     * name in it was checked to be a plain identifier. */
    int32_t *f = NULL, *all = NULL;
    size_t nf = 0;
    rc = tokenize_text(c, forced, strlen(forced), 1, "tool_choice", &f, &nf, e);
    if (!rc && !(all = realloc(*ids, (*n + nf) * sizeof **ids)))
        rc = api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    if (!rc) {
        memcpy(all + *n, f, nf * sizeof *f);
        *ids = all;
        *n += nf;
        *n_forced = nf;
    }
    gptoss_free(f);
    return rc;
}

static int prompt_tokens(srv_ctx *c, json_t *req, int32_t **ids, size_t *n, api_error *e) {
    json_t *p = json_object_get(req, "prompt");
    if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0)))
        p = json_array_get(p, 0);
    if (json_is_string(p))
        return tokenize_text(c, json_string_value(p), json_string_length(p), 1, "prompt", ids, n, e);
    if (json_is_array(p) && json_array_size(p) > 0) {
        size_t k = json_array_size(p);
        *ids = malloc(k * sizeof **ids);
        if (!*ids) return api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        for (size_t i = 0; i < k; i++) {
            json_t *v = json_array_get(p, i);
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= c->vocab) {
                free(*ids);
                *ids = NULL;
                return BAD(e, "prompt", "prompt[%zu]: expected a token id in 0..%d (or one string)", i,
                           c->vocab - 1);
            }
            (*ids)[i] = (int32_t)json_integer_value(v);
        }
        *n = k;
        return 0;
    }
    return BAD(e, "prompt", "prompt: expected a non-empty string (or an array of token ids)");
}

static int parse_stop(api_req *r, json_t *req, api_error *e) {
    json_t *s = json_object_get(req, "stop");
    if (!s || json_is_null(s)) return 0;
    json_t *one = json_is_string(s) ? s : NULL;
    size_t n = one ? 1 : json_is_array(s) ? json_array_size(s) : (size_t)-1;
    if (n == (size_t)-1 || n > CHATLOOP_MAX_STOP)
        return BAD(e, "stop", "stop: expected a string or an array of up to %d strings", CHATLOOP_MAX_STOP);
    for (size_t i = 0; i < n; i++) {
        json_t *v = one ? one : json_array_get(s, i);
        if (!json_is_string(v) || json_string_length(v) == 0)
            return BAD(e, "stop", "stop[%zu]: expected a non-empty string", i);
        r->stops[i] = strdup(json_string_value(v));
        r->job.params.stop[i] = r->stops[i];
        r->job.params.n_stop = (int)i + 1;
    }
    return 0;
}

int api_req_parse(api_req *r, const char *body, size_t len, api_error *e) {
    srv_ctx *c = r->c;
    json_t *req = api_parse_json(body, len, e);
    if (!req) return e->status;
    int rc = 0;
    json_t *model = json_object_get(req, "model");
    if (model && !json_is_null(model) && !json_is_string(model)) {
        rc = BAD(e, "model", "model: expected a string");
        goto done;
    }
    if (json_is_string(model) && strcmp(json_string_value(model), c->model_name)) {
        rc = api_fail(e, 404, "invalid_request_error", "model", "model_not_found",
                      "The model '%s' does not exist (this server serves '%s')",
                      json_string_value(model), c->model_name);
        goto done;
    }
    json_t *user = json_object_get(req, "user");
    if (user && !json_is_null(user) && !json_is_string(user)) {
        rc = BAD(e, "user", "user: expected a string");
        goto done;
    }
    if (json_is_string(user)) snprintf(r->job.key, sizeof r->job.key, "user:%s", json_string_value(user));
    chatloop_params *p = &r->job.params;
    double d;
    long long x;
    int present;
    if ((rc = get_int(req, "n", 1, 1, &x, NULL, e))) goto done;
    if ((rc = get_bool(req, "stream", &r->stream, e))) goto done;
    json_t *so = json_object_get(req, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) {
            rc = BAD(e, "stream_options", "stream_options: expected an object");
            goto done;
        }
        if ((rc = get_bool(so, "include_usage", &r->include_usage, e))) {
            snprintf(e->param, sizeof e->param, "stream_options.include_usage");
            goto done;
        }
    }
    p->sampling.temperature = 1.0f;
    d = 1.0;
    if ((rc = get_num(req, "temperature", 0, 2, 0, &d, NULL, e))) goto done;
    p->sampling.temperature = (float)d;
    d = 1.0;
    if ((rc = get_num(req, "top_p", 0, 1, 1, &d, NULL, e))) goto done;
    p->sampling.top_p = (float)d;
    d = 0;
    if ((rc = get_num(req, "min_p", 0, 1, 0, &d, NULL, e))) goto done;
    p->sampling.min_p = (float)d;
    x = 0;
    if ((rc = get_int(req, "top_k", 0, c->vocab, &x, NULL, e))) goto done;
    p->sampling.top_k = (int)x;
    x = 0;
    if ((rc = get_int(req, "seed", -(1LL << 62), 1LL << 62, &x, &present, e))) goto done;
    p->sampling.seed = present ? (uint64_t)x
                               : (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull + atomic_fetch_add(&c->seq, 1);
    x = r->kind == API_COMPLETION ? 16 : 0;
    if ((rc = get_int(req, "max_tokens", 1, 1 << 30, &x, NULL, e))) goto done;
    if ((rc = get_int(req, "max_completion_tokens", 1, 1 << 30, &x, NULL, e))) goto done;
    p->max_tokens = (int)x;
    if ((rc = parse_stop(r, req, e))) goto done;
    if (r->kind == API_CHAT) {
        if ((rc = get_bool(req, "logprobs", &r->logprobs, e))) goto done;
        x = 0;
        if ((rc = get_int(req, "top_logprobs", 0, 20, &x, &present, e))) goto done;
        if (present && !r->logprobs && x > 0) {
            rc = BAD(e, "top_logprobs", "top_logprobs: needs \"logprobs\": true");
            goto done;
        }
        r->top_logprobs = (int)x;
        int n_assistant = 0;
        size_t n_forced = 0;
        if ((rc = api_render_tokens(c, req, &r->prompt, &r->n_prompt, &n_assistant, &n_forced, e))) goto done;
        p->forced = r->prompt + r->n_prompt - n_forced;
        p->n_forced = n_forced;
        r->script = c->n_scripts ? n_assistant % c->n_scripts : -1;
    } else {
        x = 0;
        if ((rc = get_int(req, "logprobs", 0, 20, &x, &present, e))) goto done;
        r->logprobs = present;
        r->top_logprobs = (int)x;
        if ((rc = prompt_tokens(c, req, &r->prompt, &r->n_prompt, e))) goto done;
        r->script = c->n_scripts ? 0 : -1;
        p->raw = 1;
    }
    if (r->n_prompt + 1 > (size_t)c->max_context) {
        rc = api_fail(e, 400, "invalid_request_error", r->kind == API_CHAT ? "messages" : "prompt",
                      "context_length_exceeded",
                      "This model's maximum context length is %d tokens, but the prompt has %zu "
                      "tokens (one more is needed to generate)",
                      c->max_context, r->n_prompt);
        goto done;
    }
    p->top_logprobs = r->top_logprobs;
    if (r->script >= 0) {
        p->script = c->scripts[r->script];
        p->n_script = c->script_lens[r->script];
    }
done:
    json_decref(req);
    return rc;
}

char *api_models(srv_ctx *c, const char *id, api_error *e) {
    json_t *m = json_pack("{s:s,s:s,s:i,s:s,s:i}", "id", c->model_name, "object", "model",
                          "created", 0, "owned_by", "gptoss", "max_model_len", c->max_context);
    json_t *o;
    if (id) {
        if (strcmp(id, c->model_name)) {
            json_decref(m);
            api_fail(e, 404, "invalid_request_error", "model", "model_not_found",
                     "The model '%s' does not exist", id);
            return NULL;
        }
        o = m;
    } else {
        o = json_pack("{s:s,s:[o]}", "object", "list", "data", m);
    }
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

char *api_tokenize(srv_ctx *c, const char *body, size_t len, api_error *e) {
    json_t *req = api_parse_json(body, len, e);
    if (!req) return NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = 0, n_assistant;
    char *text = NULL;
    if (json_object_get(req, "messages")) {
        char forced[256];
        if (!(rc = render_text(req, &text, &n_assistant, forced, sizeof forced, e)))
            rc = render_ids(c, req, &ids, &n, &n_assistant, forced, sizeof forced, e);
    } else {
        json_t *p = json_object_get(req, "prompt");
        if (!p) p = json_object_get(req, "text");
        int special = 1;
        if (!json_is_string(p)) rc = BAD(e, "prompt", "prompt: expected a string (or give \"messages\")");
        else if (!(rc = get_bool(req, "allow_special", &special, e)))
            rc = tokenize_text(c, json_string_value(p), json_string_length(p), special, "prompt", &ids, &n, e);
    }
    json_decref(req);
    if (rc) {
        gptoss_free(text);
        return NULL;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(arr, json_integer(ids[i]));
    gptoss_free(ids);
    json_t *o = json_pack("{s:o,s:i,s:i}", "tokens", arr, "count", (int)n, "max_model_len", c->max_context);
    if (text) json_object_set_new(o, "prompt", json_string(text));
    gptoss_free(text);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}
