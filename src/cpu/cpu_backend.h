/* cpu_backend.h - the CPU backend's state, shared by cpu_backend.c (create,
 * forward orchestration, KV cache) and cpu_layers.c (matmul drivers,
 * attention, MoE). */
#ifndef GPTOSS_CPU_BACKEND_H
#define GPTOSS_CPU_BACKEND_H

#include "backend.h"
#include "cpu/cpu_internal.h"

typedef struct moe_task moe_task;

/* Small per-layer tensors converted to fp32 once at create. */
typedef struct {
    float *attn_norm, *mlp_norm;  /* [hidden] */
    float *q_b, *k_b, *v_b, *o_b; /* [qdim], [kvdim], [kvdim], [hidden] */
    float *sinks;                 /* [n_heads] */
    float *router_b;              /* [E] */
    float *gate_up_b;             /* [E, 2I] */
    float *down_b;                /* [E, hidden] */
} cpu_layer;

/* Scratch for one forward call, sized for `cap` tokens (grown on demand). */
typedef struct {
    int cap;
    float *x, *h, *q, *k, *v, *att, *o; /* [cap, hidden|qdim|kvdim] */
    float *rope;                        /* [cap, head_dim]: cos then sin */
    float *router;                      /* [cap, E] */
    int *topk;                          /* [cap, k] expert ids */
    float *topw;                        /* [cap, k] weights */
    int *arow;                          /* [cap, k] row of each assignment in xe/ye */
    float *xe;                          /* [cap*k, max(hidden, I)] gathered expert inputs */
    float *xp;                          /* [cap + pack_tb, kmax] tokens packed for gemm_packed */
    float *xpe;                         /* [cap*k + E*pack_tb, max(hidden, I)] same, per expert */
    float *act;                         /* [cap*k, I] SwiGLU outputs */
    float *ye;                          /* [cap*k, hidden] expert outputs */
    float *fin;                         /* [cap, hidden] normed rows that need logits */
    int *tok_slot, *tok_pos;            /* [cap] */
    float **gu_tmp;                     /* per thread [MM_RB * cap] */
} cpu_scratch;

struct backend {
    const model_weights *w;
    const gptoss_config *cfg;
    const cpu_kernels *kern;
    cpu_pool *pool;
    int n_threads;
    int max_context, max_seq;
    int ring;               /* sliding layers' positions per slot */
    int qdim, kvdim, kmax;  /* n_heads*head_dim, n_kv*head_dim, widest K of any matrix */
    cpu_layer *layers;
    float *final_norm;
    float *inv_freq;        /* [head_dim/2] */
    float rope_conc;
    float **kc, **vc;       /* [slot * n_layers + layer]; cap = ring or max_context positions:
                             * kc [n_kv, ceil(cap/16), head_dim, 16] (keys transposed in
                             * tiles of 16 positions), vc [cap, kvdim] */
    int *slot_len;
    float **tile;           /* per thread: fp32 weight tile of MM_RB rows [tile_floats],
                             * then one row [kmax] */
    size_t tile_floats;
    float **scores;         /* per thread [2 * group * score_ld] */
    int score_ld;           /* max_context rounded up to 16, plus 16 */
    moe_task *moe_tasks;    /* [cpu_moe_tasks_bytes] */
    cpu_scratch s;
    char kernels_desc[64];
};

#define MM_RB 56    /* weight rows per task in the matrix-matrix path */
#define MV_RB 1024  /* most weight rows per MoE task in the matrix-vector path (even) */
#ifndef GEMM_MIN
#define GEMM_MIN 20 /* tokens from which a weight tile is converted to fp32 first (measured
                       * crossover of the two paths on a Sapphire Rapids core) */
#endif

/* Packs N tokens of width K into s.xp (in parallel). */
void cpu_pack(backend *b, const float *X, int N, int K, float *XP);

/* Y[t][r] = W[r] . X[t] (+ bias[r]) for a bf16 matrix [rows, K] and N tokens. */
void cpu_matmul_bf16(backend *b, const tensor_view *W, int rows, int K, const float *X, int N,
                     float *Y, size_t ldy, const float *bias);
/* One output of cpu_matmul_bf16_multi: Y = W X (+ bias), W bf16 [rows, K]. */
typedef struct {
    const tensor_view *W;
    int rows;
    float *Y;
    size_t ldy;
    const float *bias;
} mm_out;
#define MM_MAX 4
/* n <= MM_MAX matrices of the same K applied to the same N tokens, as one
 * parallel region (one barrier, one packing of X). */
void cpu_matmul_bf16_multi(backend *b, const mm_out *outs, int n, int K, const float *X, int N);
void cpu_rmsnorm(backend *b, const float *x, const float *w, float *y, int N);
/* Attention of layer l for all tokens of the call (q/k/v already projected). */
void cpu_attention(backend *b, int l, int N);
/* x += moe_l(h) for all N tokens. */
void cpu_moe(backend *b, int l, int N);
size_t cpu_moe_tasks_bytes(const gptoss_config *c);

#endif
