/* gen_checkpoint.c - writes a deterministic random-weight gpt-oss checkpoint in
 * the Hugging Face layout (config.json, generation_config.json, safetensors
 * shards + model.safetensors.index.json, or a single model.safetensors).
 *
 *   gen_checkpoint --preset tiny|20b|120b --out DIR [--seed N] [overrides...]
 *
 * Values come from a per-tensor xoshiro256** stream seeded from the seed and the
 * tensor name, and are turned into bf16 with integer math and plain IEEE float
 * multiplies only (no libm), so every x86-64 machine writes identical bytes.
 * Tensors are generated and written in 8 MiB pieces: the model is never held in
 * memory. Scales follow the 20b checkpoint's magnitudes (matrix std 0.02 at fan-in
 * 2880), scaled by sqrt(2880 / fan_in) so that small models keep similar activations.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* when built without the Makefile's flags */
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    int layers, hidden, intermediate, heads, kv_heads, head_dim;
    int experts, top_k, vocab, window, max_pos;
    long shard_mb; /* 0 = one model.safetensors */
    uint64_t seed;
} gen_params;

/* ------------------------------------------------------------ random numbers */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct { uint64_t s[4]; } rng;

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng *r) {
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t; s[3] = rotl(s[3], 45);
    return out;
}

static void rng_seed(rng *r, uint64_t seed, const char *name) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a of the tensor name */
    for (const char *p = name; *p; p++) h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
    uint64_t x = seed ^ h;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static uint16_t to_bf16(float f) {
    union { float f; uint32_t u; } v = { f };
    v.u += 0x7fffu + ((v.u >> 16) & 1u);
    return (uint16_t)(v.u >> 16);
}

/* Approximately N(0,1): sum of four 16-bit uniforms (Irwin-Hall), exact integer
 * centring, one float multiply. */
#define IH_INV_STD (1.0f / 37837.23f)
static float gauss(rng *r) {
    uint64_t u = rng_next(r);
    int32_t s = (int32_t)(u & 0xffff) + (int32_t)((u >> 16) & 0xffff) +
                (int32_t)((u >> 32) & 0xffff) + (int32_t)(u >> 48) - 131070;
    return (float)s * IH_INV_STD;
}

/* Uniform in [-1, 1). */
static float uniform_pm1(rng *r) {
    return (float)(int32_t)(rng_next(r) >> 40) * (1.0f / 8388608.0f) - 1.0f;
}

/* ------------------------------------------------------------------ tensors */
typedef enum { K_NORM, K_MAT, K_BIAS, K_SINK, K_BLOCKS, K_SCALES } value_kind;

typedef struct {
    char name[96];
    int u8;             /* 1 = U8, 0 = BF16 */
    int ndim;
    int64_t shape[4];
    value_kind kind;
    int fan_in;         /* K_MAT / K_SCALES: input width */
    uint64_t nbytes;
    int shard;
    uint64_t begin;     /* data offset inside its shard */
} tensor_spec;

typedef struct { tensor_spec *t; int n, cap; } tensor_list;

static void add(tensor_list *l, const char *name, int u8, value_kind kind, int fan_in, int ndim,
                int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->t = realloc(l->t, (size_t)l->cap * sizeof *l->t);
        if (!l->t) { fprintf(stderr, "gen_checkpoint: out of memory\n"); exit(1); }
    }
    tensor_spec *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->u8 = u8; t->kind = kind; t->fan_in = fan_in; t->ndim = ndim;
    int64_t d[4] = { d0, d1, d2, d3 };
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) { t->shape[i] = d[i]; n *= (uint64_t)d[i]; }
    t->nbytes = n * (u8 ? 1 : 2);
}

