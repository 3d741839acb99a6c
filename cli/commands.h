/* commands.h - the gptoss subcommands. Each parses its own arguments, prints
 * its own --help, and returns the process exit code. */
#ifndef GPTOSS_CLI_COMMANDS_H
#define GPTOSS_CLI_COMMANDS_H

int cmd_logits(int argc, char **argv);     /* cli/cmd_logits.c   */
int cmd_generate(int argc, char **argv);   /* cli/cmd_generate.c */
int cmd_bench(int argc, char **argv);      /* cli/cmd_bench.c    */
int cmd_tokenize(int argc, char **argv);   /* cli/cmd_tokenize.c */
int cmd_detokenize(int argc, char **argv); /* cli/cmd_tokenize.c */
int cmd_render(int argc, char **argv);     /* cli/cmd_render.c   */
int cmd_run(int argc, char **argv);        /* cli/cmd_run.c      */
int cmd_chat(int argc, char **argv);       /* cli/cmd_chat.c     */
int cmd_serve(int argc, char **argv);      /* cli/cmd_serve.c    */
int cmd_demo(int argc, char **argv);       /* cli/cmd_demo.c     */

#endif
