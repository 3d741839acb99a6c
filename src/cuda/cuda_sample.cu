/* cuda_sample.cu - sampling reductions of logits rows on the device, so that
 * only the chosen id (or a few candidates) crosses to the host.
 *
 * Per row, as a pick_request asks (src/sampler_internal.h): argmax and max;
 * the log-sum-exp sum (logprobs); the temperature weight total; for pure
 * temperature (+ min-p) the inverse-CDF pick; for top-k / top-p the sampler's
 * keep threshold and every token at or above it. Everything reproduces the
 * host sampler (src/sampler.c) bit for bit: its fexp with __fmul_rn /
 * __fadd_rn (no FMA contraction), its chunk sums (8 lanes per 256-token
 * chunk, each summing its residue class in order, combined pairwise), its
 * pairwise tree over chunks (zero padding is exact) and its sequential
 * chunk-then-token walk (one thread: ~1000 dependent double adds).
 *
 * Five launches per group of <= CU_PICK_ROWS rows, after the forward (not
 * captured), then one small copy back (plus the candidates of top-k / top-p
 * rows, and a full row only when the threshold keeps more than
 * PICK_CAND_CAP tokens).
 */
#include "cuda_backend.h"

#include <stdlib.h>
#include <string.h>

extern "C" {
#include "util.h"
}

#define PK_T 256                /* threads of the chunk kernels = PICK_CHUNK */
#define PK_MAX_NB 4096          /* chunks per row: vocabularies up to 1,048,576 */
#define PK_ROW_T 1024           /* threads of the per-row kernel */

static_assert(PK_T == PICK_CHUNK, "one thread per token of a chunk");

struct cu_pick {
    int V, nb, host_rows;
    pick_request *rq_h, *rq_d;  /* [CU_PICK_ROWS] */
    pick_stats *st_h, *st_d;    /* [CU_PICK_ROWS] */
    float *bmax_d;              /* [CU_PICK_ROWS, nb] chunk maxima */
    int *bidx_d;                /* [CU_PICK_ROWS, nb] their lowest index */
    double *cs_t_d, *cs_1_d;    /* [CU_PICK_ROWS, nb] chunk sums at temperature / at 1 */
    float *tau_d;               /* [CU_PICK_ROWS] keep threshold */
    int32_t *cid_d;             /* [CU_PICK_ROWS, CAP] candidates (any order) */
    float *cl_d;
    int32_t *cid_h;             /* pinned [host_rows, CAP] */
    float *cl_h;
    float *rows_h;              /* [rows_h_cap, V] full rows, when needed */
    int rows_h_cap;
};

/* The host sampler's fexp (src/sampler.c), without contraction. */
static __device__ __forceinline__ float pk_fexp(float x) {
    float xc = x >= -87.0f ? x : -87.0f;
    float r = __fsub_rn(__fadd_rn(__fmul_rn(xc, 1.44269504f), 12582912.0f), 12582912.0f);
    float f = __fsub_rn(__fsub_rn(xc, __fmul_rn(r, 0.693145752f)), __fmul_rn(r, 1.42860677e-6f));
    float p = __fadd_rn(1.0f / 120, __fmul_rn(f, 1.0f / 720));
    p = __fadd_rn(1.0f / 24, __fmul_rn(f, p));
    p = __fadd_rn(1.0f / 6, __fmul_rn(f, p));
    p = __fadd_rn(0.5f, __fmul_rn(f, p));
    p = __fadd_rn(1.0f, __fmul_rn(f, p));
    p = __fadd_rn(1.0f, __fmul_rn(f, p));
    float e = __int_as_float(((int)r + 127) * (1 << 23));
    float y = __fmul_rn(p, e);
    return x >= -87.0f ? y : 0.0f;
}

static __device__ __forceinline__ float pk_weight(float l, float max, float mul) {
    return pk_fexp(__fmul_rn(__fsub_rn(l, max), mul));
}

/* (v, i) ranks before (w, j): larger value, lower index on ties. */
static __device__ __forceinline__ bool pk_better(float v, int i, float w, int j) {
    return v > w || (v == w && i < j);
}

