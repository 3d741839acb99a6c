/*
 * harmony_render.c - chat request JSON -> harmony prompt.
 *
 * A direct C rendering of ../shared/reference/chat_template.jinja, byte-identical
 * to what @huggingface/jinja produces for it (the CI reference,
 * tools/render_template.mjs). Semantics follow that engine where it differs from
 * jinja2-in-Python:
 *   - tojson: ", " / ": " separators, non-ASCII unescaped, numbers formatted as
 *     JavaScript does (1.0 -> 1, 1e21 -> 1e+21), object keys that are array
 *     indices ("0", "17") first in ascending order, then the others in input order;
 *   - "str" + value uses JavaScript's toString (true -> "true", 1.0 -> "1");
 *   - |length counts UTF-16 code units;
 *   - a schema "type": ["array"] compares equal to "array".
 *
 * Before templating the request is normalised (tools/render_template.mjs does the
 * same): content null/missing -> "", content arrays of {"type":"text","text"} parts
 * -> the joined text; "reasoning_content"/"reasoning" are aliases of "thinking";
 * "tool_calls": null or [] is dropped; tool-call arguments given as a JSON string
 * are parsed (kept as a string when not valid JSON).
 *
 * Where the template would raise (or the JS engine would fail) we return
 * GPTOSS_ERR_FORMAT naming the field. One deliberate difference: a function tool
 * without "description" renders no "// ..." line (the template raises).
 *
 * Alongside the text the renderer records where the template's own special
 * tokens ("<|start|>", "<|message|>", ...) are: they come only from literal
 * template text appended with lit(). gptoss_render_chat_ids makes exactly
 * those special tokens, so caller text that contains special-token text
 * stays plain text.
 */
#include "gptoss.h"
#include "harmony_json.h"
#include "tokenizer_internal.h"
#include "util.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Render state: output, structural special tokens in it, error path. */
typedef struct {
    hj_buf out;
    tok_span *marks; /* the template's special tokens in out, ascending */
    size_t n_marks, cap_marks;
    char path[512]; /* field being rendered, for error messages */
    gptoss_status err;
} rctx;