static void build_tensors(const gen_params *p, tensor_list *l) {
    int H = p->hidden, I = p->intermediate, E = p->experts;
    int q = p->heads * p->head_dim, kv = p->kv_heads * p->head_dim;
    char n[96];
#define NAME(fmt) (snprintf(n, sizeof n, "model.layers.%d." fmt, i), n)
    for (int i = 0; i < p->layers; i++) {
        add(l, NAME("input_layernorm.weight"), 0, K_NORM, 0, 1, H, 0, 0, 0);
        add(l, NAME("self_attn.q_proj.weight"), 0, K_MAT, H, 2, q, H, 0, 0);
        add(l, NAME("self_attn.q_proj.bias"), 0, K_BIAS, 0, 1, q, 0, 0, 0);
        add(l, NAME("self_attn.k_proj.weight"), 0, K_MAT, H, 2, kv, H, 0, 0);
        add(l, NAME("self_attn.k_proj.bias"), 0, K_BIAS, 0, 1, kv, 0, 0, 0);
        add(l, NAME("self_attn.v_proj.weight"), 0, K_MAT, H, 2, kv, H, 0, 0);
        add(l, NAME("self_attn.v_proj.bias"), 0, K_BIAS, 0, 1, kv, 0, 0, 0);
        add(l, NAME("self_attn.o_proj.weight"), 0, K_MAT, q, 2, H, q, 0, 0);
        add(l, NAME("self_attn.o_proj.bias"), 0, K_BIAS, 0, 1, H, 0, 0, 0);
        add(l, NAME("self_attn.sinks"), 0, K_SINK, 0, 1, p->heads, 0, 0, 0);
        add(l, NAME("post_attention_layernorm.weight"), 0, K_NORM, 0, 1, H, 0, 0, 0);
        add(l, NAME("mlp.router.weight"), 0, K_MAT, H, 2, E, H, 0, 0);
        add(l, NAME("mlp.router.bias"), 0, K_BIAS, 0, 1, E, 0, 0, 0);
        add(l, NAME("mlp.experts.gate_up_proj_blocks"), 1, K_BLOCKS, 0, 4, E, 2 * I, H / 32, 16);
        add(l, NAME("mlp.experts.gate_up_proj_scales"), 1, K_SCALES, H, 3, E, 2 * I, H / 32, 0);
        add(l, NAME("mlp.experts.gate_up_proj_bias"), 0, K_BIAS, 0, 2, E, 2 * I, 0, 0);
        add(l, NAME("mlp.experts.down_proj_blocks"), 1, K_BLOCKS, 0, 4, E, H, I / 32, 16);
        add(l, NAME("mlp.experts.down_proj_scales"), 1, K_SCALES, I, 3, E, H, I / 32, 0);
        add(l, NAME("mlp.experts.down_proj_bias"), 0, K_BIAS, 0, 2, E, H, 0, 0);
    }
#undef NAME
    add(l, "model.embed_tokens.weight", 0, K_MAT, H, 2, p->vocab, H, 0, 0);
    add(l, "model.norm.weight", 0, K_NORM, 0, 1, H, 0, 0, 0);
    add(l, "lm_head.weight", 0, K_MAT, H, 2, p->vocab, H, 0, 0);
}

/* std of a matrix with this fan-in: 0.02 at 2880, times sqrt(2880 / fan_in). */
static float mat_std(int fan_in) { return 0.02f * __builtin_sqrtf(2880.0f / (float)fan_in); }

/* E8M0 exponent e (scale 2^e) with 2^e * 2.93 (std of a uniform E2M1 code) just
 * below the matrix std; blocks pick e or e+1 at random. */
static int scale_exponent(int fan_in) {
    float target = mat_std(fan_in) / 2.93f, v = 1.0f;
    int e = 0;
    while (v > target) { v *= 0.5f; e--; }
    while (v * 2.0f <= target) { v *= 2.0f; e++; }
    return e;
}

/* Fills buf with `count` values of tensor t continuing the stream r. */
static void fill(const tensor_spec *t, rng *r, unsigned char *buf, size_t count) {
    uint16_t *h = (uint16_t *)buf;
    switch (t->kind) {
    case K_NORM:
        for (size_t i = 0; i < count; i++) h[i] = to_bf16(1.0f + 0.1f * uniform_pm1(r));
        break;
    case K_MAT: {
        float sd = mat_std(t->fan_in);
        for (size_t i = 0; i < count; i++) h[i] = to_bf16(sd * gauss(r));
        break;
    }
    case K_BIAS:
        for (size_t i = 0; i < count; i++) h[i] = to_bf16(0.02f * gauss(r));
        break;
    case K_SINK:
        for (size_t i = 0; i < count; i++) h[i] = to_bf16(gauss(r));
        break;
    case K_BLOCKS:
        for (size_t i = 0; i < count; i += 8) {
            uint64_t u = rng_next(r);
            size_t m = count - i < 8 ? count - i : 8;
            memcpy(buf + i, &u, m);
        }
        break;
    case K_SCALES: {
        int e = scale_exponent(t->fan_in);
        for (size_t i = 0; i < count; i += 64) {
            uint64_t u = rng_next(r);
            for (size_t j = 0; j < 64 && i + j < count; j++)
                buf[i + j] = (unsigned char)(127 + e + (int)((u >> j) & 1));
        }
        break;
    }
    }
}

