/* test_loader.c - config.json, YaRN, safetensors and weight binding, against
 * checkpoints written by $BUILD/gen_checkpoint into a temporary folder, and
 * damaged copies of them for every error path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <glob.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"
#include "safetensors.h"
#include "util.h"

static char tmp[256];       /* the temporary folder */
static char single[512];    /* tiny preset, vocab 8192, one model.safetensors */
static char sharded[512];   /* same weights, --shard-mb 1 */

static int run(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

static int setup(void **state) {
    (void)state;
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    char gen[512];
    snprintf(gen, sizeof gen, "%s/gen_checkpoint", build);
    if (access(gen, X_OK) != 0) {
        fprintf(stderr, "test_loader: %s not found (make BUILD=%s %s)\n", gen, build, gen);
        return -1;
    }
    snprintf(tmp, sizeof tmp, "/tmp/gptoss-test-loader-XXXXXX");
    if (!mkdtemp(tmp)) return -1;
    snprintf(single, sizeof single, "%s/single", tmp);
    snprintf(sharded, sizeof sharded, "%s/sharded", tmp);
    if (run("%s --preset tiny --vocab 8192 --seed 5 --out %s", gen, single) != 0) return -1;
    if (run("%s --preset tiny --vocab 8192 --seed 5 --shard-mb 1 --out %s", gen, sharded) != 0) return -1;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    if (tmp[0]) run("rm -rf '%s'", tmp);
    return 0;
}

/* A fresh copy of `src` named `name` under tmp. */
static const char *copy_case(const char *src, const char *name) {
    static char dst[512];
    snprintf(dst, sizeof dst, "%s/%s", tmp, name);
    assert_int_equal(run("rm -rf '%s' && cp -r '%s' '%s'", dst, src, dst), 0);
    return dst;
}

static void write_text(const char *dir, const char *file, const char *text) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Loads dir expecting failure with `status` and a message containing every
 * one of the NULL-terminated fragments. */
static void expect_error(const char *dir, gptoss_status status, ...) {
    model_weights w;
    gptoss_status st = weights_load(dir, &w);
    const char *msg = gptoss_last_error();
    if (st != status) fprintf(stderr, "status %d, message: %s\n", st, msg);
    assert_int_equal(st, status);
    assert_null(w.layers); /* nothing left behind */
    assert_null(strchr(msg, '\n'));
    va_list ap;
    va_start(ap, status);
    for (const char *frag; (frag = va_arg(ap, const char *)) != NULL;) {
        if (!strstr(msg, frag)) fprintf(stderr, "message \"%s\" lacks \"%s\"\n", msg, frag);
        assert_non_null(strstr(msg, frag));
    }
    va_end(ap);
}

/* --------------------------------------------------------- header editing */
typedef void (*header_edit)(json_t *hdr);

/* Rewrites the JSON header of dir/file through `edit`, keeping the data section. */
static void edit_header(const char *dir, const char *file, header_edit edit) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *buf;
    size_t len;
    assert_int_equal(read_file(path, &buf, &len), GPTOSS_OK);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | (unsigned char)buf[i];
    json_error_t err;
    json_t *hdr = json_loadb(buf + 8, (size_t)n, 0, &err);
    assert_non_null(hdr);
    edit(hdr);
    char *text = json_dumps(hdr, JSON_COMPACT);
    json_decref(hdr);
    size_t m = strlen(text), padded = (m + 7) / 8 * 8;
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    unsigned char n8[8];
    for (int i = 0; i < 8; i++) n8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    fwrite(n8, 1, 8, f);
    fwrite(text, 1, m, f);
    for (size_t i = m; i < padded; i++) fputc(' ', f);
    fwrite(buf + 8 + n, 1, len - 8 - (size_t)n, f);
    fclose(f);
    free(text);
    free(buf);
}

static json_t *entry(json_t *hdr, const char *name) {
    json_t *e = json_object_get(hdr, name);
    assert_non_null(e);
    return e;
}

