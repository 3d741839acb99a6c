/* cmd_chat.c - placeholder until implemented. */
#include "commands.h"
#include <stdio.h>

int cmd_chat(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "gptoss: chat is not implemented yet\n");
    return 1;
}
