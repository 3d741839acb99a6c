/* cpu_layers.c - the parallel pieces of the CPU forward pass: bf16 matrix
 * products, RMSNorm, attention with sinks over the KV cache, and the MoE.
 *
 * Threading: every step is a list of independent tasks run by the pool
 * (row blocks of a matrix; (token, KV head) pairs of attention; (expert,
 * row block) pairs of the MoE). Each task writes disjoint outputs. */
#include "cpu/cpu_backend.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------- bf16 matmul */
typedef struct {
    backend *b;
    const uint16_t *W;
    int rows, K, N, rb;
    const float *X, *XP;
    float *Y;
    size_t ldy;
    const float *bias;
} mm_job;

static void mm_task(void *ctx, int task, int thread) {
    mm_job *j = ctx;
    const cpu_kernels *k = j->b->kern;
    int r0 = task * j->rb, nr = j->rows - r0 < j->rb ? j->rows - r0 : j->rb;
    const uint16_t *W = j->W + (size_t)r0 * j->K;
    if (j->N < GEMM_MIN) {
        k->matvec_bf16(W, (size_t)j->K, nr, j->K, j->X, (size_t)j->K, j->N, j->Y + r0, j->ldy);
    } else {
        float *tile = j->b->tile[thread], *row = tile + j->b->tile_floats;
        for (int r = 0; r < nr; r++) {
            k->bf16_to_f32(W + (size_t)r * j->K, row, j->K);
            cpu_tile_put(row, j->K, k->pack_rb, r, tile);
        }
        k->gemm_packed(tile, nr, j->K, j->XP, j->N, j->Y + r0, j->ldy);
    }
    if (j->bias)
        for (int t = 0; t < j->N; t++) {
            float *y = j->Y + (size_t)t * j->ldy + r0;
            for (int r = 0; r < nr; r++) y[r] += j->bias[r0 + r];
        }
}

/* Rows per task: MM_RB for the tiled path; for matrix-vector about 8 tasks
 * per thread, a multiple of 4 rows, at least 16. */
static int row_block(const backend *b, int rows, int N) {
    if (N >= GEMM_MIN) return MM_RB;
    int rb = rows / (8 * b->n_threads);
    rb = (rb + 3) & ~3;
    if (rb < 16) rb = 16;
    if (rb > 1024) rb = 1024;
    return rb;
}

typedef struct {
    const float *X;
    float *XP;
    int N, K, tb;
} pack_job;

static void pack_task(void *ctx, int blk, int thread) {
    (void)thread;
    pack_job *j = ctx;
    cpu_pack_block(j->X, (size_t)j->K, j->N, j->K, j->tb, blk, j->XP);
}

void cpu_pack(backend *b, const float *X, int N, int K, float *XP) {
    pack_job j = {X, XP, N, K, b->kern->pack_tb};
    cpu_pool_run(b->pool, pack_task, &j, (N + j.tb - 1) / j.tb);
}

/* Several matrices of the same input in one parallel region: task t is
 * row block t - first[m] of the matrix m whose range holds it. */
typedef struct {
    mm_job job[MM_MAX];
    int first[MM_MAX + 1];
    int n;
} mm_multi;

static void mm_multi_task(void *ctx, int task, int thread) {
    mm_multi *mm = ctx;
    int m = 0;
    while (task >= mm->first[m + 1]) m++;
    mm_task(&mm->job[m], task - mm->first[m], thread);
}

void cpu_matmul_bf16_multi(backend *b, const mm_out *outs, int n, int K, const float *X, int N) {
    if (N >= GEMM_MIN) cpu_pack(b, X, N, K, b->s.xp);
    mm_multi mm = {.n = n};
    for (int m = 0; m < n && m < MM_MAX; m++) {
        const mm_out *o = &outs[m];
        mm.job[m] = (mm_job){b, o->W->data, o->rows, K, N, row_block(b, o->rows, N), X, b->s.xp,
                             o->Y, o->ldy, o->bias};
        mm.first[m + 1] = mm.first[m] + (o->rows + mm.job[m].rb - 1) / mm.job[m].rb;
    }
    cpu_pool_run(b->pool, mm_multi_task, &mm, mm.first[n < MM_MAX ? n : MM_MAX]);
}

void cpu_matmul_bf16(backend *b, const tensor_view *W, int rows, int K, const float *X, int N,
                     float *Y, size_t ldy, const float *bias) {
    mm_out o = {W, rows, Y, ldy, bias};
    cpu_matmul_bf16_multi(b, &o, 1, K, X, N);
}

