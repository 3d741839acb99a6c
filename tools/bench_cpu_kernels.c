/* bench_cpu_kernels.c - micro-benchmark of the CPU matrix kernels (not built
 * by the Makefile). Build by hand after `make BUILD=build-x CUDA=0`:
 *
 *   cc -O2 -std=c11 -D_GNU_SOURCE -pthread -Iinclude -Isrc -o build-x/bench_cpu_kernels \
 *      tools/bench_cpu_kernels.c build-x/libgptoss.a -ljansson -lpcre2-8 -lmicrohttpd -lm
 *   build-x/bench_cpu_kernels [set] [MB] [threads]
 *
 * Measures GB/s of matvec_mxfp4 and matvec_bf16 (1 token) over a weight
 * buffer of MB megabytes (default 1024: from memory) and a 1 MB one (from
 * cache), with 1..threads threads each taking a contiguous share of rows,
 * and the GFLOPS of gemm_packed on a 56-row tile and 64 tokens. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu/cpu_internal.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const cpu_kernels *k;
    int mx;            /* 1: MXFP4, 0: bf16 */
    const uint8_t *w;  /* weights */
    const uint8_t *sc; /* MXFP4 scales */
    int rows, K, reps;
    const float *x;
    float *y;
} job;

static void *run_part(void *arg) {
    job *j = arg;
    for (int r = 0; r < j->reps; r++) {
        if (j->mx)
            j->k->matvec_mxfp4(j->w, j->sc, j->rows, j->K / 32, j->x, (size_t)j->K, 1, j->y, 1);
        else
            j->k->matvec_bf16((const uint16_t *)j->w, (size_t)j->K, j->rows, j->K, j->x, (size_t)j->K,
                              1, j->y, 1);
    }
    return NULL;
}

/* GB/s of one kernel over `rows` rows of K, split over nth threads. */
static double bench_matvec(const cpu_kernels *k, int mx, uint8_t *w, uint8_t *sc, int rows, int K,
                           const float *x, float *y, int nth, int reps) {
    size_t rowbytes = mx ? (size_t)K / 32 * 17 : (size_t)K * 2;
    job jobs[8];
    pthread_t th[8];
    double best = 0;
    for (int trial = 0; trial < 3; trial++) {
        double t0 = now();
        for (int i = 0; i < nth; i++) {
            int r0 = rows * i / nth, r1 = rows * (i + 1) / nth;
            jobs[i] = (job){k, mx, mx ? w + (size_t)r0 * K / 32 * 16 : w + (size_t)r0 * K * 2,
                            sc + (size_t)r0 * K / 32, r1 - r0, K, reps, x, y + r0};
            if (i) pthread_create(&th[i], NULL, run_part, &jobs[i]);
        }
        run_part(&jobs[0]);
        for (int i = 1; i < nth; i++) pthread_join(th[i], NULL);
        double gbs = (double)rowbytes * rows * reps / (now() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    return best;
}

int main(int argc, char **argv) {
    const char *set = argc > 1 ? argv[1] : "avx512";
    size_t mb = argc > 2 ? (size_t)atoi(argv[2]) : 1024;
    int maxth = argc > 3 ? atoi(argv[3]) : 2;
    if (maxth < 1 || maxth > 8) maxth = 2;
    setenv("GPTOSS_CPU_KERNELS", set, 1);
    const char *why = NULL;
    const cpu_kernels *k = cpu_kernels_select(&why);
    if (!k) {
        fprintf(stderr, "kernel set %s: %s\n", set, why ? why : "unsupported");
        return 1;
    }
    const int K = 2880;
    size_t bytes = mb << 20;
    uint8_t *w = aligned_alloc(64, bytes + 64);
    uint8_t *sc = aligned_alloc(64, bytes / 16 + 64);
    float *x = aligned_alloc(64, sizeof(float) * K), *y = aligned_alloc(64, sizeof(float) * (bytes / 1024 + 1024));
    if (!w || !sc || !x || !y) return 1;
    /* Finite normal bf16 values (random bits would include denormals, whose
     * products take slow microcode assists); any byte is a valid MXFP4 pair. */
    for (size_t i = 0; i < bytes / 2; i++) {
        uint16_t h = (uint16_t)(i * 2654435761u >> 13);
        ((uint16_t *)w)[i] = (uint16_t)((h & 0x807F) | 0x3E00);
    }
    for (size_t i = 0; i < bytes / 16; i++) sc[i] = (uint8_t)(120 + i % 8);
    for (int i = 0; i < K; i++) x[i] = (float)(i % 7) * 0.25f - 0.7f;
    for (int mx = 1; mx >= 0; mx--) {
        size_t rowbytes = mx ? (size_t)K / 32 * 17 : (size_t)K * 2;
        int rows_mem = (int)(bytes / rowbytes), rows_c = (int)((1u << 20) / rowbytes);
        for (int nth = 1; nth <= maxth; nth++) {
            double m = bench_matvec(k, mx, w, sc, rows_mem, K, x, y, nth, 2);
            double c = bench_matvec(k, mx, w, sc, rows_c / nth * nth, K, x, y, nth, 400);
            printf("%-6s %-5s threads %d: %6.2f GB/s from memory (%zu MB), %6.2f GB/s from cache (1 MB)\n",
                   k->name, mx ? "mxfp4" : "bf16", nth, m, mb, c);
        }
    }
    /* gemm_packed: 56 rows x K, 64 tokens. */
    int rows = 56, nt = argc > 4 ? atoi(argv[4]) : 64;
    if (nt < 1 || nt > 4096) nt = 64;
    float *tile = aligned_alloc(64, sizeof(float) * cpu_tile_floats(rows, K, k->pack_rb));
    float *X = aligned_alloc(64, sizeof(float) * (size_t)nt * K);
    float *XP = aligned_alloc(64, sizeof(float) * (size_t)(nt + k->pack_tb) * K);
    float *Y = aligned_alloc(64, sizeof(float) * (size_t)nt * rows);
    float *row = aligned_alloc(64, sizeof(float) * K);
    for (int r = 0; r < rows; r++) {
        for (int i = 0; i < K; i++) row[i] = (float)((r + i) % 5) * 0.1f;
        cpu_tile_put(row, K, k->pack_rb, r, tile);
    }
    for (size_t i = 0; i < (size_t)nt * K; i++) X[i] = (float)(i % 9) * 0.1f;
    cpu_pack_tokens(X, (size_t)K, nt, K, k->pack_tb, XP);
    double best = 0;
    for (int trial = 0; trial < 5; trial++) {
        double t0 = now();
        int reps = 50;
        for (int r = 0; r < reps; r++) k->gemm_packed(tile, rows, K, XP, nt, Y, (size_t)rows);
        double gf = 2.0 * rows * K * nt * reps / (now() - t0) / 1e9;
        if (gf > best) best = gf;
    }
    printf("%-6s gemm_packed %d rows x %d tokens x K %d: %.1f GFLOPS (1 thread)\n", k->name, rows, nt, K, best);
    return 0;
}
