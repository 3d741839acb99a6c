/* cmd_bench.c - `gptoss bench`: prompt (prefill) and decode speed, weight
 * bytes read per decode token, achieved GB/s, and its share of the memory
 * bandwidth measured in the same run (CPU) or the GPU's reference value. */
#include "args.h"
#include "commands.h"
#include "membw.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define H200_REFERENCE_GBS 4300.0 /* copy bandwidth measured on the H200 (fallback) */

static const char HELP[] =
    "usage: gptoss bench -m DIR [-p 512] [-n 128] [-r 3] [--sample] [--json] [--device cpu|cuda] [-t N]\n"
    "Measures prompt tokens/s (one prefill of P tokens) and decode tokens/s (N tokens one at\n"
    "a time after the prompt), with seeded random token ids; reports weight bytes read per\n"
    "decode token, achieved GB/s, and the share of the memory bandwidth, measured in the same\n"
    "run (CPU: a streaming read of host memory; CUDA: a device-to-device copy, falling back to\n"
    "the H200's 4300 GB/s if that fails) unless --mem-bw is given.\n"
    "  -p, --n-prompt P      prompt tokens (default 512; 0 = skip)\n"
    "  -n, --n-gen N         decode tokens (default 128; 0 = skip)\n"
    "  -r, --repetitions R   repetitions, reported as mean and standard deviation (default 3)\n"
    "      --seed S          seed of the random token ids (default 1)\n"
    "      --mem-bw GBS      compare against this bandwidth instead of measuring it\n"
    "      --logits          decode steps return the whole logits row to the host\n"
    "                        (gptoss_session_append) instead of picking the next token\n"
    "                        (greedy) with gptoss_decode_sample as generate, chat and serve\n"
    "                        do (on the GPU with CUDA; the default)\n"
    "      --sample          the default (kept for older scripts)\n"
    "      --json            print one JSON object instead of the table\n";

typedef struct {
    double mean, sd;
} stat;

static stat stats(const double *v, int n) {
    stat s = {0, 0};
    for (int i = 0; i < n; i++) s.mean += v[i];
    s.mean /= n;
    for (int i = 0; i < n; i++) s.sd += (v[i] - s.mean) * (v[i] - s.mean);
    s.sd = n > 1 ? sqrt(s.sd / (n - 1)) : 0.0;
    return s;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Ordinary (non-special) token ids from a seeded generator. */
static void random_ids(int32_t *ids, int n, int vocab, uint64_t *state) {
    int limit = vocab < GPTOSS_TOK_STARTOFTEXT ? vocab : GPTOSS_TOK_STARTOFTEXT;
    for (int i = 0; i < n; i++) {
        uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        ids[i] = (int32_t)((z ^ (z >> 31)) % (uint64_t)limit);
    }
}

static json_t *samples_json(const double *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_real(v[i]));
    return a;
}