static void edit_dtype_f16(json_t *h) {
    json_object_set_new(entry(h, "model.layers.1.self_attn.q_proj.weight"), "dtype", json_string("F16"));
}
static void edit_swap_shape(json_t *h) { /* [32,64] -> [64,32]: same bytes, wrong shape */
    json_object_set_new(entry(h, "model.layers.2.self_attn.k_proj.weight"), "shape", json_pack("[ii]", 64, 32));
}
static void edit_scales_shape(json_t *h) { /* the spec's example: one block short, bytes consistent */
    json_t *e = entry(h, "model.layers.0.mlp.experts.down_proj_scales");
    json_t *off = json_object_get(e, "data_offsets");
    json_int_t b = json_integer_value(json_array_get(off, 0));
    json_object_set_new(e, "shape", json_pack("[iii]", 4, 64, 2));
    json_object_set_new(e, "data_offsets", json_pack("[II]", b, b + 4 * 64 * 2));
}
static void edit_bytes_mismatch(json_t *h) {
    json_object_set_new(entry(h, "model.norm.weight"), "shape", json_pack("[i]", 65));
}
static void edit_offsets_outside(json_t *h) {
    json_t *e = entry(h, "lm_head.weight");
    json_object_set_new(e, "data_offsets", json_pack("[II]", (json_int_t)1 << 40, ((json_int_t)1 << 40) + 8192 * 64 * 2));
}
static void edit_begin_after_end(json_t *h) {
    json_object_set_new(entry(h, "model.norm.weight"), "data_offsets", json_pack("[ii]", 200, 72));
}
static void edit_remove_sinks(json_t *h) { json_object_del(h, "model.layers.2.self_attn.sinks"); }
static void edit_sinks_f32(json_t *h) { /* 4 heads as F32: 16 bytes (overlap is allowed) */
    json_t *e = entry(h, "model.layers.1.self_attn.sinks");
    json_int_t b = json_integer_value(json_array_get(json_object_get(e, "data_offsets"), 0));
    json_object_set_new(e, "dtype", json_string("F32"));
    json_object_set_new(e, "data_offsets", json_pack("[II]", b, b + 16));
}
static void edit_sinks_f16(json_t *h) {
    json_object_set_new(entry(h, "model.layers.1.self_attn.sinks"), "dtype", json_string("F16"));
}
static void edit_unknown_dtype(json_t *h) {
    json_object_set_new(entry(h, "model.norm.weight"), "dtype", json_string("Q4_K"));
}

/* ------------------------------------------------------------------ tests */
static void test_config_values(void **state) {
    (void)state;
    model_weights w;
    assert_int_equal(weights_load(single, &w), GPTOSS_OK);
    const gptoss_config *c = &w.cfg;
    assert_int_equal(c->n_layers, 3);
    assert_int_equal(c->hidden, 64);
    assert_int_equal(c->intermediate, 96);
    assert_int_equal(c->n_heads, 4);
    assert_int_equal(c->n_kv_heads, 2);
    assert_int_equal(c->head_dim, 16);
    assert_int_equal(c->n_experts, 4);
    assert_int_equal(c->experts_per_token, 2);
    assert_int_equal(c->vocab_size, 8192);
    assert_int_equal(c->sliding_window, 8);
    assert_int_equal(c->max_position, 131072);
    assert_float_equal(c->rms_eps, 1e-5f, 1e-12f);
    assert_float_equal(c->swiglu_limit, 7.0f, 0);
    assert_float_equal(c->swiglu_alpha, 1.702f, 0);
    assert_float_equal(c->rope_theta, 150000.0f, 0);
    assert_float_equal(c->yarn_factor, 32.0f, 0);
    assert_float_equal(c->yarn_beta_fast, 32.0f, 0);
    assert_float_equal(c->yarn_beta_slow, 1.0f, 0);
    assert_int_equal(c->yarn_original_ctx, 4096);
    assert_int_equal(c->yarn_truncate, 0);
    assert_int_equal(c->layer_is_sliding[0], 1);
    assert_int_equal(c->layer_is_sliding[1], 0);
    assert_int_equal(c->layer_is_sliding[2], 1);
    /* views: dtypes, shapes, and values in the generator's ranges */
    assert_int_equal(w.embed.dtype, DTYPE_BF16);
    assert_int_equal(w.embed.shape[0], 8192);
    assert_int_equal(w.embed.shape[1], 64);
    assert_int_equal(w.layers[2].gate_up_blocks.dtype, DTYPE_U8);
    assert_int_equal(w.layers[2].gate_up_blocks.ndim, 4);
    assert_int_equal(w.layers[2].gate_up_blocks.shape[1], 192);
    assert_int_equal(w.layers[2].gate_up_blocks.shape[2], 2);
    assert_int_equal(w.layers[2].gate_up_blocks.shape[3], 16);
    assert_int_equal(w.layers[1].down_scales.nbytes, 4 * 64 * 3);
    const uint16_t *norm = w.layers[1].mlp_norm.data;
    for (int i = 0; i < 64; i++) {
        float v = bf16_to_f32(norm[i]);
        assert_true(v >= 0.89f && v <= 1.11f);
    }
    const uint8_t *sc = w.layers[0].down_scales.data;
    for (int i = 0; i < 4 * 64 * 3; i++) assert_true(sc[i] >= 110 && sc[i] <= 127);
    /* total_bytes = the file's data section (the generator writes no gaps) */
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", single);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    unsigned char n8[8];
    assert_int_equal(fread(n8, 1, 8, f), 8);
    fseek(f, 0, SEEK_END);
    uint64_t n = 0, size = (uint64_t)ftell(f);
    fclose(f);
    for (int i = 7; i >= 0; i--) n = (n << 8) | n8[i];
    assert_int_equal(w.total_bytes, size - 8 - n);
    /* bytes per token: per layer attention (norms, q/k/v/o + biases, sinks: 25 224 B),
     * router (4x64+4 bf16 = 520 B), 2 of 4 experts (gate_up 192x(32+2+2) + down 64x(48+3+2)
     * = 10 304 B each), lm_head 8192x64x2, final norm 128, one embedding row 128 */
    uint64_t attn = 2 * (64 + 64 + 64 * 64 + 64 + 2 * (32 * 64 + 32) + 64 * 64 + 64 + 4);
    uint64_t expected = 3 * (attn + 520 + 2 * 10304) + 8192 * 64 * 2 + 128 + 128;
    assert_int_equal(attn, 25224);
    assert_int_equal(weights_bytes_per_token(&w), expected);
    weights_free(&w);
    assert_null(w.layers);
}

