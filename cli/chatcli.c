/* chatcli.c - shared pieces of `gptoss run` and `gptoss chat`. */
#include "chatcli.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DIM "\033[2m"
#define RESET "\033[0m"

void chatcli_options_default(chatcli_options *o) {
    memset(o, 0, sizeof *o);
    gptoss_sampler_params_default(&o->sampling);
    o->max_tokens = 0;
}

void chatcli_print_options_help(FILE *f) {
    fprintf(f,
            "  -m, --model DIR            model folder (config.json, safetensors, tokenizer.json)\n"
            "  --reasoning-effort LEVEL   low | medium | high (default medium)\n"
            "  --system TEXT              system instructions\n"
            "  --hide-reasoning           do not print the reasoning\n"
            "  -n, --max-tokens N         tokens to generate per answer (default: until done)\n"
            "  --temperature T            default 1.0 (0 = greedy)\n"
            "  --top-p P                  default 1.0\n"
            "  --top-k K                  default 0 (off)\n"
            "  --min-p P                  default 0 (off)\n"
            "  --seed S                   sampling seed (default: from the clock)\n"
            "  --device cpu|cuda          default: cuda when a GPU is visible\n"
            "  -t, --threads N            CPU threads (default: all cores)\n"
            "  -c, --context N            context length (default: min(8192, model))\n"
            "  --script-tokens FILE       testing: replay these tokens instead of sampling\n");
}

static int want_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "gptoss: %s needs a value\n", argv[*i]);
        return 0;
    }
    return 1;
}

static int parse_num(const char *opt, const char *s, double lo, double hi, double *v) {
    char *end;
    *v = strtod(s, &end);
    if (end == s || *end || *v < lo || *v > hi) {
        fprintf(stderr, "gptoss: %s: '%s' is not a number in %g..%g\n", opt, s, lo, hi);
        return 0;
    }
    return 1;
}

int chatcli_parse_option(chatcli_options *o, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    double v;
#define VALUE() (want_value(argc, argv, i) ? argv[++*i] : NULL)
#define NUM(lo, hi) do { const char *s_ = VALUE(); if (!s_ || !parse_num(a, s_, lo, hi, &v)) return -1; } while (0)
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
        if (!(o->model_dir = VALUE())) return -1;
    } else if (!strcmp(a, "--system")) {
        if (!(o->system = VALUE())) return -1;
    } else if (!strcmp(a, "--reasoning-effort")) {
        if (!(o->effort = VALUE())) return -1;
        if (strcmp(o->effort, "low") && strcmp(o->effort, "medium") && strcmp(o->effort, "high")) {
            fprintf(stderr, "gptoss: --reasoning-effort: '%s' is not low, medium or high\n", o->effort);
            return -1;
        }
    } else if (!strcmp(a, "--hide-reasoning")) {
        o->hide_reasoning = 1;
    } else if (!strcmp(a, "-n") || !strcmp(a, "--max-tokens")) {
        NUM(1, 1e9);
        o->max_tokens = (int)v;
    } else if (!strcmp(a, "--temperature")) {
        NUM(0, 100);
        o->sampling.temperature = (float)v;
    } else if (!strcmp(a, "--top-p")) {
        NUM(0, 1);
        o->sampling.top_p = (float)v;
    } else if (!strcmp(a, "--top-k")) {
        NUM(0, 1e9);
        o->sampling.top_k = (int)v;
    } else if (!strcmp(a, "--min-p")) {
        NUM(0, 1);
        o->sampling.min_p = (float)v;
    } else if (!strcmp(a, "--seed")) {
        NUM(0, 1.8e19);
        o->sampling.seed = (uint64_t)v;
        o->seed_given = 1;
    } else if (!strcmp(a, "--device")) {
        if (!(o->device = VALUE())) return -1;
    } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
        NUM(0, 4096);
        o->threads = (int)v;
    } else if (!strcmp(a, "-c") || !strcmp(a, "--context") || !strcmp(a, "--ctx")) {
        NUM(0, 1 << 24);
        o->ctx = (int)v;
    } else if (!strcmp(a, "--script-tokens")) {
        if (!(o->script_path = VALUE())) return -1;
    } else {
        return 0;
    }
#undef NUM
#undef VALUE
    return 1;
}

int chatcli_load(const chatcli_options *o, chatcli_engine *e) {
    memset(e, 0, sizeof *e);
    if (!o->model_dir) {
        fprintf(stderr, "gptoss: -m DIR is required\n");
        return 0;
    }
    gptoss_model_params mp;
    gptoss_model_params_default(&mp);
    mp.device = o->device;
    mp.n_threads = o->threads;
    mp.max_context = o->ctx;
    mp.max_sequences = 1;
    if (gptoss_tokenizer_load(o->model_dir, &e->tok) != GPTOSS_OK ||
        gptoss_model_load(o->model_dir, &mp, &e->model) != GPTOSS_OK ||
        gptoss_session_create(e->model, &e->session) != GPTOSS_OK ||
        (o->script_path && chatloop_load_scripts(e->tok, o->script_path, &e->scripts,
                                                 &e->script_lens, &e->n_scripts) != GPTOSS_OK)) {
        fprintf(stderr, "gptoss: %s\n", gptoss_last_error());
        chatcli_unload(e);
        return 0;
    }
    return 1;
}

