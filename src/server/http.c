/* http.c - libmicrohttpd front end: routing, authentication, body limits,
 * JSON and SSE responses, the request log, start-up and shutdown. One thread
 * per connection: a streaming response's reader blocks until the scheduler
 * has produced more text, and notices clients that hang up. */
#include "server/api.h"
#include "server/server.h"
#include "util.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    server_config cfg;
    srv_ctx ctx;
    atomic_int closing;
    char name_buf[256], backend[64], kernels[128];
    metrics metrics;
} server;

typedef struct {
    char method[8], path[160];
    char *body;
    size_t len, cap;
    int too_large, status;
    const char *route; /* the metrics label: a route's path or "other" */
    double t0;
    api_req *req;
} conn;

static void logf_(server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(server *s, const char *fmt, ...) {
    if (!s->cfg.log) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    s->cfg.log(s->cfg.log_user, line);
}

void server_config_default(server_config *c) {
    memset(c, 0, sizeof *c);
    c->host = "127.0.0.1";
    c->port = 8080;
    c->parallel = 4;
    c->max_queue = 64;
    c->max_body = 8u << 20;
}

static enum MHD_Result send_body(struct MHD_Connection *mc, conn *cc, int status, char *body,
                                 const char *type) {
    if (!body) {
        status = 500;
        body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                      "\"param\":null,\"code\":null}}");
        if (!body) return MHD_NO;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(mc, (unsigned)status, resp);
    MHD_destroy_response(resp);
    cc->status = status;
    return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *mc, conn *cc, int status, char *body) {
    return send_body(mc, cc, status, body, "application/json");
}

static enum MHD_Result send_error(struct MHD_Connection *mc, conn *cc, const api_error *e) {
    return send_json(mc, cc, e->status, api_error_json(e));
}

static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    ssize_t n = api_req_read(cls, buf, max);
    if (n > 0) return n;
    return n == 0 ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void sse_free(void *cls) {
    api_req_cancel(cls); /* no effect once finished; stops a generation nobody reads */
    api_req_unref(cls);
}

static int authorized(server *s, struct MHD_Connection *mc) {
    if (!s->cfg.api_key || !*s->cfg.api_key) return 1;
    const char *h = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7)) return 0;
    h += 7;
    size_t a = strlen(h), b = strlen(s->cfg.api_key);
    unsigned diff = (unsigned)(a != b);
    for (size_t i = 0; i < a && i < b; i++) diff |= (unsigned char)(h[i] ^ s->cfg.api_key[i]);
    return diff == 0;
}

static enum MHD_Result generate(server *s, struct MHD_Connection *mc, conn *cc, int kind) {
    api_error e;
    if (atomic_load(&s->closing)) {
        api_fail(&e, 503, "server_error", NULL, NULL, "the server is shutting down");
        return send_error(mc, cc, &e);
    }
    api_req *r = api_req_new(&s->ctx, kind);
    if (!r) {
        api_fail(&e, 500, "server_error", NULL, NULL, "out of memory");
        return send_error(mc, cc, &e);
    }
    cc->req = r;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci) api_req_set_fd(r, ci->connect_fd);
    ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char who[INET6_ADDRSTRLEN] = "";
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, who, sizeof who);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, who, sizeof who);
    }
    api_req_set_client(r, who);
    if (api_req_parse(r, cc->body, cc->len, &e) || api_req_submit(r, &e)) return send_error(mc, cc, &e);
    if (api_req_is_stream(r)) {
        struct MHD_Response *resp =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, sse_reader, r, sse_free);
        if (!resp) {
            api_req_cancel(r);
            return MHD_NO;
        }
        api_req_ref(r); /* the response's reference, dropped by sse_free */
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        enum MHD_Result ret = MHD_queue_response(mc, 200, resp);
        MHD_destroy_response(resp);
        cc->status = 200;
        return ret;
    }
    int status = 0;
    char *body = api_req_wait_body(r, &status);
    if (!body) { /* the client hung up: close */
        cc->status = 499;
        return MHD_NO;
    }
    return send_json(mc, cc, status, body);
}

static enum MHD_Result send_metrics(server *s, struct MHD_Connection *mc, conn *cc) {
    metrics_extra x = {.sequences_max = s->cfg.parallel, .model = s->ctx.model_name,
                       .backend = s->backend, .kernels = s->kernels};
    sched_counts(s->ctx.sched, &x.running, &x.waiting);
    unsigned long long steps, rows;
    sched_decode_stats(s->ctx.sched, &steps, &rows);
    x.decode_steps = steps;
    x.decode_rows = rows;
    return send_body(mc, cc, 200, metrics_render(&s->metrics, &x), "text/plain; version=0.0.4; charset=utf-8");
}

static const char *route_label(const char *p) {
    static const char *const known[] = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health",
                                        "/metrics", "/tokenize", "/v1/tokenize"};
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (!strcmp(p, known[i])) return known[i];
    return !strncmp(p, "/v1/models/", 11) ? "/v1/models/{id}" : "other";
}