static void test_sharded_equals_single(void **state) {
    (void)state;
    /* the index really names several shards */
    char path[1024], *text;
    size_t len;
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", sharded);
    assert_int_equal(read_file(path, &text, &len), GPTOSS_OK);
    assert_non_null(strstr(text, "model-00000-of-00003.safetensors"));
    assert_non_null(strstr(text, "model-00003-of-00003.safetensors"));
    free(text);
    model_weights a, b;
    assert_int_equal(weights_load(single, &a), GPTOSS_OK);
    assert_int_equal(weights_load(sharded, &b), GPTOSS_OK);
    assert_int_equal(a.total_bytes, b.total_bytes);
    const tensor_view *va = (const tensor_view *)a.layers, *vb = (const tensor_view *)b.layers;
    size_t n = (size_t)a.cfg.n_layers * sizeof(layer_weights) / sizeof(tensor_view);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(va[i].nbytes, vb[i].nbytes);
        assert_ptr_not_equal(va[i].data, vb[i].data);
        assert_memory_equal(va[i].data, vb[i].data, va[i].nbytes);
    }
    assert_memory_equal(a.lm_head.data, b.lm_head.data, a.lm_head.nbytes);
    assert_memory_equal(a.embed.data, b.embed.data, a.embed.nbytes);
    /* different tensors do differ (the generator seeds each by name) */
    assert_memory_not_equal(a.embed.data, a.lm_head.data, 256);
    weights_free(&a);
    weights_free(&b);
}

/* An independent YaRN evaluation with the spec's numbers for gpt-oss-20b. */
static const char *cfg20b =
    "{\"architectures\":[\"GptOssForCausalLM\"],\"model_type\":\"gpt_oss\",\"num_hidden_layers\":24,"
    "\"hidden_size\":2880,\"intermediate_size\":2880,\"num_attention_heads\":64,\"num_key_value_heads\":8,"
    "\"head_dim\":64,\"num_local_experts\":32,\"num_experts_per_tok\":4,\"experts_per_token\":4,"
    "\"vocab_size\":201088,\"sliding_window\":128,\"max_position_embeddings\":131072,\"rms_norm_eps\":1e-05,"
    "\"rope_theta\":150000,\"swiglu_limit\":7.0,\"rope_scaling\":{\"beta_fast\":32.0,\"beta_slow\":1.0,"
    "\"factor\":32.0,\"original_max_position_embeddings\":4096,\"rope_type\":\"yarn\",\"truncate\":%s}}";