/* 1: chunk maxima and their lowest index (NaN ignored). grid (nb, R). */
__global__ void k_pick_chunk_max(const float *logits, int V, int nb, float *bmax, int *bidx) {
    __shared__ float sv[PK_T / 32];
    __shared__ int si[PK_T / 32];
    int r = blockIdx.y, i = blockIdx.x * PK_T + threadIdx.x;
    float v = i < V ? logits[(size_t)r * V + i] : -INFINITY;
    if (v != v) v = -INFINITY;
    int idx = i;
    for (int o = 16; o > 0; o >>= 1) {
        float w = __shfl_xor_sync(0xffffffffu, v, o);
        int j = __shfl_xor_sync(0xffffffffu, idx, o);
        if (pk_better(w, j, v, idx)) { v = w; idx = j; }
    }
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) { sv[warp] = v; si[warp] = idx; }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int k = 1; k < PK_T / 32; k++)
            if (pk_better(sv[k], si[k], v, idx)) { v = sv[k]; idx = si[k]; }
        bmax[(size_t)r * nb + blockIdx.x] = v;
        bidx[(size_t)r * nb + blockIdx.x] = idx;
    }
}

/* 2: row max / argmax from the chunk maxima; clears the row's results. grid R. */
__global__ void k_pick_row_max(const float *bmax, const int *bidx, int nb, pick_stats *st) {
    __shared__ float sv[PK_ROW_T / 32];
    __shared__ int si[PK_ROW_T / 32];
    int r = blockIdx.x;
    float v = -INFINITY;
    int idx = 0x7fffffff;
    for (int b = threadIdx.x; b < nb; b += blockDim.x) {
        float w = bmax[(size_t)r * nb + b];
        int j = bidx[(size_t)r * nb + b];
        if (pk_better(w, j, v, idx)) { v = w; idx = j; }
    }
    for (int o = 16; o > 0; o >>= 1) {
        float w = __shfl_xor_sync(0xffffffffu, v, o);
        int j = __shfl_xor_sync(0xffffffffu, idx, o);
        if (pk_better(w, j, v, idx)) { v = w; idx = j; }
    }
    if ((threadIdx.x & 31) == 0) { sv[threadIdx.x >> 5] = v; si[threadIdx.x >> 5] = idx; }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int k = 1; k < (int)(blockDim.x >> 5); k++)
            if (pk_better(sv[k], si[k], v, idx)) { v = sv[k]; idx = si[k]; }
        pick_stats s = {};
        s.argmax = v == -INFINITY ? -1 : idx;
        s.max = v;
        s.pick = -1;
        st[r] = s;
    }
}

/* Does row r need its sums? (max finite; the request asks for them) */
static __device__ __forceinline__ bool pk_live(const pick_stats &s) {
    return s.argmax >= 0 && s.max != INFINITY;
}
static __device__ __forceinline__ bool pk_need_total(const pick_request &q) {
    return q.mode == PICK_TEMP || (q.mode == PICK_TRUNC && q.top_k == 0);
}

/* Chunk sum of w[0..256) over lanes 0..7 (the host's chunk_sum): lane k sums
 * w[k], w[k+8], ... in order; pairwise combine. Valid in lane 0. */
static __device__ __forceinline__ double pk_chunk_sum(const float *w, float min_w) {
    int k = threadIdx.x;
    double acc = 0.0;
    for (int t = 0; t < PK_T / 8; t++) {
        float x = w[8 * t + k];
        acc = __dadd_rn(acc, (double)(x >= min_w ? x : 0.0f));
    }
    acc = __dadd_rn(acc, __shfl_xor_sync(0xffu, acc, 1));
    acc = __dadd_rn(acc, __shfl_xor_sync(0xffu, acc, 2));
    acc = __dadd_rn(acc, __shfl_xor_sync(0xffu, acc, 4));
    return acc;
}

/* 3: chunk sums at temperature (min-p for TEMP) and at 1 (log-sum-exp). grid (nb, R). */
__global__ void k_pick_chunk_sums(const float *logits, int V, int nb, const pick_request *rq,
                                  const pick_stats *st, double *cs_t, double *cs_1) {
    __shared__ float w[PK_T];
    int r = blockIdx.y, i = blockIdx.x * PK_T + threadIdx.x;
    pick_request q = rq[r];
    pick_stats s = st[r];
    if (!pk_live(s)) return;
    bool need_t = pk_need_total(q), need_1 = q.want_lse != 0;
    float l = i < V ? logits[(size_t)r * V + i] : 0.0f;
    for (int pass = 0; pass < 2; pass++) {
        if (!(pass == 0 ? need_t : need_1)) continue;
        float mul = pass == 0 ? q.inv_t : 1.0f;
        float min_w = pass == 0 && q.mode == PICK_TEMP ? q.min_p : 0.0f;
        w[threadIdx.x] = i < V ? pk_weight(l, s.max, mul) : 0.0f; /* padding adds +0: exact */
        __syncthreads();
        if (threadIdx.x < 8) {
            double c = pk_chunk_sum(w, min_w);
            if (threadIdx.x == 0) (pass == 0 ? cs_t : cs_1)[(size_t)r * nb + blockIdx.x] = c;
        }
        __syncthreads();
    }
}

