/* chatloop.c - the generation loop shared by run, chat and serve (see chatloop.h). */
#include "chatloop.h"
#include "util.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOOL_CALLS 16

enum { KIND_NONE = -1 };

struct chatgen {
    gptoss_model *model;
    gptoss_session *session;
    const gptoss_tokenizer *tok;
    chatloop_params p;
    chatloop_callbacks cb;
    int vocab, max_context;
    gptoss_sampler *sampler;
    gptoss_harmony_parser *parser; /* chat mode */
    gptoss_detok_stream *detok;    /* raw mode */
    float *logits;                 /* [vocab] for prefill / chatgen_step */
    int32_t *prompt;
    size_t n_prompt, prefill_pos;
    int32_t next_id;
    size_t script_pos;
    chatloop_finish finish;
    chatloop_stats stats;
    int kind;          /* event kind of the message being generated */
    int token_kind;    /* kind that the current token's text went to */
    int stop_hit;      /* a stop string was found in the content */
    size_t max_stop;   /* longest stop string */
    size_t emitted;    /* content bytes already passed to the callback */
    strbuf reasoning, content;
    int n_tools;
    strbuf tool_name[MAX_TOOL_CALLS], tool_args[MAX_TOOL_CALLS];
    int32_t top_ids[20];
    float top_lps[20];
};

static int handle_events(chatgen *g, const gptoss_harmony_event *ev, int n);

void chatloop_params_default(chatloop_params *p) {
    memset(p, 0, sizeof *p);
    gptoss_sampler_params_default(&p->sampling);
}

const char *chatloop_finish_name(chatloop_finish f) {
    switch (f) {
    case CHATLOOP_RUNNING: return NULL;
    case CHATLOOP_FINISH_STOP: return "stop";
    case CHATLOOP_FINISH_LENGTH: return "length";
    case CHATLOOP_FINISH_TOOL_CALLS: return "tool_calls";
    case CHATLOOP_FINISH_CANCELLED: return "cancelled";
    case CHATLOOP_FINISH_ERROR: return "error";
    }
    return NULL;
}

gptoss_status chatloop_tokenize_chat(const gptoss_tokenizer *t, const char *request_json,
                                     size_t len, const char *effort, int32_t **ids, size_t *n) {
    gptoss_render_options opt = {NULL, effort, 1};
    /* caller text that spells special tokens stays plain text (no injection) */
    return gptoss_render_chat_ids(t, request_json, len, &opt, ids, n);
}

gptoss_status chatgen_create(gptoss_model *m, gptoss_session *s, const gptoss_tokenizer *t,
                             const chatloop_params *p, const chatloop_callbacks *cb,
                             chatgen **out) {
    *out = NULL;
    if (!m || !s || !t || !p)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "chatgen_create: NULL argument");
    if (p->n_stop < 0 || p->n_stop > CHATLOOP_MAX_STOP)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "stop: at most %d strings",
                                CHATLOOP_MAX_STOP);
    if (p->top_logprobs < 0 || p->top_logprobs > 20)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT,
                                "top_logprobs: %d is outside 0..20", p->top_logprobs);
    if (p->max_tokens < 0)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "max_tokens: %d is negative",
                                p->max_tokens);
    chatgen *g = calloc(1, sizeof *g);
    if (!g) return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "chatgen: out of memory");
    gptoss_model_info info;
    gptoss_model_get_info(m, &info);
    g->model = m;
    g->session = s;
    g->tok = t;
    g->p = *p;
    if (cb) g->cb = *cb;
    g->vocab = info.vocab_size;
    g->max_context = info.max_context;
    g->next_id = -1;
    g->kind = KIND_NONE;
    for (int i = 0; i < p->n_stop; i++) {
        size_t l = p->stop[i] ? strlen(p->stop[i]) : 0;
        if (l == 0) {
            chatgen_free(g);
            return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "stop[%d]: empty string", i);
        }
        if (l > g->max_stop) g->max_stop = l;
    }
    gptoss_status st;
    g->logits = malloc(sizeof(float) * (size_t)g->vocab);
    if (!g->logits) {
        chatgen_free(g);
        return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "chatgen: cannot allocate logits");
    }
    if ((st = gptoss_sampler_create(&p->sampling, &g->sampler)) != GPTOSS_OK) goto fail;
    if (p->raw)
        st = gptoss_detok_stream_create(t, &g->detok);
    else
        st = gptoss_harmony_parser_create(t, 1, &g->parser);
    if (st != GPTOSS_OK) goto fail;
    *out = g;
    return GPTOSS_OK;