static void check_yarn(int truncate, double low, double high) {
    char json[2048];
    snprintf(json, sizeof json, cfg20b, truncate ? "true" : "false");
    gptoss_config c;
    assert_int_equal(config_parse(json, strlen(json), "20b.json", &c), GPTOSS_OK);
    assert_int_equal(c.yarn_truncate, truncate);
    for (int i = 0; i < 24; i++) assert_int_equal(c.layer_is_sliding[i], i % 2 == 0);
    float inv[32], conc;
    rope_yarn_params(&c, inv, &conc);
    assert_float_equal(conc, 1.34657, 1e-5);
    for (int i = 0; i < 32; i++) {
        double f = pow(150000.0, -i / 32.0), r = (i - low) / (high - low);
        r = r < 0 ? 0 : r > 1 ? 1 : r;
        double want = f * (1 - r) + f / 32 * r;
        if (fabs(inv[i] - want) > 1e-4 * want) fprintf(stderr, "inv_freq[%d] %g, want %g\n", i, inv[i], want);
        assert_true(fabs(inv[i] - want) <= 1e-4 * want);
    }
    assert_float_equal(inv[0], 1.0, 1e-7); /* below low: unscaled */
    config_free(&c);
}

static void test_yarn_20b(void **state) {
    (void)state;
    check_yarn(0, 8.0928, 17.3980);
    check_yarn(1, 8.0, 18.0);
}

static void test_config_defaults(void **state) {
    (void)state;
    const char *j = "{\"model_type\":\"gpt_oss\",\"num_hidden_layers\":3,\"hidden_size\":64,"
                    "\"intermediate_size\":32,\"num_attention_heads\":4,\"num_key_value_heads\":4,"
                    "\"num_local_experts\":2,\"num_experts_per_tok\":2,\"vocab_size\":10,"
                    "\"sliding_window\":4,\"max_position_embeddings\":64,\"rope_theta\":10000}";
    gptoss_config c;
    assert_int_equal(config_parse(j, strlen(j), "d.json", &c), GPTOSS_OK);
    assert_int_equal(c.head_dim, 16); /* hidden / heads */
    assert_float_equal(c.swiglu_limit, 7.0f, 0);
    assert_float_equal(c.rms_eps, 1e-5f, 1e-12f);
    assert_int_equal(c.layer_is_sliding[0], 1);
    assert_int_equal(c.layer_is_sliding[1], 0);
    assert_int_equal(c.layer_is_sliding[2], 1);
    float inv[8], conc;
    rope_yarn_params(&c, inv, &conc);
    assert_float_equal(conc, 1.0f, 0);
    for (int i = 0; i < 8; i++) assert_float_equal(inv[i], pow(10000.0, -i / 8.0), 1e-6);
    config_free(&c);
    /* no head_dim and more heads than hidden units: refused, not a zero width */
    const char *z = "{\"model_type\":\"gpt_oss\",\"num_hidden_layers\":1,\"hidden_size\":64,"
                    "\"intermediate_size\":32,\"num_attention_heads\":128,\"num_key_value_heads\":4,"
                    "\"num_local_experts\":2,\"num_experts_per_tok\":2,\"vocab_size\":10,"
                    "\"sliding_window\":4,\"max_position_embeddings\":64}";
    assert_int_equal(config_parse(z, strlen(z), "z.json", &c), GPTOSS_ERR_FORMAT);
    assert_non_null(strstr(gptoss_last_error(), "z.json: missing head_dim"));
}

