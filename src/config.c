/* config.c - config.json parsing/validation and the YaRN RoPE parameters. */
#include "model.h"
#include "util.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const float mxfp4_values[16] = {
    0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
    -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f,
};

/* Upper bounds that keep every size product far inside int64 and reject garbage. */
#define MAX_LAYERS 1024
#define MAX_DIM (1 << 20)
#define MAX_HEADS 4096
#define MAX_EXPERTS 65536
#define MAX_VOCAB (1 << 24)

/* Positive integer field. absent_ok: leaves *out unchanged when the key is absent. */
static gptoss_status get_int(const char *name, json_t *obj, const char *key, int *out, int max,
                             int absent_ok) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        if (absent_ok) return GPTOSS_OK;
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: missing %s", name, key);
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > max)
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: %s: expected an integer in 1..%d", name, key, max);
    *out = (int)json_integer_value(v);
    return GPTOSS_OK;
}

/* Positive number field (integer or real); absent keeps the default in *out. */
static gptoss_status get_pos_num(const char *name, json_t *obj, const char *prefix, const char *key,
                                 float *out) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return GPTOSS_OK;
    if (!json_is_number(v) || !(json_number_value(v) > 0) || !isfinite(json_number_value(v)))
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: %s%s: expected a positive number", name, prefix, key);
    *out = (float)json_number_value(v);
    return GPTOSS_OK;
}

static gptoss_status check_architecture(const char *name, json_t *root) {
    json_t *mt = json_object_get(root, "model_type"), *ar = json_object_get(root, "architectures");
    if (!mt && !ar)
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: neither model_type nor architectures is given", name);
    if (mt) {
        if (!json_is_string(mt))
            return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: model_type: expected a string", name);
        if (strcmp(json_string_value(mt), "gpt_oss") != 0)
            return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED, "%s: model_type \"%.64s\" is not supported (expected gpt_oss)",
                                    name, json_string_value(mt));
    }
    if (ar) {
        if (!json_is_array(ar))
            return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: architectures: expected an array", name);
        size_t i;
        json_t *a;
        int found = 0;
        json_array_foreach(ar, i, a) {
            if (json_is_string(a) && !strcmp(json_string_value(a), "GptOssForCausalLM")) found = 1;
        }
        if (!found) {
            json_t *first = json_array_get(ar, 0);
            return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED,
                                    "%s: architectures [\"%.64s\"] is not supported (expected GptOssForCausalLM)",
                                    name, json_is_string(first) ? json_string_value(first) : "");
        }
    }
    return GPTOSS_OK;
}

static gptoss_status parse_rope(const char *name, json_t *root, gptoss_config *c) {
    gptoss_status st;
    c->rope_theta = 150000.0f;
    c->yarn_factor = 1.0f;
    c->yarn_beta_fast = 32.0f;
    c->yarn_beta_slow = 1.0f;
    c->yarn_original_ctx = c->max_position;
    c->yarn_truncate = 1; /* transformers' default when the key is absent */
    if ((st = get_pos_num(name, root, "", "rope_theta", &c->rope_theta))) return st;
    const char *field = "rope_scaling";
    json_t *rs = json_object_get(root, field);
    if (!rs || json_is_null(rs)) { /* transformers 5 writes rope_parameters (theta included) */
        field = "rope_parameters";
        rs = json_object_get(root, field);
        if (rs && json_is_object(rs) &&
            (st = get_pos_num(name, rs, "rope_parameters.", "rope_theta", &c->rope_theta)))
            return st;
    }
    if (!rs || json_is_null(rs)) return GPTOSS_OK;
    if (!json_is_object(rs)) return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: %s: expected an object", name, field);
    json_t *type = json_object_get(rs, "rope_type");
    if (!type) type = json_object_get(rs, "type");
    const char *t = json_is_string(type) ? json_string_value(type) : "";
    if (!strcmp(t, "default")) return GPTOSS_OK;
    if (strcmp(t, "yarn") != 0)
        return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED, "%s: %s.rope_type \"%.32s\" is not supported (expected yarn)",
                                name, field, t);
    char prefix[32];
    snprintf(prefix, sizeof prefix, "%s.", field);
    if (!json_object_get(rs, "factor"))
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: %s.factor is missing", name, field);
    if ((st = get_pos_num(name, rs, prefix, "factor", &c->yarn_factor)) ||
        (st = get_pos_num(name, rs, prefix, "beta_fast", &c->yarn_beta_fast)) ||
        (st = get_pos_num(name, rs, prefix, "beta_slow", &c->yarn_beta_slow)))
        return st;
    if (c->yarn_factor < 1.0f)
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: %s.factor %g is below 1", name, field, c->yarn_factor);
    if (c->yarn_beta_fast <= c->yarn_beta_slow)
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: %s: beta_fast (%g) must exceed beta_slow (%g)", name, field,
                                c->yarn_beta_fast, c->yarn_beta_slow);
    json_t *orig = json_object_get(rs, "original_max_position_embeddings");
    if (orig) {
        if (!json_is_integer(orig) || json_integer_value(orig) <= 0 || json_integer_value(orig) > INT32_MAX)
            return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: %s.original_max_position_embeddings: expected a positive integer",
                                    name, field);
        c->yarn_original_ctx = (int)json_integer_value(orig);
    }
    json_t *tr = json_object_get(rs, "truncate");
    if (tr) {
        if (!json_is_boolean(tr))
            return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: %s.truncate: expected true or false", name, field);
        c->yarn_truncate = json_is_true(tr);
    }
    return GPTOSS_OK;
}

