/* cmd_run.c - `gptoss run`: one question, streamed reasoning (dimmed or
 * labelled, or hidden) and then the final answer. */
#include "chatcli.h"
#include "commands.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f, "usage: gptoss run -m DIR -p QUESTION [options]\n\n"
               "Renders the question as a harmony chat, generates, and prints the reasoning\n"
               "(dimmed on a terminal, between '--- reasoning ---' / '--- answer ---' lines\n"
               "otherwise) followed by the final answer. Statistics go to stderr.\n\n"
               "  -p, --prompt TEXT          the question ('-' reads it from stdin)\n");
    chatcli_print_options_help(f);
}

static char *read_stdin(void) {
    size_t cap = 4096, len = 0;
    char *s = malloc(cap);
    size_t got;
    while (s && (got = fread(s + len, 1, cap - len - 1, stdin)) > 0) {
        len += got;
        if (cap - len < 2) {
            char *t = realloc(s, cap *= 2);
            if (!t) { free(s); return NULL; }
            s = t;
        }
    }
    if (s) s[len] = 0;
    return s;
}

int cmd_run(int argc, char **argv) {
    chatcli_options o;
    chatcli_options_default(&o);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "-p") || !strcmp(argv[i], "--prompt")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "gptoss run: %s needs a value\n", argv[i]);
                return 2;
            }
            o.prompt = argv[++i];
            continue;
        }
        int r = chatcli_parse_option(&o, argc, argv, &i);
        if (r < 0) return 2;
        if (r == 0) {
            fprintf(stderr, "gptoss run: unknown option '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (!o.model_dir || !o.prompt) {
        usage(stderr);
        return 2;
    }
    char *stdin_prompt = NULL;
    if (!strcmp(o.prompt, "-")) {
        if (!(stdin_prompt = read_stdin())) return 1;
        o.prompt = stdin_prompt;
    }
    json_t *req = json_object(), *msgs = json_array();
    if (o.system) json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content", o.system));
    json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content", o.prompt));
    json_object_set_new(req, "messages", msgs);
    char *req_text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    free(stdin_prompt);

    chatcli_engine e;
    if (!req_text || !chatcli_load(&o, &e)) {
        free(req_text);
        return 1;
    }
    chatcli_printer pr;
    chatcli_printer_init(&pr, stdout, o.hide_reasoning);
    chatgen *g = chatcli_generate(&e, &o, req_text, &pr, NULL, 0);
    free(req_text);
    int rc = 1;
    if (g) {
        chatcli_print_status(stderr, isatty(2), g);
        rc = chatgen_finish(g) == CHATLOOP_FINISH_ERROR;
        chatgen_free(g);
    }
    chatcli_unload(&e);
    return rc;
}
