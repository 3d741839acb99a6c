/* model.h - a gpt-oss checkpoint as the library sees it: the validated config
 * and views of every weight tensor, pointing into the mmapped safetensors files
 * (no copies, no dequantization). Backends read this and upload/re-layout what
 * they need. */
#ifndef GPTOSS_MODEL_H
#define GPTOSS_MODEL_H

#include "gptoss.h"
#include <stddef.h>
#include <stdint.h>

#define MXFP4_BLOCK 32 /* weights per MXFP4 block: 16 bytes of nibbles + 1 scale byte */

typedef struct {
    int n_layers;            /* num_hidden_layers */
    int hidden;              /* hidden_size (multiple of 32) */
    int intermediate;        /* intermediate_size, expert FFN width (multiple of 32) */
    int n_heads;             /* num_attention_heads */
    int n_kv_heads;          /* num_key_value_heads (n_heads % n_kv_heads == 0) */
    int head_dim;            /* head_dim (even) */
    int n_experts;           /* num_local_experts */
    int experts_per_token;   /* num_experts_per_tok (<= n_experts) */
    int vocab_size;          /* rows of embed_tokens and lm_head */
    int sliding_window;      /* keys visible on sliding layers, current one included */
    int max_position;        /* max_position_embeddings */
    float rms_eps;           /* rms_norm_eps */
    float swiglu_limit;      /* swiglu_limit (7.0) */
    float swiglu_alpha;      /* 1.702 (not in config; fixed by the architecture) */
    /* RoPE / YaRN */
    float rope_theta;
    float yarn_factor;       /* rope_scaling.factor (1 = plain RoPE) */
    float yarn_beta_fast, yarn_beta_slow;
    int yarn_original_ctx;   /* original_max_position_embeddings */
    int yarn_truncate;       /* rope_scaling.truncate (false for gpt-oss) */
    unsigned char *layer_is_sliding; /* [n_layers] 1 = sliding_attention, 0 = full */
} gptoss_config;

/* Parses and validates <dir>/config.json. */
gptoss_status config_load(const char *dir, gptoss_config *cfg);
/* Same, from JSON text; `name` is used in messages. */
gptoss_status config_parse(const char *json, size_t len, const char *name, gptoss_config *cfg);
void config_free(gptoss_config *cfg);

/* YaRN: per-dimension inverse frequencies [head_dim/2] and the concentration
 * factor that multiplies cos and sin. Computed in double, stored as float. */
void rope_yarn_params(const gptoss_config *cfg, float *inv_freq, float *concentration);

typedef enum { DTYPE_BF16, DTYPE_F32, DTYPE_U8 } tensor_dtype;

typedef struct {
    const void *data;        /* into the mmapped file */
    tensor_dtype dtype;
    int ndim;
    int64_t shape[4];
    size_t nbytes;
} tensor_view;

typedef struct {
    tensor_view attn_norm;      /* [hidden] bf16 input_layernorm */
    tensor_view q_w, q_b;       /* [n_heads*head_dim, hidden], [n_heads*head_dim] bf16 */
    tensor_view k_w, k_b;       /* [n_kv*head_dim, hidden], [n_kv*head_dim] bf16 */
    tensor_view v_w, v_b;       /* [n_kv*head_dim, hidden], [n_kv*head_dim] bf16 */
    tensor_view o_w, o_b;       /* [hidden, n_heads*head_dim], [hidden] bf16 */
    tensor_view sinks;          /* [n_heads] bf16 (may be f32 in some exports) */
    tensor_view mlp_norm;       /* [hidden] bf16 post_attention_layernorm */
    tensor_view router_w;       /* [E, hidden] bf16 */
    tensor_view router_b;       /* [E] bf16 */
    tensor_view gate_up_blocks; /* [E, 2*I, hidden/32, 16] u8; rows interleave gate(even)/up(odd) */
    tensor_view gate_up_scales; /* [E, 2*I, hidden/32] u8 (E8M0) */
    tensor_view gate_up_bias;   /* [E, 2*I] bf16 */
    tensor_view down_blocks;    /* [E, hidden, I/32, 16] u8 */
    tensor_view down_scales;    /* [E, hidden, I/32] u8 */
    tensor_view down_bias;      /* [E, hidden] bf16 */
} layer_weights;

typedef struct model_files model_files; /* the mmapped safetensors shards */

typedef struct {
    gptoss_config cfg;
    tensor_view embed;          /* [vocab, hidden] bf16 */
    tensor_view final_norm;     /* [hidden] bf16 */
    tensor_view lm_head;        /* [vocab, hidden] bf16 */
    layer_weights *layers;      /* [n_layers] */
    model_files *files;
    uint64_t total_bytes;       /* sum of all tensors' bytes */
} model_weights;

/* Loads config.json, maps the safetensors (single file or sharded through
 * model.safetensors.index.json), and checks every tensor's dtype and shape. */
gptoss_status weights_load(const char *dir, model_weights *w);
void weights_free(model_weights *w);

/* Weight bytes one decode token reads (attention, router, top-k experts, lm_head,
 * one embedding row). For bandwidth accounting. */
uint64_t weights_bytes_per_token(const model_weights *w);

/* E2M1 code -> value. */
extern const float mxfp4_values[16];

#endif
