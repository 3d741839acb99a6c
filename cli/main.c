/* main.c - the gptoss command: dispatches to the subcommands. */
#include "commands.h"
#include "gptoss.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"run", cmd_run, "chat once: render a question, generate, print reasoning and answer"},
    {"chat", cmd_chat, "interactive terminal chat"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server"},
    {"bench", cmd_bench, "prompt and decode speed, bytes per token, achieved GB/s"},
    {"generate", cmd_generate, "generate token ids from token ids"},
    {"logits", cmd_logits, "write or show the logits of every position"},
    {"tokenize", cmd_tokenize, "text to token ids"},
    {"detokenize", cmd_detokenize, "token ids to text"},
    {"render", cmd_render, "render a chat request to the harmony prompt"},
    {"demo", cmd_demo, "generate a small random model and run it (no download needed)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: gptoss COMMAND [options]   (gptoss COMMAND --help for details)\n\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n  --version   build and backends\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("gptoss %s (%s)\n", GPTOSS_VERSION, gptoss_build_info());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "gptoss: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
