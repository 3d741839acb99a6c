/* cmd_run.c - placeholder until implemented. */
#include "commands.h"
#include <stdio.h>

int cmd_run(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "gptoss: run is not implemented yet\n");
    return 1;
}
