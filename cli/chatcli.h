/* chatcli.h - what `gptoss run` and `gptoss chat` share: options, model
 * loading, and the streaming printer (reasoning dimmed or labelled). */
#ifndef GPTOSS_CLI_CHATCLI_H
#define GPTOSS_CLI_CHATCLI_H

#include "chatloop.h"
#include "gptoss.h"

#include <stdio.h>

typedef struct {
    const char *model_dir, *prompt, *system, *effort, *device, *script_path;
    int hide_reasoning, max_tokens, threads, ctx;
    gptoss_sampler_params sampling;
    int seed_given;
} chatcli_options;

/* Parses one option at argv[*i] (advancing *i past its value). Returns 1 when
 * consumed, 0 when not a shared option, -1 on a bad value (message printed). */
int chatcli_parse_option(chatcli_options *o, int argc, char **argv, int *i);
void chatcli_options_default(chatcli_options *o);
void chatcli_print_options_help(FILE *f);

typedef struct {
    gptoss_model *model;
    gptoss_tokenizer *tok;
    gptoss_session *session;
    int32_t **scripts;
    size_t *script_lens;
    int n_scripts;
} chatcli_engine;

/* Loads model (one sequence), tokenizer, session, scripts. Prints errors. */
int chatcli_load(const chatcli_options *o, chatcli_engine *e);
void chatcli_unload(chatcli_engine *e);

/* Streaming printer for chatloop events. */
typedef struct {
    FILE *out;
    int tty;            /* escape codes allowed */
    int hide_reasoning;
    int state;          /* 0 nothing yet, 1 in reasoning, 2 in answer, 3 in tool call */
} chatcli_printer;

void chatcli_printer_init(chatcli_printer *p, FILE *out, int hide_reasoning);
void chatcli_printer_event(void *user, chatloop_event ev, int tool_index, const char *text,
                           size_t len);
/* Ends the current block (resets colours, final newline). */
void chatcli_printer_end(chatcli_printer *p);
/* "[42 tokens, 35.1 tok/s, prompt 120 (100 cached), stopped]" */
void chatcli_print_status(FILE *f, int tty, const chatgen *g);

/* Runs one chat request (JSON) through a fresh chatgen on e->session.
 * script: index into e->scripts or -1. Prints as it streams. Returns the
 * chatgen (caller frees) or NULL on error (printed). */
chatgen *chatcli_generate(chatcli_engine *e, const chatcli_options *o, const char *request_json,
                          chatcli_printer *pr, atomic_int *cancel, int script);

#endif