/* config.json variants that must be refused, with the field named */
static void test_config_errors(void **state) {
    (void)state;
    static const struct { const char *from, *to, *msg; gptoss_status st; } cases[] = {
        { "\"gpt_oss\"", "\"llama\"", "model_type \"llama\" is not supported", GPTOSS_ERR_UNSUPPORTED },
        { "\"GptOssForCausalLM\"", "\"LlamaForCausalLM\"", "architectures [\"LlamaForCausalLM\"]", GPTOSS_ERR_UNSUPPORTED },
        { "\"hidden_size\":2880", "\"hidden_size\":2890", "hidden_size 2890 is not a multiple of 32", GPTOSS_ERR_FORMAT },
        { "\"intermediate_size\":2880", "\"intermediate_size\":2000", "intermediate_size 2000 is not a multiple of 32", GPTOSS_ERR_FORMAT },
        { "\"num_key_value_heads\":8", "\"num_key_value_heads\":7", "num_attention_heads 64 is not a multiple of num_key_value_heads 7", GPTOSS_ERR_FORMAT },
        { "\"num_experts_per_tok\":4,\"experts_per_token\":4", "\"num_experts_per_tok\":40,\"experts_per_token\":40", "num_experts_per_tok 40 exceeds num_local_experts 32", GPTOSS_ERR_FORMAT },
        { "\"num_hidden_layers\":24", "\"num_hidden_layers\":0", "num_hidden_layers: expected an integer", GPTOSS_ERR_FORMAT },
        { "\"vocab_size\":201088", "\"vocab_size\":\"many\"", "vocab_size: expected an integer", GPTOSS_ERR_FORMAT },
        { "\"head_dim\":64", "\"head_dim\":-64", "head_dim: expected an integer", GPTOSS_ERR_FORMAT },
        { "\"sliding_window\":128,", "", "missing sliding_window", GPTOSS_ERR_FORMAT },
        { "\"rope_type\":\"yarn\"", "\"rope_type\":\"longrope\"", "rope_type \"longrope\" is not supported", GPTOSS_ERR_UNSUPPORTED },
        { "\"factor\":32.0", "\"factor\":-2", "rope_scaling.factor: expected a positive number", GPTOSS_ERR_FORMAT },
        { "\"truncate\":%s", "\"truncate\":\"no\"", "rope_scaling.truncate", GPTOSS_ERR_FORMAT },
        { "\"swiglu_limit\":7.0", "\"swiglu_limit\":0", "swiglu_limit: expected a positive number", GPTOSS_ERR_FORMAT },
        { "\"rms_norm_eps\":1e-05", "\"rms_norm_eps\":1e-05,\"layer_types\":[\"full_attention\"]", "layer_types: expected an array of num_hidden_layers (24)", GPTOSS_ERR_FORMAT },
        { "\"model_type\":\"gpt_oss\",", "\"model_type\":\"gpt_oss\",\"quantization_config\":{\"quant_method\":\"gptq\"},", "quant_method \"gptq\"", GPTOSS_ERR_UNSUPPORTED },
        { "\"rope_theta\":150000,", "\"rope_theta\":150000,\"tie_word_embeddings\":true,", "tie_word_embeddings", GPTOSS_ERR_UNSUPPORTED },
        { "{\"architectures\"", "[{\"architectures\"", "invalid JSON at line 1", GPTOSS_ERR_FORMAT },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char base[2048], json[2048];
        snprintf(base, sizeof base, cfg20b, "false");
        if (!strcmp(cases[k].from, "\"truncate\":%s")) {
            snprintf(base, sizeof base, cfg20b, "\"no\"");
            snprintf(json, sizeof json, "%s", base);
        } else {
            char *at = strstr(base, cases[k].from);
            assert_non_null(at);
            snprintf(json, sizeof json, "%.*s%s%s", (int)(at - base), base, cases[k].to,
                     at + strlen(cases[k].from));
        }
        gptoss_config c;
        gptoss_status st = config_parse(json, strlen(json), "cfg.json", &c);
        const char *msg = gptoss_last_error();
        if (st != cases[k].st || !strstr(msg, cases[k].msg) || strncmp(msg, "cfg.json: ", 10) != 0)
            fprintf(stderr, "case %zu: status %d, message \"%s\", want \"%s\"\n", k, st, msg, cases[k].msg);
        assert_int_equal(st, cases[k].st);
        assert_non_null(strstr(msg, cases[k].msg));
        assert_null(c.layer_is_sliding);
    }
    /* layer_types with a bad value */
    const char *lt = "{\"model_type\":\"gpt_oss\",\"num_hidden_layers\":2,\"hidden_size\":64,"
                     "\"intermediate_size\":32,\"num_attention_heads\":4,\"num_key_value_heads\":4,"
                     "\"num_local_experts\":2,\"num_experts_per_tok\":2,\"vocab_size\":10,"
                     "\"sliding_window\":4,\"max_position_embeddings\":64,"
                     "\"layer_types\":[\"full_attention\",\"local\"]}";
    gptoss_config c;
    assert_int_equal(config_parse(lt, strlen(lt), "lt.json", &c), GPTOSS_ERR_FORMAT);
    assert_non_null(strstr(gptoss_last_error(), "lt.json: layer_types[1]"));
}

