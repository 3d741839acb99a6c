/* cmd_chat.c - `gptoss chat`: interactive terminal chat. Streams answers,
 * dims (or hides) the reasoning, keeps the history as OpenAI-style messages
 * (the renderer drops old reasoning), and understands a few /commands.
 * Ctrl-C stops the current answer; Ctrl-D or /exit leaves. */
#include "chatcli.h"
#include "commands.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_int cancel_flag;

static void on_sigint(int sig) {
    (void)sig;
    atomic_store(&cancel_flag, 1);
}

static void usage(FILE *f) {
    fprintf(f, "usage: gptoss chat -m DIR [options]\n\n");
    chatcli_print_options_help(f);
    fprintf(f, "\nIn the chat: /effort low|medium|high, /system TEXT, /reset, /save FILE, /help, /exit\n"
               "Ctrl-C stops the current answer; Ctrl-D leaves.\n");
}

static void help(void) {
    printf("commands:\n"
           "  /effort low|medium|high  reasoning effort for the next answers\n"
           "  /system TEXT             set the system instructions (empty: remove)\n"
           "  /reset                   forget the conversation\n"
           "  /save FILE               write the conversation as JSON messages\n"
           "  /help                    this text\n"
           "  /exit                    leave (or Ctrl-D)\n"
           "Ctrl-C stops the current answer.\n");
}

/* messages with the system instruction first (new reference) */
static json_t *all_messages(const char *system, json_t *history) {
    json_t *m = json_array();
    if (system && *system)
        json_array_append_new(m, json_pack("{s:s,s:s}", "role", "system", "content", system));
    json_array_extend(m, history);
    return m;
}

static int n_assistant(json_t *history) {
    int n = 0;
    size_t i;
    json_t *v;
    json_array_foreach(history, i, v) {
        const char *r = json_string_value(json_object_get(v, "role"));
        if (r && !strcmp(r, "assistant")) n++;
    }
    return n;
}

int cmd_chat(int argc, char **argv) {
    chatcli_options o;
    chatcli_options_default(&o);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
        int r = chatcli_parse_option(&o, argc, argv, &i);
        if (r < 0) return 2;
        if (r == 0) {
            fprintf(stderr, "gptoss chat: unknown option '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (!o.model_dir) {
        usage(stderr);
        return 2;
    }
    chatcli_engine e;
    if (!chatcli_load(&o, &e)) return 1;
    int in_tty = isatty(0), out_tty = isatty(1);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint; /* no SA_RESTART: Ctrl-C at the prompt interrupts fgets */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);

    char effort[16] = "medium";
    if (o.effort) snprintf(effort, sizeof effort, "%s", o.effort);
    char *system = o.system ? strdup(o.system) : NULL;
    json_t *history = json_array();
    if (in_tty) printf("gptoss chat (%s). /help for commands, Ctrl-D to leave.\n", o.model_dir);
    char line[65536];
    for (;;) {
        if (in_tty) {
            fputs(out_tty ? "\033[1m> \033[0m" : "> ", stdout);
            fflush(stdout);
        }
        atomic_store(&cancel_flag, 0);
        if (!fgets(line, sizeof line, stdin)) {
            if (ferror(stdin) && errno == EINTR) {
                clearerr(stdin);
                printf("\n(Ctrl-D or /exit to leave)\n");
                continue;
            }
            if (in_tty) printf("\n");
            break;
        }
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        if (line[0] == '/') {
            char *arg = strchr(line, ' ');
            if (arg) *arg++ = 0;
            while (arg && *arg == ' ') arg++;
            if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
            if (!strcmp(line, "/help")) {
                help();
            } else if (!strcmp(line, "/effort")) {
                if (arg && (!strcmp(arg, "low") || !strcmp(arg, "medium") || !strcmp(arg, "high"))) {
                    snprintf(effort, sizeof effort, "%s", arg);
                    printf("reasoning effort: %s\n", effort);
                } else {
                    printf("usage: /effort low|medium|high (now %s)\n", effort);
                }
            } else if (!strcmp(line, "/system")) {
                free(system);
                system = arg && *arg ? strdup(arg) : NULL;
                printf(system ? "system instructions set\n" : "system instructions removed\n");
            } else if (!strcmp(line, "/reset")) {
                json_array_clear(history);
                printf("conversation reset\n");
            } else if (!strcmp(line, "/save")) {
                if (!arg || !*arg) {
                    printf("usage: /save FILE\n");
                } else {
                    json_t *m = all_messages(system, history);
                    if (json_dump_file(m, arg, JSON_INDENT(2)) == 0)
                        printf("saved %zu messages to %s\n", json_array_size(m), arg);
                    else
                        printf("cannot write %s\n", arg);
                    json_decref(m);
                }
            } else {
                printf("unknown command %s (/help lists them)\n", line);
            }
            fflush(stdout);
            continue;
        }
        json_t *user = json_pack("{s:s,s:s}", "role", "user", "content", line);
        if (!user) {
            printf("(the input is not valid UTF-8; ignored)\n");
            continue;
        }
        json_array_append_new(history, user);
        json_t *req = json_object();
        json_object_set_new(req, "messages", all_messages(system, history));
        json_object_set_new(req, "reasoning_effort", json_string(effort));
        char *req_text = json_dumps(req, JSON_COMPACT);
        json_decref(req);
        chatcli_options turn = o;
        turn.effort = effort;
        chatcli_printer pr;
        chatcli_printer_init(&pr, stdout, o.hide_reasoning);
        chatgen *g = req_text ? chatcli_generate(&e, &turn, req_text, &pr, &cancel_flag,
                                                 n_assistant(history))
                              : NULL;
        free(req_text);
        if (!g) { /* error printed; forget the question */
            json_array_remove(history, json_array_size(history) - 1);
            continue;
        }
        chatloop_finish fin = chatgen_finish(g);
        const char *content = chatgen_content(g), *reasoning = chatgen_reasoning(g);
        if (fin == CHATLOOP_FINISH_CANCELLED && !*content) {
            json_array_remove(history, json_array_size(history) - 1);
        } else {
            json_t *msg = json_pack("{s:s,s:s}", "role", "assistant", "content", content);
            if (*reasoning) json_object_set_new(msg, "thinking", json_string(reasoning));
            json_array_append_new(history, msg);
        }
        chatcli_print_status(stdout, out_tty, g);
        chatgen_free(g);
    }
    json_decref(history);
    free(system);
    chatcli_unload(&e);
    return 0;
}
