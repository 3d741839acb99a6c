/*
 * harmony_parse.c - incremental parser of generated harmony tokens.
 *
 * States: BETWEEN (waiting for <|start|>), HEADER (role / channel / recipient /
 * content type until <|message|>), CONTENT (text until <|end|>, <|return|>,
 * <|call|>). Header tokens are collected as text (with <|channel|> and
 * <|constrain|> kept as markers) and parsed when <|message|> arrives, so the
 * recipient may sit before or after the channel and the content type may be
 * " json" or " <|constrain|>json".
 *
 * Recovery (always an ERROR event first, never a lost text token):
 *   - text outside a message opens an implicit assistant message (channel "");
 *   - <|start|> or <|channel|> inside content closes the open message;
 *   - an end token inside a header closes a message with no content;
 *   - a header longer than HARMONY_MAX_HEADER bytes or containing a line break
 *     (plain text where a header was expected), or a stream ending inside a
 *     header, opens a message and the header bytes become content;
 *   - <|message|> outside a header opens an assistant message;
 *   - other special tokens are reported and skipped.
 * Content deltas are whole UTF-8: a character split across tokens is held back;
 * invalid bytes become U+FFFD.
 */
#include "harmony_parse.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MARK_CHANNEL "\x01" /* <|channel|> inside the header buffer */
#define MARK_CONSTRAIN " <|constrain|>"

typedef struct {
    char *p;
    size_t n, cap;
} buf;

static int buf_add(buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return -1;
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

enum { ST_BETWEEN, ST_HEADER, ST_CONTENT };
enum { SINK_NONE, SINK_REASONING, SINK_FINAL, SINK_TOOL };

struct gptoss_harmony_parser {
    harmony_token_bytes_fn bytes;
    void *user;
    int state;
    int started;        /* any token pushed */
    buf header;
    int header_role_preset; /* the role ("assistant") came before the first token */
    size_t header_skip;     /* leading header bytes that were not generated (preset role) */
    /* the current (or last) message */
    char role[64], channel[64], recipient[192], content_type[64];
    int sink, tool;     /* where content goes in the result */
    buf pending;        /* content bytes of an unfinished UTF-8 character */
    buf delta;          /* the CONTENT delta of this call */
    char err[160];      /* the ERROR text of this call */
    /* events of this call */
    gptoss_harmony_event ev[HARMONY_MAX_EVENTS_PER_CALL];
    int n_ev;
    /* accumulated result */
    buf reasoning, final;
    int n_tools;
    char tool_name[16][192];
    buf tool_args[16];
    int oom;
};

/* ---------------------------------------------------------------- events */

static gptoss_harmony_event *emit(gptoss_harmony_parser *p, gptoss_harmony_event_type type) {
    if (p->n_ev >= HARMONY_MAX_EVENTS_PER_CALL) return NULL; /* cannot happen: <= 4 per call */
    gptoss_harmony_event *e = &p->ev[p->n_ev++];
    memset(e, 0, sizeof *e);
    e->type = type;
    e->role = p->role;
    e->channel = p->channel;
    e->recipient = p->recipient;
    e->content_type = p->content_type;
    e->text = "";
    e->end_token = -1;
    return e;
}

static void emit_error(gptoss_harmony_parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit_error(gptoss_harmony_parser *p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof p->err, fmt, ap);
    va_end(ap);
    gptoss_harmony_event *e = emit(p, GPTOSS_HEV_ERROR);
    if (e) {
        e->text = p->err;
        e->text_len = strlen(p->err);
    }
}

/* ------------------------------------------------------------- UTF-8 */

/* Length of the valid UTF-8 sequence at s[0..n): >0 complete, 0 a valid but
 * incomplete prefix, -1 invalid. */
static int utf8_seq(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    int len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return -1;
    }
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return 0;
        unsigned char lo_i = i == 1 ? lo : 0x80, hi_i = i == 1 ? hi : 0xBF;
        if (s[i] < lo_i || s[i] > hi_i) return -1;
    }
    return len;
}