/* Pairwise tree over cs[0..nb) (the host's tree_push / tree_total), in buf. */
static __device__ double pk_tree(const double *cs, int nb, double *buf) {
    int P = 2;
    while (P < nb) P <<= 1;
    for (int i = threadIdx.x; i < P / 2; i += blockDim.x) { /* first level from global */
        double a = 2 * i < nb ? cs[2 * i] : 0.0, b = 2 * i + 1 < nb ? cs[2 * i + 1] : 0.0;
        buf[i] = __dadd_rn(a, b);
    }
    __syncthreads();
    for (int len = P / 4; len >= 1; len >>= 1) { /* len <= 1024 = blockDim */
        double v = 0.0;
        if ((int)threadIdx.x < len) v = __dadd_rn(buf[2 * threadIdx.x], buf[2 * threadIdx.x + 1]);
        __syncthreads();
        if ((int)threadIdx.x < len) buf[threadIdx.x] = v;
        __syncthreads();
    }
    double t = buf[0];
    __syncthreads();
    return t;
}

/* 4: per row: totals, the temperature pick, the top-k / top-p threshold. grid R, PK_ROW_T threads. */
__global__ void __launch_bounds__(PK_ROW_T) k_pick_row(const float *logits, int V, int nb,
                                                       const pick_request *rq, pick_stats *st,
                                                       const double *cs_t, const double *cs_1,
                                                       const float *bmax, float *tau_out) {
    __shared__ double buf[PK_MAX_NB / 2];
    __shared__ float fs[PK_MAX_NB];
    __shared__ int s_b;
    __shared__ double s_cum;
    int r = blockIdx.x;
    pick_request q = rq[r];
    pick_stats s = st[r];
    if (!pk_live(s)) return;
    const double *ct = cs_t + (size_t)r * nb;
    if (q.want_lse) s.lse_sum = pk_tree(cs_1 + (size_t)r * nb, nb, buf);
    if (pk_need_total(q)) s.total = pk_tree(ct, nb, buf);
    const float *l = logits + (size_t)r * V;
    if (q.mode == PICK_TEMP) {
        if (threadIdx.x == 0) { /* the host's chunk walk */
            double u = __dmul_rn(q.u, s.total), cum = 0.0, cum_last = 0.0;
            int b = 0, last = 0;
            for (; b < nb; b++) {
                double c = ct[b];
                if (c > 0.0) { last = b; cum_last = cum; }
                if (u < __dadd_rn(cum, c)) break;
                cum = __dadd_rn(cum, c);
            }
            if (b == nb) { b = last; cum = cum_last; }
            s_b = b;
            s_cum = cum;
        }
        __syncthreads();
        int i0 = s_b * PK_T, m = V - i0 < PK_T ? V - i0 : PK_T;
        if ((int)threadIdx.x < m) fs[threadIdx.x] = pk_weight(l[i0 + threadIdx.x], s.max, q.inv_t);
        __syncthreads();
        if (threadIdx.x == 0) { /* the host's token walk */
            double u = __dmul_rn(q.u, s.total), cum = s_cum;
            int pick = -1;
            for (int i = 0; i < m; i++) {
                float w = fs[i];
                if (w < q.min_p || w == 0.0f) continue;
                pick = i0 + i;
                cum = __dadd_rn(cum, (double)w);
                if (u < cum) break;
            }
            s.pick = pick;
            s.pick_logit = pick >= 0 ? l[pick] : 0.0f;
        }
    } else if (q.mode == PICK_TRUNC) { /* the host's keep_threshold */
        int P = 2;
        while (P < nb) P <<= 1;
        for (int i = threadIdx.x; i < P; i += blockDim.x) fs[i] = i < nb ? bmax[(size_t)r * nb + i] : -INFINITY;
        __syncthreads();
        for (int k = 2; k <= P; k <<= 1) /* bitonic sort, descending */
            for (int j = k >> 1; j > 0; j >>= 1) {
                for (int i = threadIdx.x; i < P; i += blockDim.x) {
                    int x = i ^ j;
                    if (x > i) {
                        float a = fs[i], b = fs[x];
                        if ((i & k) == 0 ? a < b : a > b) { fs[i] = b; fs[x] = a; }
                    }
                }
                __syncthreads();
            }
        if (threadIdx.x == 0) {
            float tau = -INFINITY;
            if (nb >= 2 && q.top_k > 0) {
                if (q.top_k <= nb) tau = fs[q.top_k - 1];
            } else if (nb >= 2) {
                double target = __dmul_rn((double)q.top_p, s.total), cum = 0.0;
                for (int b = 0; b < nb && fs[b] > -INFINITY; b++) {
                    cum = __dadd_rn(cum, (double)pk_weight(fs[b], s.max, q.inv_t));
                    if (cum >= target) { tau = fs[b]; break; }
                }
            }
            tau_out[r] = tau;
        }
    }
    if (threadIdx.x == 0) st[r] = s;
}

