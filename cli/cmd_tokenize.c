/* cmd_tokenize.c - `gptoss tokenize` (text -> ids) and `gptoss detokenize`
 * (ids -> text) with the o200k_harmony tokenizer.json. */
#include "args.h"
#include "commands.h"
#include "gptoss.h"
#include "util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char TOK_HELP[] =
    "usage: gptoss tokenize -m DIR [--ids] [--no-special] (TEXT | --file FILE | --batch FILE.jsonl)\n"
    "\n"
    "Encodes text with the o200k_harmony tokenizer (only DIR/tokenizer.json is read).\n"
    "Default output: one \"id<TAB>piece\" line per token; the piece is the token's bytes with\n"
    "\\n \\r \\t \\\\ and other control or non-UTF-8 bytes escaped (\\xNN).\n"
    "\n"
    "  -m, --model DIR    folder with tokenizer.json, or the tokenizer.json file\n"
    "  --ids              print only the ids, comma-separated, on one line\n"
    "  --no-special       encode special-token text (\"<|start|>\") as plain text\n"
    "                     (default: it becomes the special id, as Hugging Face encode() does)\n"
    "  --file FILE        read the text from FILE (\"-\" = stdin) instead of TEXT\n"
    "  --batch FILE       JSONL: each line a JSON string; prints one line of comma-separated\n"
    "                     ids per input line (\"ERROR <message>\" for a string that fails)\n"
    "  --time             print load time and encode speed (MB/s) to stderr\n"
    "  --repeat N         with --time: encode the text N times (default 1)\n"
    "  -h, --help         this help\n"
    "  -- TEXT            TEXT that starts with '-'\n"
    "\n"
    "Invalid UTF-8 input fails with \"text: invalid UTF-8 at byte offset N\" (exit 1).\n";

static const char DETOK_HELP[] =
    "usage: gptoss detokenize -m DIR [--stream] IDS...\n"
    "\n"
    "Prints the exact bytes of the tokens (no newline added unless stdout is a terminal).\n"
    "IDS: comma- and/or space-separated token ids, e.g. 13225,5922.\n"
    "\n"
    "  -m, --model DIR    folder with tokenizer.json, or the tokenizer.json file\n"
    "  --stream           decode token by token with the streaming decoder (unfinished\n"
    "                     UTF-8 held back, invalid bytes as U+FFFD), as generation does\n"
    "  -h, --help         this help\n";

static int read_all(const char *path, char **data, size_t *len) {
    if (strcmp(path, "-")) return read_file(path, data, len) == GPTOSS_OK ? 0 : -1;
    size_t cap = 1 << 16, n = 0, got;
    char *p = malloc(cap);
    if (!p) return -1;
    while ((got = fread(p + n, 1, cap - n - 1, stdin)) > 0) {
        n += got;
        if (cap - n < 2) {
            char *q = realloc(p, cap * 2);
            if (!q) { free(p); return -1; }
            p = q;
            cap *= 2;
        }
    }
    p[n] = 0;
    *data = p;
    *len = n;
    return 0;
}

static void print_ids(FILE *f, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) fprintf(f, "%s%d", i ? "," : "", (int)ids[i]);
    fputc('\n', f);
}

/* Token bytes, escaped so that one token stays on one line. */
static void print_piece(const char *p, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\\') fputs("\\\\", stdout);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else if (c < 0x80) fputc(c, stdout);
        else {
            /* Copy a complete UTF-8 character; escape stray bytes. */
            size_t k = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
            size_t j = 1;
            while (k && j < k && i + j < n && ((unsigned char)p[i + j] & 0xC0) == 0x80) j++;
            if (k && j == k) {
                fwrite(p + i, 1, k, stdout);
                i += k;
                continue;
            }
            printf("\\x%02x", c);
        }
        i++;
    }
}

