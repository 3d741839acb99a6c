/* harmony_json.h - the text buffer and the JavaScript-flavoured JSON helpers
 * of the harmony renderer (harmony_render.c): values printed as
 * @huggingface/jinja prints them. Internal to the library. */
#ifndef GPTOSS_HARMONY_JSON_H
#define GPTOSS_HARMONY_JSON_H

#include <jansson.h>
#include <stddef.h>

/* Growable NUL-terminated text; oom is set (and further appends ignored) when
 * an allocation fails. Zero-initialise; free p. */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} hj_buf;

void hj_add(hj_buf *b, const char *s, size_t n);
void hj_puts(hj_buf *b, const char *s);

/* Number.prototype.toString of a finite double. */
void hj_number(double x, char out[40]);
/* jinja truthiness (empty containers and strings are false). */
int hj_truthy(const json_t *v);
/* Appends a scalar as JavaScript's String(value); 0 for null/containers. */
int hj_scalar(const json_t *v, hj_buf *b);

/* An object key in JavaScript property order. */
typedef struct {
    const char *key;
    unsigned long idx;
    size_t pos;
    int is_index;
} hj_key;
/* Keys of obj in JavaScript property order (array indices first, ascending,
 * then insertion order). Caller frees. NULL on OOM. */
hj_key *hj_ordered_keys(const json_t *obj, size_t *n);

/* A JSON string literal of s[0..n) (non-ASCII kept as is). */
void hj_quote(hj_buf *b, const char *s, size_t n);
/* The |tojson filter: ", " and ": " separators, JavaScript numbers. */
void hj_tojson(hj_buf *b, const json_t *v);
/* UTF-16 length of UTF-8 text (JavaScript's string.length). */
size_t hj_utf16_len(const char *s, size_t n);

#endif