/* 5: top-k / top-p rows: every token at or above the threshold (warp-aggregated
 * slots; the host restores id order). grid (nb, R). */
__global__ void k_pick_collect(const float *logits, int V, const pick_request *rq, pick_stats *st,
                               const float *tau, int32_t *cid, float *cl) {
    int r = blockIdx.y, i = blockIdx.x * PK_T + threadIdx.x;
    if (rq[r].mode != PICK_TRUNC || !pk_live(st[r])) return;
    float t = tau[r], v = i < V ? logits[(size_t)r * V + i] : -INFINITY;
    bool keep = v >= t && v > -INFINITY;
    unsigned ball = __ballot_sync(0xffffffffu, keep);
    if (!ball) return;
    int lane = threadIdx.x & 31, leader = __ffs(ball) - 1, base = 0;
    if (lane == leader) base = atomicAdd(&st[r].n_cand, __popc(ball));
    base = __shfl_sync(0xffffffffu, base, leader);
    if (keep) {
        int k = base + __popc(ball & ((1u << lane) - 1));
        if (k < PICK_CAND_CAP) {
            cid[(size_t)r * PICK_CAND_CAP + k] = i;
            cl[(size_t)r * PICK_CAND_CAP + k] = v;
        }
    }
}

/* ------------------------------------------------------------- host side */

void cu_pick_free(cu_pick *p) {
    if (!p) return;
    cudaFreeHost(p->rq_h);
    cudaFreeHost(p->st_h);
    cudaFreeHost(p->cid_h);
    cudaFreeHost(p->cl_h);
    cudaFree(p->rq_d);
    cudaFree(p->st_d);
    cudaFree(p->bmax_d);
    cudaFree(p->bidx_d);
    cudaFree(p->cs_t_d);
    cudaFree(p->cs_1_d);
    cudaFree(p->tau_d);
    cudaFree(p->cid_d);
    cudaFree(p->cl_d);
    free(p->rows_h);
    free(p);
}

gptoss_status cu_pick_reserve(cu_pick **pp, int V, int rows) {
    if (V < 1 || V > PK_MAX_NB * PK_T)
        return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED, "cuda: device sampling covers vocabularies up to %d, not %d",
                                PK_MAX_NB * PK_T, V);
    cu_pick *p = *pp;
    if (p && p->V == V && p->host_rows >= rows) return GPTOSS_OK;
    if (!p) {
        p = (cu_pick *)calloc(1, sizeof *p);
        if (!p) return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "cuda: device sampling: out of memory");
        int nb = (V + PK_T - 1) / PK_T;
        size_t R = CU_PICK_ROWS, C = PICK_CAND_CAP;
        cudaError_t e = cudaMallocHost((void **)&p->rq_h, R * sizeof(pick_request));
        if (!e) e = cudaMallocHost((void **)&p->st_h, R * sizeof(pick_stats));
        if (!e) e = cudaMalloc((void **)&p->rq_d, R * sizeof(pick_request));
        if (!e) e = cudaMalloc((void **)&p->st_d, R * sizeof(pick_stats));
        if (!e) e = cudaMalloc((void **)&p->bmax_d, R * nb * sizeof(float));
        if (!e) e = cudaMalloc((void **)&p->bidx_d, R * nb * sizeof(int));
        if (!e) e = cudaMalloc((void **)&p->cs_t_d, R * nb * sizeof(double));
        if (!e) e = cudaMalloc((void **)&p->cs_1_d, R * nb * sizeof(double));
        if (!e) e = cudaMalloc((void **)&p->tau_d, R * sizeof(float));
        if (!e) e = cudaMalloc((void **)&p->cid_d, R * C * sizeof(int32_t));
        if (!e) e = cudaMalloc((void **)&p->cl_d, R * C * sizeof(float));
        if (e) {
            cu_pick_free(p);
            return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "cuda: device sampling buffers: %s", cudaGetErrorString(e));
        }
        p->V = V;
        p->nb = nb;
        *pp = p;
    }
    if (p->host_rows < rows) { /* candidates of every row of one call stay on the host */
        cudaFreeHost(p->cid_h);
        cudaFreeHost(p->cl_h);
        p->cid_h = NULL;
        p->cl_h = NULL;
        p->host_rows = 0;
        size_t n = (size_t)rows * PICK_CAND_CAP;
        cudaError_t e = cudaMallocHost((void **)&p->cid_h, n * sizeof(int32_t));
        if (!e) e = cudaMallocHost((void **)&p->cl_h, n * sizeof(float));
        if (e) return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "cuda: device sampling: %d pinned candidate rows: %s",
                                       rows, cudaGetErrorString(e));
        p->host_rows = rows;
    }
    return GPTOSS_OK;
}

