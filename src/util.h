/* util.h - error reporting and small helpers shared by the library. */
#ifndef GPTOSS_UTIL_H
#define GPTOSS_UTIL_H

#include "gptoss.h"
#include <stddef.h>
#include <stdint.h>

/* Records a one-line message for gptoss_last_error() and returns s. */
gptoss_status gptoss_set_error(gptoss_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* bf16 <-> fp32 (bf16 is the upper half of an fp32). Rounding: nearest-even. */
static inline float bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = { (uint32_t)h << 16 };
    return v.f;
}
static inline uint16_t f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = { f };
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40); /* NaN */
    v.u += 0x7fffu + ((v.u >> 16) & 1u);
    return (uint16_t)(v.u >> 16);
}

/* A growable NUL-terminated byte string. Zero-initialise; free p when done. */
typedef struct {
    char *p;
    size_t len, cap;
} strbuf;
/* Appends n bytes; returns -1 (string unchanged) when memory runs out. */
int strbuf_add(strbuf *b, const char *s, size_t n);
/* The text so far ("" before the first append). */
static inline const char *strbuf_str(const strbuf *b) { return b->p ? b->p : ""; }

/* Reads a whole file into a NUL-terminated buffer (caller frees). */
gptoss_status read_file(const char *path, char **data, size_t *len);
/* Monotonic clock in seconds. */
double now_seconds(void);
/* Number of online CPU cores. */
int cpu_count(void);

#endif
