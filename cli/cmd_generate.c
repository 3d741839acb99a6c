/* cmd_generate.c - placeholder until implemented. */
#include "commands.h"
#include <stdio.h>

int cmd_generate(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "gptoss: generate is not implemented yet\n");
    return 1;
}
