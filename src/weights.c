/* weights.c - finds the safetensors shards of a Hugging Face gpt-oss folder
 * (model.safetensors, or the shards named by model.safetensors.index.json),
 * maps them, and binds every tensor of the spec to a view after checking its
 * dtype and shape against the config. Subfolders (original/, metal/) are never read. */
#include "model.h"
#include "safetensors.h"
#include "util.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"

struct model_files {
    st_file *files;
    int n_files;
    json_t *weight_map; /* tensor name -> file name; NULL for a single file */
};

static void files_free(model_files *mf) {
    if (!mf) return;
    for (int i = 0; i < mf->n_files; i++) st_close(&mf->files[i]);
    free(mf->files);
    if (mf->weight_map) json_decref(mf->weight_map);
    free(mf);
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static gptoss_status open_file(const char *dir, const char *fname, st_file *f) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, fname) >= (int)sizeof path)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "%s: path too long", dir);
    return st_open(path, fname, f);
}

/* Reads the index, validates weight_map and opens each distinct shard once. */
static gptoss_status open_sharded(const char *dir, model_files *mf) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, INDEX_NAME);
    char *text;
    size_t len;
    gptoss_status st = read_file(path, &text, &len);
    if (st) return st;
    json_error_t err;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    free(text);
    if (!root)
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", INDEX_NAME, err.line,
                                err.column, err.text);
    json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(wm)) {
        json_decref(root);
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: no \"weight_map\" object", INDEX_NAME);
    }
    mf->weight_map = json_incref(wm);
    json_decref(root);
    size_t n = json_object_size(wm);
    mf->files = calloc(n ? n : 1, sizeof *mf->files);
    if (!mf->files) return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "%s: out of memory", INDEX_NAME);
    const char *key;
    json_t *v;
    json_object_foreach(wm, key, v) {
        const char *fname = json_is_string(v) ? json_string_value(v) : NULL;
        if (!fname || !*fname || strchr(fname, '/') || !strcmp(fname, ".") || !strcmp(fname, ".."))
            return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: weight_map[\"%s\"]: expected a file name in the folder",
                                    INDEX_NAME, key);
        int known = 0;
        for (int i = 0; i < mf->n_files && !known; i++) known = !strcmp(mf->files[i].name, fname);
        if (known) continue;
        snprintf(path, sizeof path, "%s/%s", dir, fname);
        if (!file_exists(path))
            return gptoss_set_error(GPTOSS_ERR_IO, "%s: shard %s (holding %s) is missing", INDEX_NAME, fname, key);
        if ((st = open_file(dir, fname, &mf->files[mf->n_files]))) return st;
        mf->n_files++;
    }
    return GPTOSS_OK;
}

/* Finds `name`: through the index when there is one. On failure sets the error. */
static gptoss_status find_tensor(const model_files *mf, const char *name, const st_tensor **t,
                                 const char **fname) {
    const st_file *f = &mf->files[0];
    if (mf->weight_map) {
        json_t *v = json_object_get(mf->weight_map, name);
        if (!v) return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: tensor %s is missing", INDEX_NAME, name);
        f = NULL;
        for (int i = 0; i < mf->n_files && !f; i++)
            if (!strcmp(mf->files[i].name, json_string_value(v))) f = &mf->files[i];
        if (!f) return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: tensor %s: shard not opened", INDEX_NAME, name);
    }
    *fname = f->name;
    *t = st_find(f, name);
    if (!*t) {
        if (mf->weight_map)
            return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: tensor %s is missing (the index places it there)",
                                    f->name, name);
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: tensor %s is missing", f->name, name);
    }
    return GPTOSS_OK;
}