int cmd_bench(int argc, char **argv) {
    const char *cmd = "bench";
    args_common c;
    args_common_init(&c);
    int n_prompt = 512, n_gen = 128, reps = 3, as_json = 0, sample = 1;
    gptoss_sampler *greedy = NULL;
    uint64_t seed = 1;
    float given_bw = 0.0f;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int r = args_common_parse(cmd, &c, argc, argv, &i);
        if (r < 0) return ARGS_EXIT_USAGE;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("%s%s", HELP, ARGS_COMMON_HELP);
            return 0;
        }
        if (!strcmp(a, "--sample") || !strcmp(a, "--logits")) {
            sample = !strcmp(a, "--sample");
            continue;
        }
        if (!strcmp(a, "--json")) {
            as_json = 1;
            continue;
        }
        int bad;
        if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) {
            bad = !(v = args_value(cmd, argc, argv, &i)) || args_int(cmd, a, v, 0, 1 << 20, &n_prompt);
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen")) {
            bad = !(v = args_value(cmd, argc, argv, &i)) || args_int(cmd, a, v, 0, 1 << 20, &n_gen);
        } else if (!strcmp(a, "-r") || !strcmp(a, "--repetitions")) {
            bad = !(v = args_value(cmd, argc, argv, &i)) || args_int(cmd, a, v, 1, 1000, &reps);
        } else if (!strcmp(a, "--seed")) {
            bad = !(v = args_value(cmd, argc, argv, &i)) || args_u64(cmd, a, v, &seed);
        } else if (!strcmp(a, "--mem-bw")) {
            bad = !(v = args_value(cmd, argc, argv, &i)) || args_float(cmd, a, v, 1e-3, 1e6, &given_bw);
        } else {
            return args_usage_error(cmd, "unknown argument '%s'", a);
        }
        if (bad) return ARGS_EXIT_USAGE;
    }
    if (args_need_model(cmd, &c)) return ARGS_EXIT_USAGE;
    if (n_prompt + n_gen == 0) return args_usage_error(cmd, "nothing to measure: -p and -n are both 0");
    if (c.context && n_prompt + n_gen > c.context)
        return args_usage_error(cmd, "-p + -n (%d) exceed the context -c %d", n_prompt + n_gen, c.context);

    int rc = ARGS_EXIT_ERROR;
    gptoss_model *m = NULL;
    gptoss_session *s = NULL;
    int32_t *ids = NULL;
    float *logits = NULL;
    double *pp = calloc((size_t)reps, sizeof *pp), *tg = calloc((size_t)reps, sizeof *tg);
    if (!pp || !tg) goto done;

    if (args_load_model(cmd, &c, n_prompt + n_gen < 16 ? 16 : n_prompt + n_gen, &m)) goto done;
    gptoss_model_info info;
    gptoss_model_get_info(m, &info);
    int threads = c.threads;
    if (threads == 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        threads = nc > 0 ? (int)nc : 1;
    }
    int on_cpu = !strcmp(info.backend, "cpu");

    /* Memory bandwidth: given, measured on the host or the device, or the GPU reference. */
    double bw = given_bw;
    const char *bw_source = "given (--mem-bw)";
    size_t bw_bytes = 0;
    if (bw <= 0) {
        if (on_cpu) {
            if (!as_json) fprintf(stderr, "measuring host memory bandwidth (%d threads)...\n", threads);
            bw = membw_measure(threads, 0, 5, &bw_bytes);
            bw_source = "measured (host streaming read)";
        } else if (gptoss_model_memory_bandwidth(m, &bw) == GPTOSS_OK && bw > 0) {
            bw_source = "measured (device-to-device copy, read + write)";
            bw_bytes = (size_t)1 << 30;
        } else {
            bw = H200_REFERENCE_GBS;
            bw_source = "H200 reference (4300 GB/s measured streaming read)";
        }
    }

    int total = n_prompt + n_gen;
    ids = malloc((size_t)(total > 0 ? total : 1) * sizeof *ids);
    logits = malloc((size_t)info.vocab_size * sizeof *logits);
    if (!ids || !logits) {
        fprintf(stderr, "gptoss %s: out of memory\n", cmd);
        goto done;
    }
    if (gptoss_session_create(m, &s) != GPTOSS_OK) {
        args_lib_error(cmd, "session");
        goto done;
    }
    gptoss_sampler_params gp;
    gptoss_sampler_params_default(&gp);
    gp.temperature = 0.0f;
    if (sample && gptoss_sampler_create(&gp, &greedy) != GPTOSS_OK) {
        args_lib_error(cmd, "sampler");
        goto done;
    }
    uint64_t rng = seed;
    /* warm-up, not measured: one prefill of the same size (page-in, thread
     * start, lazy GPU initialisation) and two decode steps */
    random_ids(ids, total, info.vocab_size, &rng);
    int warm = n_prompt > 0 ? n_prompt : 1;
    if (warm + 2 > total) warm = total > 2 ? total - 2 : 1;
    if (!as_json) fprintf(stderr, "warm-up...\n");
    if (gptoss_session_append(s, ids, (size_t)warm, logits, 0) != GPTOSS_OK ||
        gptoss_session_append(s, ids, 1, logits, 0) != GPTOSS_OK ||
        (total > 2 && gptoss_session_append(s, ids + 1, 1, logits, 0) != GPTOSS_OK)) {
        args_lib_error(cmd, "warm-up");
        goto done;
    }
    for (int r = 0; r < reps; r++) {
        gptoss_session_reset(s);
        random_ids(ids, total, info.vocab_size, &rng);
        if (n_prompt > 0) {
            double t0 = now();
            if (gptoss_session_append(s, ids, (size_t)n_prompt, logits, 0) != GPTOSS_OK) {
                args_lib_error(cmd, "prefill");
                goto done;
            }
            pp[r] = n_prompt / (now() - t0);
        }
        if (n_gen > 0) {
            double t0 = now();
            int32_t next;
            for (int k = 0; k < n_gen; k++)
                if (sample ? gptoss_decode_sample(&s, ids + n_prompt + k, 1, &greedy, &next, NULL) != GPTOSS_OK
                           : gptoss_session_append(s, ids + n_prompt + k, 1, logits, 0) != GPTOSS_OK) {
                    args_lib_error(cmd, "decode");
                    goto done;
                }
            tg[r] = n_gen / (now() - t0);
        }
        if (!as_json)
            fprintf(stderr, "rep %d/%d: prompt %.2f tok/s, decode %.2f tok/s\n", r + 1, reps, pp[r], tg[r]);
    }
    stat sp = stats(pp, reps), sg = stats(tg, reps);
    double gb_tok = (double)info.bytes_per_token / 1e9;
    double achieved = gb_tok * sg.mean;
    double share = bw > 0 && n_gen > 0 ? achieved / bw : 0.0;

    if (as_json) {
        json_t *o = json_object();
        json_object_set_new(o, "model", json_string(c.model_dir));
        json_object_set_new(o, "backend", json_string(info.backend));
        json_object_set_new(o, "kernels", json_string(info.kernels ? info.kernels : ""));
        json_object_set_new(o, "threads", json_integer(on_cpu ? threads : 0));
        json_object_set_new(o, "n_layers", json_integer(info.n_layers));
        json_object_set_new(o, "n_experts", json_integer(info.n_experts));
        json_object_set_new(o, "vocab_size", json_integer(info.vocab_size));
        json_object_set_new(o, "weight_bytes", json_integer((json_int_t)info.weight_bytes));
        json_object_set_new(o, "bytes_per_token", json_integer((json_int_t)info.bytes_per_token));
        json_object_set_new(o, "n_prompt", json_integer(n_prompt));
        json_object_set_new(o, "n_gen", json_integer(n_gen));
        json_object_set_new(o, "decode_sample", json_boolean(sample));
        json_object_set_new(o, "repetitions", json_integer(reps));
        json_object_set_new(o, "prompt_tok_s", n_prompt ? json_real(sp.mean) : json_null());
        json_object_set_new(o, "prompt_tok_s_sd", n_prompt ? json_real(sp.sd) : json_null());
        json_object_set_new(o, "decode_tok_s", n_gen ? json_real(sg.mean) : json_null());
        json_object_set_new(o, "decode_tok_s_sd", n_gen ? json_real(sg.sd) : json_null());
        json_object_set_new(o, "achieved_gb_s", n_gen ? json_real(achieved) : json_null());
        json_object_set_new(o, "memory_bw_gb_s", bw > 0 ? json_real(bw) : json_null());
        json_object_set_new(o, "memory_bw_source", json_string(bw_source));
        json_object_set_new(o, "memory_bw_buffer_bytes", json_integer((json_int_t)bw_bytes));
        json_object_set_new(o, "bandwidth_share", n_gen && bw > 0 ? json_real(share) : json_null());
        json_object_set_new(o, "prompt_samples", samples_json(pp, n_prompt ? reps : 0));
        json_object_set_new(o, "decode_samples", samples_json(tg, n_gen ? reps : 0));
        char *text = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(12));
        json_decref(o);
        if (!text) goto done;
        printf("%s\n", text);
        free(text);
    } else {
        const char *base = strrchr(c.model_dir, '/');
        base = base && base[1] ? base + 1 : c.model_dir;
        char model[64], test[32];
        snprintf(model, sizeof model, "%.30s (%dL, %dE)", base, info.n_layers, info.n_experts);
        const char *kern = info.kernels ? info.kernels : "";
        int kw = (int)strlen(kern);
        kw = kw < 7 ? 7 : kw > 40 ? 40 : kw;
        const char *dashes = "----------------------------------------";
        printf("| %-40s | %-7s | %-*s | %7s | %8s | %18s |\n", "model", "backend", kw, "kernels",
               "threads", "test", "t/s");
        printf("| %.40s | ------- | %.*s | ------: | -------: | -----------------: |\n", dashes, kw,
               dashes);
        if (n_prompt) {
            snprintf(test, sizeof test, "pp%d", n_prompt);
            printf("| %-40s | %-7s | %-*.*s | %7d | %8s | %8.2f ± %7.2f |\n", model, info.backend,
                   kw, kw, kern, on_cpu ? threads : 0, test, sp.mean, sp.sd);
        }
        if (n_gen) {
            snprintf(test, sizeof test, "tg%d", n_gen);
            printf("| %-40s | %-7s | %-*.*s | %7d | %8s | %8.2f ± %7.2f |\n", model, info.backend,
                   kw, kw, kern, on_cpu ? threads : 0, test, sg.mean, sg.sd);
            printf("\nweights read per decode token: %.2f MB (%.2f MB resident)\n", gb_tok * 1e3,
                   (double)info.weight_bytes / 1e6);
            printf("achieved: %.2f GB/s", achieved);
            if (bw > 0)
                printf(" = %.1f%% of %.1f GB/s memory bandwidth, %s\n", 100.0 * share, bw, bw_source);
            else
                printf(" (memory bandwidth could not be measured)\n");
            long llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
            if (on_cpu && llc > 0 && info.weight_bytes < (uint64_t)llc)
                printf("note: the weights (%.1f MB) fit in the %.0f MB last-level cache, so the share "
                       "of memory bandwidth means little for this model\n",
                       (double)info.weight_bytes / 1e6, (double)llc / 1e6);
        }
    }
    rc = 0;
done:
    if (rc && !pp) fprintf(stderr, "gptoss %s: out of memory\n", cmd);
    free(pp);
    free(tg);
    free(ids);
    free(logits);
    gptoss_sampler_free(greedy);
    gptoss_session_free(s);
    gptoss_model_free(m);
    return rc;
}