/* ----------------------------------------------------------------- RMSNorm */
typedef struct {
    backend *b;
    const float *x, *w;
    float *y;
} norm_job;

static void norm_task(void *ctx, int t, int thread) {
    (void)thread;
    norm_job *j = ctx;
    int H = j->b->cfg->hidden;
    const float *x = j->x + (size_t)t * H;
    float *y = j->y + (size_t)t * H;
    float ms = j->b->kern->sumsq(x, H) / (float)H;
    float inv = 1.0f / sqrtf(ms + j->b->cfg->rms_eps);
    for (int i = 0; i < H; i++) y[i] = j->w[i] * (x[i] * inv);
}

void cpu_rmsnorm(backend *b, const float *x, const float *w, float *y, int N) {
    norm_job j = {b, x, w, y};
    cpu_pool_run(b->pool, norm_task, &j, N);
}

/* --------------------------------------------------------------- attention */
typedef struct {
    backend *b;
    int l, sliding;
} att_job;

/* One (token, KV head) pair: the n_heads/n_kv query heads that share it.
 * Keys are stored transposed in tiles of 16 positions ([tile][d][16]) so the
 * scores of 16 keys come out of one vector without horizontal sums; the
 * visible positions lo..p are at most two runs of the (ring) index space. */
static void att_task(void *ctx, int task, int thread) {
    att_job *j = ctx;
    backend *b = j->b;
    const gptoss_config *c = b->cfg;
    const cpu_kernels *k = b->kern;
    int hd = c->head_dim, G = c->n_heads / c->n_kv_heads;
    int t = task / c->n_kv_heads, g = task % c->n_kv_heads;
    int slot = b->s.tok_slot[t], p = b->s.tok_pos[t];
    int cap = j->sliding ? b->ring : b->max_context, ntiles = (cap + 15) / 16;
    size_t ci = (size_t)slot * c->n_layers + j->l;
    const float *Kt = b->kc[ci] + (size_t)g * ntiles * hd * 16;
    const float *V = b->vc[ci] + (size_t)g * hd;
    int lo = j->sliding && p - c->sliding_window + 1 > 0 ? p - c->sliding_window + 1 : 0;
    int n = p - lo + 1;
    size_t lds = (size_t)b->score_ld;
    float *T = b->scores[thread], *S = T + (size_t)G * lds; /* tile scores, visible scores */
    const float *q = b->s.q + (size_t)t * b->qdim + (size_t)g * G * hd;
    float *out = b->s.att + (size_t)t * b->qdim + (size_t)g * G * hd;
    int start[2] = {lo % cap, 0}, cnt[2];
    cnt[0] = n < cap - start[0] ? n : cap - start[0];
    cnt[1] = n - cnt[0];
    for (int sg = 0, off = 0; sg < 2; off += cnt[sg], sg++) {
        if (!cnt[sg]) continue;
        int t0 = start[sg] / 16, t1 = (start[sg] + cnt[sg] - 1) / 16;
        k->attn_scores(q, (size_t)hd, G, hd, Kt + (size_t)t0 * hd * 16, t1 - t0 + 1, T, lds);
        for (int h = 0; h < G; h++)
            memcpy(S + h * lds + off, T + h * lds + (start[sg] - t0 * 16), sizeof(float) * (size_t)cnt[sg]);
    }
    const float scale = 1.0f / sqrtf((float)hd);
    float inv[G];
    for (int h = 0; h < G; h++) {
        float *sc = S + h * lds, sink = b->layers[j->l].sinks[g * G + h], m = sink;
        for (int i = 0; i < n; i++) {
            sc[i] *= scale;
            if (sc[i] > m) m = sc[i];
        }
        inv[h] = 1.0f / (k->exp_sum(sc, n, m) + expf(sink - m));
    }
    memset(out, 0, sizeof(float) * (size_t)G * hd);
    k->attn_pv(S, lds, G, cnt[0], V + (size_t)start[0] * b->kvdim, (size_t)b->kvdim, hd, out, (size_t)hd);
    if (cnt[1]) k->attn_pv(S + cnt[0], lds, G, cnt[1], V, (size_t)b->kvdim, hd, out, (size_t)hd);
    for (int h = 0; h < G; h++)
        for (int d = 0; d < hd; d++) out[h * hd + d] *= inv[h];
}

