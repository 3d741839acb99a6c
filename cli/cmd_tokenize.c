/* cmd_tokenize.c - placeholder until implemented. */
#include "commands.h"
#include <stdio.h>

int cmd_tokenize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "gptoss: tokenize is not implemented yet\n");
    return 1;
}
int cmd_detokenize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "gptoss: detokenize is not implemented yet\n");
    return 1;
}
