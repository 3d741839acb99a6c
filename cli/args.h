/* args.h - small argument helpers shared by the gptoss subcommands.
 *
 * Conventions: a bad argument prints one line "gptoss CMD: message" to stderr
 * and the command exits with 2 (ARGS_EXIT_USAGE); a library failure prints
 * gptoss_last_error() and exits with 1 (ARGS_EXIT_ERROR). The parse helpers
 * print their own message and return -1 on failure, 0 on success.
 */
#ifndef GPTOSS_CLI_ARGS_H
#define GPTOSS_CLI_ARGS_H

#include "gptoss.h"

#include <stddef.h>
#include <stdint.h>

#define ARGS_EXIT_ERROR 1
#define ARGS_EXIT_USAGE 2

/* Prints "gptoss CMD: message" to stderr; returns ARGS_EXIT_USAGE. */
int args_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "gptoss CMD: what: <gptoss_last_error()>"; returns ARGS_EXIT_ERROR. */
int args_lib_error(const char *cmd, const char *what);

/* The value of option argv[*i] (argv[*i + 1]), advancing *i; NULL (with a
 * message) when it is missing. */
const char *args_value(const char *cmd, int argc, char **argv, int *i);

/* Whole-string parses with a range check; the message names the option. */
int args_int(const char *cmd, const char *opt, const char *s, long min, long max, int *out);
int args_u64(const char *cmd, const char *opt, const char *s, uint64_t *out);
int args_float(const char *cmd, const char *opt, const char *s, double min, double max, float *out);
/* "12,7,99" (spaces allowed around commas) -> ids, each in [0, limit) when
 * limit > 0. *ids is malloc'ed (caller frees). */
int args_ids(const char *cmd, const char *opt, const char *s, int32_t limit, int32_t **ids,
             size_t *n);

/* Options every model command accepts. */
typedef struct {
    const char *model_dir; /* -m / --model */
    const char *device;    /* --device cpu|cuda|auto (default auto) */
    int threads;           /* -t / --threads (0 = all cores) */
    int context;           /* -c / --context (0 = library default) */
} args_common;

void args_common_init(args_common *c);
/* If argv[*i] is a common option, consumes it (and its value) and returns 1;
 * returns 0 when it is not one, -1 on a bad value (message printed). */
int args_common_parse(const char *cmd, args_common *c, int argc, char **argv, int *i);
/* The --help lines of the common options. */
extern const char ARGS_COMMON_HELP[];

/* Checks that a model folder was given (message otherwise): 0 or -1. */
int args_need_model(const char *cmd, const args_common *c);
/* Loads the model with the common options; the KV capacity is c->context,
 * or default_context when -c was not given (0 = the library default).
 * Prints the library error on failure; returns 0 or -1. */
int args_load_model(const char *cmd, const args_common *c, int default_context, gptoss_model **m);

#endif