static enum MHD_Result route(server *s, struct MHD_Connection *mc, conn *cc) {
    api_error e;
    const char *p = cc->path;
    int get = !strcmp(cc->method, "GET"), post = !strcmp(cc->method, "POST");
    cc->route = route_label(p);
    if (!strcmp(p, "/health")) {
        if (!get) goto not_allowed;
        int active, queued;
        sched_counts(s->ctx.sched, &active, &queued);
        char *b = malloc(256);
        if (b)
            snprintf(b, 256, "{\"status\":\"ok\",\"model\":\"%s\",\"active\":%d,\"queued\":%d,\"parallel\":%d}",
                     s->ctx.model_name, active, queued, s->cfg.parallel);
        return send_json(mc, cc, 200, b);
    }
    int is_chat = !strcmp(p, "/v1/chat/completions"), is_cmpl = !strcmp(p, "/v1/completions");
    int is_models = !strcmp(p, "/v1/models"), is_model = !strncmp(p, "/v1/models/", 11);
    int is_tok = !strcmp(p, "/tokenize") || !strcmp(p, "/v1/tokenize"), is_metrics = !strcmp(p, "/metrics");
    if (!is_chat && !is_cmpl && !is_models && !is_model && !is_tok && !is_metrics) {
        api_fail(&e, 404, "not_found_error", NULL, "not_found", "no route %s %s", cc->method, p);
        return send_error(mc, cc, &e);
    }
    if (!authorized(s, mc)) {
        api_fail(&e, 401, "invalid_request_error", NULL, "invalid_api_key",
                 "missing or incorrect API key (send 'Authorization: Bearer KEY')");
        return send_error(mc, cc, &e);
    }
    if ((is_models || is_model || is_metrics) ? !get : !post) goto not_allowed;
    if (cc->too_large) {
        api_fail(&e, 413, "invalid_request_error", NULL, "request_too_large",
                 "the request body is larger than %zu bytes", s->cfg.max_body);
        return send_error(mc, cc, &e);
    }
    if (is_metrics) return send_metrics(s, mc, cc);
    if (is_models || is_model) {
        char *b = api_models(&s->ctx, is_model ? p + 11 : NULL, &e);
        return b ? send_json(mc, cc, 200, b) : send_error(mc, cc, &e);
    }
    if (is_tok) {
        char *b = api_tokenize(&s->ctx, cc->body, cc->len, &e);
        return b ? send_json(mc, cc, 200, b) : send_error(mc, cc, &e);
    }
    return generate(s, mc, cc, is_chat ? API_CHAT : API_COMPLETION);
not_allowed:
    api_fail(&e, 405, "invalid_request_error", NULL, "method_not_allowed", "%s is not allowed on %s",
             cc->method, p);
    return send_error(mc, cc, &e);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *mc, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls) {
    (void)version;
    server *s = cls;
    conn *cc = *con_cls;
    if (!cc) {
        cc = calloc(1, sizeof *cc);
        if (!cc) return MHD_NO;
        snprintf(cc->method, sizeof cc->method, "%s", method);
        snprintf(cc->path, sizeof cc->path, "%s", url);
        cc->t0 = now_seconds();
        const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->cfg.max_body) cc->too_large = 1;
        *con_cls = cc;
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (cc->too_large) return MHD_YES; /* read and dropped; answered with 413 */
        if (cc->len + n > s->cfg.max_body) {
            cc->too_large = 1;
            free(cc->body);
            cc->body = NULL;
            cc->len = cc->cap = 0;
            return MHD_YES;
        }
        if (cc->len + n + 1 > cc->cap) {
            size_t cap = cc->cap ? cc->cap : 4096;
            while (cap < cc->len + n + 1) cap *= 2;
            char *b = realloc(cc->body, cap);
            if (!b) return MHD_NO;
            cc->body = b;
            cc->cap = cap;
        }
        memcpy(cc->body + cc->len, upload, n);
        cc->len += n;
        cc->body[cc->len] = 0;
        return MHD_YES;
    }
    enum MHD_Result ret = route(s, mc, cc);
    /* counted once answered (before the client can see the answer and scrape) */
    metrics_request(&s->metrics, cc->route, cc->status ? cc->status : 500);
    return ret;
}

