/* cpu_backend.c - the CPU backend: creation (kernel choice, thread pool, the
 * small tensors in fp32, KV caches), the forward pass over all items of a
 * call batched together, and truncation. The big matrices are read straight
 * from the mmapped checkpoint (bf16 and MXFP4). */
#include "cpu/cpu_backend.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *xcalloc(size_t n, size_t size) { return calloc(n ? n : 1, size ? size : 1); }
/* Cache-line aligned buffer (freed with free): full-width vector loads and
 * stores of scratch rows, packed tokens and weight tiles then never split
 * across two lines (plain malloc of a large block is only 16-byte aligned). */
static void *amalloc(size_t n) { return aligned_alloc(64, (n + 63) / 64 * 64); }

/* A small tensor (bf16 or f32) with exactly n elements, as fp32. */
static gptoss_status to_f32(const tensor_view *t, size_t n, const char *what, float **out) {
    size_t esz = t->dtype == DTYPE_BF16 ? 2 : t->dtype == DTYPE_F32 ? 4 : 0;
    if (!t->data || !esz || t->nbytes != n * esz)
        return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED,
                                "cpu backend: tensor %s must be bf16 or f32 with %zu elements", what, n);
    float *f = malloc(n * sizeof(float));
    if (!f) return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "cpu backend: %s: out of memory", what);
    for (size_t i = 0; i < n; i++)
        f[i] = esz == 2 ? bf16_to_f32(((const uint16_t *)t->data)[i]) : ((const float *)t->data)[i];
    *out = f;
    return GPTOSS_OK;
}

static gptoss_status check_view(const tensor_view *t, tensor_dtype dt, size_t n, const char *what,
                                int layer) {
    size_t esz = dt == DTYPE_BF16 ? 2 : dt == DTYPE_F32 ? 4 : 1;
    if (!t->data || t->dtype != dt || t->nbytes != n * esz)
        return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED,
                                "cpu backend: layer %d tensor %s: expected %s with %zu elements", layer,
                                what, dt == DTYPE_BF16 ? "bf16" : "u8", n);
    return GPTOSS_OK;
}

/* YaRN inverse frequencies and concentration (spec section 3), in double. */
static void rope_params(const gptoss_config *c, float *inv_freq, float *conc) {
    int d = c->head_dim, half = d / 2;
    double base = c->rope_theta, f = c->yarn_factor;
    if (f <= 1.0) {
        for (int i = 0; i < half; i++) inv_freq[i] = (float)pow(base, -2.0 * i / d);
        *conc = 1.0f;
        return;
    }
    double two_pi = 2.0 * 3.14159265358979323846;
    double lo = d * log(c->yarn_original_ctx / (c->yarn_beta_fast * two_pi)) / (2.0 * log(base));
    double hi = d * log(c->yarn_original_ctx / (c->yarn_beta_slow * two_pi)) / (2.0 * log(base));
    if (c->yarn_truncate) {
        lo = floor(lo);
        hi = ceil(hi);
    }
    if (lo < 0) lo = 0;
    if (hi > d - 1) hi = d - 1;
    if (hi == lo) hi += 0.001;
    for (int i = 0; i < half; i++) {
        double fi = pow(base, -2.0 * i / d);
        double r = (i - lo) / (hi - lo);
        r = r < 0 ? 0 : r > 1 ? 1 : r;
        inv_freq[i] = (float)(fi * (1.0 - r) + fi / f * r);
    }
    *conc = (float)(0.1 * log(f) + 1.0);
}

static void free_scratch(backend *b) {
    cpu_scratch *s = &b->s;
    free(s->x); free(s->h); free(s->q); free(s->k); free(s->v); free(s->att); free(s->o);
    free(s->rope); free(s->router); free(s->topk); free(s->topw); free(s->arow);
    free(s->xe); free(s->xp); free(s->xpe); free(s->act); free(s->ye); free(s->fin);
    free(s->tok_slot); free(s->tok_pos);
    if (s->gu_tmp)
        for (int i = 0; i < b->n_threads; i++) free(s->gu_tmp[i]);
    free(s->gu_tmp);
    memset(s, 0, sizeof *s);
}

