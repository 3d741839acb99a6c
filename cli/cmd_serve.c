/* cmd_serve.c - `gptoss serve`: the OpenAI-compatible HTTP server. */
#include "commands.h"
#include "server/server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static atomic_int stop_flag;

static void on_signal(int sig) {
    (void)sig;
    atomic_store(&stop_flag, 1);
}

static void log_line(void *user, const char *line) {
    (void)user;
    char ts[32];
    time_t t = time(NULL);
    struct tm tm;
    strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", localtime_r(&t, &tm));
    fprintf(stderr, "%s %s\n", ts, line);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: gptoss serve -m DIR [options]\n\n"
            "OpenAI-compatible API: POST /v1/chat/completions, POST /v1/completions,\n"
            "GET /v1/models, GET /health, POST /tokenize. Requests are decoded together\n"
            "(continuous batching) in up to --parallel sequences.\n\n"
            "  -m, --model DIR        model folder (config.json, safetensors, tokenizer.json)\n"
            "  --host ADDR            listen address (default 127.0.0.1)\n"
            "  --port N               port (default 8080; 0 = any free port)\n"
            "  --api-key KEY          require 'Authorization: Bearer KEY'\n"
            "  --parallel N           sequences decoded together (default 4)\n"
            "  --max-queue N          requests waiting beyond those; more get 503 (default 64)\n"
            "  --max-body BYTES       request body limit, larger get 413 (default 8388608)\n"
            "  --model-name NAME      model id in the API (default: the folder's name)\n"
            "  --device cpu|cuda      default: cuda when a GPU is visible\n"
            "  -t, --threads N        CPU threads (default: all cores)\n"
            "  -c, --context N        context per sequence (default: min(8192, model))\n"
            "  --sampling-threads N   threads sampling a batch's tokens (default min(8, cores))\n"
            "  --script-tokens FILE   testing: replay token scripts instead of sampling\n"
            "                         (ids or harmony text; scripts separated by '---' lines;\n"
            "                         a chat request with k assistant messages gets script k)\n"
            "  --throttle-ms N        testing: pause N ms after every decode step\n");
}

static int num(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "gptoss serve: %s: '%s' is not an integer in %ld..%ld\n", opt, s, lo, hi);
        return 0;
    }
    *out = v;
    return 1;
}

int cmd_serve(int argc, char **argv) {
    server_config c;
    server_config_default(&c);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "gptoss serve: unknown option or missing value: '%s' (see --help)\n", a);
            return 2;
        }
        const char *val = argv[++i];
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) c.model_dir = val;
        else if (!strcmp(a, "--host")) c.host = val;
        else if (!strcmp(a, "--api-key")) c.api_key = val;
        else if (!strcmp(a, "--model-name")) c.model_name = val;
        else if (!strcmp(a, "--device")) c.device = val;
        else if (!strcmp(a, "--script-tokens")) c.script_path = val;
        else if (!strcmp(a, "--port")) { if (!num(a, val, 0, 65535, &v)) return 2; c.port = (int)v; }
        else if (!strcmp(a, "--parallel")) { if (!num(a, val, 1, 1024, &v)) return 2; c.parallel = (int)v; }
        else if (!strcmp(a, "--max-queue")) { if (!num(a, val, 0, 1000000, &v)) return 2; c.max_queue = (int)v; }
        else if (!strcmp(a, "--max-body")) { if (!num(a, val, 1024, 1L << 30, &v)) return 2; c.max_body = (size_t)v; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (!num(a, val, 0, 4096, &v)) return 2; c.threads = (int)v; }
        else if (!strcmp(a, "-c") || !strcmp(a, "--context") || !strcmp(a, "--ctx")) { if (!num(a, val, 0, 1L << 24, &v)) return 2; c.ctx = (int)v; }
        else if (!strcmp(a, "--sampling-threads")) { if (!num(a, val, 0, 256, &v)) return 2; c.sampling_threads = (int)v; }
        else if (!strcmp(a, "--throttle-ms")) { if (!num(a, val, 0, 10000, &v)) return 2; c.throttle_ms = (int)v; }
        else {
            fprintf(stderr, "gptoss serve: unknown option '%s' (see --help)\n", a);
            return 2;
        }
    }
    if (!c.model_dir) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    c.log = log_line;
    c.stop = &stop_flag;
    gptoss_status st = server_run(&c);
    if (st != GPTOSS_OK) {
        fprintf(stderr, "gptoss serve: %s\n", gptoss_last_error());
        return 1;
    }
    return 0;
}