static gptoss_status fail(rctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static gptoss_status fail(rctx *c, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* "field: problem" continues the path ("messages[2]" + ".content: ...") */
    size_t f = strspn(msg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.[]");
    const char *sep = c->path[0] && f > 0 && msg[f] == ':' ? (msg[0] == '[' ? "" : ".") : ": ";
    c->err = gptoss_set_error(GPTOSS_ERR_FORMAT, "%s%s%s", c->path[0] ? c->path : "request", sep, msg);
    return c->err;
}

/* Appends ".key" / "[i]" to the path; returns the old length to restore. */
static size_t path_push(rctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static size_t path_push(rctx *c, const char *fmt, ...) {
    size_t old = strlen(c->path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->path + old, sizeof c->path - old, fmt, ap);
    va_end(ap);
    return old;
}
static void path_pop(rctx *c, size_t old) { c->path[old] = 0; }

/* ------------------------------------------------ JavaScript-like values */

/* "str" + v, failing (as the template would) on null/undefined/containers. */
static gptoss_status concat(rctx *c, const json_t *v, const char *what) {
    if (hj_scalar(v, &c->out)) return GPTOSS_OK;
    return fail(c, "%s: expected a string", what);
}

/* Array.prototype.join semantics over scalars (null -> ""). */
static gptoss_status js_join(rctx *c, const json_t *arr, const char *sep, const char *what) {
    size_t i;
    json_t *x;
    json_array_foreach(arr, i, x) {
        if (i) hj_puts(&c->out, sep);
        if (json_is_null(x)) continue;
        if (!hj_scalar(x, &c->out)) return fail(c, "%s[%zu]: expected a string", what, i);
    }
    return GPTOSS_OK;
}

/* ---------------------------------------------------- tool definitions */

/* param_spec.type == name, as @huggingface/jinja compares ("==" is JS loose
 * equality, so a one-element array ["array"] equals "array"). */
static int type_is(const json_t *spec, const char *name) {
    const json_t *t = json_object_get(spec, "type");
    if (json_is_array(t) && json_array_size(t) == 1) t = json_array_get(t, 0);
    return json_is_string(t) && !strcmp(json_string_value(t), name);
}

/* `name in (req or [])` */
static gptoss_status in_required(rctx *c, const json_t *req, const char *name, int *in) {
    *in = 0;
    if (!hj_truthy(req)) return GPTOSS_OK;
    if (json_is_array(req)) {
        size_t i;
        json_t *x;
        json_array_foreach(req, i, x) if (json_is_string(x) && !strcmp(json_string_value(x), name))
            *in = 1;
    } else if (json_is_string(req)) {
        *in = strstr(json_string_value(req), name) != NULL;
    } else if (json_is_object(req)) {
        *in = json_object_get(req, name) != NULL;
    } else {
        return fail(c, "required: expected an array of strings");
    }
    return GPTOSS_OK;
}

static gptoss_status render_type(rctx *c, const json_t *spec, int depth);

static gptoss_status render_type_at(rctx *c, const json_t *spec, int depth, const char *fmt,
                                    const char *arg) {
    size_t old = path_push(c, fmt, arg);
    gptoss_status st = render_type(c, spec, depth + 1);
    if (!st) path_pop(c, old);
    return st;
}

static gptoss_status render_array_type(rctx *c, const json_t *spec, int depth) {
    const json_t *items = json_object_get(spec, "items");
    if (!hj_truthy(items)) {
        hj_puts(&c->out, "any[]");
    } else if (type_is(items, "string")) {
        hj_puts(&c->out, "string[]");
    } else if (type_is(items, "number") || type_is(items, "integer")) {
        hj_puts(&c->out, "number[]");
    } else if (type_is(items, "boolean")) {
        hj_puts(&c->out, "boolean[]");
    } else {
        hj_buf saved = c->out;
        memset(&c->out, 0, sizeof c->out);
        gptoss_status st = render_type_at(c, items, depth, "%s", ".items");
        hj_buf inner = c->out;
        c->out = saved;
        if (st || inner.oom) {
            free(inner.p);
            if (inner.oom) c->out.oom = 1;
            return st;
        }
        if ((inner.n == 15 && !memcmp(inner.p, "object | object", 15)) || hj_utf16_len(inner.p, inner.n) > 50)
            hj_puts(&c->out, "any[]");
        else {
            hj_add(&c->out, inner.p ? inner.p : "", inner.n);
            hj_puts(&c->out, "[]");
        }
        free(inner.p);
    }
    if (hj_truthy(json_object_get(spec, "nullable"))) hj_puts(&c->out, " | null");
    return GPTOSS_OK;
}

static gptoss_status render_one_of(rctx *c, const json_t *one_of, int depth) {
    if (!json_is_array(one_of)) return fail(c, "oneOf: expected an array");
    /* The template's has_object_variants flag is set inside the loop and does
     * not survive it (jinja scoping, same in both engines): never "any". */
    size_t n = json_array_size(one_of);
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(one_of, i);
        char idx[32];
        snprintf(idx, sizeof idx, ".oneOf[%zu]", i);
        gptoss_status st = render_type_at(c, v, depth, "%s", idx);
        if (st) return st;
        const json_t *d = json_object_get(v, "description");
        if (hj_truthy(d)) {
            hj_puts(&c->out, "// ");
            if (concat(c, d, "description")) return c->err;
        }
        if (json_object_get(v, "default")) {
            hj_puts(&c->out, "                    // default: ");
            hj_tojson(&c->out, json_object_get(v, "default"));
        }
        if (i + 1 < n) hj_puts(&c->out, " | \n");
    }
    return GPTOSS_OK;
}

static gptoss_status render_object_type(rctx *c, const json_t *spec, int depth) {
    const json_t *props = json_object_get(spec, "properties");
    if (!hj_truthy(props)) {
        hj_puts(&c->out, "object");
        return GPTOSS_OK;
    }
    if (!json_is_object(props)) return fail(c, "properties: expected an object");
    size_t n;
    hj_key *ks = hj_ordered_keys(props, &n);
    if (!ks) return c->err = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "render: out of memory");
    hj_puts(&c->out, "{\n");
    gptoss_status st = GPTOSS_OK;
    for (size_t i = 0; i < n && !st; i++) {
        int in;
        hj_puts(&c->out, ks[i].key);
        if ((st = in_required(c, json_object_get(spec, "required"), ks[i].key, &in))) break;
        if (!in) hj_puts(&c->out, "?");
        hj_puts(&c->out, ": \n                ");
        st = render_type_at(c, json_object_get(props, ks[i].key), depth, ".properties.%s", ks[i].key);
        if (!st && i + 1 < n) hj_puts(&c->out, ", ");
    }
    free(ks);
    if (!st) hj_puts(&c->out, "}");
    return st;
}

/* The render_typescript_type macro. */
static gptoss_status render_type(rctx *c, const json_t *spec, int depth) {
    if (!json_is_object(spec)) return fail(c, "expected a JSON schema object");
    if (depth > 64) return fail(c, "schema nested too deeply");
    const json_t *t = json_object_get(spec, "type");
    if (type_is(spec, "array")) return render_array_type(c, spec, depth);
    if (json_is_array(t) && json_array_size(t) > 0) {
        size_t i;
        json_t *x;
        json_array_foreach(t, i, x) if (!json_is_string(x)) return fail(c, "type: expected strings");
        return js_join(c, t, " | ", "type");
    }
    const json_t *one_of = json_object_get(spec, "oneOf");
    if (hj_truthy(one_of)) return render_one_of(c, one_of, depth);
    if (type_is(spec, "string")) {
        const json_t *e = json_object_get(spec, "enum");
        if (hj_truthy(e)) {
            if (!json_is_array(e)) return fail(c, "enum: expected an array");
            hj_puts(&c->out, "\"");
            if (js_join(c, e, "\" | \"", "enum")) return c->err;
            hj_puts(&c->out, "\"");
        } else {
            hj_puts(&c->out, "string");
            if (hj_truthy(json_object_get(spec, "nullable"))) hj_puts(&c->out, " | null");
        }
    } else if (type_is(spec, "number") || type_is(spec, "integer")) {
        hj_puts(&c->out, "number");
    } else if (type_is(spec, "boolean")) {
        hj_puts(&c->out, "boolean");
    } else if (type_is(spec, "object")) {
        return render_object_type(c, spec, depth);
    } else {
        hj_puts(&c->out, "any");
    }
    return GPTOSS_OK;
}

/* One function of the render_tool_namespace macro. */
static gptoss_status render_function(rctx *c, const json_t *tool) {
    const json_t *f = json_object_get(tool, "function");
    if (!json_is_object(f)) return fail(c, "expected an object with \"function\"");
    size_t old = path_push(c, ".function");
    const json_t *name = json_object_get(f, "name");
    const json_t *desc = json_object_get(f, "description");
    const json_t *params = json_object_get(f, "parameters");
    if (!json_is_string(name)) return fail(c, "name: expected a string");
    if (desc && !json_is_null(desc)) {
        hj_puts(&c->out, "// ");
        if (concat(c, desc, "description")) return c->err;
        hj_puts(&c->out, "\n");
    }
    hj_puts(&c->out, "type ");
    hj_puts(&c->out, json_string_value(name));
    hj_puts(&c->out, " = ");
    const json_t *props = json_object_get(params, "properties");
    if (!hj_truthy(params) || !hj_truthy(props)) {
        hj_puts(&c->out, "() => any;\n\n");
        path_pop(c, old);
        return GPTOSS_OK;
    }
    path_push(c, ".parameters");
    if (!json_is_object(params)) return fail(c, "expected an object");
    if (!json_is_object(props)) return fail(c, "properties: expected an object");
    size_t n;
    hj_key *ks = hj_ordered_keys(props, &n);
    if (!ks) return c->err = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "render: out of memory");
    hj_puts(&c->out, "(_: {\n");
    gptoss_status st = GPTOSS_OK;
    for (size_t i = 0; i < n && !st; i++) {
        const json_t *ps = json_object_get(props, ks[i].key);
        size_t pold = path_push(c, ".properties.%s", ks[i].key);
        if (!json_is_object(ps)) {
            st = fail(c, "expected a JSON schema object");
            break;
        }
        const json_t *pd = json_object_get(ps, "description");
        if (hj_truthy(pd)) {
            hj_puts(&c->out, "// ");
            if ((st = concat(c, pd, "description"))) break;
            hj_puts(&c->out, "\n");
        }
        hj_puts(&c->out, ks[i].key);
        int in;
        if ((st = in_required(c, json_object_get(params, "required"), ks[i].key, &in))) break;
        if (!in) hj_puts(&c->out, "?");
        hj_puts(&c->out, ": ");
        path_pop(c, pold);
        if ((st = render_type_at(c, ps, 0, ".properties.%s", ks[i].key))) break;
        const json_t *def = json_object_get(ps, "default");
        if (def) {
            path_push(c, ".properties.%s", ks[i].key);
            if (hj_truthy(json_object_get(ps, "enum"))) {
                hj_puts(&c->out, ", // default: ");
                st = concat(c, def, "default");
            } else if (hj_truthy(json_object_get(ps, "oneOf"))) {
                hj_puts(&c->out, "// default: ");
                st = concat(c, def, "default");
            } else {
                hj_puts(&c->out, ", // default: ");
                hj_tojson(&c->out, def);
            }
            if (st) break;
            path_pop(c, pold);
        }
        hj_puts(&c->out, ",\n");
    }
    free(ks);
    if (st) return st;
    hj_puts(&c->out, "}) => any;\n\n");
    path_pop(c, old);
    return GPTOSS_OK;
}