/* Makes the scratch hold at least n tokens. */
static gptoss_status grow_scratch(backend *b, int n) {
    if (n <= b->s.cap) return GPTOSS_OK;
    free_scratch(b);
    const gptoss_config *c = b->cfg;
    cpu_scratch *s = &b->s;
    size_t N = (size_t)n, H = (size_t)c->hidden, I = (size_t)c->intermediate;
    size_t E = (size_t)c->n_experts, k = (size_t)c->experts_per_token, HI = H > I ? H : I;
    size_t TB = (size_t)b->kern->pack_tb;
    int ok = (s->x = amalloc(N * H * 4)) && (s->h = amalloc(N * H * 4)) &&
             (s->q = amalloc(N * b->qdim * 4)) && (s->k = amalloc(N * b->kvdim * 4)) &&
             (s->v = amalloc(N * b->kvdim * 4)) && (s->att = amalloc(N * b->qdim * 4)) &&
             (s->o = amalloc(N * H * 4)) && (s->rope = amalloc(N * c->head_dim * 4)) &&
             (s->router = amalloc(N * E * 4)) && (s->topk = amalloc(N * k * sizeof(int))) &&
             (s->topw = amalloc(N * k * 4)) && (s->arow = amalloc(N * k * sizeof(int))) &&
             (s->xe = amalloc(N * k * HI * 4)) && (s->act = amalloc(N * k * I * 4)) &&
             (s->xp = amalloc((N + TB) * b->kmax * 4)) &&
             (s->xpe = amalloc((N * k + E * TB) * HI * 4)) &&
             (s->ye = amalloc(N * k * H * 4)) && (s->fin = amalloc(N * H * 4)) &&
             (s->tok_slot = amalloc(N * sizeof(int))) && (s->tok_pos = amalloc(N * sizeof(int))) &&
             (s->gu_tmp = xcalloc((size_t)b->n_threads, sizeof(float *)));
    /* gate_up outputs of one MoE task: <= MM_RB rows x N tokens (tiled path)
     * or <= MV_RB rows x (GEMM_MIN - 1) tokens (matrix-vector path). */
    size_t gu = N * MM_RB > (size_t)(GEMM_MIN - 1) * MV_RB ? N * MM_RB : (size_t)(GEMM_MIN - 1) * MV_RB;
    for (int i = 0; ok && i < b->n_threads; i++) ok = (s->gu_tmp[i] = amalloc(gu * 4)) != NULL;
    if (!ok) {
        free_scratch(b);
        return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "cpu backend: no memory for %d tokens of scratch", n);
    }
    s->cap = n;
    return GPTOSS_OK;
}

static void cpu_destroy(backend *b) {
    if (!b) return;
    if (b->pool) cpu_pool_destroy(b->pool);
    free_scratch(b);
    if (b->layers)
        for (int l = 0; l < b->cfg->n_layers; l++) {
            cpu_layer *L = &b->layers[l];
            free(L->attn_norm); free(L->mlp_norm); free(L->q_b); free(L->k_b); free(L->v_b);
            free(L->o_b); free(L->sinks); free(L->router_b); free(L->gate_up_b); free(L->down_b);
        }
    free(b->layers);
    if (b->kc)
        for (size_t i = 0; i < (size_t)b->max_seq * b->cfg->n_layers; i++) {
            free(b->kc[i]);
            free(b->vc[i]);
        }
    free(b->kc); free(b->vc);
    if (b->tile)
        for (int i = 0; i < b->n_threads; i++) free(b->tile[i]);
    if (b->scores)
        for (int i = 0; i < b->n_threads; i++) free(b->scores[i]);
    free(b->tile); free(b->scores);
    free(b->slot_len); free(b->final_norm); free(b->inv_freq); free(b->moe_tasks);
    free(b);
}

