/*
 * gptoss.h - the whole public API of the gpt-oss inference engine.
 *
 * Opaque handles with explicit create/free. Every call that can fail returns a
 * gptoss_status; on failure gptoss_last_error() holds a one-line message naming
 * what was wrong (file, tensor, field, ...). The message is thread-local and
 * valid until the next failing call on the same thread. The library never
 * prints and never exits.
 *
 * Memory returned through `char **` / `int32_t **` out-parameters is owned by
 * the caller and released with gptoss_free().
 */
#ifndef GPTOSS_H
#define GPTOSS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GPTOSS_VERSION "0.1.0"

/* ------------------------------------------------------------------ status */

typedef enum {
    GPTOSS_OK = 0,
    GPTOSS_ERR_INVALID_ARGUMENT, /* a caller-supplied value is out of range */
    GPTOSS_ERR_IO,               /* a file is missing or unreadable */
    GPTOSS_ERR_FORMAT,           /* a file/JSON/UTF-8 input is malformed */
    GPTOSS_ERR_UNSUPPORTED,      /* valid input we do not handle (architecture, dtype) */
    GPTOSS_ERR_OUT_OF_MEMORY,    /* host or device allocation failed */
    GPTOSS_ERR_CONTEXT_FULL,     /* a sequence would exceed its context length */
    GPTOSS_ERR_BACKEND,          /* CUDA or other backend failure */
    GPTOSS_ERR_CANCELLED,        /* stopped by the caller */
} gptoss_status;

const char *gptoss_status_name(gptoss_status s);
const char *gptoss_last_error(void);
void gptoss_free(void *p);

/* Backends compiled into this build, e.g. "cpu(avx512,avx2,scalar) cuda". */
const char *gptoss_build_info(void);

/* ------------------------------------------------------------------- model */

typedef struct gptoss_model gptoss_model;

typedef struct {
    const char *device;   /* "cpu", "cuda", or NULL/"auto" (cuda when a GPU is visible) */
    int n_threads;        /* CPU worker threads; 0 = all cores */
    int max_context;      /* tokens per sequence the KV cache can hold; 0 = min(8192, model max) */
    int max_sequences;    /* sequences (sessions) that may exist at once; 0 = 1 */
    int gpu_index;        /* CUDA device ordinal */
    /* Optional load progress: done/total bytes. May be NULL. */
    void (*progress)(void *user, uint64_t done, uint64_t total);
    void *progress_user;
} gptoss_model_params;

void gptoss_model_params_default(gptoss_model_params *p);

/* dir: a Hugging Face gpt-oss folder (config.json + safetensors). */
gptoss_status gptoss_model_load(const char *dir, const gptoss_model_params *p,
                                gptoss_model **out);
void gptoss_model_free(gptoss_model *m);

typedef struct {
    int n_layers, hidden, n_heads, n_kv_heads, head_dim;
    int n_experts, experts_per_token, intermediate;
    int vocab_size, sliding_window, max_position;
    int max_context;         /* per-sequence KV capacity chosen at load */
    const char *backend;     /* "cpu" or "cuda" */
    const char *kernels;     /* e.g. "avx512" / "sm_90a"; says what precision/kernels run */
    uint64_t weight_bytes;   /* bytes of weights resident */
    uint64_t bytes_per_token;/* weight bytes one decode step reads (active experts only) */
} gptoss_model_info;

void gptoss_model_get_info(const gptoss_model *m, gptoss_model_info *info);

/* Memory bandwidth of the model's device in GB/s (bytes read + written by a
 * large device-to-device copy, best of a few; takes ~1 GB of free device
 * memory for a moment). GPTOSS_ERR_UNSUPPORTED on the CPU backend, whose
 * host bandwidth the caller measures itself. */
gptoss_status gptoss_model_memory_bandwidth(gptoss_model *m, double *gb_s);

/* ----------------------------------------------------------------- session
 * A session is one sequence and its KV cache. Tokens are appended; after an
 * append, the logits of the last appended token (or of every appended token)
 * are returned. Several sessions of one model may decode together through
 * gptoss_decode_batch (continuous batching).
 */
typedef struct gptoss_session gptoss_session;

gptoss_status gptoss_session_create(gptoss_model *m, gptoss_session **out);
void gptoss_session_free(gptoss_session *s);

/* Number of tokens currently in the KV cache. */
int gptoss_session_length(const gptoss_session *s);
/* The tokens currently in the cache (length gptoss_session_length). */
const int32_t *gptoss_session_tokens(const gptoss_session *s);

/* Drop tokens beyond n (keep the prefix, for reuse across chat turns).
 * Fails with GPTOSS_ERR_UNSUPPORTED when the sliding-window cache cannot roll
 * back that far; then call gptoss_session_reset and re-append. */
gptoss_status gptoss_session_truncate(gptoss_session *s, int n);
void gptoss_session_reset(gptoss_session *s);