fail:
    chatgen_free(g);
    return st;
}

void chatgen_free(chatgen *g) {
    if (!g) return;
    gptoss_sampler_free(g->sampler);
    if (g->parser) gptoss_harmony_parser_free(g->parser);
    if (g->detok) gptoss_detok_stream_free(g->detok);
    free(g->logits);
    free(g->prompt);
    free(g->reasoning.p);
    free(g->content.p);
    for (int i = 0; i < MAX_TOOL_CALLS; i++) {
        free(g->tool_name[i].p);
        free(g->tool_args[i].p);
    }
    free(g);
}

gptoss_status chatgen_set_prompt(chatgen *g, const int32_t *ids, size_t n) {
    if (n == 0) return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "prompt: no tokens");
    if (n + 1 > (size_t)g->max_context)
        return gptoss_set_error(GPTOSS_ERR_CONTEXT_FULL,
                                "prompt: %zu tokens, but the context holds %d (one more is "
                                "needed to generate)",
                                n, g->max_context);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= g->vocab)
            return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT,
                                    "prompt[%zu]: token id %d is outside 0..%d", i, ids[i],
                                    g->vocab - 1);
    free(g->prompt);
    g->prompt = malloc(n * sizeof *ids);
    if (!g->prompt) return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "prompt: out of memory");
    memcpy(g->prompt, ids, n * sizeof *ids);
    g->n_prompt = n;

    int have = gptoss_session_length(g->session);
    const int32_t *cached = gptoss_session_tokens(g->session);
    size_t common = 0, lim = (size_t)have < n ? (size_t)have : n;
    while (common < lim && cached[common] == ids[common]) common++;
    if (common >= n) common = n - 1; /* at least one token must be appended for logits */
    if (common == 0) {
        if (have > 0) gptoss_session_reset(g->session);
    } else if (common < (size_t)have) {
        if (gptoss_session_truncate(g->session, (int)common) != GPTOSS_OK) {
            gptoss_session_reset(g->session);
            common = 0;
        }
    }
    g->prefill_pos = common;
    if (g->parser && g->p.n_forced) {
        if (g->p.n_forced > n || memcmp(ids + n - g->p.n_forced, g->p.forced, g->p.n_forced * sizeof *ids))
            return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "prompt: does not end with the forced tokens");
        for (size_t i = 0; i < g->p.n_forced; i++) {
            gptoss_harmony_event ev[8];
            int k = gptoss_harmony_parser_push(g->parser, g->p.forced[i], ev, 8);
            if (k > 0 && handle_events(g, ev, k))
                return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "chatgen: out of memory");
        }
    }
    g->stats.prompt_tokens = (int)n;
    g->stats.cached_tokens = (int)common;
    g->stats.t_start = now_seconds();
    return GPTOSS_OK;
}

static void emit(chatgen *g, chatloop_event ev, int idx, const char *s, size_t n) {
    if (g->cb.on_event && (n || ev == CHATLOOP_TOOL_START || ev == CHATLOOP_TOOL_END))
        g->cb.on_event(g->cb.user, ev, idx, s, n);
}

