/* cmd_render.c - `gptoss render`: a chat request JSON -> the harmony prompt
 * (text, or token ids with --ids). */
#include "args.h"
#include "commands.h"
#include "gptoss.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char HELP[] =
    "usage: gptoss render --request FILE.json [--date YYYY-MM-DD] [--effort E] [--no-generation-prompt]\n"
    "                     [--ids -m DIR]\n"
    "\n"
    "Renders an OpenAI-style chat request (\"messages\", optional \"tools\", \"reasoning_effort\")\n"
    "to the harmony prompt, byte-identical to the official chat_template.jinja.\n"
    "\n"
    "  --request FILE     the request JSON (\"-\" reads stdin)\n"
    "  --date YYYY-MM-DD  the \"Current date\" line (default: today, local time)\n"
    "  --effort E         low | medium | high (overrides the request's reasoning_effort)\n"
    "  --no-generation-prompt  do not append \"<|start|>assistant\"\n"
    "  --ids              print the token ids, comma-separated, instead of the text; only the\n"
    "                     template's markers are special tokens (caller text stays plain text)\n"
    "  -m, --model DIR    folder with tokenizer.json (or the tokenizer.json file), for --ids\n"
    "  -h, --help         this help\n";

static int read_input(const char *path, char **data, size_t *len) {
    if (strcmp(path, "-")) return read_file(path, data, len) == GPTOSS_OK ? 0 : -1;
    size_t cap = 4096, n = 0;
    char *p = malloc(cap);
    if (!p) return -1;
    size_t got;
    while ((got = fread(p + n, 1, cap - n - 1, stdin)) > 0) {
        n += got;
        if (cap - n < 2) {
            char *q = realloc(p, cap * 2);
            if (!q) {
                free(p);
                return -1;
            }
            p = q;
            cap *= 2;
        }
    }
    p[n] = 0;
    *data = p;
    *len = n;
    return 0;
}

/* The prompt's token ids: template markers as special tokens, caller text as
 * plain text (gptoss_render_chat_ids). */
static int print_ids(const char *model, const char *json, size_t len, const gptoss_render_options *opt,
                     const char *request) {
    gptoss_tokenizer *tok = NULL;
    if (gptoss_tokenizer_load(model, &tok) != GPTOSS_OK) return args_lib_error("render", "tokenizer");
    int32_t *ids = NULL;
    size_t n = 0;
    if (gptoss_render_chat_ids(tok, json, len, opt, &ids, &n) != GPTOSS_OK) {
        gptoss_tokenizer_free(tok);
        return args_lib_error("render", request);
    }
    for (size_t i = 0; i < n; i++) printf("%s%d", i ? "," : "", (int)ids[i]);
    printf("\n");
    gptoss_free(ids);
    gptoss_tokenizer_free(tok);
    return 0;
}

int cmd_render(int argc, char **argv) {
    const char *request = NULL, *model = NULL;
    gptoss_render_options opt = {NULL, NULL, 1};
    int want_ids = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(HELP, stdout);
            return 0;
        } else if (!strcmp(a, "--request")) {
            if (!(request = args_value("render", argc, argv, &i))) return ARGS_EXIT_USAGE;
        } else if (!strcmp(a, "--date")) {
            if (!(opt.date = args_value("render", argc, argv, &i))) return ARGS_EXIT_USAGE;
        } else if (!strcmp(a, "--effort")) {
            if (!(opt.reasoning_effort = args_value("render", argc, argv, &i))) return ARGS_EXIT_USAGE;
        } else if (!strcmp(a, "--no-generation-prompt")) {
            opt.add_generation_prompt = 0;
        } else if (!strcmp(a, "--ids")) {
            want_ids = 1;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model = args_value("render", argc, argv, &i))) return ARGS_EXIT_USAGE;
        } else {
            return args_usage_error("render", "unknown option '%s'", a);
        }
    }
    if (!request) return args_usage_error("render", "--request FILE.json is required");
    if (want_ids && !model) return args_usage_error("render", "--ids needs -m DIR (the tokenizer.json folder)");
    char *json = NULL;
    size_t len = 0;
    if (read_input(request, &json, &len)) {
        if (!strcmp(request, "-")) fprintf(stderr, "gptoss render: cannot read stdin\n");
        else fprintf(stderr, "gptoss render: %s\n", gptoss_last_error());
        return ARGS_EXIT_ERROR;
    }
    if (want_ids) {
        int rc = print_ids(model, json, len, &opt, request);
        free(json);
        return rc;
    }
    char *text = NULL;
    gptoss_status st = gptoss_render_chat(json, len, &opt, &text);
    free(json);
    if (st != GPTOSS_OK) return args_lib_error("render", request);
    fwrite(text, 1, strlen(text), stdout);
    gptoss_free(text);
    return 0;
}
