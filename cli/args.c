/* args.c - small argument helpers shared by the gptoss subcommands. */
#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int args_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "gptoss %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see gptoss %s --help)\n", cmd);
    return ARGS_EXIT_USAGE;
}

int args_lib_error(const char *cmd, const char *what) {
    fprintf(stderr, "gptoss %s: %s: %s\n", cmd, what, gptoss_last_error());
    return ARGS_EXIT_ERROR;
}

const char *args_value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        args_usage_error(cmd, "option %s needs a value", argv[*i]);
        return NULL;
    }
    *i += 1;
    return argv[*i];
}

int args_int(const char *cmd, const char *opt, const char *s, long min, long max, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < min || v > max) {
        args_usage_error(cmd, "%s: expected an integer in [%ld, %ld], got '%s'", opt, min, max, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int args_u64(const char *cmd, const char *opt, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || errno || *s == '-') {
        args_usage_error(cmd, "%s: expected a non-negative integer, got '%s'", opt, s);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

int args_float(const char *cmd, const char *opt, const char *s, double min, double max, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v) || v < min || v > max) {
        args_usage_error(cmd, "%s: expected a number in [%g, %g], got '%s'", opt, min, max, s);
        return -1;
    }
    *out = (float)v;
    return 0;
}

int args_ids(const char *cmd, const char *opt, const char *s, int32_t limit, int32_t **ids,
             size_t *n) {
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) {
        args_usage_error(cmd, "%s: out of memory", opt);
        return -1;
    }
    size_t k = 0;
    const char *p = s;
    for (;;) {
        while (*p == ' ') p++;
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX || (limit > 0 && x >= limit)) {
            if (limit > 0)
                args_usage_error(cmd, "%s: token %zu: expected an id in [0, %d), got '%.*s'", opt,
                                 k + 1, (int)limit, (int)strcspn(p, ","), p);
            else
                args_usage_error(cmd, "%s: token %zu: expected a non-negative id, got '%.*s'", opt,
                                 k + 1, (int)strcspn(p, ","), p);
            free(v);
            return -1;
        }
        v[k++] = (int32_t)x;
        p = end;
        while (*p == ' ') p++;
        if (!*p) break;
        if (*p != ',') {
            args_usage_error(cmd, "%s: expected comma-separated ids, found '%c'", opt, *p);
            free(v);
            return -1;
        }
        p++;
    }
    *ids = v;
    *n = k;
    return 0;
}

void args_common_init(args_common *c) {
    c->model_dir = NULL;
    c->device = "auto";
    c->threads = 0;
    c->context = 0;
}

const char ARGS_COMMON_HELP[] =
    "  -m, --model DIR       model folder (config.json + *.safetensors)\n"
    "      --device D        cpu, cuda or auto (default auto: cuda when a GPU is visible)\n"
    "  -t, --threads N       CPU threads (default: all cores)\n"
    "  -c, --context N       tokens the KV cache holds per sequence (default min(8192, model max))\n"
    "  -h, --help            this help\n";

int args_common_parse(const char *cmd, args_common *c, int argc, char **argv, int *i) {
    const char *a = argv[*i], *v;
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
        if (!(v = args_value(cmd, argc, argv, i))) return -1;
        c->model_dir = v;
        return 1;
    }
    if (!strcmp(a, "--device")) {
        if (!(v = args_value(cmd, argc, argv, i))) return -1;
        if (strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "auto")) {
            args_usage_error(cmd, "--device: expected cpu, cuda or auto, got '%s'", v);
            return -1;
        }
        c->device = v;
        return 1;
    }
    if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
        if (!(v = args_value(cmd, argc, argv, i))) return -1;
        return args_int(cmd, a, v, 0, 4096, &c->threads) ? -1 : 1;
    }
    if (!strcmp(a, "-c") || !strcmp(a, "--context")) {
        if (!(v = args_value(cmd, argc, argv, i))) return -1;
        return args_int(cmd, a, v, 1, 1 << 24, &c->context) ? -1 : 1;
    }
    return 0;
}

int args_need_model(const char *cmd, const args_common *c) {
    if (c->model_dir) return 0;
    args_usage_error(cmd, "a model folder is required (-m DIR)");
    return -1;
}

int args_load_model(const char *cmd, const args_common *c, int default_context, gptoss_model **m) {
    gptoss_model_params p;
    gptoss_model_params_default(&p);
    p.device = c->device;
    p.n_threads = c->threads;
    p.max_context = c->context ? c->context : default_context;
    p.max_sequences = 1;
    if (gptoss_model_load(c->model_dir, &p, m) != GPTOSS_OK) {
        args_lib_error(cmd, "cannot load the model"); /* the message names the file */
        return -1;
    }
    return 0;
}