static gptoss_status load_layer(backend *b, int l) {
    const gptoss_config *c = b->cfg;
    const layer_weights *w = &b->w->layers[l];
    cpu_layer *L = &b->layers[l];
    size_t H = (size_t)c->hidden, I = (size_t)c->intermediate, E = (size_t)c->n_experts;
    size_t nb = (size_t)c->hidden / 32, nbi = (size_t)c->intermediate / 32;
    gptoss_status st;
    if ((st = to_f32(&w->attn_norm, H, "input_layernorm.weight", &L->attn_norm)) ||
        (st = to_f32(&w->mlp_norm, H, "post_attention_layernorm.weight", &L->mlp_norm)) ||
        (st = to_f32(&w->q_b, (size_t)b->qdim, "q_proj.bias", &L->q_b)) ||
        (st = to_f32(&w->k_b, (size_t)b->kvdim, "k_proj.bias", &L->k_b)) ||
        (st = to_f32(&w->v_b, (size_t)b->kvdim, "v_proj.bias", &L->v_b)) ||
        (st = to_f32(&w->o_b, H, "o_proj.bias", &L->o_b)) ||
        (st = to_f32(&w->sinks, (size_t)c->n_heads, "sinks", &L->sinks)) ||
        (st = to_f32(&w->router_b, E, "router.bias", &L->router_b)) ||
        (st = to_f32(&w->gate_up_bias, E * 2 * I, "gate_up_proj_bias", &L->gate_up_b)) ||
        (st = to_f32(&w->down_bias, E * H, "down_proj_bias", &L->down_b)) ||
        (st = check_view(&w->q_w, DTYPE_BF16, (size_t)b->qdim * H, "q_proj.weight", l)) ||
        (st = check_view(&w->k_w, DTYPE_BF16, (size_t)b->kvdim * H, "k_proj.weight", l)) ||
        (st = check_view(&w->v_w, DTYPE_BF16, (size_t)b->kvdim * H, "v_proj.weight", l)) ||
        (st = check_view(&w->o_w, DTYPE_BF16, H * (size_t)b->qdim, "o_proj.weight", l)) ||
        (st = check_view(&w->router_w, DTYPE_BF16, E * H, "router.weight", l)) ||
        (st = check_view(&w->gate_up_blocks, DTYPE_U8, E * 2 * I * nb * 16, "gate_up_proj_blocks", l)) ||
        (st = check_view(&w->gate_up_scales, DTYPE_U8, E * 2 * I * nb, "gate_up_proj_scales", l)) ||
        (st = check_view(&w->down_blocks, DTYPE_U8, E * H * nbi * 16, "down_proj_blocks", l)) ||
        (st = check_view(&w->down_scales, DTYPE_U8, E * H * nbi, "down_proj_scales", l)))
        return st;
    return GPTOSS_OK;
}