/* Adds answer text, holding back what could be the start of a stop string. */
static int content_add(chatgen *g, const char *s, size_t n) {
    g->token_kind = CHATLOOP_CONTENT;
    if (g->stop_hit) return 0;
    size_t from = g->content.len;
    if (strbuf_add(&g->content, s, n)) return -1;
    if (g->p.n_stop == 0) {
        emit(g, CHATLOOP_CONTENT, 0, g->content.p + g->emitted, g->content.len - g->emitted);
        g->emitted = g->content.len;
        return 0;
    }
    size_t start = from >= g->max_stop ? from - g->max_stop + 1 : 0, best = (size_t)-1;
    for (int i = 0; i < g->p.n_stop; i++) {
        const char *hit = memmem(g->content.p + start, g->content.len - start, g->p.stop[i],
                                 strlen(g->p.stop[i]));
        if (hit && (size_t)(hit - g->content.p) < best) best = (size_t)(hit - g->content.p);
    }
    if (best != (size_t)-1) {
        g->content.len = best;
        g->content.p[best] = 0;
        g->stop_hit = 1;
        if (best > g->emitted) emit(g, CHATLOOP_CONTENT, 0, g->content.p + g->emitted, best - g->emitted);
        g->emitted = best;
        return 0;
    }
    size_t safe = g->content.len >= g->max_stop - 1 ? g->content.len - (g->max_stop - 1) : 0;
    while (safe > g->emitted && ((unsigned char)g->content.p[safe] & 0xC0) == 0x80) safe--;
    if (safe > g->emitted) {
        emit(g, CHATLOOP_CONTENT, 0, g->content.p + g->emitted, safe - g->emitted);
        g->emitted = safe;
    }
    return 0;
}

static int handle_events(chatgen *g, const gptoss_harmony_event *ev, int n) {
    for (int i = 0; i < n; i++) {
        const gptoss_harmony_event *e = &ev[i];
        switch (e->type) {
        case GPTOSS_HEV_MESSAGE_START: {
            const char *rcpt = e->recipient ? e->recipient : "";
            const char *chan = e->channel ? e->channel : "";
            if (!strncmp(rcpt, "functions.", 10) && g->n_tools < MAX_TOOL_CALLS) {
                g->kind = CHATLOOP_TOOL_START;
                int k = g->n_tools++;
                if (strbuf_add(&g->tool_name[k], rcpt + 10, strlen(rcpt + 10)) ||
                    strbuf_add(&g->tool_args[k], "", 0))
                    return -1;
                emit(g, CHATLOOP_TOOL_START, k, g->tool_name[k].p, g->tool_name[k].len);
            } else if (rcpt[0]) {
                g->kind = KIND_NONE; /* a built-in tool we do not serve */
            } else if (!strcmp(chan, "analysis")) {
                g->kind = CHATLOOP_REASONING;
            } else {
                g->kind = CHATLOOP_CONTENT; /* final, or a commentary preamble */
            }
            break;
        }
        case GPTOSS_HEV_CONTENT:
            if (g->kind == CHATLOOP_REASONING) {
                g->token_kind = CHATLOOP_REASONING;
                if (strbuf_add(&g->reasoning, e->text, e->text_len)) return -1;
                emit(g, CHATLOOP_REASONING, 0, e->text, e->text_len);
            } else if (g->kind == CHATLOOP_CONTENT) {
                if (content_add(g, e->text, e->text_len)) return -1;
            } else if (g->kind == CHATLOOP_TOOL_START) {
                int k = g->n_tools - 1;
                g->token_kind = CHATLOOP_TOOL_ARGS;
                if (strbuf_add(&g->tool_args[k], e->text, e->text_len)) return -1;
                emit(g, CHATLOOP_TOOL_ARGS, k, e->text, e->text_len);
            }
            break;
        case GPTOSS_HEV_MESSAGE_END:
            if (g->kind == CHATLOOP_TOOL_START) {
                int k = g->n_tools - 1;
                emit(g, CHATLOOP_TOOL_END, k, strbuf_str(&g->tool_args[k]), g->tool_args[k].len);
            }
            g->kind = KIND_NONE;
            break;
        default:
            break;
        }
    }
    return 0;
}

