/* util.c - error reporting and small helpers shared by the library. */
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char last_error[1024];

gptoss_status gptoss_set_error(gptoss_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return s;
}

const char *gptoss_last_error(void) { return last_error; }

void gptoss_free(void *p) { free(p); }

const char *gptoss_status_name(gptoss_status s) {
    switch (s) {
    case GPTOSS_OK: return "ok";
    case GPTOSS_ERR_INVALID_ARGUMENT: return "invalid argument";
    case GPTOSS_ERR_IO: return "i/o error";
    case GPTOSS_ERR_FORMAT: return "format error";
    case GPTOSS_ERR_UNSUPPORTED: return "unsupported";
    case GPTOSS_ERR_OUT_OF_MEMORY: return "out of memory";
    case GPTOSS_ERR_CONTEXT_FULL: return "context full";
    case GPTOSS_ERR_BACKEND: return "backend error";
    case GPTOSS_ERR_CANCELLED: return "cancelled";
    }
    return "unknown status";
}

int strbuf_add(strbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

gptoss_status read_file(const char *path, char **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return gptoss_set_error(GPTOSS_ERR_IO, "%s: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) goto io;
    long size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) goto io;
    char *buf = malloc((size_t)size + 1);
    if (!buf) {
        fclose(f);
        return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "%s: cannot allocate %ld bytes", path, size);
    }
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        goto io;
    }
    fclose(f);
    buf[size] = 0;
    *data = buf;
    if (len) *len = (size_t)size;
    return GPTOSS_OK;
io:
    fclose(f);
    return gptoss_set_error(GPTOSS_ERR_IO, "%s: read failed: %s", path, strerror(errno));
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