static gptoss_status cpu_create(const model_weights *w, const backend_params *p, backend **out) {
    if (!w || !p || !out) return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "cpu backend: NULL argument");
    *out = NULL;
    const gptoss_config *c = &w->cfg;
    if (p->max_context < 1 || p->max_sequences < 1 || p->n_threads < 0)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT,
                                "cpu backend: max_context %d, max_sequences %d, n_threads %d out of range",
                                p->max_context, p->max_sequences, p->n_threads);
    if (c->hidden % 32 || c->intermediate % 32 || c->head_dim % 2 || c->n_kv_heads < 1 ||
        c->n_heads % c->n_kv_heads || c->experts_per_token < 1 || c->experts_per_token > c->n_experts ||
        c->sliding_window < 1 || !c->layer_is_sliding)
        return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED, "cpu backend: unsupported model dimensions");
    const char *why;
    const cpu_kernels *kern = cpu_kernels_select(&why);
    if (!kern) return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED, "cpu backend: %s", why);
    backend *b = xcalloc(1, sizeof *b);
    if (!b) return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "cpu backend: out of memory");
    b->w = w;
    b->cfg = c;
    b->kern = kern;
    b->n_threads = p->n_threads ? p->n_threads : cpu_count();
    b->max_context = p->max_context;
    b->max_seq = p->max_sequences;
    b->ring = c->sliding_window + BACKEND_MAX_CHUNK;
    if (b->ring > b->max_context) b->ring = b->max_context;
    b->qdim = c->n_heads * c->head_dim;
    b->kvdim = c->n_kv_heads * c->head_dim;
    b->kmax = c->hidden > b->qdim ? c->hidden : b->qdim;
    if (c->intermediate > b->kmax) b->kmax = c->intermediate;
    snprintf(b->kernels_desc, sizeof b->kernels_desc, "%s", kern->name);
    gptoss_status st = GPTOSS_OK;
    size_t H = (size_t)c->hidden;
    if ((st = check_view(&w->embed, DTYPE_BF16, (size_t)c->vocab_size * H, "embed_tokens.weight", -1)) ||
        (st = check_view(&w->lm_head, DTYPE_BF16, (size_t)c->vocab_size * H, "lm_head.weight", -1)) ||
        (st = to_f32(&w->final_norm, H, "model.norm.weight", &b->final_norm)))
        goto fail;
    size_t nslots = (size_t)b->max_seq * c->n_layers;
    b->layers = xcalloc((size_t)c->n_layers, sizeof *b->layers);
    b->kc = xcalloc(nslots, sizeof *b->kc);
    b->vc = xcalloc(nslots, sizeof *b->vc);
    b->slot_len = xcalloc((size_t)b->max_seq, sizeof *b->slot_len);
    b->inv_freq = xcalloc((size_t)c->head_dim / 2, sizeof *b->inv_freq);
    b->tile = xcalloc((size_t)b->n_threads, sizeof *b->tile);
    b->scores = xcalloc((size_t)b->n_threads, sizeof *b->scores);
    b->moe_tasks = malloc(cpu_moe_tasks_bytes(c));
    if (!b->layers || !b->kc || !b->vc || !b->slot_len || !b->inv_freq || !b->tile || !b->scores ||
        !b->moe_tasks)
        goto oom;
    b->score_ld = (b->max_context + 15) / 16 * 16 + 16;
    b->tile_floats = cpu_tile_floats(MM_RB, b->kmax, kern->pack_rb);
    size_t group = (size_t)(c->n_heads / c->n_kv_heads);
    for (int i = 0; i < b->n_threads; i++)
        if (!(b->tile[i] = amalloc(sizeof(float) * (b->tile_floats + (size_t)b->kmax))) ||
            !(b->scores[i] = amalloc(sizeof(float) * 2 * group * (size_t)b->score_ld)))
            goto oom;
    for (int l = 0; l < c->n_layers; l++)
        if ((st = load_layer(b, l))) goto fail;
    /* calloc: pages of the caches are only committed once written. */
    for (size_t i = 0; i < nslots; i++) {
        size_t cap = c->layer_is_sliding[i % c->n_layers] ? (size_t)b->ring : (size_t)b->max_context;
        if (!(b->kc[i] = calloc((cap + 15) / 16 * 16 * b->kvdim, sizeof(float))) ||
            !(b->vc[i] = calloc(cap * b->kvdim, sizeof(float))))
            goto oom;
    }
    rope_params(c, b->inv_freq, &b->rope_conc);
    if (!(b->pool = cpu_pool_create(b->n_threads))) {
        st = gptoss_set_error(GPTOSS_ERR_BACKEND, "cpu backend: cannot start %d threads", b->n_threads);
        goto fail;
    }
    if (p->progress) p->progress(p->progress_user, w->total_bytes, w->total_bytes);
    *out = b;
    return GPTOSS_OK;
