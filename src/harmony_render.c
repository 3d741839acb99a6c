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
 */
#include "gptoss.h"
#include "util.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------- buffers */

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_puts(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* Render state: output, error path, request flags. */
typedef struct {
    sbuf out;
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

/* Number.prototype.toString for a finite double. */
static void js_number(double x, char out[40]) {
    if (x == 0) {
        strcpy(out, "0");
        return;
    }
    char e[40];
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, x);
        if (strtod(e, NULL) == x) break;
    }
    if (p > 17) p = 17;
    snprintf(e, sizeof e, "%.*e", p - 1, x);
    char digits[24];
    int k = 0, neg = e[0] == '-';
    const char *s = e + neg;
    for (; *s && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9') digits[k++] = *s;
    while (k > 1 && digits[k - 1] == '0') k--;
    digits[k] = 0;
    int n = atoi(s + 1) + 1; /* value = 0.digits * 10^n */
    char *o = out;
    if (neg) *o++ = '-';
    if (k <= n && n <= 21) {
        memcpy(o, digits, (size_t)k);
        o += k;
        for (int i = k; i < n; i++) *o++ = '0';
    } else if (0 < n && n <= 21) {
        memcpy(o, digits, (size_t)n);
        o += n;
        *o++ = '.';
        memcpy(o, digits + n, (size_t)(k - n));
        o += k - n;
    } else if (-6 < n && n <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -n; i++) *o++ = '0';
        memcpy(o, digits, (size_t)k);
        o += k;
    } else {
        *o++ = digits[0];
        if (k > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, (size_t)(k - 1));
            o += k - 1;
        }
        o += sprintf(o, "e%c%d", n - 1 >= 0 ? '+' : '-', abs(n - 1));
    }
    *o = 0;
}

/* jinja truthiness (empty containers and strings are false). */
static int truthy(const json_t *v) {
    if (!v) return 0;
    switch (json_typeof(v)) {
    case JSON_OBJECT: return json_object_size(v) > 0;
    case JSON_ARRAY: return json_array_size(v) > 0;
    case JSON_STRING: return json_string_length(v) > 0;
    case JSON_INTEGER: return json_integer_value(v) != 0;
    case JSON_REAL: return json_real_value(v) != 0;
    case JSON_TRUE: return 1;
    default: return 0;
    }
}

/* Scalar as JavaScript's String(value); 0 for null/containers (fails). */
static int js_scalar(const json_t *v, sbuf *b) {
    char num[40];
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_STRING: sb_add(b, json_string_value(v), json_string_length(v)); return 1;
    case JSON_INTEGER: js_number((double)json_integer_value(v), num); sb_puts(b, num); return 1;
    case JSON_REAL: js_number(json_real_value(v), num); sb_puts(b, num); return 1;
    case JSON_TRUE: sb_puts(b, "true"); return 1;
    case JSON_FALSE: sb_puts(b, "false"); return 1;
    default: return 0;
    }
}

/* "str" + v, failing (as the template would) on null/undefined/containers. */
static gptoss_status concat(rctx *c, const json_t *v, const char *what) {
    if (js_scalar(v, &c->out)) return GPTOSS_OK;
    return fail(c, "%s: expected a string", what);
}

/* Array.prototype.join semantics over scalars (null -> ""). */
static gptoss_status js_join(rctx *c, const json_t *arr, const char *sep, const char *what) {
    size_t i;
    json_t *x;
    json_array_foreach(arr, i, x) {
        if (i) sb_puts(&c->out, sep);
        if (json_is_null(x)) continue;
        if (!js_scalar(x, &c->out)) return fail(c, "%s[%zu]: expected a string", what, i);
    }
    return GPTOSS_OK;
}

/* Canonical array index ("0", "42"; no sign, no leading zero, < 2^32-1). */
static int array_index_key(const char *k, unsigned long *idx) {
    if (!*k || strlen(k) > 10 || (k[0] == '0' && k[1])) return 0;
    unsigned long v = 0;
    for (const char *p = k; *p; p++) {
        if (*p < '0' || *p > '9') return 0;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v >= 4294967295ul) return 0;
    *idx = v;
    return 1;
}

typedef struct {
    const char *key;
    unsigned long idx;
    size_t pos;
    int is_index;
} okey;

