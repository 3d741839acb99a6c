/* cpu_internal.h - pieces of the CPU backend: the SIMD kernel table (one per
 * instruction set, chosen at run time), the thread pool, and the layer code.
 *
 * Matrix conventions: a weight matrix is [rows, K] row-major (one output per
 * row); activations are [tokens, K] row-major; results are written
 * Y[t * ldy + r]. MXFP4 rows are nblk blocks of 16 code bytes plus one E8M0
 * scale byte each (see the spec: low nibble = even index).
 *
 * MXFP4 kernels work in a per-block permuted order of K ("mx order", one per
 * kernel set, applied to the activations by mx_order): the matrix-vector
 * kernel multiplies the low nibbles of a block's 16 bytes by the first 16
 * permuted activations and the high nibbles by the last 16, and
 * mxfp4_to_f32 writes dequantized rows in the same order, so the
 * matrix-matrix path just packs permuted activations. The scalar and AVX2
 * order is [x0 x2 .. x30 | x1 x3 .. x31] (cpu_deinterleave32). */
#ifndef GPTOSS_CPU_INTERNAL_H
#define GPTOSS_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name; /* "scalar", "avx2", "avx512" */
    /* Y[t][r] = W[r] . X[t] for r < rows, t < nt; W bf16, converted on the fly. */
    void (*matvec_bf16)(const uint16_t *W, size_t ldw, int rows, int K,
                        const float *X, size_t ldx, int nt, float *Y, size_t ldy);
    /* Same with MXFP4 rows of nblk blocks; X in this set's mx order (K = 32 * nblk). */
    void (*matvec_mxfp4)(const uint8_t *blocks, const uint8_t *scales, int rows, int nblk,
                         const float *Xd, size_t ldx, int nt, float *Y, size_t ldy);
    void (*bf16_to_f32)(const uint16_t *src, float *dst, int n);
    /* d = x permuted into this set's mx order (K a multiple of 32; d != x). */
    void (*mx_order)(const float *x, float *d, int K);
    /* One MXFP4 row of nblk blocks to fp32, in mx order, in chunks of 16:
     * weight k (mx order) goes to dst[(k / 16) * cstride + k % 16]. cstride 16
     * writes the row contiguously; pack_rb * 16 writes it straight into its
     * place in a weight tile (see cpu_tile_put). */
    void (*mxfp4_to_f32)(const uint8_t *blocks, const uint8_t *scales, int nblk, float *dst,
                         size_t cstride);
    void (*axpy)(float a, const float *x, float *y, int n); /* y += a x */
    float (*exp_sum)(float *x, int n, float m);             /* x = exp(x - m); returns the sum */
    /* Attention scores of G query heads q[h*ldq + d] against ntiles tiles of
     * 16 keys stored transposed, Kt[(i*hd + d)*16 + lane]:
     * S[h*lds + 16*i + lane] = q_h . key(16*i + lane). */
    void (*attn_scores)(const float *q, size_t ldq, int G, int hd, const float *Kt, int ntiles,
                        float *S, size_t lds);
    /* out[h*ldo + d] += sum_{i<n} P[h*ldp + i] * V[i*ldv + d], h < G, d < hd. */
    void (*attn_pv)(const float *P, size_t ldp, int G, int n, const float *V, size_t ldv, int hd,
                    float *out, size_t ldo);
    float (*sumsq)(const float *x, int n);
    /* Matrix-matrix: Y[t][r] = W[r] . X[t] for r < rows, t < nt, with the
     * weights an fp32 tile in panels of pack_rb rows (cpu_tile_put) and the
     * tokens packed in blocks of pack_tb (cpu_pack_tokens). */
    int pack_tb, pack_rb;
    void (*gemm_packed)(const float *Wt, int rows, int K, const float *XP, int nt, float *Y,
                        size_t ldy);
} cpu_kernels;

extern const cpu_kernels cpu_kernels_scalar;
extern const cpu_kernels cpu_kernels_avx2;
extern const cpu_kernels cpu_kernels_avx512;

/* The best supported set, or the one GPTOSS_CPU_KERNELS=scalar|avx2|avx512
 * names. NULL (with *why set) when the named set is unknown or unsupported. */
const cpu_kernels *cpu_kernels_select(const char **why);
/* Whether this CPU can run the named set. */
int cpu_kernels_supported(const cpu_kernels *k);

/* E8M0 scale byte -> 2^(s-127) (s = 0 is the denormal 2^-127). */
extern float cpu_e8m0[256];
/* E2M1 code -> value. */
extern const float cpu_fp4[16];
/* cpu_fp4 times each E8M0 scale: [s][code] = cpu_fp4[code] * cpu_e8m0[s]
 * (16 KiB, one 64-byte line per scale). */
extern float cpu_fp4_scaled[256][16];
void cpu_tables_init(void);

/* Packs tokens X[t][k] (t < nt) into blocks of tb tokens, each [K][tb]
 * (token fastest), the last block zero padded: XP[(b*K + k)*tb + j] =
 * X[b*tb + j][k]. XP holds ceil(nt/tb)*tb*K floats. */
void cpu_pack_tokens(const float *X, size_t ldx, int nt, int K, int tb, float *XP);
/* The part of it for token block b only. */
/* Weight tiles for gemm_packed: rows in panels of rb rows; panel p starts at
 * p * rb * K16 (K16 = K rounded up to 16) and holds, for each chunk c of 16
 * columns, rb rows of 16 floats: W[p*rb + i][16*c + j] is at
 * tile[p*rb*K16 + c*rb*16 + i*16 + j] (zero padded past K). So one pointer
 * and small constant offsets reach every row a kernel block uses. */
static inline size_t cpu_k16(int K) { return ((size_t)K + 15) / 16 * 16; }
/* Floats a tile of `rows` rows needs. */
static inline size_t cpu_tile_floats(int rows, int K, int rb) {
    return ((size_t)rows + (size_t)rb - 1) / (size_t)rb * (size_t)rb * cpu_k16(K);
}
/* Puts row r (K floats) into its place in the tile. */
void cpu_tile_put(const float *row, int K, int rb, int r, float *tile);
void cpu_pack_block(const float *X, size_t ldx, int nt, int K, int tb, int b, float *XP);

/* Deinterleaves each block of 32 of x[0..K) into d (K a multiple of 32). */
void cpu_deinterleave32(const float *x, float *d, int K);

/* ------------------------------------------------------------ thread pool */
typedef struct cpu_pool cpu_pool;
/* fn(ctx, task, thread) runs once for each task in [0, n_tasks); thread is in
 * [0, n_threads) and identifies per-thread scratch. */
typedef void (*cpu_task_fn)(void *ctx, int task, int thread);
cpu_pool *cpu_pool_create(int n_threads); /* NULL on failure */
int cpu_pool_threads(const cpu_pool *p);
void cpu_pool_run(cpu_pool *p, cpu_task_fn fn, void *ctx, int n_tasks);
void cpu_pool_destroy(cpu_pool *p);

#endif
