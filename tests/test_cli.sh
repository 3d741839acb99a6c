#!/usr/bin/env bash
# test_cli.sh - the gptoss command on a tiny random checkpoint: logits file
# layout and its agreement with greedy generate, determinism, seeded sampling,
# bench JSON, argument errors (exit 2), library errors (exit 1), --help, --version.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
G=$BUILD/gptoss
pass=0; fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
finish() { echo "$pass passed, $fail failed"; [ "$fail" = 0 ]; exit $?; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
if ! "$BUILD/gen_checkpoint" --preset tiny --out "$TMP/model" --seed 3 >"$TMP/gen.log" 2>&1; then
    cat "$TMP/gen.log"; bad "gen_checkpoint --preset tiny"; finish
fi
M=(-m "$TMP/model" --device cpu -t 1)
VOCAB=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["vocab_size"])' "$TMP/model/config.json")
IDS=12,7,99,5,300

# --- logits: the file holds n_ids x vocab float32
if "$G" logits "${M[@]}" --ids $IDS --out "$TMP/logits.bin" 2>"$TMP/err"; then
    size=$(stat -c %s "$TMP/logits.bin")
    check "logits --out writes 5 x $VOCAB x 4 bytes" [ "$size" = $((5 * VOCAB * 4)) ]
else
    cat "$TMP/err"; bad "logits --out"
fi

# --- greedy generate agrees with the logits (argmax of the last row), and
# each next greedy token with the logits of the extended prompt (ties within
# 1e-4 of the maximum accepted)
GEN=$("$G" generate "${M[@]}" --ids $IDS -n 4 --temperature 0 2>"$TMP/err")
check "generate -n 4 prints 4 comma-separated ids" \
    python3 -c 'import sys; v=sys.argv[1].split(","); assert len(v)==4 and all(0<=int(x)<int(sys.argv[2]) for x in v)' "$GEN" "$VOCAB"
