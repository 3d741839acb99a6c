/* api_internal.h - the request object shared by api_parse.c and api_out.c. */
#ifndef GPTOSS_SERVER_API_INTERNAL_H
#define GPTOSS_SERVER_API_INTERNAL_H

#include "server/api.h"
#include "util.h"


#define API_MAX_TOOLS 16

struct api_req {
    srv_ctx *c;
    int kind;
    atomic_int refs;
    atomic_int cancel;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sched_job job;
    /* request */
    int32_t *prompt;
    size_t n_prompt;
    char *stops[CHATLOOP_MAX_STOP];
    int stream, include_usage, logprobs, top_logprobs, script;
    char id[48];
    long long created;
    double t_arrival; /* now_seconds() when the request arrived */
    int fd;
    /* output, under mu */
    strbuf out;      /* SSE text not yet read */
    size_t out_pos;
    strbuf pending;  /* answer text not yet sent (stream) */
    json_t *lp_pending; /* logprob items not yet sent (stream) */
    json_t *lp_all;     /* every logprob item (whole response) */
    int role_sent, done, reasoning_tokens, n_tools;
    char tool_ids[API_MAX_TOOLS][40];
    char *body;       /* whole response, once done */
    int body_status;
    chatloop_finish finish;
    chatloop_stats stats;
    gptoss_status st;
};

#endif