/* RoPE (half-split) on q and k of every token, then k (transposed tiles)
 * and v into the cache. */
static void rope_store_task(void *ctx, int t, int thread) {
    (void)thread;
    att_job *j = ctx;
    backend *b = j->b;
    const gptoss_config *c = b->cfg;
    int hd = c->head_dim, half = hd / 2;
    const float *cs = b->s.rope + (size_t)t * hd, *sn = cs + half;
    float *q = b->s.q + (size_t)t * b->qdim, *kk = b->s.k + (size_t)t * b->kvdim;
    for (int h = 0; h < c->n_heads + c->n_kv_heads; h++) {
        float *x = h < c->n_heads ? q + (size_t)h * hd : kk + (size_t)(h - c->n_heads) * hd;
        for (int i = 0; i < half; i++) {
            float x1 = x[i], x2 = x[i + half];
            x[i] = x1 * cs[i] - x2 * sn[i];
            x[i + half] = x2 * cs[i] + x1 * sn[i];
        }
    }
    int slot = b->s.tok_slot[t], p = b->s.tok_pos[t];
    int cap = j->sliding ? b->ring : b->max_context, ntiles = (cap + 15) / 16;
    int row = p % cap;
    size_t ci = (size_t)slot * c->n_layers + j->l;
    for (int g = 0; g < c->n_kv_heads; g++) {
        float *kt = b->kc[ci] + (((size_t)g * ntiles + row / 16) * hd) * 16 + row % 16;
        for (int d = 0; d < hd; d++) kt[(size_t)d * 16] = kk[g * hd + d];
    }
    memcpy(b->vc[ci] + (size_t)row * b->kvdim, b->s.v + (size_t)t * b->kvdim,
           sizeof(float) * (size_t)b->kvdim);
}

void cpu_attention(backend *b, int l, int N) {
    att_job j = {b, l, b->cfg->layer_is_sliding[l] != 0};
    /* Every key of the chunk is stored before any query reads the cache. */
    cpu_pool_run(b->pool, rope_store_task, &j, N);
    cpu_pool_run(b->pool, att_task, &j, N * b->cfg->n_kv_heads);
}

/* --------------------------------------------------------------------- MoE */
/* Whether an expert with cnt tokens takes the tiled path. Per 32-weight
 * block and token, the matrix-vector kernel issues about 3 vector ops (2
 * FMAs, decode shared by 4 tokens); the tiled one 2 FMAs per 16 token lanes
 * (lanes past cnt wasted) plus a one-off decode (~7 ops) shared by all cnt
 * tokens. Up to GEMM_MIN - 1 tokens (and from 64) the choice is fixed, which
 * bounds the matrix-vector tasks' scratch. */
static int moe_gemm(int cnt) {
    if (cnt >= 64) return 1;
    if (cnt < 12) return 0;
    int lanes = (cnt + 15) / 16 * 16;
    return 2 * lanes + 7 < 3 * cnt;
}

struct moe_task {
    int e, r0, nr;  /* expert, first row, rows */
    int off, cnt;   /* its tokens: rows off..off+cnt of xe/act/ye */
    size_t poff;    /* its packed inputs in xpe (moe_gemm(cnt)) */
};

size_t cpu_moe_tasks_bytes(const gptoss_config *c) {
    int rows = 2 * c->intermediate > c->hidden ? 2 * c->intermediate : c->hidden;
    return sizeof(moe_task) * (size_t)c->n_experts * (size_t)((rows + MM_RB - 1) / MM_RB);
}

typedef struct {
    backend *b;
    int l;
    moe_task *tasks;
    int gate_up;    /* 1: gate_up + SwiGLU, 0: down */
} moe_job;