/* Moves the complete characters of p->pending into p->delta (all of it when flush). */
static void drain_pending(gptoss_harmony_parser *p, int flush) {
    const unsigned char *s = (const unsigned char *)p->pending.p;
    size_t n = p->pending.n, i = 0;
    while (i < n) {
        int len = utf8_seq(s + i, n - i);
        if (len == 0 && !flush) break;
        if (len <= 0) {
            if (buf_add(&p->delta, "\xEF\xBF\xBD", 3)) p->oom = 1;
            i += 1;
            if (len == 0) i = n; /* truncated tail: one replacement */
            continue;
        }
        if (buf_add(&p->delta, (const char *)s + i, (size_t)len)) p->oom = 1;
        i += (size_t)len;
    }
    memmove(p->pending.p ? p->pending.p : (char *)"", s + i, n - i);
    p->pending.n = n - i;
}

/* Emits the CONTENT delta gathered in p->delta (if any) and adds it to the result. */
static void emit_delta(gptoss_harmony_parser *p) {
    if (!p->delta.n) return;
    buf *dst = p->sink == SINK_REASONING ? &p->reasoning
             : p->sink == SINK_FINAL     ? &p->final
             : p->sink == SINK_TOOL      ? &p->tool_args[p->tool]
                                         : NULL;
    if (dst && buf_add(dst, p->delta.p, p->delta.n)) p->oom = 1;
    gptoss_harmony_event *e = emit(p, GPTOSS_HEV_CONTENT);
    if (e) {
        e->text = p->delta.p;
        e->text_len = p->delta.n;
    }
}

static void add_content(gptoss_harmony_parser *p, const char *s, size_t n) {
    if (buf_add(&p->pending, s, n)) {
        p->oom = 1;
        return;
    }
    drain_pending(p, 0);
    emit_delta(p);
}

/* ------------------------------------------------------------ messages */

static void copy_word(char *dst, size_t cap, const char *s, size_t n) {
    if (n >= cap) n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = 0;
}

/* Parses the header buffer into role/channel/recipient/content_type. */
static void parse_header(gptoss_harmony_parser *p, const char *h) {
    p->role[0] = p->channel[0] = p->recipient[0] = p->content_type[0] = 0;
    const char *mark = strstr(h, MARK_CHANNEL);
    size_t role_end = mark ? (size_t)(mark - h) : strlen(h);
    int part = 0; /* 0 role part, 1 channel part */
    int first_in_part = 1;
    for (size_t i = 0; h[i];) {
        if (i == role_end && mark) {
            part = 1;
            first_in_part = 1;
            i += strlen(MARK_CHANNEL);
            continue;
        }
        if (h[i] == ' ' || h[i] == '\t' || h[i] == '\n' || h[i] == '\r' || h[i] == '\x01') {
            i++;
            continue;
        }
        size_t j = i;
        while (h[j] && h[j] != ' ' && h[j] != '\t' && h[j] != '\n' && h[j] != '\r' && h[j] != '\x01') j++;
        const char *w = h + i;
        size_t wn = j - i;
        i = j;
        if (wn >= 3 && !memcmp(w, "to=", 3)) {
            if (!p->recipient[0]) copy_word(p->recipient, sizeof p->recipient, w + 3, wn - 3);
            continue;
        }
        if (first_in_part) {
            first_in_part = 0;
            if (part == 0 && !p->role[0]) {
                copy_word(p->role, sizeof p->role, w, wn);
                continue;
            }
            if (part == 1 && !p->channel[0]) {
                copy_word(p->channel, sizeof p->channel, w, wn);
                continue;
            }
        }
        static const char constrain[] = "<|constrain|>";
        if (wn >= sizeof constrain - 1 && !memcmp(w, constrain, sizeof constrain - 1)) {
            w += sizeof constrain - 1;
            wn -= sizeof constrain - 1;
        }
        if (wn && !p->content_type[0]) copy_word(p->content_type, sizeof p->content_type, w, wn);
    }
}