static int okey_cmp(const void *a, const void *b) {
    const okey *x = a, *y = b;
    if (x->is_index != y->is_index) return x->is_index ? -1 : 1;
    if (x->is_index) return x->idx < y->idx ? -1 : x->idx > y->idx;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Keys of obj in JavaScript property order. Caller frees. NULL on OOM. */
static okey *ordered_keys(const json_t *obj, size_t *n) {
    *n = json_object_size(obj);
    okey *ks = malloc((*n ? *n : 1) * sizeof *ks);
    if (!ks) return NULL;
    size_t i = 0;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        ks[i].key = k;
        ks[i].pos = i;
        ks[i].is_index = array_index_key(k, &ks[i].idx);
        i++;
    }
    qsort(ks, *n, sizeof *ks, okey_cmp);
    return ks;
}

static void json_quote(sbuf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    sb_add(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        const char *esc = NULL;
        char u[7];
        if (ch == '"') esc = "\\\"";
        else if (ch == '\\') esc = "\\\\";
        else if (ch == '\n') esc = "\\n";
        else if (ch == '\r') esc = "\\r";
        else if (ch == '\t') esc = "\\t";
        else if (ch == '\b') esc = "\\b";
        else if (ch == '\f') esc = "\\f";
        else if (ch < 0x20) {
            memcpy(u, "\\u00", 4);
            u[4] = hex[ch >> 4];
            u[5] = hex[ch & 15];
            u[6] = 0;
            esc = u;
        }
        if (esc) {
            sb_add(b, s + run, i - run);
            sb_puts(b, esc);
            run = i + 1;
        }
    }
    sb_add(b, s + run, n - run);
    sb_add(b, "\"", 1);
}

/* The |tojson filter. */
static void tojson(sbuf *b, const json_t *v) {
    char num[40];
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_STRING: json_quote(b, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: js_number((double)json_integer_value(v), num); sb_puts(b, num); break;
    case JSON_REAL: js_number(json_real_value(v), num); sb_puts(b, num); break;
    case JSON_TRUE: sb_puts(b, "true"); break;
    case JSON_FALSE: sb_puts(b, "false"); break;
    case JSON_NULL: sb_puts(b, "null"); break;
    case JSON_ARRAY: {
        sb_puts(b, "[");
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) sb_puts(b, ", ");
            tojson(b, json_array_get(v, i));
        }
        sb_puts(b, "]");
        break;
    }
    case JSON_OBJECT: {
        size_t n;
        okey *ks = ordered_keys(v, &n);
        if (!ks) {
            b->oom = 1;
            return;
        }
        sb_puts(b, "{");
        for (size_t i = 0; i < n; i++) {
            if (i) sb_puts(b, ", ");
            json_quote(b, ks[i].key, strlen(ks[i].key));
            sb_puts(b, ": ");
            tojson(b, json_object_get(v, ks[i].key));
        }
        sb_puts(b, "}");
        free(ks);
        break;
    }
    }
}

/* UTF-16 length of UTF-8 text (JavaScript's string.length). */
static size_t utf16_len(const char *s, size_t n) {
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch & 0xC0) != 0x80) len += ch >= 0xF0 ? 2 : 1;
    }
    return len;
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
    if (!truthy(req)) return GPTOSS_OK;
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
    if (!truthy(items)) {
        sb_puts(&c->out, "any[]");
    } else if (type_is(items, "string")) {
        sb_puts(&c->out, "string[]");
    } else if (type_is(items, "number") || type_is(items, "integer")) {
        sb_puts(&c->out, "number[]");
    } else if (type_is(items, "boolean")) {
        sb_puts(&c->out, "boolean[]");
    } else {
        sbuf saved = c->out;
        memset(&c->out, 0, sizeof c->out);
        gptoss_status st = render_type_at(c, items, depth, "%s", ".items");
        sbuf inner = c->out;
        c->out = saved;
        if (st || inner.oom) {
            free(inner.p);
            if (inner.oom) c->out.oom = 1;
            return st;
        }
        if ((inner.n == 15 && !memcmp(inner.p, "object | object", 15)) || utf16_len(inner.p, inner.n) > 50)
            sb_puts(&c->out, "any[]");
        else {
            sb_add(&c->out, inner.p ? inner.p : "", inner.n);
            sb_puts(&c->out, "[]");
        }
        free(inner.p);
    }
    if (truthy(json_object_get(spec, "nullable"))) sb_puts(&c->out, " | null");
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
        if (truthy(d)) {
            sb_puts(&c->out, "// ");
            if (concat(c, d, "description")) return c->err;
        }
        if (json_object_get(v, "default")) {
            sb_puts(&c->out, "                    // default: ");
            tojson(&c->out, json_object_get(v, "default"));
        }
        if (i + 1 < n) sb_puts(&c->out, " | \n");
    }
    return GPTOSS_OK;
}