static gptoss_status render_tools(rctx *c, const json_t *tools) {
    hj_puts(&c->out, "# Tools\n\n## functions\n\nnamespace functions {\n\n");
    size_t i;
    json_t *tool;
    json_array_foreach(tools, i, tool) {
        size_t old = path_push(c, "tools[%zu]", i);
        if (render_function(c, tool)) return c->err;
        path_pop(c, old);
    }
    hj_puts(&c->out, "} // namespace functions");
    return GPTOSS_OK;
}

#include "harmony_builtin_tools.h"

/* ------------------------------------------------------------ messages */

typedef struct {
    const char *role;
    char *content;           /* normalised text (owned) */
    const char *thinking;    /* NULL when absent */
    const json_t *tool_calls;/* non-empty array or NULL */
} msg;

static const char *const TAG_ANALYSIS = "<|channel|>analysis<|message|>";
static const char *const TAG_FINAL = "<|channel|>final<|message|>";

static gptoss_status normalise_content(rctx *c, const json_t *v, char **out) {
    hj_buf b = {0};
    hj_add(&b, "", 0);
    if (json_is_string(v)) {
        hj_add(&b, json_string_value(v), json_string_length(v));
    } else if (json_is_array(v)) {
        size_t i;
        json_t *part;
        json_array_foreach(v, i, part) {
            const json_t *text = json_is_object(part) ? json_object_get(part, "text") : part;
            const json_t *type = json_object_get(part, "type");
            if (json_is_object(part) && type && !(json_is_string(type) && !strcmp(json_string_value(type), "text")))
                text = NULL;
            if (!json_is_string(text)) {
                free(b.p);
                return fail(c, "content[%zu]: expected a text part {\"type\":\"text\",\"text\":...}", i);
            }
            hj_add(&b, json_string_value(text), json_string_length(text));
        }
    } else if (v && !json_is_null(v)) {
        free(b.p);
        return fail(c, "content: expected a string or array");
    }
    if (b.oom) {
        free(b.p);
        return c->err = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "render: out of memory");
    }
    *out = b.p;
    return GPTOSS_OK;
}

