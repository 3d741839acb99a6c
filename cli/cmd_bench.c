/* cmd_bench.c - placeholder until implemented. */
#include "commands.h"
#include <stdio.h>

int cmd_bench(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "gptoss: bench is not implemented yet\n");
    return 1;
}
