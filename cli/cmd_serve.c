/* cmd_serve.c - placeholder until implemented. */
#include "commands.h"
#include <stdio.h>

int cmd_serve(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "gptoss: serve is not implemented yet\n");
    return 1;
}