static int run_batch(const gptoss_tokenizer *tok, const char *path, int special) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return args_usage_error("tokenize", "--batch: cannot open %s", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    size_t lineno = 0;
    int rc = 0;
    while ((got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        json_error_t err;
        json_t *v = json_loadb(line, (size_t)got, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        if (!json_is_string(v)) {
            fprintf(stderr, "gptoss tokenize: %s:%zu: expected a JSON string\n", path, lineno);
            json_decref(v);
            rc = ARGS_EXIT_ERROR;
            break;
        }
        int32_t *ids;
        size_t n;
        if (gptoss_tokenize(tok, json_string_value(v), json_string_length(v), special, &ids, &n) == GPTOSS_OK) {
            print_ids(stdout, ids, n);
            gptoss_free(ids);
        } else {
            printf("ERROR %s\n", gptoss_last_error());
        }
        json_decref(v);
    }
    free(line);
    if (f != stdin) fclose(f);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *file = NULL, *batch = NULL;
    int ids_only = 0, special = 1, timing = 0, repeat = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(TOK_HELP, stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!(model = args_value("tokenize", argc, argv, &i))) return ARGS_EXIT_USAGE; }
        else if (!strcmp(a, "--file")) { if (!(file = args_value("tokenize", argc, argv, &i))) return ARGS_EXIT_USAGE; }
        else if (!strcmp(a, "--batch")) { if (!(batch = args_value("tokenize", argc, argv, &i))) return ARGS_EXIT_USAGE; }
        else if (!strcmp(a, "--repeat")) {
            const char *v = args_value("tokenize", argc, argv, &i);
            if (!v || args_int("tokenize", "--repeat", v, 1, 1000000, &repeat)) return ARGS_EXIT_USAGE;
        }
        else if (!strcmp(a, "--") && i + 1 < argc && !text) text = argv[++i]; /* TEXT starting with '-' */
        else if (!strcmp(a, "--ids")) ids_only = 1;
        else if (!strcmp(a, "--no-special")) special = 0;
        else if (!strcmp(a, "--time")) timing = 1;
        else if (a[0] == '-' && a[1] && !text) return args_usage_error("tokenize", "unknown option %s (see --help)", a);
        else if (text) return args_usage_error("tokenize", "more than one TEXT (quote it)");
        else text = a;
    }
    if (!model) return args_usage_error("tokenize", "-m DIR is required (see --help)");
    if (!!text + !!file + !!batch != 1) return args_usage_error("tokenize", "give exactly one of TEXT, --file, --batch");
    double t0 = now_seconds();
    gptoss_tokenizer *tok = NULL;
    if (gptoss_tokenizer_load(model, &tok) != GPTOSS_OK) return args_lib_error("tokenize", "load");
    double t_load = now_seconds() - t0;
    if (timing) fprintf(stderr, "load: %.3f s\n", t_load);
    int rc = 0;
    if (batch) {
        rc = run_batch(tok, batch, special);
        gptoss_tokenizer_free(tok);
        return rc;
    }
    char *buf = NULL;
    size_t len;
    if (file) {
        if (read_all(file, &buf, &len)) {
            gptoss_tokenizer_free(tok);
            return args_usage_error("tokenize", "--file: cannot read %s", file);
        }
        text = buf;
    } else {
        len = strlen(text);
    }
    int32_t *ids = NULL;
    size_t n = 0;
    double t1 = now_seconds();
    for (int r = 0; r < repeat; r++) {
        gptoss_free(ids);
        ids = NULL;
        if (gptoss_tokenize(tok, text, len, special, &ids, &n) != GPTOSS_OK) {
            rc = args_lib_error("tokenize", "encode");
            goto out;
        }
    }
    double dt = now_seconds() - t1;
    if (timing)
        fprintf(stderr, "encode: %zu bytes x %d -> %zu tokens in %.3f s: %.1f MB/s, %.0f tokens/s\n", len, repeat, n, dt,
                (double)len * repeat / dt / 1e6, (double)n * repeat / dt);
    if (ids_only) {
        print_ids(stdout, ids, n);
    } else {
        for (size_t i = 0; i < n; i++) {
            size_t k;
            const char *p = gptoss_token_bytes(tok, ids[i], &k);
            printf("%d\t", (int)ids[i]);
            print_piece(p, k);
            putchar('\n');
        }
    }
out:
    gptoss_free(ids);
    free(buf);
    gptoss_tokenizer_free(tok);
    return rc;
}

int cmd_detokenize(int argc, char **argv) {
    const char *model = NULL;
    int stream = 0;
    size_t cap = 0, len = 0;
    char *list = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { free(list); fputs(DETOK_HELP, stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model = args_value("detokenize", argc, argv, &i))) { free(list); return ARGS_EXIT_USAGE; }
        } else if (!strcmp(a, "--stream")) stream = 1;
        else if (a[0] == '-' && a[1] && !(a[1] >= '0' && a[1] <= '9')) {
            free(list);
            return args_usage_error("detokenize", "unknown option %s (see --help)", a);
        } else { /* collect every id argument into one comma-separated list */
            size_t k = strlen(a);
            char *p = realloc(list, cap = len + k + 2);
            if (!p) { free(list); return args_usage_error("detokenize", "out of memory"); }
            list = p;
            if (len) list[len++] = ',';
            memcpy(list + len, a, k + 1);
            len += k;
        }
    }
    if (!model) { free(list); return args_usage_error("detokenize", "-m DIR is required (see --help)"); }
    if (!list) return args_usage_error("detokenize", "no token ids given (see --help)");
    for (char *p = list; *p; p++)
        if (*p == ' ' || *p == '\t' || *p == '\n') *p = ',';
    gptoss_tokenizer *tok = NULL;
    if (gptoss_tokenizer_load(model, &tok) != GPTOSS_OK) { free(list); return args_lib_error("detokenize", "load"); }
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = 0;
    /* Drop empty items from repeated separators. */
    char *w = list;
    for (char *p = list; *p; p++)
        if (!(*p == ',' && (w == list || w[-1] == ','))) *w++ = *p;
    if (w > list && w[-1] == ',') w--;
    *w = 0;
    if (args_ids("detokenize", "IDS", list, gptoss_tokenizer_vocab_size(tok), &ids, &n)) {
        rc = ARGS_EXIT_USAGE;
        goto out;
    }
    if (stream) {
        gptoss_detok_stream *d = NULL;
        const char *s;
        size_t k;
        if (gptoss_detok_stream_create(tok, &d) != GPTOSS_OK) { rc = args_lib_error("detokenize", "stream"); goto out; }
        for (size_t i = 0; i < n && !rc; i++) {
            if (gptoss_detok_stream_push(d, ids[i], &s, &k) != GPTOSS_OK) rc = args_lib_error("detokenize", "stream");
            else fwrite(s, 1, k, stdout);
            fflush(stdout);
        }
        if (!rc && gptoss_detok_stream_flush(d, &s, &k) == GPTOSS_OK) fwrite(s, 1, k, stdout);
        gptoss_detok_stream_free(d);
    } else {
        char *text;
        size_t k;
        if (gptoss_detokenize(tok, ids, n, &text, &k) != GPTOSS_OK) { rc = args_lib_error("detokenize", "decode"); goto out; }
        fwrite(text, 1, k, stdout);
        gptoss_free(text);
    }
    if (!rc && isatty(1)) putchar('\n');
out:
    free(ids);
    free(list);
    gptoss_tokenizer_free(tok);
    return rc;
}