static void test_missing_files(void **state) {
    (void)state;
    char nope[512];
    snprintf(nope, sizeof nope, "%s/does-not-exist", tmp);
    expect_error(nope, GPTOSS_ERR_IO, "does-not-exist", "No such file", NULL);
    const char *d = copy_case(single, "noconfig");
    run("rm '%s/config.json'", d);
    expect_error(d, GPTOSS_ERR_IO, "config.json", "No such file", NULL);
    d = copy_case(single, "badjson");
    write_text(d, "config.json", "{\"model_type\": \"gpt_oss\",, }");
    expect_error(d, GPTOSS_ERR_FORMAT, "config.json: invalid JSON at line 1", NULL);
    d = copy_case(single, "noweights");
    run("rm '%s/model.safetensors'", d);
    expect_error(d, GPTOSS_ERR_IO, "no model.safetensors or model.safetensors.index.json", NULL);
    d = copy_case(sharded, "missingshard");
    run("rm '%s/model-00001-of-00003.safetensors'", d);
    expect_error(d, GPTOSS_ERR_IO, "model.safetensors.index.json: shard model-00001-of-00003.safetensors", "missing", NULL);
    /* the index is used, never names built from a pattern: a shard renamed in the index */
    d = copy_case(sharded, "renamed");
    run("cd '%s' && mv model-00001-of-00003.safetensors weights-b.st && "
        "sed -i 's/model-00001-of-00003.safetensors/weights-b.st/' model.safetensors.index.json", d);
    model_weights w;
    assert_int_equal(weights_load(d, &w), GPTOSS_OK);
    weights_free(&w);
    d = copy_case(sharded, "escape");
    run("sed -i 's#\"model-00001-of-00003.safetensors\"#\"../single/model.safetensors\"#' '%s/model.safetensors.index.json'", d);
    expect_error(d, GPTOSS_ERR_FORMAT, "expected a file name in the folder", NULL);
    d = copy_case(sharded, "indexmissing");
    run("sed -i '/model.layers.1.self_attn.sinks/d' '%s/model.safetensors.index.json'", d);
    expect_error(d, GPTOSS_ERR_FORMAT, "model.safetensors.index.json: tensor model.layers.1.self_attn.sinks is missing", NULL);
    d = copy_case(sharded, "badindex");
    write_text(d, "model.safetensors.index.json", "{\"metadata\": {}}");
    expect_error(d, GPTOSS_ERR_FORMAT, "no \"weight_map\"", NULL);
}

static void test_damaged_files(void **state) {
    (void)state;
    const char *d = copy_case(single, "trunc1");
    run("truncate -s -1 '%s/model.safetensors'", d);
    expect_error(d, GPTOSS_ERR_FORMAT, "model.safetensors: tensor ", "outside the data section", NULL);
    d = copy_case(single, "trunc2");
    run("truncate -s 100 '%s/model.safetensors'", d);
    expect_error(d, GPTOSS_ERR_FORMAT, "model.safetensors: header length", "exceeds the file size 100", NULL);
    d = copy_case(single, "trunc3");
    run("truncate -s 5 '%s/model.safetensors'", d);
    expect_error(d, GPTOSS_ERR_FORMAT, "model.safetensors: truncated (5 bytes", NULL);
    d = copy_case(single, "corrupt");
    run("printf 'XX' | dd of='%s/model.safetensors' bs=1 seek=40 conv=notrunc 2>/dev/null", d);
    expect_error(d, GPTOSS_ERR_FORMAT, "model.safetensors: corrupt header JSON", NULL);
    struct { const char *name; header_edit edit; gptoss_status st; const char *msg; } cases[] = {
        { "dtype", edit_dtype_f16, GPTOSS_ERR_FORMAT,
          "model.safetensors: tensor model.layers.1.self_attn.q_proj.weight: dtype F16 does not match config (expected BF16)" },
        { "shape", edit_swap_shape, GPTOSS_ERR_FORMAT,
          "model.safetensors: tensor model.layers.2.self_attn.k_proj.weight: shape [64,32] does not match config (expected [32,64])" },
        { "scales", edit_scales_shape, GPTOSS_ERR_FORMAT,
          "model.safetensors: tensor model.layers.0.mlp.experts.down_proj_scales: shape [4,64,2] does not match config (expected [4,64,3])" },
        { "bytes", edit_bytes_mismatch, GPTOSS_ERR_FORMAT,
          "model.safetensors: tensor model.norm.weight: 128 data bytes, but BF16 [65] needs 130" },
        { "outside", edit_offsets_outside, GPTOSS_ERR_FORMAT,
          "model.safetensors: tensor lm_head.weight: data_offsets [1099511627776," },
        { "reversed", edit_begin_after_end, GPTOSS_ERR_FORMAT,
          "model.safetensors: tensor model.norm.weight: data_offsets [200,72] outside" },
        { "missing", edit_remove_sinks, GPTOSS_ERR_FORMAT,
          "model.safetensors: tensor model.layers.2.self_attn.sinks is missing" },
        { "unknown", edit_unknown_dtype, GPTOSS_ERR_FORMAT,
          "model.safetensors: tensor model.norm.weight: unknown dtype \"Q4_K\"" },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        d = copy_case(single, cases[k].name);
        edit_header(d, "model.safetensors", cases[k].edit);
        expect_error(d, cases[k].st, cases[k].msg, NULL);
    }
    /* sinks may be F32 (some exports), nothing else */
    d = copy_case(single, "sinksf32");
    edit_header(d, "model.safetensors", edit_sinks_f32);
    model_weights w;
    assert_int_equal(weights_load(d, &w), GPTOSS_OK);
    assert_int_equal(w.layers[1].sinks.dtype, DTYPE_F32);
    assert_int_equal(w.layers[1].sinks.nbytes, 16);
    assert_int_equal(w.layers[0].sinks.dtype, DTYPE_BF16);
    weights_free(&w);
    d = copy_case(single, "sinksf16");
    edit_header(d, "model.safetensors", edit_sinks_f16);
    expect_error(d, GPTOSS_ERR_FORMAT,
                 "model.safetensors: tensor model.layers.1.self_attn.sinks: dtype F16 does not match config (expected BF16 or F32)", NULL);
    /* a damaged shard is named as such */
    d = copy_case(sharded, "shardshape");
    edit_header(d, "model-00000-of-00003.safetensors", edit_swap_shape);
    expect_error(d, GPTOSS_ERR_FORMAT, "model-00000-of-00003.safetensors: tensor model.layers.2.self_attn.k_proj.weight: shape", NULL);
    /* a config that disagrees with the tensors */
    d = copy_case(single, "cfgshape");
    run("sed -i 's/\"vocab_size\": 8192/\"vocab_size\": 8000/' '%s/config.json'", d);
    expect_error(d, GPTOSS_ERR_FORMAT,
                 "model.safetensors: tensor model.embed_tokens.weight: shape [8192,64] does not match config (expected [8000,64])", NULL);
}