/* Validates one message and fills m; tool-call string arguments are replaced
 * in place (the request tree is ours) by their parsed value. */
static gptoss_status normalise_message(rctx *c, json_t *jm, msg *m) {
    if (!json_is_object(jm)) return fail(c, "expected an object");
    const json_t *role = json_object_get(jm, "role");
    if (!json_is_string(role)) return fail(c, "role: expected a string");
    m->role = json_string_value(role);
    if (strcmp(m->role, "system") && strcmp(m->role, "developer") && strcmp(m->role, "user") &&
        strcmp(m->role, "assistant") && strcmp(m->role, "tool"))
        return fail(c, "role: unknown role \"%.40s\"", m->role);
    if (normalise_content(c, json_object_get(jm, "content"), &m->content)) return c->err;
    static const char *const think_keys[] = {"thinking", "reasoning_content", "reasoning"};
    for (int k = 0; k < 3 && !m->thinking; k++) {
        const json_t *t = json_object_get(jm, think_keys[k]);
        if (!t || json_is_null(t)) continue;
        if (!json_is_string(t)) return fail(c, "%s: expected a string", think_keys[k]);
        m->thinking = json_string_value(t);
    }
    json_t *calls = json_object_get(jm, "tool_calls");
    if (!calls || json_is_null(calls)) return GPTOSS_OK;
    if (!json_is_array(calls)) return fail(c, "tool_calls: expected an array");
    size_t i;
    json_t *tc;
    json_array_foreach(calls, i, tc) {
        json_t *f = json_object_get(tc, "function");
        json_t *holder = hj_truthy(f) ? f : tc;
        if (!json_is_object(holder)) return fail(c, "tool_calls[%zu]: expected an object", i);
        if (!json_is_string(json_object_get(holder, "name")))
            return fail(c, "tool_calls[%zu].function.name: expected a string", i);
        const json_t *ct = json_object_get(holder, "content_type");
        if (ct && !json_is_string(ct)) return fail(c, "tool_calls[%zu].function.content_type: expected a string", i);
        json_t *args = json_object_get(holder, "arguments");
        if (json_is_string(args)) {
            json_t *parsed = json_loads(json_string_value(args), JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, NULL);
            if (parsed) json_object_set_new(holder, "arguments", parsed);
        }
    }
    if (json_array_size(calls)) m->tool_calls = calls;
    return GPTOSS_OK;
}