static gptoss_status parse_layer_types(const char *name, json_t *root, gptoss_config *c) {
    c->layer_is_sliding = calloc((size_t)c->n_layers, 1);
    if (!c->layer_is_sliding) return gptoss_set_error(GPTOSS_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
    json_t *lt = json_object_get(root, "layer_types");
    if (!lt || json_is_null(lt)) {
        for (int i = 0; i < c->n_layers; i++) c->layer_is_sliding[i] = (i % 2 == 0);
        return GPTOSS_OK;
    }
    if (!json_is_array(lt) || json_array_size(lt) != (size_t)c->n_layers)
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: layer_types: expected an array of num_hidden_layers (%d) entries",
                                name, c->n_layers);
    for (int i = 0; i < c->n_layers; i++) {
        json_t *v = json_array_get(lt, (size_t)i);
        const char *s = json_is_string(v) ? json_string_value(v) : "";
        if (!strcmp(s, "sliding_attention")) c->layer_is_sliding[i] = 1;
        else if (!strcmp(s, "full_attention")) c->layer_is_sliding[i] = 0;
        else
            return gptoss_set_error(GPTOSS_ERR_FORMAT,
                                    "%s: layer_types[%d]: expected \"sliding_attention\" or \"full_attention\"", name, i);
    }
    return GPTOSS_OK;
}

static gptoss_status parse_root(const char *name, json_t *root, gptoss_config *c) {
    gptoss_status st;
    if (!json_is_object(root)) return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: expected a JSON object", name);
    if ((st = check_architecture(name, root))) return st;
    json_t *q = json_object_get(root, "quantization_config");
    if (q && !json_is_null(q)) {
        json_t *m = json_is_object(q) ? json_object_get(q, "quant_method") : NULL;
        if (!json_is_string(m) || strcmp(json_string_value(m), "mxfp4") != 0)
            return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED, "%s: quantization_config.quant_method \"%.32s\" is not supported (expected mxfp4)",
                                    name, json_is_string(m) ? json_string_value(m) : "");
    }
    if ((st = get_int(name, root, "num_hidden_layers", &c->n_layers, MAX_LAYERS, 0)) ||
        (st = get_int(name, root, "hidden_size", &c->hidden, MAX_DIM, 0)) ||
        (st = get_int(name, root, "intermediate_size", &c->intermediate, MAX_DIM, 0)) ||
        (st = get_int(name, root, "num_attention_heads", &c->n_heads, MAX_HEADS, 0)) ||
        (st = get_int(name, root, "num_key_value_heads", &c->n_kv_heads, MAX_HEADS, 0)) ||
        (st = get_int(name, root, "num_local_experts", &c->n_experts, MAX_EXPERTS, 0)) ||
        (st = get_int(name, root, "vocab_size", &c->vocab_size, MAX_VOCAB, 0)) ||
        (st = get_int(name, root, "sliding_window", &c->sliding_window, INT32_MAX, 0)) ||
        (st = get_int(name, root, "max_position_embeddings", &c->max_position, INT32_MAX, 0)))
        return st;
    c->head_dim = c->hidden / c->n_heads;
    if ((st = get_int(name, root, "head_dim", &c->head_dim, MAX_DIM, 1))) return st;
    if (c->head_dim <= 0)
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: missing head_dim (hidden_size / num_attention_heads is 0)", name);
    c->experts_per_token = 0;
    if ((st = get_int(name, root, "experts_per_token", &c->experts_per_token, MAX_EXPERTS, 1)) ||
        (st = get_int(name, root, "num_experts_per_tok", &c->experts_per_token, MAX_EXPERTS,
                      c->experts_per_token > 0)))
        return st;
    c->rms_eps = 1e-5f;
    c->swiglu_limit = 7.0f;
    c->swiglu_alpha = 1.702f;
    if ((st = get_pos_num(name, root, "", "rms_norm_eps", &c->rms_eps)) ||
        (st = get_pos_num(name, root, "", "swiglu_limit", &c->swiglu_limit)))
        return st;
    /* consistency */
    if (c->hidden % MXFP4_BLOCK)
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: hidden_size %d is not a multiple of %d (MXFP4 blocks)", name,
                                c->hidden, MXFP4_BLOCK);
    if (c->intermediate % MXFP4_BLOCK)
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: intermediate_size %d is not a multiple of %d (MXFP4 blocks)",
                                name, c->intermediate, MXFP4_BLOCK);
    if (c->n_heads % c->n_kv_heads)
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                                name, c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2)
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: head_dim %d is odd (RoPE needs pairs)", name, c->head_dim);
    if (c->experts_per_token > c->n_experts)
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: num_experts_per_tok %d exceeds num_local_experts %d", name,
                                c->experts_per_token, c->n_experts);
    json_t *tie = json_object_get(root, "tie_word_embeddings");
    if (json_is_true(tie))
        return gptoss_set_error(GPTOSS_ERR_UNSUPPORTED, "%s: tie_word_embeddings true is not supported (gpt-oss has a separate lm_head)",
                                name);
    if ((st = parse_rope(name, root, c))) return st;
    if ((st = parse_layer_types(name, root, c))) return st;
    return GPTOSS_OK;
}