/* ------------------------------------------------------------------ writing */
static void die(const char *what, const char *path) {
    fprintf(stderr, "gen_checkpoint: %s: %s: %s\n", what, path, strerror(errno));
    exit(1);
}

static void write_all(int fd, const void *buf, size_t n, const char *path) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) { if (errno == EINTR) continue; die("write", path); }
        p += w; n -= (size_t)w;
    }
}

static const char *shard_name(const gen_params *p, int shard, int n_shards, char *buf, size_t size) {
    if (p->shard_mb == 0) snprintf(buf, size, "model.safetensors");
    else snprintf(buf, size, "model-%05d-of-%05d.safetensors", shard, n_shards - 1);
    return buf;
}

#define CHUNK ((size_t)8 << 20)

static void write_shard(const gen_params *p, const char *dir, tensor_list *l, int shard,
                        int n_shards, unsigned char *buf) {
    char name[64], path[4096];
    shard_name(p, shard, n_shards, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    /* header JSON */
    size_t cap = 1 << 16, len = 0;
    char *hdr = malloc(cap);
    if (!hdr) die("malloc", path);
#define EMIT(...) do { \
        int k_ = snprintf(hdr + len, cap - len, __VA_ARGS__); \
        while ((size_t)k_ >= cap - len) { cap *= 2; hdr = realloc(hdr, cap); if (!hdr) die("realloc", path); \
            k_ = snprintf(hdr + len, cap - len, __VA_ARGS__); } \
        len += (size_t)k_; } while (0)
    EMIT("{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < l->n; i++) {
        tensor_spec *t = &l->t[i];
        if (t->shard != shard) continue;
        EMIT(",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t->name, t->u8 ? "U8" : "BF16");
        for (int d = 0; d < t->ndim; d++) EMIT("%s%" PRId64, d ? "," : "", t->shape[d]);
        EMIT("],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", t->begin, t->begin + t->nbytes);
    }
    EMIT("}");
    while (len % 8) EMIT(" ");
#undef EMIT
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) die("open", path);
    unsigned char n8[8];
    for (int i = 0; i < 8; i++) n8[i] = (unsigned char)((uint64_t)len >> (8 * i));
    write_all(fd, n8, 8, path);
    write_all(fd, hdr, len, path);
    free(hdr);
    size_t used = 0;
    for (int i = 0; i < l->n; i++) {
        tensor_spec *t = &l->t[i];
        if (t->shard != shard) continue;
        rng r;
        rng_seed(&r, p->seed, t->name);
        size_t esize = t->u8 ? 1 : 2;
        uint64_t left = t->nbytes / esize;
        while (left > 0) {
            size_t room = (CHUNK - used) / esize;
            if (room == 0) { write_all(fd, buf, used, path); used = 0; continue; }
            /* K_BLOCKS/K_SCALES consume whole 8/64-value words: keep pieces aligned */
            size_t take = left < room ? (size_t)left : room & ~(size_t)63;
            if (take == 0) { write_all(fd, buf, used, path); used = 0; continue; }
            fill(t, &r, buf + used, take);
            used += take * esize;
            left -= take;
        }
    }
    if (used) write_all(fd, buf, used, path);
    if (close(fd) != 0) die("close", path);
}

static void write_text(const char *dir, const char *file, const char *text) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "w");
    if (!f) die("open", path);
    fputs(text, f);
    if (fclose(f) != 0) die("close", path);
}