/* Appends literal template text, recording each "<|...|>" in it as a
 * structural special token. Never pass caller text here. */
static void lit(rctx *c, const char *s) {
    for (const char *p = s; (p = strstr(p, "<|")) != NULL;) {
        const char *e = strstr(p + 2, "|>");
        if (!e) break;
        if (c->n_marks == c->cap_marks) {
            size_t cap = c->cap_marks ? 2 * c->cap_marks : 32;
            tok_span *m = realloc(c->marks, cap * sizeof *m);
            if (!m) {
                c->out.oom = 1;
                return;
            }
            c->marks = m;
            c->cap_marks = cap;
        }
        c->marks[c->n_marks++] = (tok_span){c->out.n + (size_t)(p - s), (size_t)(e + 2 - p)};
        p = e + 2;
    }
    hj_puts(&c->out, s);
}

/* literal a, caller text b, literal d */
static void put3(rctx *c, const char *a, const char *b, const char *d) {
    lit(c, a);
    hj_puts(&c->out, b);
    lit(c, d);
}

static gptoss_status render_messages(rctx *c, msg *ms, size_t n, size_t first, int add_gen) {
    const char *last_tool = NULL;
    for (size_t i = first; i < n; i++) {
        msg *m = &ms[i];
        snprintf(c->path, sizeof c->path, "messages[%zu]", i);
        if (!strcmp(m->role, "user")) {
            put3(c, "<|start|>user<|message|>", m->content, "<|end|>");
        } else if (!strcmp(m->role, "tool")) {
            if (!last_tool)
                return fail(c, "tool message without a preceding assistant message with a tool call");
            put3(c, "<|start|>functions.", last_tool, " to=assistant<|channel|>commentary<|message|>");
            hj_quote(&c->out, m->content, strlen(m->content));
            lit(c, "<|end|>");
        } else if (!strcmp(m->role, "assistant")) {
            if (strstr(m->content, TAG_ANALYSIS) || strstr(m->content, TAG_FINAL))
                return fail(c, "content: contains <|channel|> tags; pass the analysis in \"thinking\" and "
                               "the final text in \"content\"");
            if (m->thinking && (strstr(m->thinking, TAG_ANALYSIS) || strstr(m->thinking, TAG_FINAL)))
                return fail(c, "thinking: contains <|channel|> tags; pass only the analysis text");
            if (m->tool_calls) {
                int future_final = 0;
                for (size_t j = i + 1; j < n; j++)
                    if (!strcmp(ms[j].role, "assistant") && !ms[j].tool_calls) future_final = 1;
                const json_t *tc = json_array_get(m->tool_calls, 0);
                const json_t *f = json_object_get(tc, "function");
                if (hj_truthy(f)) tc = f;
                int has_thinking = m->thinking && *m->thinking;
                if (*m->content && has_thinking)
                    return fail(c, "cannot pass both content and thinking in an assistant message with "
                                   "tool calls");
                if (*m->content && !future_final)
                    put3(c, "<|start|>assistant<|channel|>analysis<|message|>", m->content, "<|end|>");
                else if (has_thinking && !future_final)
                    put3(c, "<|start|>assistant<|channel|>analysis<|message|>", m->thinking, "<|end|>");
                const json_t *ct = json_object_get(tc, "content_type");
                last_tool = json_string_value(json_object_get(tc, "name"));
                put3(c, "<|start|>assistant to=functions.", last_tool, "<|channel|>commentary ");
                hj_puts(&c->out, ct ? json_string_value(ct) : "json");
                lit(c, "<|message|>");
                hj_tojson(&c->out, json_object_get(tc, "arguments"));
                lit(c, "<|call|>");
            } else if (i + 1 == n && !add_gen) {
                if (m->thinking)
                    put3(c, "<|start|>assistant<|channel|>analysis<|message|>", m->thinking, "<|end|>");
                put3(c, "<|start|>assistant<|channel|>final<|message|>", m->content, "<|return|>");
            } else {
                put3(c, "<|start|>assistant<|channel|>final<|message|>", m->content, "<|end|>");
                last_tool = NULL;
            }
        }
        /* system/developer messages after the first are ignored by the template */
    }
    c->path[0] = 0;
    return GPTOSS_OK;
}

