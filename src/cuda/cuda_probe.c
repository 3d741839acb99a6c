/* cuda_probe.c - a small driver for measurements on the GPU machine (not part
 * of the library; built by tools/device_prep.sh, run by tools/device_run.sh):
 *
 *   cuda_probe DIR steps IDS.i32 OUT.f32     decode path: one token per append,
 *                                            logits of every step -> OUT [n x vocab]
 *   cuda_probe DIR prefill IDS.i32 OUT.f32   one append of all ids, every row
 *   cuda_probe DIR mem CTX                   device memory used with max_context CTX
 *   cuda_probe DIR bench P N REPS            prefill P random tokens, decode N; JSON
 *   cuda_probe DIR batch B N                 B sessions decoding N steps together; JSON
 */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gptoss.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int die(const char *what) {
    fprintf(stderr, "cuda_probe: %s: %s\n", what, gptoss_last_error());
    return 1;
}

static int32_t *read_ids(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    int32_t *ids = malloc((size_t)sz);
    *n = (size_t)sz / 4;
    if (!ids || fread(ids, 4, *n, f) != *n) { fclose(f); free(ids); return NULL; }
    fclose(f);
    return ids;
}

static gptoss_model *load(const char *dir, int ctx, int seqs) {
    gptoss_model_params p;
    gptoss_model_params_default(&p);
    p.device = "cuda";
    p.max_context = ctx;
    p.max_sequences = seqs;
    gptoss_model *m = NULL;
    double t0 = now();
    if (gptoss_model_load(dir, &p, &m) != GPTOSS_OK) return NULL;
    fprintf(stderr, "cuda_probe: loaded %s in %.2f s\n", dir, now() - t0);
    return m;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: cuda_probe DIR steps|prefill|mem|bench|batch ...\n");
        return 2;
    }
    const char *dir = argv[1], *mode = argv[2];
    if (!strcmp(mode, "steps") || !strcmp(mode, "prefill")) {
        if (argc < 5) return 2;
        size_t n;
        int32_t *ids = read_ids(argv[3], &n);
        if (!ids || !n) { fprintf(stderr, "cuda_probe: cannot read %s\n", argv[3]); return 1; }
        gptoss_model *m = load(dir, 4096, 1);
        if (!m) return die("load");
        gptoss_model_info info;
        gptoss_model_get_info(m, &info);
        size_t V = (size_t)info.vocab_size;
        float *lg = malloc(n * V * sizeof(float));
        gptoss_session *s;
        if (!lg || gptoss_session_create(m, &s) != GPTOSS_OK) return die("session");
        if (!strcmp(mode, "steps")) {
            for (size_t i = 0; i < n; i++)
                if (gptoss_session_append(s, ids + i, 1, lg + i * V, 0) != GPTOSS_OK) return die("append");
        } else if (gptoss_session_append(s, ids, n, lg, 1) != GPTOSS_OK) {
            return die("append");
        }
        FILE *f = fopen(argv[4], "wb");
        if (!f || fwrite(lg, sizeof(float), n * V, f) != n * V) { fprintf(stderr, "cuda_probe: write failed\n"); return 1; }
        fclose(f);
        gptoss_session_free(s);
        gptoss_model_free(m);
        free(lg);
        free(ids);
        return 0;
    }
    if (!strcmp(mode, "mem")) {
        int ctx = argc > 3 ? atoi(argv[3]) : 32768;
        size_t f0, f1, tot;
        cudaFree(0);
        cudaMemGetInfo(&f0, &tot);
        gptoss_model *m = load(dir, ctx, 1);
        if (!m) return die("load");
        cudaMemGetInfo(&f1, &tot);
        printf("{\"max_context\": %d, \"device_bytes_used\": %zu, \"device_gib_used\": %.3f, "
               "\"device_total_gib\": %.3f, \"context_baseline_used_gib\": %.3f}\n",
               ctx, f0 - f1, (f0 - f1) / 1073741824.0, tot / 1073741824.0, (tot - f0) / 1073741824.0);
        gptoss_model_free(m);
        return 0;
    }
    if (!strcmp(mode, "bench") || !strcmp(mode, "batch")) {
        int bench = !strcmp(mode, "bench");
        int P = argc > 3 ? atoi(argv[3]) : 512, N = argc > 4 ? atoi(argv[4]) : 128;
        int reps = bench ? (argc > 5 ? atoi(argv[5]) : 3) : 1;
        int B = bench ? 1 : P;
        gptoss_model *m = load(dir, 4096, B);
        if (!m) return die("load");
        gptoss_model_info info;
        gptoss_model_get_info(m, &info);
        size_t V = (size_t)info.vocab_size;
        float *lg = malloc((size_t)B * V * sizeof(float));
        int nid = (P + N + 8 > 80 ? P + N + 8 : 80) * B;
        int32_t *ids = malloc((size_t)nid * sizeof(int32_t));
        uint64_t r = 88172645463325252ull;
        for (int i = 0; i < nid; i++) {
            r ^= r << 13; r ^= r >> 7; r ^= r << 17;
            ids[i] = (int32_t)(r % 199998);
        }
        gptoss_session *ss[256];
        for (int b = 0; b < B; b++)
            if (gptoss_session_create(m, &ss[b]) != GPTOSS_OK) return die("session");
        if (bench) {
            /* warm-up */
            if (gptoss_session_append(ss[0], ids, 64, lg, 0) || gptoss_session_append(ss[0], ids + 64, 1, lg, 0))
                return die("warm-up");
            double best_p = 0, best_d = 0, sum_p = 0, sum_d = 0;
            for (int k = 0; k < reps; k++) {
                gptoss_session_reset(ss[0]);
                double t0 = now();
                if (gptoss_session_append(ss[0], ids, (size_t)P, lg, 0)) return die("prefill");
                double t1 = now();
                for (int i = 0; i < N; i++)
                    if (gptoss_session_append(ss[0], ids + P + i, 1, lg, 0)) return die("decode");
                double t2 = now();
                double pp = P / (t1 - t0), dd = N / (t2 - t1);
                sum_p += pp; sum_d += dd;
                if (pp > best_p) best_p = pp;
                if (dd > best_d) best_d = dd;
            }
            printf("{\"prompt_tokens\": %d, \"decode_tokens\": %d, \"reps\": %d, \"prefill_tok_s_mean\": %.1f, "
                   "\"prefill_tok_s_best\": %.1f, \"decode_tok_s_mean\": %.2f, \"decode_tok_s_best\": %.2f, "
                   "\"bytes_per_token\": %llu, \"weight_bytes\": %llu, \"kernels\": \"%s\"}\n",
                   P, N, reps, sum_p / reps, best_p, sum_d / reps, best_d,
                   (unsigned long long)info.bytes_per_token, (unsigned long long)info.weight_bytes,
                   info.kernels ? info.kernels : "");
        } else {
            for (int b = 0; b < B; b++)
                if (gptoss_session_append(ss[b], ids + b * 16, 16, lg, 0)) return die("prefill");
            double t0 = now();
            for (int i = 0; i < N; i++)
                if (gptoss_decode_batch(ss, ids + (size_t)i * B, (size_t)B, lg)) return die("decode_batch");
            double t = now() - t0;
            printf("{\"batch\": %d, \"steps\": %d, \"step_ms\": %.3f, \"total_tok_s\": %.1f}\n", B, N,
                   1e3 * t / N, (double)B * N / t);
        }
        for (int b = 0; b < B; b++) gptoss_session_free(ss[b]);
        gptoss_model_free(m);
        free(lg);
        free(ids);
        return 0;
    }
    fprintf(stderr, "cuda_probe: unknown mode %s\n", mode);
    return 2;
}
