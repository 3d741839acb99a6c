#!/usr/bin/env bash
# tools/device_final.sh - the final GPU run, ~4 minutes on one H200: parity tests
# and the 20b decode/prefill benchmark, each with both MoE decode kernel versions:
# (v1, GPTOSS_CUDA_MOE_DECODE=v1) and v2 (the default, src/cuda/cuda_moe_decode_v2.cu).
#
#   here:   B=build-final bash tools/device_prep.sh   # sm_90a build + devlibs
#   device: run(command="bash tools/device_final.sh", carry=["build-final"])
#
# Uses the carried binaries in $B (default build-final); when they are missing
# or do not start there, builds natively into build-dev (make -j16). Writes to
# $OUT: final_summary.txt (the table at the end), parity_v1.log, parity_v2.log,
# bench_v1.json, bench_v2.json, gen.log, build.log. Exit status: 0 when both
# parity runs passed and both benchmarks produced numbers, 2 when no GPU is
# visible, 3 when no binaries could be built, 1 otherwise.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/final-out}
mkdir -p "$OUT"
B=${B:-build-final}
M=${M:-/dev/shm/m20}
SUM=$OUT/final_summary.txt
: >"$SUM"
log() { echo "[$(date -u +%T) +$SECONDS s] $*" | tee -a "$SUM"; }

# --- a GPU must be visible
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    log "FAIL: no NVIDIA GPU visible (nvidia-smi missing or no device); nothing run"
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv,noheader | tee -a "$SUM"

# --- library path: CUDA runtime, pip-installed nvidia libs, carried devlibs (as tools/device_cuda.sh)
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d $d ] && LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}
done
for d in $(python3 -c 'import nvidia, os; p=os.path.dirname(nvidia.__file__); print(" ".join(os.path.join(p,x,"lib") for x in os.listdir(p)))' 2>/dev/null); do
    [ -d "$d" ] && LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:$d
done
export LD_LIBRARY_PATH=$PWD/$B/devlibs:${LD_LIBRARY_PATH:-}

# --- binaries: the carried ones when they start, else a native build
runs() { [ -x "$1" ] && ! ldd "$1" 2>/dev/null | grep -q "not found"; }
if ! runs $B/gptoss || ! runs $B/gen_checkpoint || ! runs $B/tests/test_cuda_parity; then
    log "carried binaries in $B missing or not runnable; building natively into build-dev"
    make -j16 BUILD=build-dev CUDA_ARCHS="-gencode arch=compute_90a,code=sm_90a" build-dev/gptoss \
        build-dev/gen_checkpoint build-dev/tests/test_cuda_parity >"$OUT/build.log" 2>&1
    B=build-dev
    if ! runs $B/gptoss || ! runs $B/gen_checkpoint || ! runs $B/tests/test_cuda_parity; then
        log "FAIL: native build did not produce runnable binaries (see build.log)"
        tail -20 "$OUT/build.log" | tee -a "$SUM"
        exit 3
    fi
    export LD_LIBRARY_PATH=$PWD/$B/devlibs:$LD_LIBRARY_PATH
fi
log "binaries: $B"

# --- in parallel: the 20b checkpoint (CPU + /dev/shm) and both parity runs (GPU + CPU)
if [ ! -f "$M/config.json" ]; then
    (timeout 170 $B/gen_checkpoint --preset 20b --out "$M" --seed 1 >"$OUT/gen.log" 2>&1; echo $? >"$OUT/gen.rc") &
    GEN=$!
else
    echo 0 >"$OUT/gen.rc"; GEN=
fi
(BUILD=$B GPTOSS_CUDA_MOE_DECODE=v1 timeout 170 $B/tests/test_cuda_parity >"$OUT/parity_v1.log" 2>&1; echo $? >"$OUT/parity_v1.rc") &
P1=$!
(BUILD=$B GPTOSS_CUDA_MOE_DECODE=v2 timeout 170 $B/tests/test_cuda_parity >"$OUT/parity_v2.log" 2>&1; echo $? >"$OUT/parity_v2.rc") &
P2=$!
wait $P1 $P2 ${GEN:+$GEN}
rc_of() { cat "$OUT/$1.rc" 2>/dev/null || echo "?"; }
for v in v1 v2; do
    log "parity $v (env ${v/v1/default}): rc=$(rc_of parity_$v); $(grep -cE '^\[       OK \]' "$OUT/parity_$v.log") ok, $(grep -cE '^\[  FAILED  \] [a-z]' "$OUT/parity_$v.log") failed"