static int valid_date(const char *d) {
    if (strlen(d) != 10 || d[4] != '-' || d[7] != '-') return 0;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (d[i] < '0' || d[i] > '9')) return 0;
    return 1;
}

/* Optional top-level string; null counts as absent. */
static gptoss_status opt_string(rctx *c, const json_t *req, const char *key, const char **out) {
    const json_t *v = json_object_get(req, key);
    *out = NULL;
    if (!v || json_is_null(v)) return GPTOSS_OK;
    if (!json_is_string(v)) {
        snprintf(c->path, sizeof c->path, "%s", key);
        return fail(c, "expected a string");
    }
    *out = json_string_value(v);
    return GPTOSS_OK;
}

static gptoss_status render_system(rctx *c, const json_t *req, const char *date, const char *effort,
                                   const json_t *tools) {
    const char *identity;
    if (opt_string(c, req, "model_identity", &identity)) return c->err;
    const json_t *builtin = json_object_get(req, "builtin_tools");
    if (builtin && !json_is_null(builtin) && !json_is_array(builtin)) {
        snprintf(c->path, sizeof c->path, "builtin_tools");
        return fail(c, "expected an array of strings");
    }
    put3(c, "<|start|>system<|message|>",
         identity ? identity : "You are ChatGPT, a large language model trained by OpenAI.", "\n");
    put3(c, "Knowledge cutoff: 2024-06\nCurrent date: ", date, "\n\n");
    put3(c, "Reasoning: ", effort, "\n\n");
    if (hj_truthy(builtin)) {
        int browser = 0, python = 0;
        size_t i;
        json_t *t;
        json_array_foreach(builtin, i, t) {
            if (json_is_string(t) && !strcmp(json_string_value(t), "browser")) browser = 1;
            if (json_is_string(t) && !strcmp(json_string_value(t), "python")) python = 1;
        }
        hj_puts(&c->out, "# Tools\n\n");
        if (browser) hj_puts(&c->out, BROWSER_TOOL);
        if (python) hj_puts(&c->out, PYTHON_TOOL);
    }
    hj_puts(&c->out, "# Valid channels: analysis, commentary, final. Channel must be included for every message.");
    if (hj_truthy(tools)) hj_puts(&c->out, "\nCalls to these tools must go to the commentary channel: 'functions'.");
    lit(c, "<|end|>");
    return GPTOSS_OK;
}

