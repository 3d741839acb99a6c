#!/usr/bin/env bash
# tools/device_cuda.sh - one call on the GPU machine (see docs/CUDA_NOTES.md):
#   STAGES="info test bench20 tf20 mem bench120" (default: info test bench20 tf20)
# Uses the binaries carried in build-cudadev (made by tools/device_prep.sh);
# rebuilds natively when they do not start there. Writes logs and JSON to $OUT.
set -u
OUT=${OUT:-/tmp/cuda-out}
mkdir -p "$OUT"
B=${B:-build-cudadev}
STAGES=${STAGES:-"info test bench20 tf20"}
SUM=$OUT/summary.txt
RES=$OUT/results.jsonl
log() { echo "[$(date -u +%T)] $*" | tee -a "$SUM"; }
has() { case " $STAGES " in *" $1 "*) return 0 ;; esac; return 1; }

for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d $d ] && LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}
done
for d in $(python3 -c 'import nvidia, os; p=os.path.dirname(nvidia.__file__); print(" ".join(os.path.join(p,x,"lib") for x in os.listdir(p)))' 2>/dev/null); do
    [ -d "$d" ] && LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d
done
export LD_LIBRARY_PATH=$PWD/$B/devlibs:$LD_LIBRARY_PATH

if has info; then
    nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm,clocks.mem,driver_version --format=csv | tee -a "$SUM"
    nproc | tee -a "$SUM"; free -g | head -2 | tee -a "$SUM"; df -h /dev/shm /tmp | tee -a "$SUM"
fi
if ldd $B/cuda_probe | grep -q "not found"; then
    log "carried binaries miss libraries:"; ldd $B/cuda_probe | grep "not found" | tee -a "$SUM"
    log "building natively"
    make -j16 BUILD=build-native CUDA=1 CUDA_ARCHS="-gencode arch=compute_90a,code=sm_90a" build-native/libgptoss.a \
        build-native/gen_checkpoint build-native/tests/test_cuda_parity >"$OUT/build.log" 2>&1 || log "native build failed"
    B=build-native
fi
GP=$B/gptoss
[ -x $GP ] && ! $GP --help >/dev/null 2>&1 && ! $GP bench --help >/dev/null 2>&1 && GP=

if has test; then
    log "parity tests"
    BUILD=$B timeout 180 $B/tests/test_cuda_parity >"$OUT/parity.log" 2>&1; log "parity rc=$?"
    grep -E "rel err|max \||PASSED|FAILED|ERROR|SKIPPED" "$OUT/parity.log" | tee -a "$SUM"
fi

gen() { # preset dir
    if [ ! -f "$2/config.json" ]; then
        local t0=$SECONDS
        $B/gen_checkpoint --preset $1 --out "$2" --seed 1 >/dev/null || { log "gen $1 failed"; return 1; }
        log "gen $1: $((SECONDS - t0)) s, $(du -sh "$2" | cut -f1)"
    fi
}

if has bench20 || has tf20 || has mem || has prof; then gen 20b /dev/shm/m20 || true; fi
if has bench20; then
    log "bench 20b (cuda_probe bench 512 128 x3)"
    $B/cuda_probe /dev/shm/m20 bench 512 128 3 2>>"$SUM" | tee -a "$RES" "$SUM"
    if [ -n "$GP" ]; then
        log "gptoss bench"
        $GP bench -m /dev/shm/m20 -p 512 -n 128 --device cuda --json 2>>"$SUM" | tr -d '\n' | tee -a "$RES" "$SUM"; echo >>"$RES"
    fi
    [ "${NOBATCH:-0}" = 1 ] || log "batched decode 20b"
    [ "${NOBATCH:-0}" = 1 ] || for bsz in 4 16 64; do $B/cuda_probe /dev/shm/m20 batch $bsz 32 2>>"$SUM" | tee -a "$RES" "$SUM"; done
fi
if has mem; then
    log "memory 20b at 32k context"
    $B/cuda_probe /dev/shm/m20 mem 32768 2>>"$SUM" | tee -a "$RES" "$SUM"
fi
summarize_prof() { # csv -> per-kernel table
    python3 - "$1" <<'PY'
import csv, sys, collections
rows = list(csv.reader(l for l in open(sys.argv[1]) if l.startswith('"')))
hdr = rows[0]; ki = hdr.index("Kernel Name"); vi = hdr.index("Metric Value"); gi = hdr.index("Grid Size")
tot = collections.defaultdict(float); cnt = collections.Counter(); grid = {}
for r in rows[1:]:
    name = r[ki].split("(")[0][:60]
    try: v = float(r[vi].replace(",", ""))
    except ValueError: continue
    tot[name] += v; cnt[name] += 1; grid[name] = r[gi]
s = sum(tot.values())
print(f"total {s/1e6:.3f} ms over {sum(cnt.values())} kernels")
for n, v in sorted(tot.items(), key=lambda x: -x[1])[:25]:
    print(f"{v/1e6:9.3f} ms {100*v/s:5.1f}% n={cnt[n]:5d} avg={v/cnt[n]/1e3:8.2f} us grid={grid[n]} {n}")
PY
}
if has prof; then
    NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
    log "ncu decode profile ($NCU)"
    timeout 200 $NCU --clock-control none --metrics gpu__time_duration.sum --print-units base --csv \
        $B/cuda_probe /dev/shm/m20 bench 8 4 1 >"$OUT/ncu_dec.csv" 2>/dev/null
    summarize_prof "$OUT/ncu_dec.csv" >"$OUT/prof.txt" 2>&1
    if [ "${PROF_PREFILL:-1}" = 1 ]; then
    log "ncu prefill profile"
    timeout 200 $NCU --clock-control none --metrics gpu__time_duration.sum --print-units base --csv \
        $B/cuda_probe /dev/shm/m20 bench 512 0 1 >"$OUT/ncu_pre.csv" 2>/dev/null
    echo "--- prefill run (warm-up 64 + 1 decode + 512 prefill)" >>"$OUT/prof.txt"
    summarize_prof "$OUT/ncu_pre.csv" >>"$OUT/prof.txt" 2>&1
    fi
    rm -f "$OUT"/ncu_*.csv
    cat "$OUT/prof.txt" | tee -a "$SUM"
fi
if has tf20; then
    log "transformers compare 20b"
    PYTHONUNBUFFERED=1 timeout ${TF_TIMEOUT:-330} python3 tools/transformers_compare.py --model /dev/shm/m20 --probe $B/cuda_probe \
        ${GP:+--gptoss $GP} --json "$OUT/tf20.json" >"$OUT/tf20.log" 2>&1; log "tf20 rc=$?"
    tail -5 "$OUT/tf20.log" | tee -a "$SUM"
fi
if has bench120; then
    rm -rf /dev/shm/m20
    gen 120b /dev/shm/m120 || true
    log "bench 120b"
    $B/cuda_probe /dev/shm/m120 bench 512 128 2 2>>"$SUM" | tee -a "$RES" "$SUM"
    rm -rf /dev/shm/m120
fi
log "done"