void chatcli_unload(chatcli_engine *e) {
    if (e->session) gptoss_session_free(e->session);
    if (e->model) gptoss_model_free(e->model);
    if (e->tok) gptoss_tokenizer_free(e->tok);
    chatloop_scripts_free(e->scripts, e->script_lens, e->n_scripts);
    memset(e, 0, sizeof *e);
}

void chatcli_printer_init(chatcli_printer *p, FILE *out, int hide_reasoning) {
    p->out = out;
    p->tty = isatty(fileno(out));
    p->hide_reasoning = hide_reasoning;
    p->state = 0;
}

static void leave_reasoning(chatcli_printer *p, int to_answer) {
    if (p->state != 1) return;
    if (p->tty) fputs(RESET "\n\n", p->out);
    else fputs(to_answer ? "\n--- answer ---\n" : "\n", p->out);
    p->state = to_answer ? 2 : 0;
}

void chatcli_printer_event(void *user, chatloop_event ev, int tool_index, const char *text,
                           size_t len) {
    chatcli_printer *p = user;
    (void)tool_index;
    switch (ev) {
    case CHATLOOP_REASONING:
        if (p->hide_reasoning) return;
        if (p->state != 1) {
            if (p->state != 0) fputs("\n", p->out);
            fputs(p->tty ? DIM "Thinking: " : "--- reasoning ---\n", p->out);
            p->state = 1;
        }
        fwrite(text, 1, len, p->out);
        break;
    case CHATLOOP_CONTENT:
        leave_reasoning(p, 1);
        if (p->state == 3) fputs("\n", p->out);
        p->state = 2;
        fwrite(text, 1, len, p->out);
        break;
    case CHATLOOP_TOOL_START:
        leave_reasoning(p, 0);
        fprintf(p->out, "%s[tool call %.*s(", p->state == 2 ? "\n" : "", (int)len, text);
        p->state = 3;
        break;
    case CHATLOOP_TOOL_ARGS:
        fwrite(text, 1, len, p->out);
        break;
    case CHATLOOP_TOOL_END:
        fputs(")]", p->out);
        break;
    }
    fflush(p->out);
}

void chatcli_printer_end(chatcli_printer *p) {
    if (p->state == 1 && p->tty) fputs(RESET, p->out);
    if (p->state != 0) fputs("\n", p->out);
    fflush(p->out);
    p->state = 0;
}

void chatcli_print_status(FILE *f, int tty, const chatgen *g) {
    const chatloop_stats *s = chatgen_stats(g);
    double dt = s->t_end - s->t_first_token;
    double tps = s->completion_tokens > 1 && dt > 0 ? (s->completion_tokens - 1) / dt : 0;
    const char *why = chatloop_finish_name(chatgen_finish(g));
    fprintf(f, "%s[%d tokens, %.1f tok/s, prompt %d tokens (%d cached), %s]%s\n", tty ? DIM : "",
            s->completion_tokens, tps, s->prompt_tokens, s->cached_tokens,
            !strcmp(why ? why : "", "cancelled") ? "stopped" : why ? why : "?", tty ? RESET : "");
    fflush(f);
}

chatgen *chatcli_generate(chatcli_engine *e, const chatcli_options *o, const char *request_json,
                          chatcli_printer *pr, atomic_int *cancel, int script) {
    int32_t *ids = NULL;
    size_t n = 0;
    if (chatloop_tokenize_chat(e->tok, request_json, strlen(request_json), o->effort, &ids, &n) !=
        GPTOSS_OK) {
        fprintf(stderr, "gptoss: %s\n", gptoss_last_error());
        return NULL;
    }
    chatloop_params p;
    chatloop_params_default(&p);
    p.sampling = o->sampling;
    if (!o->seed_given) p.sampling.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    p.max_tokens = o->max_tokens;
    p.cancel = cancel;
    if (script >= 0 && e->n_scripts > 0) {
        p.script = e->scripts[script % e->n_scripts];
        p.n_script = e->script_lens[script % e->n_scripts];
    }
    chatloop_callbacks cb = {chatcli_printer_event, NULL, pr};
    chatgen *g = NULL;
    gptoss_status st = chatgen_create(e->model, e->session, e->tok, &p, &cb, &g);
    if (st == GPTOSS_OK) st = chatloop_run(g, ids, n);
    gptoss_free(ids);
    chatcli_printer_end(pr);
    if (st != GPTOSS_OK) {
        fprintf(stderr, "gptoss: %s\n", gptoss_last_error());
        chatgen_free(g);
        return NULL;
    }
    return g;
}
