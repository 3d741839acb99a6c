/* cmd_render.c - placeholder until implemented. */
#include "commands.h"
#include <stdio.h>

int cmd_render(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "gptoss: render is not implemented yet\n");
    return 1;
}
