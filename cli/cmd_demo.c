/* cmd_demo.c - placeholder until implemented. */
#include "commands.h"
#include <stdio.h>

int cmd_demo(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "gptoss: demo is not implemented yet\n");
    return 1;
}