gptoss_status cu_pick_run(cu_pick *p, const float *logits_d, const pick_request *rq, pick_result *res,
                          int R, int row0, cudaStream_t s) {
    if (R < 1 || R > CU_PICK_ROWS || row0 < 0 || row0 + R > p->host_rows)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "cuda: device sampling: rows %d..%d out of range",
                                row0, row0 + R);
    int V = p->V, nb = p->nb;
    memcpy(p->rq_h, rq, (size_t)R * sizeof *rq);
    cudaError_t e = cudaMemcpyAsync(p->rq_d, p->rq_h, (size_t)R * sizeof *rq, cudaMemcpyHostToDevice, s);
    if (e) return cu_fail(e, "device sampling: requests");
    dim3 chunks(nb, R);
    k_pick_chunk_max<<<chunks, PK_T, 0, s>>>(logits_d, V, nb, p->bmax_d, p->bidx_d);
    k_pick_row_max<<<R, PK_ROW_T, 0, s>>>(p->bmax_d, p->bidx_d, nb, p->st_d);
    k_pick_chunk_sums<<<chunks, PK_T, 0, s>>>(logits_d, V, nb, p->rq_d, p->st_d, p->cs_t_d, p->cs_1_d);
    k_pick_row<<<R, PK_ROW_T, 0, s>>>(logits_d, V, nb, p->rq_d, p->st_d, p->cs_t_d, p->cs_1_d, p->bmax_d,
                                      p->tau_d);
    k_pick_collect<<<chunks, PK_T, 0, s>>>(logits_d, V, p->rq_d, p->st_d, p->tau_d, p->cid_d, p->cl_d);
    e = cudaGetLastError();
    if (!e) e = cudaMemcpyAsync(p->st_h, p->st_d, (size_t)R * sizeof(pick_stats), cudaMemcpyDeviceToHost, s);
    if (!e) e = cudaStreamSynchronize(s);
    if (e) return cu_fail(e, "device sampling");
    int need = 0;
    for (int i = 0; i < R; i++) {
        const pick_stats *st = &p->st_h[i];
        size_t off = (size_t)(row0 + i) * PICK_CAND_CAP;
        res[i].st = *st;
        res[i].cand_id = p->cid_h + off;
        res[i].cand_logit = p->cl_h + off;
        res[i].row = NULL;
        need += pick_needs_row(&rq[i], st);
        if (rq[i].mode != PICK_TRUNC || st->n_cand < 1 || st->n_cand > PICK_CAND_CAP) continue;
        size_t dev = (size_t)i * PICK_CAND_CAP, n = (size_t)st->n_cand;
        e = cudaMemcpyAsync(p->cid_h + off, p->cid_d + dev, n * sizeof(int32_t), cudaMemcpyDeviceToHost, s);
        if (!e) e = cudaMemcpyAsync(p->cl_h + off, p->cl_d + dev, n * sizeof(float), cudaMemcpyDeviceToHost, s);
        if (e) return cu_fail(e, "device sampling: candidates");
    }
    if (need) { /* rare: the threshold kept too many tokens; the host samples the row */
        if (p->rows_h_cap < p->host_rows) { /* sized for a whole call at its first need */
            free(p->rows_h);
            p->rows_h_cap = 0;
            p->rows_h = (float *)malloc((size_t)p->host_rows * V * sizeof(float));
            if (!p->rows_h) return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "cuda: device sampling: row buffer");
            p->rows_h_cap = p->host_rows;
        }
        for (int i = 0; i < R && !e; i++)
            if (pick_needs_row(&rq[i], &p->st_h[i])) {
                float *dst = p->rows_h + (size_t)(row0 + i) * V;
                e = cudaMemcpyAsync(dst, logits_d + (size_t)i * V, (size_t)V * sizeof(float),
                                    cudaMemcpyDeviceToHost, s);
                res[i].row = dst;
            }
    }
    if (!e) e = cudaStreamSynchronize(s);
    if (e) return cu_fail(e, "device sampling: copy back");
    return GPTOSS_OK;
}
