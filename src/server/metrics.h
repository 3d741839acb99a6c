/* metrics.h - counters for GET /metrics (Prometheus text format 0.0.4).
 * Updated from the connection threads and the scheduler thread; every
 * update and the rendering take the one mutex, so readers see a consistent
 * snapshot. */
#ifndef GPTOSS_SERVER_METRICS_H
#define GPTOSS_SERVER_METRICS_H

#include <pthread.h>
#include <stdint.h>

#define METRICS_MAX_SERIES 64 /* distinct (route, status) pairs kept */
#define METRICS_BUCKETS 10

typedef struct {
    uint64_t count[METRICS_BUCKETS + 1]; /* per bucket (not cumulative), last = +Inf */
    uint64_t n;
    double sum;
} metrics_hist;

typedef struct {
    pthread_mutex_t mu;
    struct {
        const char *route; /* a static string */
        int status;
        uint64_t n;
    } req[METRICS_MAX_SERIES];
    int n_req;
    uint64_t prompt_tokens, generated_tokens, cached_tokens;
    metrics_hist ttft, duration;
} metrics;

void metrics_init(metrics *m);
void metrics_destroy(metrics *m);
/* An answered request; route: a static string (the route's path, or "other"). */
void metrics_request(metrics *m, const char *route, int status);
/* A generation request's time from arrival to its last byte. */
void metrics_observe_duration(metrics *m, double seconds);
/* A finished generation's token counts; ttft < 0 when no token came. */
void metrics_generation(metrics *m, int prompt, int cached, int generated, double ttft);

typedef struct {
    int running, waiting, sequences_max;
    uint64_t decode_steps, decode_rows;
    const char *model, *backend, *kernels;
} metrics_extra;

/* The exposition text (caller frees), NULL when out of memory. */
char *metrics_render(metrics *m, const metrics_extra *x);

#endif