/* Binds one tensor, checking dtype and shape. alt_f32: F32 also accepted. */
static gptoss_status bind(model_weights *w, tensor_view *out, const char *name, tensor_dtype want,
                          int alt_f32, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    const st_tensor *t = NULL;
    const char *fname = "";
    gptoss_status st = find_tensor(w->files, name, &t, &fname);
    if (st) return st;
    static const char *names[] = { "BF16", "F32", "U8" };
    tensor_dtype got;
    if (!strcmp(t->dtype, "BF16")) got = DTYPE_BF16;
    else if (!strcmp(t->dtype, "F32")) got = DTYPE_F32;
    else if (!strcmp(t->dtype, "U8")) got = DTYPE_U8;
    else got = (tensor_dtype)-1;
    if (got != want && !(alt_f32 && got == DTYPE_F32))
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: tensor %s: dtype %s does not match config (expected %s%s)",
                                fname, name, t->dtype, names[want], alt_f32 ? " or F32" : "");
    int64_t exp[4] = { d0, d1, d2, d3 };
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == exp[i];
    if (!same) {
        char a[160], b[160];
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: tensor %s: shape %s does not match config (expected %s)",
                                fname, name, st_shape_str(t->shape, t->ndim, a, sizeof a),
                                st_shape_str(exp, ndim, b, sizeof b));
    }
    out->data = t->data;
    out->dtype = got;
    out->ndim = ndim;
    memset(out->shape, 0, sizeof out->shape);
    for (int i = 0; i < ndim; i++) out->shape[i] = exp[i];
    out->nbytes = (size_t)(t->end - t->begin);
    w->total_bytes += out->nbytes;
    return GPTOSS_OK;
}

static gptoss_status bind_layer(model_weights *w, int i) {
    const gptoss_config *c = &w->cfg;
    layer_weights *L = &w->layers[i];
    int64_t H = c->hidden, I = c->intermediate, E = c->n_experts;
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    char n[160];
    gptoss_status st;
#define B(field, suffix, dt, f32, nd, a, b_, c_, d)                                          \
    do {                                                                                  \
        snprintf(n, sizeof n, "model.layers.%d.%s", i, suffix);                           \
        if ((st = bind(w, &L->field, n, dt, f32, nd, a, b_, c_, d)) != GPTOSS_OK) return st; \
    } while (0)
    B(attn_norm, "input_layernorm.weight", DTYPE_BF16, 0, 1, H, 0, 0, 0);
    B(q_w, "self_attn.q_proj.weight", DTYPE_BF16, 0, 2, q, H, 0, 0);
    B(q_b, "self_attn.q_proj.bias", DTYPE_BF16, 0, 1, q, 0, 0, 0);
    B(k_w, "self_attn.k_proj.weight", DTYPE_BF16, 0, 2, kv, H, 0, 0);
    B(k_b, "self_attn.k_proj.bias", DTYPE_BF16, 0, 1, kv, 0, 0, 0);
    B(v_w, "self_attn.v_proj.weight", DTYPE_BF16, 0, 2, kv, H, 0, 0);
    B(v_b, "self_attn.v_proj.bias", DTYPE_BF16, 0, 1, kv, 0, 0, 0);
    B(o_w, "self_attn.o_proj.weight", DTYPE_BF16, 0, 2, H, q, 0, 0);
    B(o_b, "self_attn.o_proj.bias", DTYPE_BF16, 0, 1, H, 0, 0, 0);
    B(sinks, "self_attn.sinks", DTYPE_BF16, 1, 1, c->n_heads, 0, 0, 0);
    B(mlp_norm, "post_attention_layernorm.weight", DTYPE_BF16, 0, 1, H, 0, 0, 0);
    B(router_w, "mlp.router.weight", DTYPE_BF16, 0, 2, E, H, 0, 0);
    B(router_b, "mlp.router.bias", DTYPE_BF16, 0, 1, E, 0, 0, 0);
    B(gate_up_blocks, "mlp.experts.gate_up_proj_blocks", DTYPE_U8, 0, 4, E, 2 * I, H / MXFP4_BLOCK, 16);
    B(gate_up_scales, "mlp.experts.gate_up_proj_scales", DTYPE_U8, 0, 3, E, 2 * I, H / MXFP4_BLOCK, 0);
    B(gate_up_bias, "mlp.experts.gate_up_proj_bias", DTYPE_BF16, 0, 2, E, 2 * I, 0, 0);
    B(down_blocks, "mlp.experts.down_proj_blocks", DTYPE_U8, 0, 4, E, H, I / MXFP4_BLOCK, 16);
    B(down_scales, "mlp.experts.down_proj_scales", DTYPE_U8, 0, 3, E, H, I / MXFP4_BLOCK, 0);
    B(down_bias, "mlp.experts.down_proj_bias", DTYPE_BF16, 0, 2, E, H, 0, 0);
#undef B
    return GPTOSS_OK;
}