/* Opens a message from the parsed header: MESSAGE_START, result sink. */
static void open_message(gptoss_harmony_parser *p) {
    if (!p->role[0]) {
        if (!p->header_role_preset) emit_error(p, "harmony: header without a role; assuming assistant");
        strcpy(p->role, "assistant");
    }
    p->header_role_preset = 0;
    p->header.n = 0;
    p->pending.n = 0;
    p->sink = SINK_NONE;
    if (!strcmp(p->role, "assistant")) {
        if (!strncmp(p->recipient, "functions.", 10)) {
            if (p->n_tools < 16) {
                snprintf(p->tool_name[p->n_tools], sizeof p->tool_name[0], "%s", p->recipient + 10);
                p->tool = p->n_tools++;
                p->tool_args[p->tool].n = 0;
                if (buf_add(&p->tool_args[p->tool], "", 0)) p->oom = 1;
                p->sink = SINK_TOOL;
            }
        } else if (p->recipient[0]) {
            p->sink = SINK_NONE; /* a built-in tool (browser, python): not a function call */
        } else if (!strcmp(p->channel, "analysis")) {
            p->sink = SINK_REASONING;
        } else {
            p->sink = SINK_FINAL; /* final, commentary preambles, no channel */
        }
    }
    emit(p, GPTOSS_HEV_MESSAGE_START);
    p->state = ST_CONTENT;
}

static void close_message(gptoss_harmony_parser *p, int32_t end_token) {
    drain_pending(p, 1);
    emit_delta(p);
    gptoss_harmony_event *e = emit(p, GPTOSS_HEV_MESSAGE_END);
    if (e) e->end_token = end_token;
    p->state = ST_BETWEEN;
}

static void begin_header(gptoss_harmony_parser *p, int role_preset) {
    p->header.n = 0;
    p->header_skip = 0;
    if (buf_add(&p->header, "", 0)) p->oom = 1;
    p->header_role_preset = role_preset;
    p->state = ST_HEADER;
}

static void header_add(gptoss_harmony_parser *p, const char *s, size_t n) {
    if (buf_add(&p->header, s, n)) p->oom = 1;
}

/* Header abandoned (too long, or <|message|> missing before text): the message
 * opens with what the header says and its bytes become content. */
static void header_to_content(gptoss_harmony_parser *p, int at_end) {
    buf saved = p->header;
    size_t skip = p->header_skip < saved.n ? p->header_skip : saved.n;
    memset(&p->header, 0, sizeof p->header);
    parse_header(p, saved.p);
    if (skip) copy_word(p->role, sizeof p->role, saved.p, skip); /* the preset role, unglued */
    p->content_type[0] = 0;
    p->header_role_preset = 1; /* error already reported */
    open_message(p);
    for (size_t i = 0; i < saved.n; i++)
        if (saved.p[i] == '\x01') saved.p[i] = ' ';
    if (at_end) { /* the stream ends here: flush everything, close the message */
        if (buf_add(&p->pending, saved.p + skip, saved.n - skip)) p->oom = 1;
        drain_pending(p, 1);
        emit_delta(p);
        gptoss_harmony_event *e = emit(p, GPTOSS_HEV_MESSAGE_END);
        if (e) e->end_token = -1;
        p->state = ST_BETWEEN;
    } else {
        add_content(p, saved.p + skip, saved.n - skip);
    }
    free(p->header.p);
    p->header = saved;
    p->header.n = 0;
}

/* ----------------------------------------------------------------- API */

static int is_end_token(int32_t id) {
    return id == GPTOSS_TOK_END || id == GPTOSS_TOK_RETURN || id == GPTOSS_TOK_CALL ||
           id == GPTOSS_TOK_ENDOFTEXT;
}

int gptoss_is_stop_token(int32_t id) {
    return id == GPTOSS_TOK_RETURN || id == GPTOSS_TOK_CALL || id == GPTOSS_TOK_ENDOFTEXT;
}