oom:
    st = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "cpu backend: out of memory (KV cache for %d x %d positions?)",
                          b->max_seq, b->max_context);
fail:
    cpu_destroy(b);
    return st;
}

static const char *cpu_kernels_name(const backend *b) { return b->kernels_desc; }

/* Whether slot can go back from cur to n positions: sliding layers must
 * still hold the window before n (the ring keeps the last `ring` positions). */
static int can_truncate(const backend *b, int n, int cur) {
    int earliest = n - b->cfg->sliding_window + 1;
    if (earliest < 0) earliest = 0;
    return earliest + b->ring >= cur;
}

static gptoss_status cpu_truncate(backend *b, int slot, int n, int cur_len) {
    if (!b || slot < 0 || slot >= b->max_seq)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "cpu backend: truncate: slot %d out of range", slot);
    int cur = b->slot_len[slot];
    if (cur_len != cur || n < 0 || n > cur)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT,
                                "cpu backend: truncate slot %d to %d: it holds %d positions (caller says %d)",
                                slot, n, cur, cur_len);
    if (!can_truncate(b, n, cur))
        return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED,
                                "cpu backend: truncate slot %d from %d to %d: sliding layers keep only the last %d positions",
                                slot, cur, n, b->ring);
    b->slot_len[slot] = n;
    return GPTOSS_OK;
}

static gptoss_status check_items(backend *b, const backend_item *items, int n_items, int *total) {
    const gptoss_config *c = b->cfg;
    *total = 0;
    for (int i = 0; i < n_items; i++) {
        const backend_item *it = &items[i];
        if (it->slot < 0 || it->slot >= b->max_seq || it->n < 1 || it->n > BACKEND_MAX_CHUNK ||
            it->pos < 0 || !it->tokens)
            return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT,
                                    "cpu backend: item %d: slot %d, pos %d, n %d out of range", i,
                                    it->slot, it->pos, it->n);
        for (int j = 0; j < i; j++)
            if (items[j].slot == it->slot)
                return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT,
                                        "cpu backend: items %d and %d use the same slot %d", j, i, it->slot);
        int cur = b->slot_len[it->slot];
        if (it->pos > cur || (it->pos < cur && !can_truncate(b, it->pos, cur)))
            return gptoss_set_error(it->pos > cur ? GPTOSS_ERR_INVALID_ARGUMENT : GPTOSS_ERR_UNSUPPORTED,
                                    "cpu backend: item %d: slot %d holds %d positions, not %d", i,
                                    it->slot, cur, it->pos);
        if (it->pos + it->n > b->max_context)
            return gptoss_set_error(GPTOSS_ERR_CONTEXT_FULL,
                                    "cpu backend: slot %d: %d + %d positions exceed max_context %d",
                                    it->slot, it->pos, it->n, b->max_context);
        for (int j = 0; j < it->n; j++)
            if (it->tokens[j] < 0 || it->tokens[j] >= c->vocab_size)
                return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT,
                                        "cpu backend: item %d: token %d at %d outside the vocabulary",
                                        i, (int)it->tokens[j], j);
        *total += it->n;
    }
    return GPTOSS_OK;
}