"$G" logits "${M[@]}" --ids "$IDS,$(echo "$GEN" | cut -d, -f1-3)" --out "$TMP/logits8.bin" 2>>"$TMP/err"
check "greedy ids are the argmax of the logits rows" python3 - "$TMP/logits8.bin" "$VOCAB" "$GEN" "$TMP/logits.bin" <<'PY'
import struct, sys
path, vocab, gen, first = sys.argv[1], int(sys.argv[2]), [int(x) for x in sys.argv[3].split(",")], sys.argv[4]
def rows(p):
    data = open(p, "rb").read()
    vals = struct.unpack("<%df" % (len(data) // 4), data)
    return [vals[i * vocab:(i + 1) * vocab] for i in range(len(vals) // vocab)]
r = rows(path)
assert len(r) == 8, len(r)
short = rows(first)
# the first 5 rows do not depend on what follows (causal)
for a, b in zip(short, r[:5]):
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-3 * max(1.0, max(abs(x) for x in a))
for k, tok in enumerate(gen):
    row = r[4 + k]
    m = max(row)
    assert row[tok] >= m - 1e-4 * max(1.0, abs(m)), (k, tok, row.index(m), row[tok], m)
    assert row.index(m) == tok or row[tok] == m or abs(row[tok] - m) < 1e-4 * max(1.0, abs(m))
PY
GEN2=$("$G" generate "${M[@]}" --ids $IDS -n 4 --temperature 0 2>/dev/null)
check "generate --temperature 0 is deterministic" [ "$GEN" = "$GEN2" ]

# --- seeded sampling
S1=$("$G" generate "${M[@]}" --ids $IDS -n 16 --temperature 1.5 --seed 5 2>/dev/null)
S2=$("$G" generate "${M[@]}" --ids $IDS -n 16 --temperature 1.5 --seed 5 2>/dev/null)
S3=$("$G" generate "${M[@]}" --ids $IDS -n 16 --temperature 1.5 --seed 6 2>/dev/null)
check "seeded sampling is reproducible" [ -n "$S1" -a "$S1" = "$S2" ]
check "another seed gives other ids" [ "$S1" != "$S3" ]
T1=$("$G" generate "${M[@]}" --ids $IDS -n 16 --top-k 1 --seed 9 2>/dev/null)
G16=$("$G" generate "${M[@]}" --ids $IDS -n 16 --temperature 0 2>/dev/null)
check "top-k 1 equals greedy" [ -n "$T1" -a "$T1" = "$G16" ]
check "generate -n 0 prints an empty line" [ -z "$("$G" generate "${M[@]}" --ids 1 -n 0 2>/dev/null)" ]

# --- logits without --out: one line per position plus a header
check "logits without --out shows every position" \
    [ "$("$G" logits "${M[@]}" --ids $IDS 2>/dev/null | wc -l)" = 6 ]

# --- bench --json on the tiny model
if "$G" bench "${M[@]}" -p 8 -n 4 -r 2 --mem-bw 10 --json >"$TMP/bench.json" 2>"$TMP/err"; then
    check "bench --json reports consistent numbers" python3 - "$TMP/bench.json" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))
assert b["n_prompt"] == 8 and b["n_gen"] == 4 and b["repetitions"] == 2
assert b["prompt_tok_s"] > 0 and b["decode_tok_s"] > 0 and b["bytes_per_token"] > 0
assert abs(b["achieved_gb_s"] - b["bytes_per_token"] * b["decode_tok_s"] / 1e9) <= 1e-6 * b["achieved_gb_s"]
assert abs(b["bandwidth_share"] - b["achieved_gb_s"] / 10.0) < 1e-6 and b["memory_bw_gb_s"] == 10.0
assert len(b["decode_samples"]) == 2 and b["backend"] == "cpu"
PY
else
    cat "$TMP/err"; bad "bench --json"
fi

# --- demo: without -m it writes $BUILD/demo-model (real vocabulary) and runs a chat and a bench
if "$G" demo --device cpu -t 1 -n 8 >"$TMP/demo.out" 2>"$TMP/err"; then
    check "demo runs a chat and a bench" grep -q "| *tg16 *|" "$TMP/demo.out"
    check "demo model has the real vocabulary" \
        grep -q '"vocab_size": 201088' "$(dirname "$G")/demo-model/config.json"
else
    cat "$TMP/err"; bad "demo"
fi

# --- argument errors: exit 2 with a one-line message naming the problem
expect_usage() { # name, expected message part, command...
    local name=$1 part=$2; shift 2
    "$@" >/dev/null 2>"$TMP/err"; local rc=$?
    if [ $rc = 2 ] && grep -q -- "$part" "$TMP/err" && [ "$(wc -l <"$TMP/err")" = 1 ]; then ok "$name"
    else echo "  rc=$rc stderr: $(cat "$TMP/err")"; bad "$name"; fi
}
expect_usage "generate without -m" "-m DIR" "$G" generate --ids 1 -n 2
expect_usage "generate without -n" "-n" "$G" generate "${M[@]}" --ids 1
expect_usage "generate --top-p 0" "top-p" "$G" generate "${M[@]}" --ids 1 -n 2 --top-p 0
expect_usage "generate --temperature -1" "temperature" "$G" generate "${M[@]}" --ids 1 -n 2 --temperature -1
expect_usage "generate --min-p 2" "min-p" "$G" generate "${M[@]}" --ids 1 -n 2 --min-p 2
expect_usage "generate --ids 1,x" "--ids" "$G" generate "${M[@]}" --ids 1,x -n 2
expect_usage "generate id outside the vocabulary" "outside the vocabulary" "$G" generate "${M[@]}" --ids 1,$VOCAB -n 2
expect_usage "generate unknown option" "unknown argument" "$G" generate "${M[@]}" --ids 1 -n 2 --frobnicate
expect_usage "generate beyond the context" "exceed the context" "$G" generate "${M[@]}" --ids 1,2,3 -n 10 -c 5
expect_usage "logits without --ids" "--ids" "$G" logits "${M[@]}"
expect_usage "logits --device tpu" "--device" "$G" logits "${M[@]}" --ids 1 --device tpu
expect_usage "bench -p abc" "-p" "$G" bench "${M[@]}" -p abc
expect_usage "bench -t -1" "-t" "$G" bench "${M[@]}" -t -1
expect_usage "option without a value" "needs a value" "$G" generate "${M[@]}" --ids 1 -n
"$G" frobnicate >/dev/null 2>"$TMP/err"; rc=$?
check "unknown command: exit 2" test $rc = 2 -a "$(grep -c 'unknown command' "$TMP/err")" = 1

# --- library errors: exit 1 with the library's message
"$G" generate -m "$TMP/nonexistent" --ids 1 -n 1 >/dev/null 2>"$TMP/err"; rc=$?
check "missing model folder: exit 1 naming it" test $rc = 1 -a "$(grep -c nonexistent "$TMP/err")" -ge 1

# --- --help of every command, --version
for c in run chat serve bench generate logits tokenize detokenize render demo; do
    "$G" $c --help >"$TMP/help" 2>&1; rc=$?
    check "$c --help exits 0" [ $rc = 0 -a -s "$TMP/help" ]
done
V=$("$G" --version)
check "--version names the backends" bash -c '[[ "$1" == *cpu* ]]' _ "$V"
finish