static void finish(chatgen *g, chatloop_finish why) {
    if (g->finish != CHATLOOP_RUNNING) return;
    g->finish = why;
    g->next_id = -1;
    gptoss_harmony_event ev[8];
    if (g->parser) {
        int n = gptoss_harmony_parser_finish(g->parser, ev, 8);
        if (n > 0) handle_events(g, ev, n);
    } else if (g->detok) {
        const char *s;
        size_t len;
        if (gptoss_detok_stream_flush(g->detok, &s, &len) == GPTOSS_OK && len) content_add(g, s, len);
    }
    if (g->emitted < g->content.len) {
        emit(g, CHATLOOP_CONTENT, 0, g->content.p + g->emitted, g->content.len - g->emitted);
        g->emitted = g->content.len;
    }
    if (g->finish == CHATLOOP_FINISH_STOP && g->n_tools > 0) g->finish = CHATLOOP_FINISH_TOOL_CALLS;
    g->stats.t_end = now_seconds();
}

static float log_softmax_at(const float *x, int n, int id) {
    float mx = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)(x[i] - mx));
    return (float)((double)(x[id] - mx) - log(sum));
}

/* Chooses the next token from logits and processes it. logits NULL: the
 * token was sampled on the device (gptoss_decode_sample): chosen, chosen_lp. */
static gptoss_status pick(chatgen *g, const float *logits, int32_t chosen, float chosen_lp) {
    if (g->p.cancel && atomic_load(g->p.cancel)) {
        finish(g, CHATLOOP_FINISH_CANCELLED);
        return GPTOSS_OK;
    }
    int32_t id;
    float lp = 0;
    if (g->p.script) {
        if (g->script_pos >= g->p.n_script) {
            finish(g, CHATLOOP_FINISH_STOP);
            return GPTOSS_OK;
        }
        id = g->p.script[g->script_pos++];
        if (id < 0 || id >= g->vocab) {
            finish(g, CHATLOOP_FINISH_ERROR);
            return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT,
                                    "script[%zu]: token id %d is outside 0..%d",
                                    g->script_pos - 1, id, g->vocab - 1);
        }
        if (g->cb.on_token) lp = log_softmax_at(logits, g->vocab, id);
    } else if (!logits) {
        id = chosen;
        lp = chosen_lp;
    } else {
        id = gptoss_sampler_sample(g->sampler, logits, g->vocab, &lp);
        if (id < 0 || id >= g->vocab) {
            finish(g, CHATLOOP_FINISH_ERROR);
            return gptoss_set_error(GPTOSS_ERR_BACKEND, "sampler returned token id %d", id);
        }
    }
    if (g->stats.completion_tokens++ == 0) g->stats.t_first_token = now_seconds();
    g->token_kind = -1;
    int rc = 0;
    if (g->parser) {
        gptoss_harmony_event ev[8];
        int n = gptoss_harmony_parser_push(g->parser, id, ev, 8);
        if (n > 0) rc = handle_events(g, ev, n);
    } else if (!gptoss_is_stop_token(id)) {
        const char *s;
        size_t len;
        if (gptoss_detok_stream_push(g->detok, id, &s, &len) == GPTOSS_OK && len)
            rc = content_add(g, s, len);
    }
    if (rc) {
        finish(g, CHATLOOP_FINISH_ERROR);
        return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "chatgen: out of memory");
    }
    if (g->cb.on_token) {
        int k = 0;
        if (g->p.top_logprobs > 0 && logits)
            k = gptoss_top_logprobs(logits, g->vocab, g->p.top_logprobs, g->top_ids, g->top_lps);
        g->cb.on_token(g->cb.user, id, g->token_kind, lp, g->top_ids, g->top_lps, k < 0 ? 0 : k);
    }
    if (gptoss_is_stop_token(id))
        finish(g, id == GPTOSS_TOK_CALL ? CHATLOOP_FINISH_TOOL_CALLS : CHATLOOP_FINISH_STOP);
    else if (g->stop_hit)
        finish(g, CHATLOOP_FINISH_STOP);
    else if (g->p.max_tokens > 0 && g->stats.completion_tokens >= g->p.max_tokens)
        finish(g, CHATLOOP_FINISH_LENGTH);
    else if (g->p.script && g->script_pos >= g->p.n_script)
        finish(g, CHATLOOP_FINISH_STOP);
    else if (gptoss_session_length(g->session) + 1 > g->max_context)
        finish(g, CHATLOOP_FINISH_LENGTH);
    else
        g->next_id = id;
    return GPTOSS_OK;
}