/* One pass of the network over items whose tokens fit the scratch. */
static void forward_group(backend *b, const backend_item *items, int n_items, int N, float *logits) {
    const gptoss_config *c = b->cfg;
    const cpu_kernels *k = b->kern;
    cpu_scratch *s = &b->s;
    size_t H = (size_t)c->hidden;
    int hd = c->head_dim, half = hd / 2;
    /* Tokens of all items, embeddings, RoPE tables. */
    for (int i = 0, t = 0; i < n_items; i++) {
        b->slot_len[items[i].slot] = items[i].pos;
        for (int j = 0; j < items[i].n; j++, t++) {
            s->tok_slot[t] = items[i].slot;
            s->tok_pos[t] = items[i].pos + j;
            k->bf16_to_f32((const uint16_t *)b->w->embed.data + (size_t)items[i].tokens[j] * H,
                           s->x + (size_t)t * H, (int)H);
            float *cs = s->rope + (size_t)t * hd;
            for (int d = 0; d < half; d++) {
                float ang = (float)s->tok_pos[t] * b->inv_freq[d];
                cs[d] = (float)cos((double)ang) * b->rope_conc;
                cs[half + d] = (float)sin((double)ang) * b->rope_conc;
            }
        }
    }
    for (int l = 0; l < c->n_layers; l++) {
        const layer_weights *lw = &b->w->layers[l];
        const cpu_layer *L = &b->layers[l];
        cpu_rmsnorm(b, s->x, L->attn_norm, s->h, N);
        const mm_out qkv[3] = {{&lw->q_w, b->qdim, s->q, (size_t)b->qdim, L->q_b},
                               {&lw->k_w, b->kvdim, s->k, (size_t)b->kvdim, L->k_b},
                               {&lw->v_w, b->kvdim, s->v, (size_t)b->kvdim, L->v_b}};
        cpu_matmul_bf16_multi(b, qkv, 3, (int)H, s->h, N);
        cpu_attention(b, l, N);
        cpu_matmul_bf16(b, &lw->o_w, (int)H, b->qdim, s->att, N, s->o, H, L->o_b);
        for (size_t i = 0; i < (size_t)N * H; i++) s->x[i] += s->o[i];
        cpu_rmsnorm(b, s->x, L->mlp_norm, s->h, N);
        cpu_moe(b, l, N);
    }
    /* Rows that need logits: all of a logits_all item, else its last. */
    int R = 0;
    for (int i = 0, t = 0; i < n_items; i++) {
        int first = items[i].logits_all ? 0 : items[i].n - 1;
        for (int j = first; j < items[i].n; j++)
            memcpy(s->h + (size_t)R++ * H, s->x + (size_t)(t + j) * H, sizeof(float) * H);
        t += items[i].n;
    }
    cpu_rmsnorm(b, s->h, b->final_norm, s->fin, R);
    cpu_matmul_bf16(b, &b->w->lm_head, c->vocab_size, (int)H, s->fin, R, logits,
                    (size_t)c->vocab_size, NULL);
    for (int i = 0; i < n_items; i++) b->slot_len[items[i].slot] = items[i].pos + items[i].n;
}

/* Items run together in groups of at most MAX_BATCH_TOKENS tokens (one item
 * is at most BACKEND_MAX_CHUNK), which bounds the scratch memory. */
#define MAX_BATCH_TOKENS 2048

static gptoss_status cpu_forward(backend *b, const backend_item *items, int n_items, float *logits) {
    if (!b || (n_items > 0 && (!items || !logits)) || n_items < 0)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "cpu backend: forward: NULL argument");
    if (n_items == 0) return GPTOSS_OK;
    int N;
    gptoss_status st = check_items(b, items, n_items, &N);
    if (st || (st = grow_scratch(b, N < MAX_BATCH_TOKENS ? N : MAX_BATCH_TOKENS))) return st;
    for (int i = 0; i < n_items;) {
        int n = 0, tokens = 0, rows = 0;
        while (i + n < n_items && tokens + items[i + n].n <= MAX_BATCH_TOKENS) {
            tokens += items[i + n].n;
            rows += items[i + n].logits_all ? items[i + n].n : 1;
            n++;
        }
        forward_group(b, items + i, n, tokens, logits);
        logits += (size_t)rows * b->cfg->vocab_size;
        i += n;
    }
    return GPTOSS_OK;
}

const backend_ops cpu_backend_ops = {
    "cpu", cpu_create, cpu_destroy, cpu_kernels_name, cpu_forward, cpu_truncate,
    NULL, /* host bandwidth: measured by the caller (cli/membw.c) */
    NULL, /* forward_pick: the engine samples the rows on the host */
};