static void test_ignores_subfolders(void **state) {
    (void)state;
    const char *d = copy_case(single, "withoriginal");
    run("mkdir -p '%s/original' '%s/metal' && echo junk > '%s/original/model.safetensors' && "
        "echo junk > '%s/metal/model.bin'", d, d, d, d);
    model_weights w;
    assert_int_equal(weights_load(d, &w), GPTOSS_OK);
    weights_free(&w);
}

/* st_parse on memory images */
static void test_st_parse_memory(void **state) {
    (void)state;
    static const struct { const char *json; const char *msg; } cases[] = {
        { "[]", "header JSON is not an object" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},\"a\":{}}", "corrupt header JSON" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[-2],\"data_offsets\":[0,2]}}", "shape[0] is not a non-negative integer" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0]}}", "data_offsets must be two" },
        { "{\"a\":{\"shape\":[2],\"data_offsets\":[0,2]}}", "tensor a: missing dtype" },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", "at most 8" },
        { "{\"__metadata__\":[1]}", "__metadata__ is not an object" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,4]}}", "needs" },
    };
    unsigned char buf[512];
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t n = strlen(cases[k].json);
        memset(buf, 0, sizeof buf);
        buf[0] = (unsigned char)n;
        memcpy(buf + 8, cases[k].json, n);
        memset(buf + 8 + n, 0xab, 8);
        st_file f;
        assert_int_equal(st_parse(buf, 8 + n + 8, "mem", &f), GPTOSS_ERR_FORMAT);
        if (!strstr(gptoss_last_error(), cases[k].msg))
            fprintf(stderr, "case %zu: \"%s\"\n", k, gptoss_last_error());
        assert_non_null(strstr(gptoss_last_error(), cases[k].msg));
        assert_null(f.tensors);
    }
    /* a valid image: metadata skipped, sorted lookup, data pointer */
    const char *ok = "{\"z\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[2,10]},"
                     "\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                     "\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[10,10]}}";
    size_t n = strlen(ok);
    memset(buf, 0, sizeof buf);
    buf[0] = (unsigned char)n;
    memcpy(buf + 8, ok, n);
    for (int i = 0; i < 10; i++) buf[8 + n + (size_t)i] = (unsigned char)i;
    st_file f;
    assert_int_equal(st_parse(buf, 8 + n + 10, "mem", &f), GPTOSS_OK);
    assert_int_equal(f.n_tensors, 3);
    const st_tensor *z = st_find(&f, "z");
    assert_non_null(z);
    assert_string_equal(z->dtype, "BF16");
    assert_int_equal(z->ndim, 2);
    assert_ptr_equal(z->data, buf + 8 + n + 2);
    assert_null(st_find(&f, "__metadata__"));
    assert_null(st_find(&f, "b"));
    assert_non_null(st_find(&f, "a"));
    assert_non_null(st_find(&f, "e"));
    st_close(&f);
    /* one byte short of the last tensor */
    assert_int_equal(st_parse(buf, 8 + n + 9, "mem", &f), GPTOSS_ERR_FORMAT);
    assert_non_null(strstr(gptoss_last_error(), "mem: tensor z: data_offsets [2,10] outside the data section (9 bytes)"));
}