static void push_header(gptoss_harmony_parser *p, int32_t id, const char *text, size_t len) {
    if (text) {
        header_add(p, text, len);
        if (p->header.n > HARMONY_MAX_HEADER) {
            emit_error(p, "harmony: header longer than %d bytes without <|message|>", HARMONY_MAX_HEADER);
            header_to_content(p, 0);
        } else if (memchr(text, '\n', len)) {
            emit_error(p, "harmony: line break in a message header; treating the header as text");
            header_to_content(p, 0);
        }
    } else if (id == GPTOSS_TOK_CHANNEL) {
        header_add(p, MARK_CHANNEL, strlen(MARK_CHANNEL));
    } else if (id == GPTOSS_TOK_CONSTRAIN) {
        header_add(p, MARK_CONSTRAIN, strlen(MARK_CONSTRAIN));
    } else if (id == GPTOSS_TOK_MESSAGE) {
        parse_header(p, p->header.p);
        open_message(p);
    } else if (id == GPTOSS_TOK_START) {
        emit_error(p, "harmony: <|start|> (token %d) inside a header without <|message|>; header dropped", id);
        begin_header(p, 0);
    } else if (is_end_token(id)) {
        emit_error(p, "harmony: end token %d inside a header without <|message|>", id);
        parse_header(p, p->header.p);
        p->header_role_preset = 1;
        open_message(p);
        close_message(p, id);
    } else {
        emit_error(p, "harmony: unexpected special token %d in a header; skipped", id);
    }
}

static void push_content(gptoss_harmony_parser *p, int32_t id, const char *text, size_t len) {
    if (text) {
        add_content(p, text, len);
    } else if (is_end_token(id)) {
        close_message(p, id);
    } else if (id == GPTOSS_TOK_START) {
        emit_error(p, "harmony: <|start|> (token %d) inside a message without an end token", id);
        close_message(p, id);
        begin_header(p, 0);
    } else if (id == GPTOSS_TOK_CHANNEL) {
        /* a new header in the same role without <|end|><|start|> */
        char role[sizeof p->role];
        memcpy(role, p->role, sizeof role);
        emit_error(p, "harmony: <|channel|> (token %d) inside a message without an end token", id);
        close_message(p, id);
        begin_header(p, 1);
        header_add(p, role, strlen(role));
        p->header_skip = strlen(role);
        header_add(p, MARK_CHANNEL, strlen(MARK_CHANNEL));
    } else {
        emit_error(p, "harmony: unexpected special token %d inside a message; skipped", id);
    }
}

static void push_between(gptoss_harmony_parser *p, int32_t id, const char *text, size_t len) {
    if (id == GPTOSS_TOK_START) {
        begin_header(p, 0);
    } else if (text) {
        emit_error(p, "harmony: text (token %d) outside a message; opening an assistant message", id);
        p->role[0] = p->channel[0] = p->recipient[0] = p->content_type[0] = 0;
        p->header_role_preset = 1;
        open_message(p);
        add_content(p, text, len);
    } else if (id == GPTOSS_TOK_CHANNEL) {
        emit_error(p, "harmony: <|channel|> (token %d) without <|start|>; assuming assistant", id);
        begin_header(p, 1);
        header_add(p, "assistant" MARK_CHANNEL, strlen("assistant" MARK_CHANNEL));
        p->header_skip = 9;
    } else if (id == GPTOSS_TOK_MESSAGE) {
        emit_error(p, "harmony: <|message|> (token %d) without a header; opening an assistant message", id);
        p->role[0] = p->channel[0] = p->recipient[0] = p->content_type[0] = 0;
        p->header_role_preset = 1;
        open_message(p);
    } else {
        emit_error(p, "harmony: unexpected token %d between messages; skipped", id);
    }
}

gptoss_status harmony_parser_create_cb(harmony_token_bytes_fn fn, void *user, int expect_start_after_role,
                                       gptoss_harmony_parser **out) {
    if (!fn || !out) return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "harmony parser: NULL argument");
    gptoss_harmony_parser *p = calloc(1, sizeof *p);
    if (!p) return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "harmony parser: out of memory");
    p->bytes = fn;
    p->user = user;
    if (buf_add(&p->reasoning, "", 0) || buf_add(&p->final, "", 0) || buf_add(&p->delta, "", 0) ||
        buf_add(&p->header, "", 0) || buf_add(&p->pending, "", 0)) {
        gptoss_harmony_parser_free(p);
        return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "harmony parser: out of memory");
    }
    if (expect_start_after_role) {
        begin_header(p, 1);
        header_add(p, "assistant", 9);
        p->header_skip = 9;
    } else {
        p->state = ST_BETWEEN;
    }
    *out = p;
    return GPTOSS_OK;
}

