/* harmony_json.c - see harmony_json.h. */
#include "harmony_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- buffers */

void hj_add(hj_buf *b, const char *s, size_t n) {
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
void hj_puts(hj_buf *b, const char *s) { hj_add(b, s, strlen(s)); }

/* ------------------------------------------------ JavaScript-like values */

/* Number.prototype.toString for a finite double. */
void hj_number(double x, char out[40]) {
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
int hj_truthy(const json_t *v) {
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
int hj_scalar(const json_t *v, hj_buf *b) {
    char num[40];
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_STRING: hj_add(b, json_string_value(v), json_string_length(v)); return 1;
    case JSON_INTEGER: hj_number((double)json_integer_value(v), num); hj_puts(b, num); return 1;
    case JSON_REAL: hj_number(json_real_value(v), num); hj_puts(b, num); return 1;
    case JSON_TRUE: hj_puts(b, "true"); return 1;
    case JSON_FALSE: hj_puts(b, "false"); return 1;
    default: return 0;
    }
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


static int okey_cmp(const void *a, const void *b) {
    const hj_key *x = a, *y = b;
    if (x->is_index != y->is_index) return x->is_index ? -1 : 1;
    if (x->is_index) return x->idx < y->idx ? -1 : x->idx > y->idx;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Keys of obj in JavaScript property order. Caller frees. NULL on OOM. */
hj_key *hj_ordered_keys(const json_t *obj, size_t *n) {
    *n = json_object_size(obj);
    hj_key *ks = malloc((*n ? *n : 1) * sizeof *ks);
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

void hj_quote(hj_buf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    hj_add(b, "\"", 1);
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
            hj_add(b, s + run, i - run);
            hj_puts(b, esc);
            run = i + 1;
        }
    }
    hj_add(b, s + run, n - run);
    hj_add(b, "\"", 1);
}

/* The |tojson filter. */
void hj_tojson(hj_buf *b, const json_t *v) {
    char num[40];
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_STRING: hj_quote(b, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: hj_number((double)json_integer_value(v), num); hj_puts(b, num); break;
    case JSON_REAL: hj_number(json_real_value(v), num); hj_puts(b, num); break;
    case JSON_TRUE: hj_puts(b, "true"); break;
    case JSON_FALSE: hj_puts(b, "false"); break;
    case JSON_NULL: hj_puts(b, "null"); break;
    case JSON_ARRAY: {
        hj_puts(b, "[");
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) hj_puts(b, ", ");
            hj_tojson(b, json_array_get(v, i));
        }
        hj_puts(b, "]");
        break;
    }
    case JSON_OBJECT: {
        size_t n;
        hj_key *ks = hj_ordered_keys(v, &n);
        if (!ks) {
            b->oom = 1;
            return;
        }
        hj_puts(b, "{");
        for (size_t i = 0; i < n; i++) {
            if (i) hj_puts(b, ", ");
            hj_quote(b, ks[i].key, strlen(ks[i].key));
            hj_puts(b, ": ");
            hj_tojson(b, json_object_get(v, ks[i].key));
        }
        hj_puts(b, "}");
        free(ks);
        break;
    }
    }
}

/* UTF-16 length of UTF-8 text (JavaScript's string.length). */
size_t hj_utf16_len(const char *s, size_t n) {
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch & 0xC0) != 0x80) len += ch >= 0xF0 ? 2 : 1;
    }
    return len;
}