/* Append n tokens (prefill in batches, or one decode step when n == 1).
 * logits: NULL, or [vocab_size] for the last token (all == 0),
 * or [n x vocab_size] row-major for every appended token (all != 0). */
gptoss_status gptoss_session_append(gptoss_session *s, const int32_t *ids, size_t n,
                                    float *logits, int all);

/* One decode step for several sessions at once: session i gets ids[i];
 * logits: [n x vocab_size] (row i belongs to sessions[i]). */
gptoss_status gptoss_decode_batch(gptoss_session **sessions, const int32_t *ids, size_t n,
                                  float *logits);

/* ----------------------------------------------------------------- sampler */

typedef struct gptoss_sampler gptoss_sampler;

typedef struct {
    float temperature;  /* 0 = greedy (argmax, lowest id on ties) */
    int top_k;          /* 0 = off */
    float top_p;        /* 1.0 = off */
    float min_p;        /* 0.0 = off; relative to the top probability */
    uint64_t seed;      /* same seed + same logits = same choices */
} gptoss_sampler_params;

void gptoss_sampler_params_default(gptoss_sampler_params *p); /* t=1, top_p=1, seed=0 */
gptoss_status gptoss_sampler_create(const gptoss_sampler_params *p, gptoss_sampler **out);
void gptoss_sampler_free(gptoss_sampler *s);
/* Picks a token from logits[0..n). Optionally returns its log-probability
 * under the unmodified distribution (log-softmax of the raw logits). */
int32_t gptoss_sampler_sample(gptoss_sampler *s, const float *logits, int n, float *logprob);
/* One decode step for several sessions that also picks each next token:
 * session i gets ids[i], then next[i] = what gptoss_sampler_sample(samplers[i],
 * row i) would return, with the same random stream (one draw per non-greedy
 * sample); logprobs (NULL or [n]): the raw log-softmax of each chosen id. On
 * the CUDA backend the rows are reduced on the GPU (argmax, the temperature
 * pick, or the top-k / top-p candidates) and only small results cross to the
 * host; the choices are the same bit for bit. Sessions and samplers must be
 * distinct. When the step ran but a row cannot be sampled (no logit above
 * -inf), ids are appended, next[i] is -1 and the call fails. Use
 * gptoss_decode_batch when the full logits are needed (top logprobs). */
gptoss_status gptoss_decode_sample(gptoss_session **sessions, const int32_t *ids, size_t n,
                                   gptoss_sampler **samplers, int32_t *next, float *logprobs);
/* Top `k` alternatives by raw log-probability, for the logprobs API. */
int gptoss_top_logprobs(const float *logits, int n, int k, int32_t *ids, float *logprobs);

/* --------------------------------------------------------------- tokenizer */

typedef struct gptoss_tokenizer gptoss_tokenizer;

/* path: a tokenizer.json file, or a folder containing one. */
gptoss_status gptoss_tokenizer_load(const char *path, gptoss_tokenizer **out);
void gptoss_tokenizer_free(gptoss_tokenizer *t);

/* allow_special: when non-zero, special-token text ("<|start|>") in `text`
 * becomes the special id; otherwise it is encoded as plain text.
 * Invalid UTF-8 in text: GPTOSS_ERR_FORMAT naming the byte offset. */
gptoss_status gptoss_tokenize(const gptoss_tokenizer *t, const char *text, size_t len,
                              int allow_special, int32_t **ids, size_t *n_ids);
/* Exact bytes of the concatenated tokens (may be invalid UTF-8 for partial sequences). */
gptoss_status gptoss_detokenize(const gptoss_tokenizer *t, const int32_t *ids, size_t n,
                                char **text, size_t *len);
/* Raw bytes of one token; NULL for an id out of range. */
const char *gptoss_token_bytes(const gptoss_tokenizer *t, int32_t id, size_t *len);
/* Id of a special token by its text ("<|return|>"), or -1. */
int32_t gptoss_token_special(const gptoss_tokenizer *t, const char *text);
int gptoss_tokenizer_vocab_size(const gptoss_tokenizer *t);

/* Streaming decoder: feed ids one at a time, get back only complete UTF-8. */
typedef struct gptoss_detok_stream gptoss_detok_stream;
gptoss_status gptoss_detok_stream_create(const gptoss_tokenizer *t, gptoss_detok_stream **out);
void gptoss_detok_stream_free(gptoss_detok_stream *d);
/* Appends the newly complete text to *out (NUL-terminated, valid until the next
 * call). Bytes of an unfinished character are held back. */
gptoss_status gptoss_detok_stream_push(gptoss_detok_stream *d, int32_t id,
                                       const char **out, size_t *len);
/* Flushes held-back bytes (invalid tails become U+FFFD). */
gptoss_status gptoss_detok_stream_flush(gptoss_detok_stream *d, const char **out, size_t *len);

