/* membw.c - host memory bandwidth probe: a multi-threaded streaming read over
 * a buffer much larger than the caches, so `gptoss bench` can say what share
 * of the machine's bandwidth a decode step achieves. */
#include "membw.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const uint64_t *p;
    size_t n;       /* words */
    uint64_t sum;
    int init;       /* 1: first-touch the chunk instead of reading it */
} chunk;

/* Eight independent accumulators so the loads can stream; the same loop is
 * compiled twice, the AVX2 copy used when the CPU has it (wider loads reach
 * noticeably more bandwidth per core than the SSE2 baseline). */
#define SUM_BODY                                                   \
    uint64_t a[8] = {0};                                           \
    size_t i = 0;                                                  \
    for (; i + 8 <= n; i += 8)                                     \
        for (int k = 0; k < 8; k++) a[k] += p[i + k];              \
    for (; i < n; i++) a[0] += p[i];                               \
    uint64_t s = 0;                                                \
    for (int k = 0; k < 8; k++) s += a[k];                         \
    return s;

static uint64_t sum_base(const uint64_t *p, size_t n) { SUM_BODY }
#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint64_t *p, size_t n) { SUM_BODY }
__attribute__((target("avx512f"))) static uint64_t sum_avx512(const uint64_t *p, size_t n) { SUM_BODY }
#endif

static void *worker(void *arg) {
    chunk *c = arg;
    if (c->init) {
        memset((void *)c->p, 0x5a, c->n * sizeof *c->p);
        return NULL;
    }
#if defined(__x86_64__) || defined(__i386__)
    if (__builtin_cpu_supports("avx512f")) {
        c->sum = sum_avx512(c->p, c->n);
        return NULL;
    }
    if (__builtin_cpu_supports("avx2")) {
        c->sum = sum_avx2(c->p, c->n);
        return NULL;
    }
#endif
    c->sum = sum_base(c->p, c->n);
    return NULL;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Runs one pass with every thread; returns its wall time or -1. */
static double pass(const uint64_t *buf, size_t words, int nt, int init, uint64_t *sink) {
    pthread_t tid[512];
    chunk ch[512];
    size_t per = (words + (size_t)nt - 1) / (size_t)nt;
    double t0 = now();
    int started = 0;
    for (int t = 0; t < nt; t++) {
        size_t lo = (size_t)t * per, hi = lo + per < words ? lo + per : words;
        ch[t] = (chunk){buf + (lo < words ? lo : words), lo < hi ? hi - lo : 0, 0, init};
        if (pthread_create(&tid[t], NULL, worker, &ch[t]) != 0) break;
        started++;
    }
    for (int t = 0; t < started; t++) {
        pthread_join(tid[t], NULL);
        *sink += ch[t].sum;
    }
    return started == nt ? now() - t0 : -1.0;
}

double membw_measure(int n_threads, size_t bytes, int reps, size_t *buffer_bytes) {
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    if (n_threads > 512) n_threads = 512;
    if (reps <= 0) reps = 3;
    if (bytes == 0) {
        long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE), pages = sysconf(_SC_AVPHYS_PAGES),
             psz = sysconf(_SC_PAGESIZE);
        size_t llc = l3 > 0 ? (size_t)l3 : 0;
        bytes = (size_t)1 << 30;
        if (4 * llc > bytes) bytes = 4 * llc;
        if (pages > 0 && psz > 0 && bytes > (size_t)pages * (size_t)psz / 4)
            bytes = (size_t)pages * (size_t)psz / 4;
    }
    bytes &= ~(size_t)4095;
    if (bytes < ((size_t)1 << 20)) return -1.0;
    uint64_t *buf = aligned_alloc(4096, bytes);
    if (!buf) return -1.0;
    size_t words = bytes / sizeof *buf;
    volatile uint64_t keep;
    uint64_t sink = 0;
    double best = -1.0;
    if (pass(buf, words, n_threads, 1, &sink) > 0) {
        for (int r = 0; r < reps; r++) {
            double t = pass(buf, words, n_threads, 0, &sink);
            if (t > 0 && (best < 0 || t < best)) best = t;
        }
    }
    keep = sink;
    (void)keep;
    free(buf);
    if (buffer_bytes) *buffer_bytes = bytes;
    return best > 0 ? (double)bytes / best / 1e9 : -1.0;
}