gptoss_status weights_load(const char *dir, model_weights *w) {
    memset(w, 0, sizeof *w);
    struct stat sb;
    if (!dir || stat(dir, &sb) != 0)
        return gptoss_set_error(GPTOSS_ERR_IO, "%s: %s", dir ? dir : "(null)", dir ? strerror(errno) : "no model folder");
    if (!S_ISDIR(sb.st_mode)) return gptoss_set_error(GPTOSS_ERR_IO, "%s: not a folder", dir);
    gptoss_status st = config_load(dir, &w->cfg);
    if (st) return st;
    w->files = calloc(1, sizeof *w->files);
    w->layers = calloc((size_t)w->cfg.n_layers, sizeof *w->layers);
    if (!w->files || !w->layers) {
        st = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
        goto fail;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, INDEX_NAME);
    if (file_exists(path)) {
        st = open_sharded(dir, w->files);
    } else {
        snprintf(path, sizeof path, "%s/%s", dir, SINGLE_NAME);
        if (!file_exists(path)) {
            st = gptoss_set_error(GPTOSS_ERR_IO, "%s: no %s or %s", dir, SINGLE_NAME, INDEX_NAME);
            goto fail;
        }
        w->files->files = calloc(1, sizeof *w->files->files);
        if (!w->files->files) {
            st = gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
            goto fail;
        }
        st = open_file(dir, SINGLE_NAME, &w->files->files[0]);
        if (st == GPTOSS_OK) w->files->n_files = 1;
    }
    if (st) goto fail;
    const gptoss_config *c = &w->cfg;
    if ((st = bind(w, &w->embed, "model.embed_tokens.weight", DTYPE_BF16, 0, 2, c->vocab_size, c->hidden, 0, 0)))
        goto fail;
    for (int i = 0; i < c->n_layers; i++)
        if ((st = bind_layer(w, i))) goto fail;
    if ((st = bind(w, &w->final_norm, "model.norm.weight", DTYPE_BF16, 0, 1, c->hidden, 0, 0, 0)) ||
        (st = bind(w, &w->lm_head, "lm_head.weight", DTYPE_BF16, 0, 2, c->vocab_size, c->hidden, 0, 0)))
        goto fail;
    return GPTOSS_OK;
fail:
    weights_free(w);
    return st;
}

void weights_free(model_weights *w) {
    if (!w) return;
    files_free(w->files);
    free(w->layers);
    config_free(&w->cfg);
    memset(w, 0, sizeof *w);
}

uint64_t weights_bytes_per_token(const model_weights *w) {
    const gptoss_config *c = &w->cfg;
    if (!w->layers) return 0;
    uint64_t total = (uint64_t)c->hidden * 2 /* one embedding row */ + w->final_norm.nbytes + w->lm_head.nbytes;
    for (int i = 0; i < c->n_layers; i++) {
        const layer_weights *L = &w->layers[i];
        total += L->attn_norm.nbytes + L->q_w.nbytes + L->q_b.nbytes + L->k_w.nbytes + L->k_b.nbytes +
                 L->v_w.nbytes + L->v_b.nbytes + L->o_w.nbytes + L->o_b.nbytes + L->sinks.nbytes +
                 L->mlp_norm.nbytes + L->router_w.nbytes + L->router_b.nbytes;
        uint64_t experts = L->gate_up_blocks.nbytes + L->gate_up_scales.nbytes + L->gate_up_bias.nbytes +
                           L->down_blocks.nbytes + L->down_scales.nbytes + L->down_bias.nbytes;
        total += experts / (uint64_t)c->n_experts * (uint64_t)c->experts_per_token;
    }
    return total;
}
