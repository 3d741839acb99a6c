/* server.h - `gptoss serve`: an OpenAI-compatible HTTP server (libmicrohttpd,
 * one thread per connection) in front of the continuous-batching scheduler.
 * Routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models[/ID],
 * GET /health, POST /tokenize, GET /metrics. */
#ifndef GPTOSS_SERVER_SERVER_H
#define GPTOSS_SERVER_SERVER_H

#include "gptoss.h"

#include <stdatomic.h>
#include <stddef.h>

typedef struct {
    const char *model_dir;
    const char *model_name;  /* id in the API; NULL = the folder's name */
    const char *host;        /* NULL = 127.0.0.1 */
    int port;                /* 0 = any free port (printed) */
    const char *api_key;     /* NULL = no authentication */
    int parallel;            /* sequences decoded together (default 4) */
    int max_queue;           /* requests waiting beyond those (default 64) */
    size_t max_body;         /* request body limit in bytes (default 8 MiB) */
    const char *device;      /* "cpu" / "cuda" / NULL */
    int threads, ctx;        /* CPU threads, context per sequence (0 = defaults) */
    const char *script_path; /* testing: replay these tokens instead of sampling */
    int sampling_threads;    /* threads sampling a batch's tokens (0 = min(8, cores)) */
    int throttle_ms;         /* testing: pause after each scheduler step */
    /* One line per event (start, each request); the library itself never prints. */
    void (*log)(void *user, const char *line);
    void *log_user;
    atomic_int *stop;        /* server_run returns once this becomes non-zero */
} server_config;

void server_config_default(server_config *c);
/* Loads the model, serves until *c->stop, shuts down cleanly. */
gptoss_status server_run(const server_config *c);

#endif
