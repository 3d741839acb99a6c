/* cmd_generate.c - `gptoss generate`: token ids in, generated token ids out
 * (one comma-separated line), with the sampler's options. */
#include "args.h"
#include "commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char HELP[] =
    "usage: gptoss generate -m DIR --ids 12,7,99 -n N [sampling options]\n"
    "Generates N token ids after the prompt ids and prints them as one comma-separated line.\n"
    "  --ids LIST            comma-separated prompt token ids\n"
    "  -n, --n-tokens N      tokens to generate (exactly N unless --stop-on-eos)\n"
    "      --temperature T   0 = greedy (argmax, lowest id on ties); default 1.0\n"
    "      --top-p P         nucleus sampling, in (0, 1]; default 1 (off)\n"
    "      --top-k K         keep the K most likely tokens; default 0 (off)\n"
    "      --min-p M         drop tokens below M x the top probability; default 0 (off)\n"
    "      --seed S          random seed (same seed + same model = same ids); default 0\n"
    "      --stop-on-eos     stop after <|return|>, <|call|> or <|endoftext|>\n";

int cmd_generate(int argc, char **argv) {
    const char *cmd = "generate";
    args_common c;
    args_common_init(&c);
    gptoss_sampler_params sp;
    gptoss_sampler_params_default(&sp);
    const char *ids_arg = NULL;
    int n_gen = -1, stop_on_eos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int r = args_common_parse(cmd, &c, argc, argv, &i);
        if (r < 0) return ARGS_EXIT_USAGE;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("%s%s", HELP, ARGS_COMMON_HELP);
            return 0;
        } else if (!strcmp(a, "--stop-on-eos")) {
            stop_on_eos = 1;
            continue;
        }
        int is_value_opt = !strcmp(a, "--ids") || !strcmp(a, "-n") || !strcmp(a, "--n-tokens") ||
                           !strcmp(a, "--temperature") || !strcmp(a, "--temp") ||
                           !strcmp(a, "--top-p") || !strcmp(a, "--top-k") ||
                           !strcmp(a, "--min-p") || !strcmp(a, "--seed");
        if (!is_value_opt) return args_usage_error(cmd, "unknown argument '%s'", a);
        if (!(v = args_value(cmd, argc, argv, &i))) return ARGS_EXIT_USAGE;
        int bad = 0;
        if (!strcmp(a, "--ids")) ids_arg = v;
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-tokens")) bad = args_int(cmd, a, v, 0, 1 << 24, &n_gen);
        else if (!strcmp(a, "--temperature") || !strcmp(a, "--temp"))
            bad = args_float(cmd, a, v, 0.0, 1e6, &sp.temperature);
        else if (!strcmp(a, "--top-p")) {
            bad = args_float(cmd, a, v, 0.0, 1.0, &sp.top_p);
            if (!bad && sp.top_p <= 0.0f) return args_usage_error(cmd, "--top-p: must be > 0, got '%s'", v);
        } else if (!strcmp(a, "--top-k")) bad = args_int(cmd, a, v, 0, 1 << 30, &sp.top_k);
        else if (!strcmp(a, "--min-p")) bad = args_float(cmd, a, v, 0.0, 1.0, &sp.min_p);
        else bad = args_u64(cmd, a, v, &sp.seed);
        if (bad) return ARGS_EXIT_USAGE;
    }
    if (args_need_model(cmd, &c)) return ARGS_EXIT_USAGE;
    if (!ids_arg) return args_usage_error(cmd, "--ids is required");
    if (n_gen < 0) return args_usage_error(cmd, "-n N (tokens to generate) is required");
    int32_t *ids = NULL;
    size_t n = 0;
    if (args_ids(cmd, "--ids", ids_arg, 0, &ids, &n)) return ARGS_EXIT_USAGE;

    int rc = ARGS_EXIT_ERROR;
    gptoss_model *m = NULL;
    gptoss_session *s = NULL;
    gptoss_sampler *smp = NULL;
    float *logits = NULL;
    size_t need = n + (size_t)n_gen;
    if (gptoss_sampler_create(&sp, &smp) != GPTOSS_OK) {
        rc = args_usage_error(cmd, "%s", gptoss_last_error());
        goto done;
    }
    if (args_load_model(cmd, &c, need > 8192 ? (int)need : 0, &m)) goto done;
    gptoss_model_info info;
    gptoss_model_get_info(m, &info);
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= info.vocab_size) {
            rc = args_usage_error(cmd, "--ids: token %zu: id %d is outside the vocabulary [0, %d)",
                                  i + 1, ids[i], info.vocab_size);
            goto done;
        }
    if (need > (size_t)info.max_context) {
        rc = args_usage_error(cmd, "%zu prompt ids + %d new tokens exceed the context of %d (-c)", n,
                              n_gen, info.max_context);
        goto done;
    }
    logits = malloc((size_t)info.vocab_size * sizeof *logits);
    if (!logits) {
        fprintf(stderr, "gptoss %s: out of memory\n", cmd);
        goto done;
    }
    if (gptoss_session_create(m, &s) != GPTOSS_OK) {
        args_lib_error(cmd, "session");
        goto done;
    }
    if (gptoss_session_append(s, ids, n, logits, 0) != GPTOSS_OK) {
        args_lib_error(cmd, "prompt");
        goto done;
    }
    /* the first token from the prompt's logits; then each decode step samples
     * on the device (only the chosen id crosses back on CUDA) */
    int32_t id = gptoss_sampler_sample(smp, logits, info.vocab_size, NULL);
    for (int k = 0; k < n_gen; k++) {
        if (id < 0) {
            printf("\n");
            args_lib_error(cmd, "sampler");
            goto done;
        }
        printf(k ? ",%d" : "%d", id);
        fflush(stdout);
        if (k + 1 == n_gen || (stop_on_eos && gptoss_is_stop_token(id))) break;
        int32_t next = -1;
        if (gptoss_decode_sample(&s, &id, 1, &smp, &next, NULL) != GPTOSS_OK) {
            printf("\n");
            args_lib_error(cmd, "decode");
            goto done;
        }
        id = next;
    }
    printf("\n");
    rc = 0;
done:
    free(logits);
    gptoss_sampler_free(smp);
    gptoss_session_free(s);
    gptoss_model_free(m);
    free(ids);
    return rc;
}