/* Harmony special token ids (o200k_harmony). */
enum {
    GPTOSS_TOK_STARTOFTEXT = 199998,
    GPTOSS_TOK_ENDOFTEXT = 199999,
    GPTOSS_TOK_RETURN = 200002,
    GPTOSS_TOK_CONSTRAIN = 200003,
    GPTOSS_TOK_CHANNEL = 200005,
    GPTOSS_TOK_START = 200006,
    GPTOSS_TOK_END = 200007,
    GPTOSS_TOK_MESSAGE = 200008,
    GPTOSS_TOK_CALL = 200012,
    GPTOSS_TOK_ENDOFPROMPT = 200018,
};
/* Stop tokens of a generation: <|return|>, <|call|>, <|endoftext|> (never <|end|>). */
int gptoss_is_stop_token(int32_t id);

/* ---------------------------------------------------------------- harmony */

typedef struct {
    const char *date;             /* "YYYY-MM-DD"; NULL = today (local time) */
    const char *reasoning_effort; /* overrides the request's; NULL = request's or "medium" */
    int add_generation_prompt;    /* append "<|start|>assistant" (normally 1) */
} gptoss_render_options;

/* Renders an OpenAI-style chat request (JSON text with "messages", optional
 * "tools", "reasoning_effort") to the harmony prompt, byte-identical to the
 * official chat_template.jinja. Bad JSON or a bad message: GPTOSS_ERR_FORMAT
 * naming the field (e.g. "messages[2].role: expected a string"). */
gptoss_status gptoss_render_chat(const char *request_json, size_t len,
                                 const gptoss_render_options *opt, char **text);

/* The token ids of gptoss_render_chat's prompt, safe against injection: only
 * the template's own markers (<|start|>, <|message|>, <|end|>, ...) become
 * special tokens; every piece of caller text (contents, reasoning, tool names,
 * schemas, arguments and outputs, instructions, dates) is tokenized as plain
 * text even where it spells a special token. For requests whose text has no
 * special-token text the ids equal gptoss_tokenize(text, allow_special = 1).
 * *ids is freed with gptoss_free. */
gptoss_status gptoss_render_chat_ids(const gptoss_tokenizer *t, const char *request_json, size_t len,
                                     const gptoss_render_options *opt, int32_t **ids, size_t *n_ids);

/* Incremental parser of generated harmony tokens. */
typedef struct gptoss_harmony_parser gptoss_harmony_parser;

typedef enum {
    GPTOSS_HEV_NONE = 0,
    GPTOSS_HEV_MESSAGE_START, /* header complete: role, channel, recipient, content_type set */
    GPTOSS_HEV_CONTENT,       /* text delta of the current message */
    GPTOSS_HEV_MESSAGE_END,   /* message closed by <|end|>, <|return|> or <|call|> (end_token) */
    GPTOSS_HEV_ERROR,         /* malformed sequence; the parser recovered (text says what) */
} gptoss_harmony_event_type;

typedef struct {
    gptoss_harmony_event_type type;
    const char *role;         /* "assistant", ... */
    const char *channel;      /* "analysis" | "commentary" | "final" | other; "" if none */
    const char *recipient;    /* "functions.get_weather" or "" */
    const char *content_type; /* "json" (from " json" or " <|constrain|>json") or "" */
    const char *text;         /* CONTENT: the delta; ERROR: the message */
    size_t text_len;
    int32_t end_token;        /* MESSAGE_END: the token that closed it */
} gptoss_harmony_event;

/* expect_start: 1 when generation begins right after "<|start|>assistant"
 * (the header continues with <|channel|>), 0 when tokens begin with <|start|>. */
gptoss_status gptoss_harmony_parser_create(const gptoss_tokenizer *t, int expect_start_after_role,
                                           gptoss_harmony_parser **out);
void gptoss_harmony_parser_free(gptoss_harmony_parser *p);
/* Feeds one token; fills up to max_events events (pointers valid until the
 * next push). Returns the number of events written. */
int gptoss_harmony_parser_push(gptoss_harmony_parser *p, int32_t id,
                               gptoss_harmony_event *events, int max_events);
/* Ends the stream (truncated output closes the open message, with an ERROR event). */
int gptoss_harmony_parser_finish(gptoss_harmony_parser *p, gptoss_harmony_event *events,
                                 int max_events);

/* Accumulated result of a parse. */
typedef struct {
    const char *reasoning;    /* analysis channel text, concatenated */
    const char *final;        /* final channel text */
    int n_tool_calls;
    struct {
        const char *name;      /* "get_weather" (the "functions." prefix removed) */
        const char *arguments; /* JSON text as generated */
    } tool_calls[16];
} gptoss_harmony_result;
/* Pointers valid until the parser is freed. */
void gptoss_harmony_parser_result(const gptoss_harmony_parser *p, gptoss_harmony_result *r);

#ifdef __cplusplus
}
#endif
#endif /* GPTOSS_H */