static void write_config(const gen_params *p, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) die("open", path);
    /* the real ids (<|return|>, <|endoftext|>); a small test vocabulary gets in-range ids,
     * since transformers rejects a padding id outside the embedding */
    int eos = p->vocab > 200002 ? 200002 : p->vocab - 1;
    int pad = p->vocab > 199999 ? 199999 : p->vocab - 1;
    fprintf(f, "{\n  \"architectures\": [\n    \"GptOssForCausalLM\"\n  ],\n"
               "  \"attention_bias\": true,\n  \"attention_dropout\": 0.0,\n"
               "  \"eos_token_id\": %d,\n  \"experts_per_token\": %d,\n"
               "  \"head_dim\": %d,\n  \"hidden_act\": \"silu\",\n  \"hidden_size\": %d,\n"
               "  \"initial_context_length\": 4096,\n  \"initializer_range\": 0.02,\n"
               "  \"intermediate_size\": %d,\n  \"layer_types\": [\n",
            eos, p->top_k, p->head_dim, p->hidden, p->intermediate);
    for (int i = 0; i < p->layers; i++)
        fprintf(f, "    \"%s\"%s\n", i % 2 ? "full_attention" : "sliding_attention",
                i + 1 < p->layers ? "," : "");
    fprintf(f, "  ],\n  \"max_position_embeddings\": %d,\n  \"model_type\": \"gpt_oss\",\n"
               "  \"num_attention_heads\": %d,\n  \"num_experts_per_tok\": %d,\n"
               "  \"num_hidden_layers\": %d,\n  \"num_key_value_heads\": %d,\n"
               "  \"num_local_experts\": %d,\n  \"output_router_logits\": false,\n"
               "  \"pad_token_id\": %d,\n  \"quantization_config\": {\n"
               "    \"modules_to_not_convert\": [\n      \"model.layers.*.self_attn\",\n"
               "      \"model.layers.*.mlp.router\",\n      \"model.embed_tokens\",\n"
               "      \"lm_head\"\n    ],\n    \"quant_method\": \"mxfp4\"\n  },\n"
               "  \"rms_norm_eps\": 1e-05,\n  \"rope_scaling\": {\n    \"beta_fast\": 32.0,\n"
               "    \"beta_slow\": 1.0,\n    \"factor\": 32.0,\n"
               "    \"original_max_position_embeddings\": 4096,\n    \"rope_type\": \"yarn\",\n"
               "    \"truncate\": false\n  },\n  \"rope_theta\": 150000,\n"
               "  \"router_aux_loss_coef\": 0.9,\n  \"sliding_window\": %d,\n"
               "  \"swiglu_limit\": 7.0,\n  \"tie_word_embeddings\": false,\n"
               "  \"transformers_version\": \"4.55.0.dev0\",\n  \"use_cache\": true,\n"
               "  \"vocab_size\": %d\n}\n",
            p->max_pos, p->heads, p->top_k, p->layers, p->kv_heads, p->experts, pad, p->window,
            p->vocab);
    if (fclose(f) != 0) die("close", path);
}

static void write_index(const gen_params *p, const char *dir, const tensor_list *l, int n_shards) {
    char path[4096], name[64];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) die("open", path);
    uint64_t total = 0;
    for (int i = 0; i < l->n; i++) total += l->t[i].nbytes;
    /* weight_map in name order, as Hugging Face writes it */
    int *order = malloc((size_t)l->n * sizeof *order);
    if (!order) die("malloc", path);
    for (int i = 0; i < l->n; i++) order[i] = i;
    for (int i = 1; i < l->n; i++)
        for (int j = i; j > 0 && strcmp(l->t[order[j - 1]].name, l->t[order[j]].name) > 0; j--) {
            int x = order[j]; order[j] = order[j - 1]; order[j - 1] = x;
        }
    fprintf(f, "{\n  \"metadata\": {\n    \"total_size\": %" PRIu64 "\n  },\n  \"weight_map\": {\n", total);
    for (int i = 0; i < l->n; i++) {
        const tensor_spec *t = &l->t[order[i]];
        fprintf(f, "    \"%s\": \"%s\"%s\n", t->name, shard_name(p, t->shard, n_shards, name, sizeof name),
                i + 1 < l->n ? "," : "");
    }
    fprintf(f, "  }\n}\n");
    free(order);
    if (fclose(f) != 0) die("close", path);
}

static void copy_file(const char *src, const char *dir, const char *file) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *in = fopen(src, "rb");
    if (!in) die("open", src);
    FILE *out = fopen(path, "wb");
    if (!out) die("open", path);
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) die("write", path);
    if (ferror(in)) die("read", src);
    fclose(in);
    if (fclose(out) != 0) die("close", path);
}

/* -------------------------------------------------------------------- main */
static void usage(void) {
    fprintf(stderr,
            "usage: gen_checkpoint --out DIR [--preset tiny|20b|120b] [--seed N]\n"
            "       [--layers N] [--hidden N] [--intermediate N] [--heads N] [--kv-heads N]\n"
            "       [--head-dim N] [--experts N] [--top-k N] [--vocab N] [--window N]\n"
            "       [--max-pos N] [--shard-mb N (0 = single model.safetensors)]\n"
            "       [--tokenizer tokenizer.json]\n");
    exit(2);
}

static long parse_num(const char *opt, const char *s, long min) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < min) {
        fprintf(stderr, "gen_checkpoint: %s: expected an integer >= %ld, got '%s'\n", opt, min, s);
        exit(2);
    }
    return v;
}