static gptoss_status render_request(rctx *c, json_t *req, const gptoss_render_options *opt,
                                    const char *date) {
    if (!json_is_object(req)) return fail(c, "expected a JSON object");
    const char *effort = opt && opt->reasoning_effort ? opt->reasoning_effort : NULL;
    if (!effort && opt_string(c, req, "reasoning_effort", &effort)) return c->err;
    if (!effort) effort = "medium";
    if (strcmp(effort, "low") && strcmp(effort, "medium") && strcmp(effort, "high")) {
        snprintf(c->path, sizeof c->path, "reasoning_effort");
        return fail(c, "expected \"low\", \"medium\" or \"high\", got \"%.20s\"", effort);
    }
    const json_t *tools = json_object_get(req, "tools");
    if (tools && !json_is_null(tools) && !json_is_array(tools)) {
        snprintf(c->path, sizeof c->path, "tools");
        return fail(c, "expected an array");
    }
    json_t *jms = json_object_get(req, "messages");
    if (!json_is_array(jms) || !json_array_size(jms)) {
        snprintf(c->path, sizeof c->path, "messages");
        return fail(c, "expected a non-empty array");
    }
    size_t n = json_array_size(jms);
    msg *ms = calloc(n, sizeof *ms);
    if (!ms) return c->err = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "render: out of memory");
    gptoss_status st = GPTOSS_OK;
    for (size_t i = 0; i < n && !st; i++) {
        snprintf(c->path, sizeof c->path, "messages[%zu]", i);
        st = normalise_message(c, json_array_get(jms, i), &ms[i]);
    }
    c->path[0] = 0;
    if (!st) st = render_system(c, req, date, effort, tools);
    size_t first = 0;
    const char *dev = "";
    if (!st && (!strcmp(ms[0].role, "developer") || !strcmp(ms[0].role, "system"))) {
        dev = ms[0].content;
        first = 1;
    }
    if (!st && (*dev || hj_truthy(tools))) {
        lit(c, "<|start|>developer<|message|>");
        if (*dev) put3(c, "# Instructions\n\n", dev, "\n\n");
        if (hj_truthy(tools)) st = render_tools(c, tools);
        lit(c, "<|end|>");
    }
    if (!st) st = render_messages(c, ms, n, first, !opt || opt->add_generation_prompt);
    if (!st && (!opt || opt->add_generation_prompt)) lit(c, "<|start|>assistant");
    for (size_t i = 0; i < n; i++) free(ms[i].content);
    free(ms);
    return st;
}

/* Renders into c (zeroed by the caller; it owns c->out.p and c->marks after). */
static gptoss_status render_into(rctx *c, const char *request_json, size_t len, const gptoss_render_options *opt) {
    char today[16];
    const char *date = opt ? opt->date : NULL;
    if (date && !valid_date(date))
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "render: date \"%.20s\": expected YYYY-MM-DD", date);
    if (!date) {
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        strftime(today, sizeof today, "%Y-%m-%d", &tm);
        date = today;
    }
    json_error_t jerr;
    json_t *req = json_loadb(request_json, len, JSON_DECODE_INT_AS_REAL, &jerr);
    if (!req)
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "request: invalid JSON at line %d column %d: %s", jerr.line,
                                jerr.column, jerr.text);
    gptoss_status st = render_request(c, req, opt, date);
    json_decref(req);
    if (!st && c->out.oom) st = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "render: out of memory");
    return st;
}

gptoss_status gptoss_render_chat(const char *request_json, size_t len, const gptoss_render_options *opt,
                                 char **text) {
    if (!request_json || !text) return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "render: NULL argument");
    *text = NULL;
    rctx c;
    memset(&c, 0, sizeof c);
    gptoss_status st = render_into(&c, request_json, len, opt);
    free(c.marks);
    if (st) {
        free(c.out.p);
        return st;
    }
    *text = c.out.p ? c.out.p : strdup("");
    return *text ? GPTOSS_OK : gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "render: out of memory");
}

gptoss_status gptoss_render_chat_ids(const gptoss_tokenizer *t, const char *request_json, size_t len,
                                     const gptoss_render_options *opt, int32_t **ids, size_t *n_ids) {
    if (!t || !request_json || !ids || !n_ids)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "render_chat_ids: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    rctx c;
    memset(&c, 0, sizeof c);
    gptoss_status st = render_into(&c, request_json, len, opt);
    if (!st) st = tok_encode_marked(t, c.out.p ? c.out.p : "", c.out.n, c.marks, c.n_marks, ids, n_ids);
    free(c.marks);
    free(c.out.p);
    return st;
}