static void completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                      enum MHD_RequestTerminationCode toe) {
    (void)mc;
    server *s = cls;
    conn *cc = *con_cls;
    if (!cc) return;
    *con_cls = NULL;
    double dt = now_seconds() - cc->t0;
    if (cc->req) {
        metrics_observe_duration(&s->metrics, dt);
        int prompt, completion;
        double ttft;
        const char *finish;
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) api_req_cancel(cc->req);
        api_req_summary(cc->req, &prompt, &completion, &ttft, &finish);
        logf_(s, "%s %s %d prompt=%d completion=%d ttft=%.3fs time=%.3fs finish=%s%s", cc->method,
              cc->path, cc->status, prompt, completion, ttft, dt, finish ? finish : "-",
              toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (client gone)");
        api_req_unref(cc->req);
    } else {
        logf_(s, "%s %s %d time=%.3fs%s", cc->method, cc->path, cc->status, dt,
              toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (client gone)");
    }
    free(cc->body);
    free(cc);
}

gptoss_status server_run(const server_config *cfg) {
    server *s = calloc(1, sizeof *s);
    if (!s) return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "server: out of memory");
    s->cfg = *cfg;
    if (!s->cfg.host) s->cfg.host = "127.0.0.1";
    if (s->cfg.parallel < 1) s->cfg.parallel = 4;
    if (s->cfg.max_queue < 0) s->cfg.max_queue = 64;
    if (!s->cfg.max_body) s->cfg.max_body = 8u << 20;
    srv_ctx *c = &s->ctx;
    metrics_init(&s->metrics);
    c->metrics = &s->metrics;
    gptoss_tokenizer *tok = NULL;
    gptoss_model *model = NULL;
    struct MHD_Daemon *d = NULL;
    gptoss_status st;
    if (!cfg->model_dir) {
        st = gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "serve: no model folder");
        goto done;
    }
    if (cfg->model_name) {
        snprintf(s->name_buf, sizeof s->name_buf, "%s", cfg->model_name);
    } else { /* the folder's last component */
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%s", cfg->model_dir);
        size_t n = strlen(tmp);
        while (n > 1 && tmp[n - 1] == '/') tmp[--n] = 0;
        const char *slash = strrchr(tmp, '/');
        snprintf(s->name_buf, sizeof s->name_buf, "%s", slash && slash[1] ? slash + 1 : tmp);
    }
    c->model_name = s->name_buf;
    gptoss_model_params mp;
    gptoss_model_params_default(&mp);
    mp.device = cfg->device;
    mp.n_threads = cfg->threads;
    mp.max_context = cfg->ctx;
    mp.max_sequences = s->cfg.parallel;
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    const char *host = !strcmp(s->cfg.host, "localhost") ? "127.0.0.1" : s->cfg.host;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC;
    const struct sockaddr *sa;
    if (inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)cfg->port);
        sa = (const struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)cfg->port);
        sa = (const struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        st = gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "--host: '%s' is not an IPv4/IPv6 address", host);
        goto done;
    }
    if ((st = gptoss_tokenizer_load(cfg->model_dir, &tok)) != GPTOSS_OK) goto done;
    if ((st = gptoss_model_load(cfg->model_dir, &mp, &model)) != GPTOSS_OK) goto done;
    gptoss_model_info info;
    gptoss_model_get_info(model, &info);
    snprintf(s->backend, sizeof s->backend, "%s", info.backend ? info.backend : "");
    snprintf(s->kernels, sizeof s->kernels, "%s", info.kernels ? info.kernels : "");
    c->tok = tok;
    c->max_context = info.max_context;
    c->vocab = info.vocab_size;
    if (cfg->script_path &&
        (st = chatloop_load_scripts(tok, cfg->script_path, &c->scripts, &c->script_lens, &c->n_scripts)) != GPTOSS_OK)
        goto done;
    if ((st = sched_create(model, tok, s->cfg.parallel, s->cfg.max_queue, cfg->sampling_threads,
                           cfg->throttle_ms, &c->sched)) != GPTOSS_OK)
        goto done;

    d = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, handler, s, MHD_OPTION_SOCK_ADDR, sa,
                         MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_CONNECTION_TIMEOUT,
                         (unsigned)600, MHD_OPTION_CONNECTION_LIMIT, (unsigned)4096,
                         MHD_OPTION_THREAD_STACK_SIZE, (size_t)(4u << 20), MHD_OPTION_END);
    if (!d) {
        st = gptoss_set_error(GPTOSS_ERR_IO, "cannot listen on %s port %d (in use?)", host, cfg->port);
        goto done;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    int port = di ? di->port : cfg->port;
    logf_(s, "gptoss serve: model '%s' (%s, %s, context %d, %d parallel%s) on http://%s%s%s:%d/v1",
          c->model_name, info.backend, info.kernels ? info.kernels : "", c->max_context,
          s->cfg.parallel, c->n_scripts ? ", SCRIPTED" : "", sa->sa_family == AF_INET6 ? "[" : "", host,
          sa->sa_family == AF_INET6 ? "]" : "", port);
    while (!cfg->stop || !atomic_load(cfg->stop)) {
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    logf_(s, "gptoss serve: shutting down");
    atomic_store(&s->closing, 1);
    MHD_socket ls = MHD_quiesce_daemon(d);
    sched_stop(c->sched); /* every generation ends; waiting connections wake up */
    MHD_stop_daemon(d);
    if (ls != MHD_INVALID_SOCKET) close(ls);
    st = GPTOSS_OK;
done:
    sched_destroy(c->sched);
    chatloop_scripts_free(c->scripts, c->script_lens, c->n_scripts);
    if (model) gptoss_model_free(model);
    if (tok) gptoss_tokenizer_free(tok);
    metrics_destroy(&s->metrics);
    free(s);
    return st;
}
