/* cmd_logits.c - `gptoss logits`: the logits of every position of a token-id
 * prompt, written as raw float32 little-endian [n_ids x vocab] row-major, or
 * shown as the top 5 of each position. */
#include "args.h"
#include "commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char HELP[] =
    "usage: gptoss logits -m DIR --ids 12,7,99 [--out FILE] [--top K]\n"
    "Runs the prompt through the model and gives the logits of every position.\n"
    "  --ids LIST            comma-separated token ids (the prompt)\n"
    "  --out FILE            write float32 little-endian logits, [n_ids x vocab] row-major\n"
    "  --top K               without --out: show the K best ids per position (default 5)\n";

/* Writes n floats as little-endian regardless of the host order. */
static int write_f32le(FILE *f, const float *v, size_t n) {
    const uint16_t probe = 1;
    if (*(const unsigned char *)&probe == 1) return fwrite(v, sizeof *v, n, f) == n ? 0 : -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char b[4], x[4];
        memcpy(x, &v[i], 4);
        for (int k = 0; k < 4; k++) b[k] = x[3 - k];
        if (fwrite(b, 1, 4, f) != 4) return -1;
    }
    return 0;
}

int cmd_logits(int argc, char **argv) {
    const char *cmd = "logits";
    args_common c;
    args_common_init(&c);
    const char *ids_arg = NULL, *out_path = NULL;
    int top = 5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = args_common_parse(cmd, &c, argc, argv, &i);
        if (r < 0) return ARGS_EXIT_USAGE;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("%s%s", HELP, ARGS_COMMON_HELP);
            return 0;
        } else if (!strcmp(a, "--ids")) {
            if (!(ids_arg = args_value(cmd, argc, argv, &i))) return ARGS_EXIT_USAGE;
        } else if (!strcmp(a, "--out") || !strcmp(a, "-o")) {
            if (!(out_path = args_value(cmd, argc, argv, &i))) return ARGS_EXIT_USAGE;
        } else if (!strcmp(a, "--top")) {
            const char *v = args_value(cmd, argc, argv, &i);
            if (!v || args_int(cmd, a, v, 1, 1000, &top)) return ARGS_EXIT_USAGE;
        } else {
            return args_usage_error(cmd, "unknown argument '%s'", a);
        }
    }
    if (args_need_model(cmd, &c)) return ARGS_EXIT_USAGE;
    if (!ids_arg) return args_usage_error(cmd, "--ids is required");
    int32_t *ids = NULL;
    size_t n = 0;
    if (args_ids(cmd, "--ids", ids_arg, 0, &ids, &n)) return ARGS_EXIT_USAGE;

    int rc = ARGS_EXIT_ERROR;
    gptoss_model *m = NULL;
    gptoss_session *s = NULL;
    float *logits = NULL;
    FILE *f = NULL;
    if (args_load_model(cmd, &c, n > 8192 ? (int)n : 0, &m)) goto done;
    gptoss_model_info info;
    gptoss_model_get_info(m, &info);
    const size_t vocab = (size_t)info.vocab_size;
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= info.vocab_size) {
            rc = args_usage_error(cmd, "--ids: token %zu: id %d is outside the vocabulary [0, %d)",
                                  i + 1, ids[i], info.vocab_size);
            goto done;
        }
    logits = malloc(n * vocab * sizeof *logits);
    if (!logits) {
        fprintf(stderr, "gptoss %s: cannot allocate %zu logits\n", cmd, n * vocab);
        goto done;
    }
    if (gptoss_session_create(m, &s) != GPTOSS_OK) {
        args_lib_error(cmd, "session");
        goto done;
    }
    if (gptoss_session_append(s, ids, n, logits, 1) != GPTOSS_OK) {
        args_lib_error(cmd, "forward");
        goto done;
    }
    if (out_path) {
        f = fopen(out_path, "wb");
        if (!f || write_f32le(f, logits, n * vocab) || fclose(f)) {
            f = NULL;
            fprintf(stderr, "gptoss %s: %s: cannot write\n", cmd, out_path);
            goto done;
        }
        f = NULL;
        fprintf(stderr, "wrote %zu x %zu float32 logits to %s\n", n, vocab, out_path);
    } else {
        int32_t best[1000];
        float lp[1000];
        printf("pos\tid\ttop %d (id:logit)\n", top);
        for (size_t i = 0; i < n; i++) {
            const float *row = logits + i * vocab;
            int k = gptoss_top_logprobs(row, (int)vocab, top, best, lp);
            if (k < 0) {
                args_lib_error(cmd, "logits");
                goto done;
            }
            printf("%zu\t%d\t", i, ids[i]);
            for (int j = 0; j < k; j++) printf("%s%d:%.4f", j ? " " : "", best[j], row[best[j]]);
            printf("\n");
        }
    }
    rc = 0;
done:
    if (f) fclose(f);
    free(logits);
    gptoss_session_free(s);
    gptoss_model_free(m);
    free(ids);
    return rc;
}