gptoss_status chatgen_prefill(chatgen *g, size_t max_chunk, int *done) {
    *done = 0;
    if (g->finish != CHATLOOP_RUNNING) {
        *done = 1;
        return GPTOSS_OK;
    }
    if (!g->prompt) return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "chatgen: no prompt set");
    if (g->p.cancel && atomic_load(g->p.cancel)) {
        finish(g, CHATLOOP_FINISH_CANCELLED);
        *done = 1;
        return GPTOSS_OK;
    }
    size_t left = g->n_prompt - g->prefill_pos;
    size_t take = max_chunk && max_chunk < left ? max_chunk : left;
    int last = take == left;
    gptoss_status st = gptoss_session_append(g->session, g->prompt + g->prefill_pos, take,
                                             last ? g->logits : NULL, 0);
    if (st != GPTOSS_OK) {
        finish(g, CHATLOOP_FINISH_ERROR);
        return st;
    }
    g->prefill_pos += take;
    if (!last) return GPTOSS_OK;
    *done = 1;
    return pick(g, g->logits, -1, 0.0f);
}

size_t chatgen_prefill_left(const chatgen *g) {
    return g->finish == CHATLOOP_RUNNING && g->prompt ? g->n_prompt - g->prefill_pos : 0;
}

int32_t chatgen_next(const chatgen *g) {
    return g->finish == CHATLOOP_RUNNING ? g->next_id : -1;
}

gptoss_status chatgen_feed(chatgen *g, const float *logits) {
    if (g->finish != CHATLOOP_RUNNING) return GPTOSS_OK;
    g->next_id = -1;
    return pick(g, logits, -1, 0.0f);
}

gptoss_sampler *chatgen_device_sampler(chatgen *g) {
    return g->finish == CHATLOOP_RUNNING && !g->p.script && g->p.top_logprobs == 0 ? g->sampler : NULL;
}

gptoss_status chatgen_feed_id(chatgen *g, int32_t id, float logprob) {
    if (g->finish != CHATLOOP_RUNNING) return GPTOSS_OK;
    g->next_id = -1;
    return pick(g, NULL, id, logprob);
}

void chatgen_abort(chatgen *g, chatloop_finish why) { finish(g, why); }

gptoss_status chatgen_step(chatgen *g) {
    int32_t id = chatgen_next(g);
    if (id < 0) return GPTOSS_OK;
    gptoss_sampler *smp = chatgen_device_sampler(g);
    if (smp) { /* only the chosen id leaves the device */
        int32_t next = -1;
        float lp = 0.0f;
        gptoss_status st = gptoss_decode_sample(&g->session, &id, 1, &smp, &next,
                                                g->cb.on_token ? &lp : NULL);
        if (st != GPTOSS_OK) {
            finish(g, CHATLOOP_FINISH_ERROR);
            return st;
        }
        return chatgen_feed_id(g, next, lp);
    }
    gptoss_status st = gptoss_session_append(g->session, &id, 1, g->logits, 0);
    if (st != GPTOSS_OK) {
        finish(g, CHATLOOP_FINISH_ERROR);
        return st;
    }
    return chatgen_feed(g, g->logits);
}

gptoss_status chatloop_run(chatgen *g, const int32_t *ids, size_t n) {
    gptoss_status st = chatgen_set_prompt(g, ids, n);
    if (st != GPTOSS_OK) return st;
    int done = 0;
    while (!done)
        if ((st = chatgen_prefill(g, 0, &done)) != GPTOSS_OK) return st;
    while (chatgen_next(g) >= 0)
        if ((st = chatgen_step(g)) != GPTOSS_OK) return st;
    return GPTOSS_OK;
}