static gptoss_status render_object_type(rctx *c, const json_t *spec, int depth) {
    const json_t *props = json_object_get(spec, "properties");
    if (!truthy(props)) {
        sb_puts(&c->out, "object");
        return GPTOSS_OK;
    }
    if (!json_is_object(props)) return fail(c, "properties: expected an object");
    size_t n;
    okey *ks = ordered_keys(props, &n);
    if (!ks) return c->err = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "render: out of memory");
    sb_puts(&c->out, "{\n");
    gptoss_status st = GPTOSS_OK;
    for (size_t i = 0; i < n && !st; i++) {
        int in;
        sb_puts(&c->out, ks[i].key);
        if ((st = in_required(c, json_object_get(spec, "required"), ks[i].key, &in))) break;
        if (!in) sb_puts(&c->out, "?");
        sb_puts(&c->out, ": \n                ");
        st = render_type_at(c, json_object_get(props, ks[i].key), depth, ".properties.%s", ks[i].key);
        if (!st && i + 1 < n) sb_puts(&c->out, ", ");
    }
    free(ks);
    if (!st) sb_puts(&c->out, "}");
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
    if (truthy(one_of)) return render_one_of(c, one_of, depth);
    if (type_is(spec, "string")) {
        const json_t *e = json_object_get(spec, "enum");
        if (truthy(e)) {
            if (!json_is_array(e)) return fail(c, "enum: expected an array");
            sb_puts(&c->out, "\"");
            if (js_join(c, e, "\" | \"", "enum")) return c->err;
            sb_puts(&c->out, "\"");
        } else {
            sb_puts(&c->out, "string");
            if (truthy(json_object_get(spec, "nullable"))) sb_puts(&c->out, " | null");
        }
    } else if (type_is(spec, "number") || type_is(spec, "integer")) {
        sb_puts(&c->out, "number");
    } else if (type_is(spec, "boolean")) {
        sb_puts(&c->out, "boolean");
    } else if (type_is(spec, "object")) {
        return render_object_type(c, spec, depth);
    } else {
        sb_puts(&c->out, "any");
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
        sb_puts(&c->out, "// ");
        if (concat(c, desc, "description")) return c->err;
        sb_puts(&c->out, "\n");
    }
    sb_puts(&c->out, "type ");
    sb_puts(&c->out, json_string_value(name));
    sb_puts(&c->out, " = ");
    const json_t *props = json_object_get(params, "properties");
    if (!truthy(params) || !truthy(props)) {
        sb_puts(&c->out, "() => any;\n\n");
        path_pop(c, old);
        return GPTOSS_OK;
    }
    path_push(c, ".parameters");
    if (!json_is_object(params)) return fail(c, "expected an object");
    if (!json_is_object(props)) return fail(c, "properties: expected an object");
    size_t n;
    okey *ks = ordered_keys(props, &n);
    if (!ks) return c->err = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "render: out of memory");
    sb_puts(&c->out, "(_: {\n");
    gptoss_status st = GPTOSS_OK;
    for (size_t i = 0; i < n && !st; i++) {
        const json_t *ps = json_object_get(props, ks[i].key);
        size_t pold = path_push(c, ".properties.%s", ks[i].key);
        if (!json_is_object(ps)) {
            st = fail(c, "expected a JSON schema object");
            break;
        }
        const json_t *pd = json_object_get(ps, "description");
        if (truthy(pd)) {
            sb_puts(&c->out, "// ");
            if ((st = concat(c, pd, "description"))) break;
            sb_puts(&c->out, "\n");
        }
        sb_puts(&c->out, ks[i].key);
        int in;
        if ((st = in_required(c, json_object_get(params, "required"), ks[i].key, &in))) break;
        if (!in) sb_puts(&c->out, "?");
        sb_puts(&c->out, ": ");
        path_pop(c, pold);
        if ((st = render_type_at(c, ps, 0, ".properties.%s", ks[i].key))) break;
        const json_t *def = json_object_get(ps, "default");
        if (def) {
            path_push(c, ".properties.%s", ks[i].key);
            if (truthy(json_object_get(ps, "enum"))) {
                sb_puts(&c->out, ", // default: ");
                st = concat(c, def, "default");
            } else if (truthy(json_object_get(ps, "oneOf"))) {
                sb_puts(&c->out, "// default: ");
                st = concat(c, def, "default");
            } else {
                sb_puts(&c->out, ", // default: ");
                tojson(&c->out, def);
            }
            if (st) break;
            path_pop(c, pold);
        }
        sb_puts(&c->out, ",\n");
    }
    free(ks);
    if (st) return st;
    sb_puts(&c->out, "}) => any;\n\n");
    path_pop(c, old);
    return GPTOSS_OK;
}