static void moe_run_task(void *ctx, int ti, int thread) {
    moe_job *j = ctx;
    backend *b = j->b;
    const gptoss_config *c = b->cfg;
    const cpu_kernels *k = b->kern;
    const layer_weights *lw = &b->w->layers[j->l];
    const moe_task *m = &j->tasks[ti];
    int H = c->hidden, I = c->intermediate;
    int K = j->gate_up ? H : I, rows = j->gate_up ? 2 * I : H, nblk = K / 32;
    const uint8_t *blocks = (const uint8_t *)(j->gate_up ? lw->gate_up_blocks.data : lw->down_blocks.data);
    const uint8_t *scales = (const uint8_t *)(j->gate_up ? lw->gate_up_scales.data : lw->down_scales.data);
    size_t row0 = (size_t)m->e * rows + m->r0;
    blocks += row0 * nblk * 16;
    scales += row0 * nblk;
    const float *X = j->gate_up ? b->s.xe + (size_t)m->off * H : b->s.act + (size_t)m->off * I;
    size_t ldx = (size_t)K;
    float *Y;
    size_t ldy;
    if (j->gate_up) {
        Y = b->s.gu_tmp[thread];
        ldy = (size_t)m->nr;
    } else {
        Y = b->s.ye + (size_t)m->off * H + m->r0;
        ldy = (size_t)H;
    }
    if (!moe_gemm(m->cnt)) {
        k->matvec_mxfp4(blocks, scales, m->nr, nblk, X, ldx, m->cnt, Y, ldy);
    } else {
        /* Each row dequantized straight into its place in the tile (K is a
         * multiple of 32, so no padding). */
        float *tile = b->tile[thread];
        const int rb = k->pack_rb;
        for (int r = 0; r < m->nr; r++)
            k->mxfp4_to_f32(blocks + (size_t)r * nblk * 16, scales + (size_t)r * nblk, nblk,
                            tile + (size_t)(r / rb) * rb * K + (size_t)(r % rb) * 16, (size_t)rb * 16);
        k->gemm_packed(tile, m->nr, K, b->s.xpe + m->poff, m->cnt, Y, ldy);
    }
    const cpu_layer *L = &b->layers[j->l];
    if (j->gate_up) {
        const float *bias = L->gate_up_b + (size_t)m->e * 2 * I + m->r0;
        const float lim = c->swiglu_limit, alpha = c->swiglu_alpha;
        for (int t = 0; t < m->cnt; t++) {
            const float *y = Y + (size_t)t * ldy;
            float *a = b->s.act + (size_t)(m->off + t) * I + m->r0 / 2;
            for (int r = 0; r < m->nr; r += 2) {
                float gate = y[r] + bias[r], up = y[r + 1] + bias[r + 1];
                gate = gate < lim ? gate : lim;
                up = up < -lim ? -lim : (up > lim ? lim : up);
                a[r / 2] = gate / (1.0f + expf(-alpha * gate)) * (up + 1.0f);
            }
        }
    } else {
        const float *bias = L->down_b + (size_t)m->e * H + m->r0;
        for (int t = 0; t < m->cnt; t++) {
            float *y = Y + (size_t)t * ldy;
            for (int r = 0; r < m->nr; r++) y[r] += bias[r];
        }
    }
}

/* Builds the (expert, row block) task list for matrices of `rows` rows:
 * blocks of MM_RB rows for the experts on the tiled path (and those with
 * GEMM_MIN or more tokens on the matrix-vector path: their outputs must fit
 * the scratch); for the other matrix-vector experts (decode) large blocks,
 * about 8 tasks per thread over all of them, so each task streams one long contiguous run of weights
 * (the kernel's software prefetch stays inside its own rows). */
static int moe_tasks(const backend *b, const int *cnt, const int *off, const size_t *poff, int E,
                     int rows, moe_task *out) {
    int n = 0, mv_rows = 0;
    for (int e = 0; e < E; e++)
        if (cnt[e] && cnt[e] < GEMM_MIN && !moe_gemm(cnt[e])) mv_rows += rows;
    int mv_rb = mv_rows / (8 * b->n_threads);
    mv_rb = (mv_rb + 7) & ~7;
    mv_rb = mv_rb < MM_RB ? MM_RB : mv_rb > MV_RB ? MV_RB : mv_rb;
    for (int e = 0; e < E; e++) {
        if (!cnt[e]) continue;
        int rb = cnt[e] < GEMM_MIN && !moe_gemm(cnt[e]) ? mv_rb : MM_RB;
        for (int r = 0; r < rows; r += rb)
            out[n++] = (moe_task){e, r, rows - r < rb ? rows - r : rb, off[e], cnt[e], poff[e]};
    }
    return n;
}

/* Permutes the inputs (width K, rows of src) of each expert in place into
 * the kernels' mx order (see cpu_internal.h), and packs them for the
 * experts with enough tokens for the matrix-matrix kernel. */
typedef struct {
    backend *b;
    float *src;
    int K;
    const int *cnt, *off;
    const size_t *poff;
} epack_job;