static void set_preset(gen_params *p, const char *name) {
    if (!strcmp(name, "tiny")) {
        *p = (gen_params){ 3, 64, 96, 4, 2, 16, 4, 2, 1024, 8, 131072, 0, p->seed };
    } else if (!strcmp(name, "20b")) {
        *p = (gen_params){ 24, 2880, 2880, 64, 8, 64, 32, 4, 201088, 128, 131072, 4096, p->seed };
    } else if (!strcmp(name, "120b")) {
        *p = (gen_params){ 36, 2880, 2880, 64, 8, 64, 128, 4, 201088, 128, 131072, 4096, p->seed };
    } else {
        fprintf(stderr, "gen_checkpoint: unknown preset '%s' (tiny, 20b, 120b)\n", name);
        exit(2);
    }
}

int main(int argc, char **argv) {
    gen_params p = { 0 };
    p.seed = 1;
    set_preset(&p, "tiny");
    const char *out = NULL, *tokenizer = NULL;
    /* the preset first, so that overrides apply on top of it wherever they appear */
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--preset")) set_preset(&p, argv[i + 1]);
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (!strcmp(o, "--preset")) continue;
        else if (!strcmp(o, "--out")) out = v;
        else if (!strcmp(o, "--tokenizer")) tokenizer = v;
        else if (!strcmp(o, "--seed")) p.seed = (uint64_t)strtoull(v, NULL, 10);
        else if (!strcmp(o, "--layers")) p.layers = (int)parse_num(o, v, 1);
        else if (!strcmp(o, "--hidden")) p.hidden = (int)parse_num(o, v, 32);
        else if (!strcmp(o, "--intermediate")) p.intermediate = (int)parse_num(o, v, 32);
        else if (!strcmp(o, "--heads")) p.heads = (int)parse_num(o, v, 1);
        else if (!strcmp(o, "--kv-heads")) p.kv_heads = (int)parse_num(o, v, 1);
        else if (!strcmp(o, "--head-dim")) p.head_dim = (int)parse_num(o, v, 2);
        else if (!strcmp(o, "--experts")) p.experts = (int)parse_num(o, v, 1);
        else if (!strcmp(o, "--top-k")) p.top_k = (int)parse_num(o, v, 1);
        else if (!strcmp(o, "--vocab")) p.vocab = (int)parse_num(o, v, 1);
        else if (!strcmp(o, "--window")) p.window = (int)parse_num(o, v, 1);
        else if (!strcmp(o, "--max-pos")) p.max_pos = (int)parse_num(o, v, 1);
        else if (!strcmp(o, "--shard-mb")) p.shard_mb = parse_num(o, v, 0);
        else usage();
    }
    if (!out) usage();
    if (p.hidden % 32 || p.intermediate % 32 || p.head_dim % 2 || p.heads % p.kv_heads ||
        p.top_k > p.experts) {
        fprintf(stderr, "gen_checkpoint: inconsistent shape (hidden and intermediate must be multiples "
                        "of 32, head_dim even, heads a multiple of kv-heads, top-k <= experts)\n");
        return 2;
    }
    if (mkdir(out, 0755) != 0 && errno != EEXIST) die("mkdir", out);

    tensor_list l = { 0 };
    build_tensors(&p, &l);
    /* shards: consecutive tensors up to shard_mb each (a bigger tensor gets its own) */
    int n_shards = 1;
    uint64_t limit = (uint64_t)p.shard_mb << 20, size = 0;
    for (int i = 0; i < l.n; i++) {
        if (p.shard_mb && size > 0 && size + l.t[i].nbytes > limit) { n_shards++; size = 0; }
        l.t[i].shard = n_shards - 1;
        l.t[i].begin = size;
        size += l.t[i].nbytes;
    }
    unsigned char *buf = malloc(CHUNK);
    if (!buf) die("malloc", out);
    for (int s = 0; s < n_shards; s++) write_shard(&p, out, &l, s, n_shards, buf);
    free(buf);
    write_config(&p, out);
    write_text(out, "generation_config.json",
               "{\n  \"bos_token_id\": 199998,\n  \"do_sample\": true,\n  \"eos_token_id\": [\n"
               "    200002,\n    199999,\n    200012\n  ],\n  \"pad_token_id\": 199999,\n"
               "  \"transformers_version\": \"4.55.0.dev0\"\n}\n");
    if (p.shard_mb) write_index(&p, out, &l, n_shards);
    if (tokenizer) copy_file(tokenizer, out, "tokenizer.json");
    free(l.t);
    return 0;
}