chatloop_finish chatgen_finish(const chatgen *g) { return g->finish; }
const chatloop_stats *chatgen_stats(const chatgen *g) { return &g->stats; }
gptoss_session *chatgen_session(const chatgen *g) { return g->session; }
const char *chatgen_reasoning(const chatgen *g) { return strbuf_str(&g->reasoning); }
const char *chatgen_content(const chatgen *g) { return strbuf_str(&g->content); }
int chatgen_n_tool_calls(const chatgen *g) { return g->n_tools; }
const char *chatgen_tool_name(const chatgen *g, int i) {
    return i >= 0 && i < g->n_tools ? strbuf_str(&g->tool_name[i]) : NULL;
}
const char *chatgen_tool_args(const chatgen *g, int i) {
    return i >= 0 && i < g->n_tools ? strbuf_str(&g->tool_args[i]) : NULL;
}

/* ------------------------------------------------------------------ scripts */

static gptoss_status parse_script(const gptoss_tokenizer *t, const char *s, size_t n,
                                  int32_t **ids, size_t *n_ids) {
    while (n && isspace((unsigned char)*s)) s++, n--;
    while (n && isspace((unsigned char)s[n - 1])) n--;
    int numeric = n > 0;
    for (size_t i = 0; i < n && numeric; i++)
        numeric = isdigit((unsigned char)s[i]) || isspace((unsigned char)s[i]) || s[i] == ',';
    if (!numeric) return gptoss_tokenize(t, s, n, 1, ids, n_ids);
    int32_t *out = malloc(sizeof *out * (n / 2 + 1));
    if (!out) return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "script: out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (!isdigit((unsigned char)s[i])) {
            i++;
            continue;
        }
        long v = 0;
        while (i < n && isdigit((unsigned char)s[i]) && v < 100000000) v = v * 10 + (s[i++] - '0');
        out[k++] = (int32_t)v;
    }
    *ids = out;
    *n_ids = k;
    return GPTOSS_OK;
}

gptoss_status chatloop_load_scripts(const gptoss_tokenizer *t, const char *path,
                                    int32_t ***scripts, size_t **lens, int *n_scripts) {
    char *data;
    size_t len;
    gptoss_status st = read_file(path, &data, &len);
    if (st != GPTOSS_OK) return st;
    int cap = 1;
    for (size_t i = 0; i + 3 <= len; i++)
        if ((i == 0 || data[i - 1] == '\n') && !strncmp(data + i, "---", 3)) cap++;
    int32_t **sc = calloc((size_t)cap, sizeof *sc);
    size_t *ln = calloc((size_t)cap, sizeof *ln);
    int n = 0;
    if (!sc || !ln) {
        st = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        goto done;
    }
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        int at_sep = i < len && (i == 0 || data[i - 1] == '\n') && !strncmp(data + i, "---", 3);
        if (at_sep) { /* the separator line must hold only dashes/space */
            size_t j = i;
            while (j < len && data[j] != '\n') {
                if (data[j] != '-' && !isspace((unsigned char)data[j])) at_sep = 0;
                j++;
            }
            if (!at_sep) continue;
            st = parse_script(t, data + start, i - start, &sc[n], &ln[n]);
            if (st != GPTOSS_OK) goto done;
            if (ln[n]) n++; else gptoss_free(sc[n]);
            start = j;
            i = j;
        } else if (i == len) {
            st = parse_script(t, data + start, i - start, &sc[n], &ln[n]);
            if (st != GPTOSS_OK) goto done;
            if (ln[n]) n++; else gptoss_free(sc[n]);
        }
    }
    if (n == 0) st = gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: no script tokens", path);
done:
    free(data);
    if (st != GPTOSS_OK) {
        chatloop_scripts_free(sc, ln, n);
        return st;
    }
    *scripts = sc;
    *lens = ln;
    *n_scripts = n;
    return GPTOSS_OK;
}

void chatloop_scripts_free(int32_t **scripts, size_t *lens, int n_scripts) {
    if (scripts)
        for (int i = 0; i < n_scripts; i++) gptoss_free(scripts[i]);
    free(scripts);
    free(lens);
}