gptoss_status config_parse(const char *json, size_t len, const char *name, gptoss_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    json_error_t err;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return gptoss_set_error(GPTOSS_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", name, err.line,
                                err.column, err.text);
    gptoss_status st = parse_root(name, root, cfg);
    json_decref(root);
    if (st != GPTOSS_OK) config_free(cfg);
    return st;
}

gptoss_status config_load(const char *dir, gptoss_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    char path[4096];
    if (snprintf(path, sizeof path, "%s/config.json", dir) >= (int)sizeof path)
        return gptoss_set_error(GPTOSS_ERR_INVALID_ARGUMENT, "%s: path too long", dir);
    char *text;
    size_t len;
    gptoss_status st = read_file(path, &text, &len);
    if (st != GPTOSS_OK) return st;
    st = config_parse(text, len, path, cfg);
    free(text);
    return st;
}

void config_free(gptoss_config *cfg) {
    if (!cfg) return;
    free(cfg->layer_is_sliding);
    cfg->layer_is_sliding = NULL;
}

void rope_yarn_params(const gptoss_config *cfg, float *inv_freq, float *concentration) {
    int half = cfg->head_dim / 2;
    double base = cfg->rope_theta, factor = cfg->yarn_factor;
    if (factor <= 1.0) {
        for (int i = 0; i < half; i++) inv_freq[i] = (float)pow(base, -2.0 * i / cfg->head_dim);
        *concentration = 1.0f;
        return;
    }
    /* the dimension index whose wavelength makes `rotations` turns over the original context */
    double two_pi = 2.0 * 3.14159265358979323846, orig = cfg->yarn_original_ctx;
    double low = half * log(orig / (cfg->yarn_beta_fast * two_pi)) / log(base);
    double high = half * log(orig / (cfg->yarn_beta_slow * two_pi)) / log(base);
    if (cfg->yarn_truncate) {
        low = floor(low);
        high = ceil(high);
    }
    if (low < 0) low = 0;
    if (high > cfg->head_dim - 1) high = cfg->head_dim - 1;
    if (high == low) high += 0.001; /* avoid a zero-width ramp */
    for (int i = 0; i < half; i++) {
        double f = pow(base, -2.0 * i / cfg->head_dim);
        double r = (i - low) / (high - low);
        r = r < 0 ? 0 : r > 1 ? 1 : r;
        inv_freq[i] = (float)(f * (1.0 - r) + f / factor * r);
    }
    *concentration = (float)(0.1 * log(factor) + 1.0);
}