done
grep -E "moe .*rel err" "$OUT/parity_v2.log" | sed 's/^/  /' | tee -a "$SUM" >/dev/null
log "gen 20b: rc=$(rc_of gen) ($(du -sh "$M" 2>/dev/null | cut -f1))"

# --- SASS opcode counts of both MoE decode objects (only where cuobjdump exists;
# the build machine has none). Per kernel: FFMA = one per weight in the dot loops.
CUOBJ=$(command -v cuobjdump || ls /usr/local/cuda/bin/cuobjdump 2>/dev/null | head -1)
if [ -n "$CUOBJ" ]; then
    for f in cuda_moe_decode cuda_moe_decode_v2; do
        [ -f $B/src/cuda/$f.o ] && "$CUOBJ" -sass -arch sm_90a $B/src/cuda/$f.o >"$OUT/sass_$f.txt" 2>/dev/null
    done
    awk '/Function : /{fn=$NF} match($0, /\/\*[0-9a-f]+\*\/ +(@!?U?P[0-9T] +)?[A-Z][A-Z0-9_.]*/) {
             s = substr($0, RSTART, RLENGTH); sub(/^.*\*\/ +/, "", s); sub(/^@!?U?P[0-9T] +/, "", s);
             split(s, p, "."); n[fn]++; c[fn, p[1]]++ }
         END { for (f in n) printf "%s: %d instructions, FFMA %d, LDS %d, PRMT %d, LOP3 %d, SHF %d, IADD3 %d, LEA %d, IMAD %d, LDG %d\n",
                   f, n[f], c[f,"FFMA"], c[f,"LDS"], c[f,"PRMT"], c[f,"LOP3"], c[f,"SHF"], c[f,"IADD3"], c[f,"LEA"], c[f,"IMAD"], c[f,"LDG"] }' \
        "$OUT"/sass_*.txt 2>/dev/null | grep moe | tee -a "$SUM"
fi

# --- benchmarks, one at a time: v1, v2, then v1 again to show drift
bench() { # label env-value
    local f="$OUT/bench_$1.json"
    GPTOSS_CUDA_MOE_DECODE=$2 timeout 90 $B/gptoss bench -m "$M" -p 512 -n 128 -r 3 --device cuda --json \
        >"$f" 2>"$OUT/bench_$1.err"
    log "bench $1: rc=$?"
}
if [ "$(rc_of gen)" = 0 ]; then
    bench v1 v1
    bench v2 v2
    bench v1b v1
else
    log "FAIL: no checkpoint, no benchmark (see gen.log)"
fi

# --- final table
{
echo
echo "== final (gpt-oss-20b random weights, gptoss bench -p 512 -n 128 -r 3 --device cuda)"
python3 - "$OUT" <<'PY' 2>&1 || echo "(python3 missing: see bench_*.json)"
import json, sys, os
out = sys.argv[1]
print(f"{'run':<5} {'decode tok/s':>14} {'sd':>6} {'prefill tok/s':>14} {'sd':>6} {'GB/s':>8}  parity")
prc = {}
for v in ("v1", "v2"):
    try: prc[v] = open(os.path.join(out, f"parity_{v}.rc")).read().strip()
    except OSError: prc[v] = "?"
for label in ("v1", "v2", "v1b"):
    p = os.path.join(out, f"bench_{label}.json")
    try: j = json.load(open(p))
    except Exception as e:
        print(f"{label:<5} no result ({type(e).__name__})"); continue
    f = lambda k: j.get(k) if j.get(k) is not None else float("nan")
    par = prc.get(label[:2], "?")
    print(f"{label:<5} {f('decode_tok_s'):14.1f} {f('decode_tok_s_sd'):6.1f} {f('prompt_tok_s'):14.0f} "
          f"{f('prompt_tok_s_sd'):6.0f} {f('achieved_gb_s'):8.0f}  rc={par}")
PY
echo "(v1 = GPTOSS_CUDA_MOE_DECODE=v1, v2 = the default kernels, v1b = v1 again, after v2)"
} | tee -a "$SUM"

ok=1
[ "$(rc_of parity_v1)" = 0 ] && [ "$(rc_of parity_v2)" = 0 ] || ok=0
for l in v1 v2; do grep -q decode_tok_s "$OUT/bench_$l.json" 2>/dev/null || ok=0; done
log "done: $([ $ok = 1 ] && echo PASS || echo 'FAIL (see logs)')"
[ $ok = 1 ]
