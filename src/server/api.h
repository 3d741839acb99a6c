/* api.h - the OpenAI-compatible API on top of the scheduler: request parsing
 * and validation (api_parse.c) and responses, streamed or whole (api_out.c).
 * HTTP itself lives in http.c. */
#ifndef GPTOSS_SERVER_API_H
#define GPTOSS_SERVER_API_H

#include "chatloop.h"
#include "server/metrics.h"
#include "server/sched.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

/* What every request handler needs. */
typedef struct {
    const gptoss_tokenizer *tok;
    const char *model_name;
    int max_context, vocab;
    int32_t **scripts; /* scripted mode (testing): replayed instead of sampling */
    size_t *script_lens;
    int n_scripts;
    sched *sched;
    metrics *metrics; /* NULL = not counted */
    atomic_ulong seq;
} srv_ctx;

typedef struct {
    int status;        /* HTTP status */
    const char *type;  /* "invalid_request_error", ... */
    char param[128];   /* the field at fault, "" = null */
    const char *code;  /* NULL = null */
    char message[512];
} api_error;

/* Fills e and returns status. */
int api_fail(api_error *e, int status, const char *type, const char *param, const char *code,
             const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* {"error":{"message","type","param","code"}} (caller frees). */
char *api_error_json(const api_error *e);

enum { API_CHAT = 0, API_COMPLETION = 1 };

typedef struct api_req api_req;

api_req *api_req_new(srv_ctx *c, int kind);
void api_req_unref(api_req *r);
/* Parses, validates, renders and tokenizes the body. 0 or the error status. */
int api_req_parse(api_req *r, const char *body, size_t len, api_error *e);
/* Hands the request to the scheduler (0), or 503 when the queue is full. */
int api_req_submit(api_req *r, api_error *e);
int api_req_is_stream(const api_req *r);
/* Client socket, polled for hang-ups while waiting. */
void api_req_set_fd(api_req *r, int fd);
/* Client identity for round-robin admission (the peer address; a request's
 * "user" field takes precedence). */
void api_req_set_client(api_req *r, const char *who);
/* Streaming: up to max bytes of SSE text (blocks until some is ready). Returns
 * the byte count, 0 at the end, -1 when the client hung up (generation cancelled). */
ssize_t api_req_read(api_req *r, char *buf, size_t max);
/* Whole response: waits for the end. Returns the JSON body (caller frees) and
 * its status, or NULL when the client hung up. */
char *api_req_wait_body(api_req *r, int *status);
/* Stops the generation (client gone). */
void api_req_cancel(api_req *r);
/* For the request log. */
void api_req_summary(api_req *r, int *prompt, int *completion, double *ttft, const char **finish);
/* Takes a reference for a second owner (e.g. a streaming response). */
void api_req_ref(api_req *r);

/* GET /v1/models (id NULL) or /v1/models/ID; NULL + e when unknown. */
char *api_models(srv_ctx *c, const char *id, api_error *e);
/* POST /tokenize: {"prompt": text} or a chat request {"messages": ...}. */
char *api_tokenize(srv_ctx *c, const char *body, size_t len, api_error *e);

/* internal to api_*.c */
json_t *api_parse_json(const char *body, size_t len, api_error *e);
int api_render_tokens(srv_ctx *c, json_t *req, int32_t **ids, size_t *n, int *n_assistant,
                      size_t *n_forced, api_error *e);

#endif