static void test_mxfp4_table(void **state) {
    (void)state;
    static const float want[8] = { 0, 0.5f, 1, 1.5f, 2, 3, 4, 6 };
    for (int i = 0; i < 8; i++) {
        assert_float_equal(mxfp4_values[i], want[i], 0);
        assert_float_equal(mxfp4_values[i + 8], -want[i], 0);
    }
    assert_true(signbit(mxfp4_values[8]));
}

/* Each tests/fixtures/<name>.json regenerates through gen_checkpoint into a
 * checkpoint that loads with the recorded shape, and its logits file is T x vocab. */
static void test_fixtures_consistent(void **state) {
    (void)state;
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    glob_t g;
    assert_int_equal(glob("tests/fixtures/*.json", 0, NULL, &g), 0);
    assert_true(g.gl_pathc >= 4);
    for (size_t k = 0; k < g.gl_pathc; k++) {
        json_error_t err;
        json_t *fx = json_load_file(g.gl_pathv[k], 0, &err);
        assert_non_null(fx);
        char cmd[2048], dir[512];
        snprintf(dir, sizeof dir, "%s/fixture-%zu", tmp, k);
        int len = snprintf(cmd, sizeof cmd, "%s/gen_checkpoint --out '%s'", build, dir);
        size_t i;
        json_t *a;
        json_array_foreach(json_object_get(fx, "gen_args"), i, a)
            len += snprintf(cmd + len, sizeof cmd - (size_t)len, " '%s'", json_string_value(a));
        assert_int_equal(system(cmd), 0);
        model_weights w;
        assert_int_equal(weights_load(dir, &w), GPTOSS_OK);
        json_t *c = json_object_get(fx, "config");
        assert_int_equal(w.cfg.n_layers, json_integer_value(json_object_get(c, "num_hidden_layers")));
        assert_int_equal(w.cfg.hidden, json_integer_value(json_object_get(c, "hidden_size")));
        assert_int_equal(w.cfg.head_dim, json_integer_value(json_object_get(c, "head_dim")));
        assert_int_equal(w.cfg.vocab_size, json_integer_value(json_object_get(c, "vocab_size")));
        assert_int_equal(w.cfg.sliding_window, json_integer_value(json_object_get(c, "sliding_window")));
        size_t T = json_array_size(json_object_get(fx, "ids"));
        assert_true(T > (size_t)w.cfg.sliding_window);
        assert_true(json_array_size(json_object_get(fx, "greedy")) >= 32);
        assert_int_equal(json_array_size(json_object_get(fx, "greedy")),
                         json_array_size(json_object_get(fx, "greedy_margins")));
        char lpath[1024];
        snprintf(lpath, sizeof lpath, "tests/fixtures/%s", json_string_value(json_object_get(fx, "logits_file")));
        struct stat sb;
        assert_int_equal(stat(lpath, &sb), 0);
        assert_int_equal((size_t)sb.st_size, T * (size_t)w.cfg.vocab_size * 4);
        weights_free(&w);
        json_decref(fx);
        run("rm -rf '%s'", dir);
    }
    globfree(&g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_values),
        cmocka_unit_test(test_sharded_equals_single),
        cmocka_unit_test(test_yarn_20b),
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_missing_files),
        cmocka_unit_test(test_damaged_files),
        cmocka_unit_test(test_ignores_subfolders),
        cmocka_unit_test(test_st_parse_memory),
        cmocka_unit_test(test_mxfp4_table),
        cmocka_unit_test(test_fixtures_consistent),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
