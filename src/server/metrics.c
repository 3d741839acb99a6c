/* metrics.c - GET /metrics: counters, gauges and histograms in the
 * Prometheus text exposition format 0.0.4 (see metrics.h). */
#include "server/metrics.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Upper bounds (seconds) of the histogram buckets. */
static const double bounds[METRICS_BUCKETS] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

void metrics_init(metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
}

void metrics_destroy(metrics *m) { pthread_mutex_destroy(&m->mu); }

static void observe(metrics_hist *h, double v) {
    int b = 0;
    while (b < METRICS_BUCKETS && v > bounds[b]) b++;
    h->count[b]++;
    h->n++;
    h->sum += v;
}

void metrics_request(metrics *m, const char *route, int status) {
    pthread_mutex_lock(&m->mu);
    int i = 0;
    while (i < m->n_req && !(m->req[i].status == status && !strcmp(m->req[i].route, route))) i++;
    if (i == m->n_req && i < METRICS_MAX_SERIES) {
        m->req[i].route = route;
        m->req[i].status = status;
        m->n_req++;
    }
    if (i < m->n_req) m->req[i].n++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_observe_duration(metrics *m, double seconds) {
    pthread_mutex_lock(&m->mu);
    observe(&m->duration, seconds);
    pthread_mutex_unlock(&m->mu);
}

void metrics_generation(metrics *m, int prompt, int cached, int generated, double ttft) {
    pthread_mutex_lock(&m->mu);
    m->prompt_tokens += (uint64_t)(prompt > 0 ? prompt : 0);
    m->cached_tokens += (uint64_t)(cached > 0 ? cached : 0);
    m->generated_tokens += (uint64_t)(generated > 0 ? generated : 0);
    if (ttft >= 0) observe(&m->ttft, ttft);
    pthread_mutex_unlock(&m->mu);
}

typedef struct {
    strbuf b;
    int oom;
} out;

static void put(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(out *o, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof line) n = (int)sizeof line - 1;
    if (strbuf_add(&o->b, line, (size_t)n)) o->oom = 1;
}

static void head(out *o, const char *name, const char *type, const char *help) {
    put(o, "# HELP gptoss_%s %s\n# TYPE gptoss_%s %s\n", name, help, name, type);
}

static void one(out *o, const char *name, const char *type, const char *help, uint64_t v) {
    head(o, name, type, help);
    put(o, "gptoss_%s %llu\n", name, (unsigned long long)v);
}

static void hist(out *o, const char *name, const char *help, const metrics_hist *h) {
    head(o, name, "histogram", help);
    uint64_t cum = 0;
    for (int b = 0; b < METRICS_BUCKETS; b++) {
        cum += h->count[b];
        put(o, "gptoss_%s_bucket{le=\"%g\"} %llu\n", name, bounds[b], (unsigned long long)cum);
    }
    put(o, "gptoss_%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)h->n);
    put(o, "gptoss_%s_sum %.6f\ngptoss_%s_count %llu\n", name, h->sum, name, (unsigned long long)h->n);
}

/* A label value with \, " and newlines escaped (truncated to fit dst). */
static const char *label(char *dst, size_t cap, const char *s) {
    size_t k = 0;
    for (; s && *s && k + 3 < cap; s++) {
        if (*s == '\\' || *s == '"') dst[k++] = '\\';
        if (*s == '\n') {
            dst[k++] = '\\';
            dst[k++] = 'n';
        } else {
            dst[k++] = *s;
        }
    }
    dst[k] = 0;
    return dst;
}

char *metrics_render(metrics *m, const metrics_extra *x) {
    out o = {{0}, 0};
    pthread_mutex_lock(&m->mu);
    head(&o, "requests_total", "counter", "HTTP requests answered, by route and status.");
    for (int i = 0; i < m->n_req; i++)
        put(&o, "gptoss_requests_total{route=\"%s\",status=\"%d\"} %llu\n", m->req[i].route,
            m->req[i].status, (unsigned long long)m->req[i].n);
    one(&o, "prompt_tokens_total", "counter", "Prompt tokens of finished generations.", m->prompt_tokens);
    one(&o, "generated_tokens_total", "counter", "Tokens generated (completion tokens).", m->generated_tokens);
    one(&o, "cached_prompt_tokens_total", "counter", "Prompt tokens reused from a slot's cache (prefix reuse).",
        m->cached_tokens);
    hist(&o, "time_to_first_token_seconds", "From request arrival to the first generated token.",
         &m->ttft);
    hist(&o, "request_duration_seconds",
         "Generation requests (chat and completions), from arrival to the last byte sent.", &m->duration);
    pthread_mutex_unlock(&m->mu);
    one(&o, "requests_running", "gauge", "Requests holding a sequence slot.", (uint64_t)x->running);
    one(&o, "requests_waiting", "gauge", "Requests queued for a slot.", (uint64_t)x->waiting);
    one(&o, "sequences_max", "gauge", "Sequences decoded together (--parallel).", (uint64_t)x->sequences_max);
    one(&o, "decode_steps_total", "counter", "Batched decode steps.", x->decode_steps);
    one(&o, "decode_batch_size_sum", "counter",
        "Sequences decoded, summed over decode steps (divide by decode_steps_total for the mean batch).",
        x->decode_rows);
    char a[128], b[64], c[128];
    head(&o, "model_info", "gauge", "The served model, backend and kernels (value always 1).");
    put(&o, "gptoss_model_info{model=\"%s\",backend=\"%s\",kernels=\"%s\"} 1\n", label(a, sizeof a, x->model),
        label(b, sizeof b, x->backend), label(c, sizeof c, x->kernels));
    if (o.oom) {
        free(o.b.p);
        return NULL;
    }
    return o.b.p;
}
