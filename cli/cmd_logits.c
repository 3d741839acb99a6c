/* cmd_logits.c - placeholder until implemented. */
#include "commands.h"
#include <stdio.h>

int cmd_logits(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "gptoss: logits is not implemented yet\n");
    return 1;
}