static const char *tokenizer_bytes(void *user, int32_t id, size_t *len) {
    return gptoss_token_bytes((const gptoss_tokenizer *)user, id, len);
}

gptoss_status gptoss_harmony_parser_create(const gptoss_tokenizer *t, int expect_start_after_role,
                                           gptoss_harmony_parser **out) {
    if (!t) return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "harmony parser: NULL tokenizer");
    return harmony_parser_create_cb(tokenizer_bytes, (void *)t, expect_start_after_role, out);
}

void gptoss_harmony_parser_free(gptoss_harmony_parser *p) {
    if (!p) return;
    free(p->header.p);
    free(p->pending.p);
    free(p->delta.p);
    free(p->reasoning.p);
    free(p->final.p);
    for (int i = 0; i < 16; i++) free(p->tool_args[i].p);
    free(p);
}

static int deliver(gptoss_harmony_parser *p, gptoss_harmony_event *events, int max_events) {
    int n = p->n_ev < max_events ? p->n_ev : max_events;
    if (n > 0 && events) memcpy(events, p->ev, (size_t)n * sizeof *events);
    return n > 0 && events ? n : 0;
}

int gptoss_harmony_parser_push(gptoss_harmony_parser *p, int32_t id, gptoss_harmony_event *events,
                               int max_events) {
    if (!p) return 0;
    p->n_ev = 0;
    p->delta.n = 0;
    p->started = 1;
    const char *text = NULL;
    size_t len = 0;
    if (id >= 0 && id < GPTOSS_TOK_STARTOFTEXT) {
        text = p->bytes(p->user, id, &len);
        if (!text) {
            emit_error(p, "harmony: token id %d has no bytes; skipped", id);
            return deliver(p, events, max_events);
        }
    } else if (id < 0 || id > GPTOSS_TOK_ENDOFPROMPT) {
        emit_error(p, "harmony: token id %d out of range; skipped", id);
        return deliver(p, events, max_events);
    }
    switch (p->state) {
    case ST_HEADER: push_header(p, id, text, len); break;
    case ST_CONTENT: push_content(p, id, text, len); break;
    default: push_between(p, id, text, len); break;
    }
    return deliver(p, events, max_events);
}

int gptoss_harmony_parser_finish(gptoss_harmony_parser *p, gptoss_harmony_event *events, int max_events) {
    if (!p) return 0;
    p->n_ev = 0;
    p->delta.n = 0;
    if (p->state == ST_CONTENT) {
        emit_error(p, "harmony: output ended inside a message (truncated)");
        close_message(p, -1);
    } else if (p->state == ST_HEADER && p->started) {
        emit_error(p, "harmony: output ended inside a message header (truncated)");
        /* plain text where a header was expected is kept; a cut-off real header is dropped */
        if (p->header.n > p->header_skip && !strstr(p->header.p, MARK_CHANNEL)) header_to_content(p, 1);
        else p->state = ST_BETWEEN;
    }
    return deliver(p, events, max_events);
}

void gptoss_harmony_parser_result(const gptoss_harmony_parser *p, gptoss_harmony_result *r) {
    if (!r) return;
    memset(r, 0, sizeof *r);
    if (!p) {
        r->reasoning = r->final = "";
        return;
    }
    r->reasoning = p->reasoning.p ? p->reasoning.p : "";
    r->final = p->final.p ? p->final.p : "";
    r->n_tool_calls = p->n_tools;
    for (int i = 0; i < p->n_tools; i++) {
        r->tool_calls[i].name = p->tool_name[i];
        r->tool_calls[i].arguments = p->tool_args[i].p ? p->tool_args[i].p : "";
    }
}