static void epack_task(void *ctx, int e, int thread) {
    (void)thread;
    epack_job *j = ctx;
    if (!j->cnt[e]) return;
    float tmp[j->K];
    for (int r = j->off[e]; r < j->off[e] + j->cnt[e]; r++) {
        memcpy(tmp, j->src + (size_t)r * j->K, sizeof tmp);
        j->b->kern->mx_order(tmp, j->src + (size_t)r * j->K, j->K);
    }
    if (moe_gemm(j->cnt[e]))
        cpu_pack_tokens(j->src + (size_t)j->off[e] * j->K, (size_t)j->K, j->cnt[e], j->K,
                        j->b->kern->pack_tb, j->b->s.xpe + j->poff[e]);
}

static void moe_prepare(backend *b, float *src, int K, const int *cnt, const int *off, size_t *poff) {
    int E = b->cfg->n_experts, tb = b->kern->pack_tb;
    size_t o = 0;
    for (int e = 0; e < E; e++) {
        poff[e] = o;
        if (moe_gemm(cnt[e])) o += (size_t)((cnt[e] + tb - 1) / tb) * tb * K;
    }
    epack_job j = {b, src, K, cnt, off, poff};
    cpu_pool_run(b->pool, epack_task, &j, E);
}

/* Router top-k of one token: largest logits, ties to the lower index;
 * weights = softmax over the chosen k. */
static void route(const float *logits, int E, int kk, int *idx, float *wt) {
    for (int j = 0; j < kk; j++) {
        int best = -1;
        for (int e = 0; e < E; e++) {
            int taken = 0;
            for (int i = 0; i < j; i++) taken |= idx[i] == e;
            if (!taken && (best < 0 || logits[e] > logits[best])) best = e;
        }
        idx[j] = best;
    }
    float m = logits[idx[0]], s = 0.0f;
    for (int j = 0; j < kk; j++) s += (wt[j] = expf(logits[idx[j]] - m));
    for (int j = 0; j < kk; j++) wt[j] /= s;
}

void cpu_moe(backend *b, int l, int N) {
    const gptoss_config *c = b->cfg;
    const layer_weights *lw = &b->w->layers[l];
    const cpu_layer *L = &b->layers[l];
    int E = c->n_experts, kk = c->experts_per_token, H = c->hidden, I = c->intermediate;
    cpu_scratch *s = &b->s;
    cpu_matmul_bf16(b, &lw->router_w, E, H, s->h, N, s->router, (size_t)E, L->router_b);
    int cnt[E], off[E], fill[E];
    memset(cnt, 0, sizeof cnt);
    for (int t = 0; t < N; t++) {
        route(s->router + (size_t)t * E, E, kk, s->topk + (size_t)t * kk, s->topw + (size_t)t * kk);
        for (int j = 0; j < kk; j++) cnt[s->topk[(size_t)t * kk + j]]++;
    }
    for (int e = 0, o = 0; e < E; e++) {
        off[e] = o;
        fill[e] = 0;
        o += cnt[e];
    }
    /* Gather each expert's tokens contiguously. */
    for (int t = 0; t < N; t++)
        for (int j = 0; j < kk; j++) {
            int e = s->topk[(size_t)t * kk + j], row = off[e] + fill[e]++;
            s->arow[(size_t)t * kk + j] = row;
            const float *src = s->h + (size_t)t * H;
            float *dst = s->xe + (size_t)row * H;
            memcpy(dst, src, sizeof(float) * (size_t)H);
        }
    moe_task *tasks = b->moe_tasks;
    moe_job j = {b, l, tasks, 1};
    size_t poff[E];
    moe_prepare(b, s->xe, H, cnt, off, poff);
    int nt = moe_tasks(b, cnt, off, poff, E, 2 * I, tasks);
    cpu_pool_run(b->pool, moe_run_task, &j, nt);
    moe_prepare(b, s->act, I, cnt, off, poff);
    j.gate_up = 0;
    nt = moe_tasks(b, cnt, off, poff, E, H, tasks);
    cpu_pool_run(b->pool, moe_run_task, &j, nt);
    for (int t = 0; t < N; t++)
        for (int jj = 0; jj < kk; jj++)
            b->kern->axpy(s->topw[(size_t)t * kk + jj], s->ye + (size_t)s->arow[(size_t)t * kk + jj] * H,
                          s->x + (size_t)t * H, H);
}