static gptoss_status render_tools(rctx *c, const json_t *tools) {
    sb_puts(&c->out, "# Tools\n\n## functions\n\nnamespace functions {\n\n");
    size_t i;
    json_t *tool;
    json_array_foreach(tools, i, tool) {
        size_t old = path_push(c, "tools[%zu]", i);
        if (render_function(c, tool)) return c->err;
        path_pop(c, old);
    }
    sb_puts(&c->out, "} // namespace functions");
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
    sbuf b = {0};
    sb_add(&b, "", 0);
    if (json_is_string(v)) {
        sb_add(&b, json_string_value(v), json_string_length(v));
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
            sb_add(&b, json_string_value(text), json_string_length(text));
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
        json_t *holder = truthy(f) ? f : tc;
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

static void put3(rctx *c, const char *a, const char *b, const char *d) {
    sb_puts(&c->out, a);
    sb_puts(&c->out, b);
    sb_puts(&c->out, d);
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
            json_quote(&c->out, m->content, strlen(m->content));
            sb_puts(&c->out, "<|end|>");
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
                if (truthy(f)) tc = f;
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
                put3(c, ct ? json_string_value(ct) : "json", "<|message|>", "");
                tojson(&c->out, json_object_get(tc, "arguments"));
                sb_puts(&c->out, "<|call|>");
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
    if (truthy(builtin)) {
        int browser = 0, python = 0;
        size_t i;
        json_t *t;
        json_array_foreach(builtin, i, t) {
            if (json_is_string(t) && !strcmp(json_string_value(t), "browser")) browser = 1;
            if (json_is_string(t) && !strcmp(json_string_value(t), "python")) python = 1;
        }
        sb_puts(&c->out, "# Tools\n\n");
        if (browser) sb_puts(&c->out, BROWSER_TOOL);
        if (python) sb_puts(&c->out, PYTHON_TOOL);
    }
    sb_puts(&c->out, "# Valid channels: analysis, commentary, final. Channel must be included for every message.");
    if (truthy(tools)) sb_puts(&c->out, "\nCalls to these tools must go to the commentary channel: 'functions'.");
    sb_puts(&c->out, "<|end|>");
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
    if (!st && (*dev || truthy(tools))) {
        sb_puts(&c->out, "<|start|>developer<|message|>");
        if (*dev) put3(c, "# Instructions\n\n", dev, "\n\n");
        if (truthy(tools)) st = render_tools(c, tools);
        sb_puts(&c->out, "<|end|>");
    }
    if (!st) st = render_messages(c, ms, n, first, !opt || opt->add_generation_prompt);
    if (!st && (!opt || opt->add_generation_prompt)) sb_puts(&c->out, "<|start|>assistant");
    for (size_t i = 0; i < n; i++) free(ms[i].content);
    free(ms);
    return st;
}

gptoss_status gptoss_render_chat(const char *request_json, size_t len, const gptoss_render_options *opt,
                                 char **text) {
    if (!request_json || !text) return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "render: NULL argument");
    *text = NULL;
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
    rctx c;
    memset(&c, 0, sizeof c);
    gptoss_status st = render_request(&c, req, opt, date);
    json_decref(req);
    if (!st && c.out.oom) st = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "render: out of memory");
    if (st) {
        free(c.out.p);
        return st;
    }
    *text = c.out.p ? c.out.p : strdup("");
    return *text ? GPTOSS_OK : gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "render: out of memory");
}
