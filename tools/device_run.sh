#!/usr/bin/env bash
# tools/device_run.sh - one call on the GPU machine: parity tests, benchmarks of
# several kernel configurations (environment variants), an optional ncu kernel
# profile of decode, the memory check and the 120b. Everything goes to $OUT;
# the table at the end is also printed.
#
#   here:   B=build-final bash tools/device_prep.sh
#   device: run(command="STAGES='parity bench' bash tools/device_run.sh", carry=["build-final"])
#
# STAGES (default "parity bench"): parity, bench, prof (ncu kernel times of decode),
# profpre (ncu kernel times of a 512-token prefill), stall
# (ncu stall reasons of STALL_KERNELS in `bench STALL_ARGS`, default -p 16 -n 24), mem, tf (transformers in the same run,
# tools/transformers_compare.py), batch (1..64 sessions decoding together), sass,
# src (ncu per-SASS-line warp samples of SRC_KERNELS in `bench SRC_ARGS`),
# b120 (120b: generate + bench), stream (tools/gpu_stream_bench.cu: the time of a
# kernel that only reads S bytes, the floor under each decode kernel).
# VARIANTS: space-separated label=ENV1=a,ENV2=b items for the bench stage
# (default below); BENCH_ARGS=--sample in a variant adds bench arguments;
# B120_VARIANTS the same for the 120b, BATCH_VARIANTS for the batch stage (sizes
# BATCH_SIZES, default 1 4 16 64); PARITY2_ENV the environment of the second
# parity run (default GPTOSS_CUDA_PDL=0), PARITY3_ENV (optional) a third one's. Uses the carried binaries in $B (default build-final), or
# builds natively when they do not start.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/run-out}
mkdir -p "$OUT"
B=${B:-build-final}
M=${M:-/dev/shm/m20}
STAGES=${STAGES:-"parity bench"}
VARIANTS=${VARIANTS:-"default= v7=GPTOSS_CUDA_MOE_DECODE=v7 v4=GPTOSS_CUDA_MOE_DECODE=v4 sample=BENCH_ARGS=--sample default2="}
SUM=$OUT/summary.txt
: >"$SUM"
log() { echo "[$(date -u +%T) +$SECONDS s] $*" | tee -a "$SUM"; }
has() { case " $STAGES " in *" $1 "*) return 0 ;; esac; return 1; }

nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.max.sm,driver_version --format=csv,noheader | tee -a "$SUM" ||
    { log "no GPU"; exit 2; }
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d $d ] && LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}
done
export LD_LIBRARY_PATH=$PWD/$B/devlibs:${LD_LIBRARY_PATH:-}
runs() { [ -x "$1" ] && ! ldd "$1" 2>/dev/null | grep -q "not found"; }
if ! runs $B/gptoss || ! runs $B/gen_checkpoint || ! runs $B/tests/test_cuda_parity; then
    log "carried binaries missing or not runnable; building natively into build-dev"
    make -j16 BUILD=build-dev CUDA_ARCHS="-gencode arch=compute_90a,code=sm_90a" build-dev/gptoss \
        build-dev/gen_checkpoint build-dev/tests/test_cuda_parity >"$OUT/build.log" 2>&1
    B=build-dev
    export LD_LIBRARY_PATH=$PWD/$B/devlibs:$LD_LIBRARY_PATH
    runs $B/gptoss || { log "FAIL: no binaries"; tail -20 "$OUT/build.log"; exit 3; }
fi
rc_of() { cat "$OUT/$1.rc" 2>/dev/null || echo "?"; }

# --- the 20b checkpoint (CPU) in parallel with the parity runs (GPU)
pids=
if [ ! -f "$M/config.json" ] && { has bench || has prof || has stall || has src || has mem || has tf || has batch; }; then
    (t0=$SECONDS; timeout 300 $B/gen_checkpoint --preset 20b --out "$M" --seed 1 >"$OUT/gen.log" 2>&1
     echo $? >"$OUT/gen.rc"; echo "gen 20b $((SECONDS - t0)) s" >>"$OUT/gen.log") &
    pids="$pids $!"
else
    echo 0 >"$OUT/gen.rc"
fi
if has parity; then
    (BUILD=$B timeout 240 $B/tests/test_cuda_parity >"$OUT/parity.log" 2>&1; echo $? >"$OUT/parity.rc") &
    pids="$pids $!"
    (export ${PARITY2_ENV:-GPTOSS_CUDA_PDL=0}
     BUILD=$B timeout 240 $B/tests/test_cuda_parity >"$OUT/parity_pdl.log" 2>&1
     echo $? >"$OUT/parity_pdl.rc") &
    pids="$pids $!"
    if [ -n "${PARITY3_ENV:-}" ]; then
        (export $PARITY3_ENV
         BUILD=$B timeout 240 $B/tests/test_cuda_parity >"$OUT/parity3.log" 2>&1
         echo $? >"$OUT/parity3.rc") &
        pids="$pids $!"
    fi
fi
wait $pids
if has parity; then
    for p in parity parity_pdl ${PARITY3_ENV:+parity3}; do
        log "$p: rc=$(rc_of $p); $(grep -cE '^\[       OK \]' "$OUT/$p.log") ok, $(grep -cE '^\[  FAILED  \] [a-z]' "$OUT/$p.log") failed"
    done
    grep -E "FAIL|rel err.* v4|forward|fixture" "$OUT/parity.log" | head -40 >>"$SUM"
fi
log "gen: rc=$(rc_of gen) $(tail -1 "$OUT/gen.log" 2>/dev/null)"

# --- benchmarks, one configuration at a time
if has bench && [ "$(rc_of gen)" = 0 ]; then
    for v in $VARIANTS; do
        label=${v%%=*}; envs=${v#*=}
        ( IFS=,; for kv in $envs; do [ -n "$kv" ] && export "$kv"; done
          timeout 120 $B/gptoss bench -m "$M" -p 512 -n 128 -r 3 --device cuda --json ${BENCH_ARGS:-} >"$OUT/bench_$label.json" 2>"$OUT/bench_$label.err" )
        log "bench $label ($envs): rc=$? $(tr -d '\n' <"$OUT/bench_$label.json" | grep -oE '"(decode_tok_s|prompt_tok_s)": *[0-9.]+' | tr '\n' ' ')"
    done
fi

# --- kernel times of decode steps (ncu, duration and DRAM bytes only)
if has prof && [ "$(rc_of gen)" = 0 ]; then
    NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
    if [ -n "$NCU" ]; then
        GPTOSS_CUDA_GRAPH=0 timeout 240 "$NCU" --clock-control none --launch-skip 400 --launch-count 200 \
            --metrics gpu__time_duration.sum,dram__bytes_read.sum --csv \
            $B/gptoss bench -m "$M" -p 16 -n 24 -r 1 --device cuda >"$OUT/ncu.csv" 2>"$OUT/ncu.err"
        log "ncu rc=$?"
        python3 - "$OUT/ncu.csv" <<'PY' | tee -a "$SUM"
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
hdr = rows[0]; ki = hdr.index("Kernel Name"); mi = hdr.index("Metric Name"); vi = hdr.index("Metric Value"); ui = hdr.index("Metric Unit")
t = collections.defaultdict(list); by = collections.defaultdict(list)
for r in rows[1:]:
    name = r[ki].split("(")[0].split("<")[0]
    v = float(r[vi].replace(",", ""))
    if r[mi] == "gpu__time_duration.sum": t[name].append(v * {"ns": 1e-3, "nsecond": 1e-3, "ms": 1e3, "msecond": 1e3}.get(r[ui], 1.0))
    if r[mi] == "dram__bytes_read.sum": by[name].append(v * {"byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9}.get(r[ui], 1))
print(f"{'kernel':<28} {'n':>4} {'mean us':>9} {'MB':>8} {'TB/s':>6}")
for k in sorted(t, key=lambda k: -sum(t[k])):
    us = sum(t[k]) / len(t[k]); mb = sum(by[k]) / max(1, len(by[k])) / 1e6
    print(f"{k:<28} {len(t[k]):>4} {us:>9.1f} {mb:>8.2f} {mb / us if us else 0:>6.2f}")
PY
    else
        log "ncu not found"
    fi
fi

# --- kernel times of a 512-token prefill (ncu; bench's warm-up prefill is counted too, so halve)
if has profpre && [ "$(rc_of gen)" = 0 ]; then
    NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
    GPTOSS_CUDA_GRAPH=0 timeout 240 "$NCU" --clock-control none --metrics gpu__time_duration.sum --csv \
        $B/gptoss bench -m "$M" -p 512 -n 2 -r 1 --device cuda >"$OUT/ncu_prefill.csv" 2>"$OUT/ncu_prefill.err"
    log "ncu prefill rc=$?"
    python3 - "$OUT/ncu_prefill.csv" <<'PY' | tee -a "$SUM"
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
hdr = rows[0]; ki = hdr.index("Kernel Name"); mi = hdr.index("Metric Name"); vi = hdr.index("Metric Value"); ui = hdr.index("Metric Unit")
t = collections.defaultdict(float); n = collections.Counter()
for r in rows[1:]:
    if r[mi] == "gpu__time_duration.sum":
        k = r[ki].split("(")[0][:50]
        t[k] += float(r[vi].replace(",", "")) * {"ns": 1e-3, "nsecond": 1e-3, "ms": 1e3, "msecond": 1e3}.get(r[ui], 1.0); n[k] += 1
print(f"two prefills of 512 + 2 decode steps: {sum(t.values()) / 1e3:.1f} ms of kernels")
for k in sorted(t, key=lambda k: -t[k])[:16]:
    print(f"{k:<50} {n[k]:>5} {t[k] / 2e3:>8.2f} ms per prefill")
PY
fi

# --- stall reasons of the decode kernels (ncu sections + per-issue stall ratios)
if has stall && [ "$(rc_of gen)" = 0 ]; then
    NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
    GPTOSS_CUDA_GRAPH=0 timeout 240 "$NCU" --clock-control none \
        --kernel-name regex:"${STALL_KERNELS:-k_moe_gate_up_v7|k_moe_down_v7|k_qkv_rope|k_matvec}" \
        --launch-skip ${STALL_SKIP:-200} --launch-count ${STALL_COUNT:-8} \
        --section SpeedOfLight --section Occupancy --section SchedulerStats --section WarpStateStats \
        --section MemoryWorkloadAnalysis \
        --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,smsp__inst_executed.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_tensor_op_hmma.sum \
        $B/gptoss bench -m "$M" ${STALL_ARGS:--p 16 -n 24} -r 1 --device cuda >"$OUT/stall.txt" 2>"$OUT/stall.err"
    log "ncu stall rc=$?"
    python3 - "$OUT/stall.txt" <<'PY' | tee -a "$SUM"
import re, sys
cur = None
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"\s+(\S*k_\w+)", line)
    if m and "(" in line: cur = m.group(1); print("==", line.strip()[:100]); continue
    l = line.strip()
    if re.match(r"(Duration|DRAM Throughput|Memory Throughput|Registers Per Thread|Achieved Occupancy|Theoretical Occupancy|Issue Slots Busy|Issued Warp Per Scheduler|No Eligible|Active Warps Per Scheduler|Eligible Warps Per Scheduler|Warp Cycles Per Issued Instruction|Compute \(SM\) Throughput|Shared Memory|smsp__inst_executed.sum|l1tex__data_pipe|sm__pipe_tensor|sm__inst_executed_pipe)", l):
        print("  ", re.sub(r"\s{2,}", "  ", l))
    m = re.match(r"smsp__average_warps_issue_stalled_(\w+)_per_issue_active.ratio\s+\S+\s+([\d.]+)", l)
    if m and float(m.group(2)) >= 0.05: print(f"   stall {m.group(1)}: {m.group(2)}")
PY
fi

# --- per-instruction warp samples of SRC_KERNELS (ncu SourceCounters; top SASS lines)
if has src && [ "$(rc_of gen)" = 0 ]; then
    NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
    GPTOSS_CUDA_GRAPH=0 timeout 240 "$NCU" --clock-control none \
        --kernel-name regex:"${SRC_KERNELS:-k_moe_gate_up_v7}" --launch-skip ${STALL_SKIP:-200} --launch-count 1 \
        --section SourceCounters --section WarpStateStats --import-source no -f -o "$OUT/src" \
        $B/gptoss bench -m "$M" ${SRC_ARGS:--p 16 -n 24} -r 1 --device cuda >"$OUT/src.log" 2>&1
    log "ncu src rc=$?"
    "$NCU" -i "$OUT/src.ncu-rep" --page source --csv --print-source sass >"$OUT/src.csv" 2>"$OUT/src.err"
    log "ncu source page rc=$? $(wc -l <"$OUT/src.csv") lines"
    python3 - "$OUT/src.csv" <<'PY' | tee -a "$SUM"
import csv, sys
rows = list(csv.reader(open(sys.argv[1], errors="replace")))
hi = next((i for i, r in enumerate(rows) if any("Source" == c or "Address" == c for c in r)), None)
if hi is None: print("no header"); sys.exit()
h = rows[hi]; print("columns:", "|".join(h)[:600])
def col(*names):
    for n in names:
        for i, c in enumerate(h):
            if c.strip().lower() == n.lower(): return i
    return None
src = col("Source"); samp = col("Warp Stall Sampling (All Samples)", "Sampling Data (All)", "Warp Stall Sampling (All Cycles)")
ex = col("Instructions Executed", "Warp Instructions Executed")
if samp is None: print("no samples column"); sys.exit()
def f(x):
    try: return float(x.replace(",", ""))
    except Exception: return 0.0
body = [r for r in rows[hi + 1:] if len(r) > samp]
tot = sum(f(r[samp]) for r in body) or 1
print(f"{len(body)} SASS lines, {tot:.0f} samples, {sum(f(r[ex]) for r in body) if ex is not None else 0:.0f} warp instructions")
acc = 0
for i, r in enumerate(body):
    acc += f(r[samp])
    if f(r[samp]) / tot >= 0.004 or i % 40 == 0:
        print(f"{i:5d} {100 * f(r[samp]) / tot:5.1f}% cum {100 * acc / tot:5.1f}% ex {f(r[ex]) if ex is not None else 0:8.0f}  {r[src][:90]}")
PY
fi

# --- GPU memory at 32k context
if has mem && [ "$(rc_of gen)" = 0 ]; then
    timeout 120 $B/cuda_probe "$M" mem 32768 >"$OUT/mem.log" 2>&1 &
    bp=$!; peak=0
    while kill -0 $bp 2>/dev/null; do
        u=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1); [ "$u" -gt "$peak" ] && peak=$u; sleep 0.3
    done
    log "mem 32k: peak nvidia-smi memory.used $peak MiB; $(tail -3 "$OUT/mem.log" | tr '\n' ' ')"
fi

# --- transformers on the same checkpoint (logits + speed)
if has tf && [ "$(rc_of gen)" = 0 ]; then
    PYTHONUNBUFFERED=1 timeout 400 python3 tools/transformers_compare.py --model "$M" --probe $B/cuda_probe \
        --json "$OUT/tf.json" --work /dev/shm/tfwork >"$OUT/tf.log" 2>&1
    log "transformers compare rc=$?"; tail -25 "$OUT/tf.log" | tee -a "$SUM"
fi

# --- batched decode: B sessions decoding together (gptoss_decode_batch)
if has batch && [ "$(rc_of gen)" = 0 ]; then
    for v in ${BATCH_VARIANTS:-default=}; do
        label=${v%%=*}; envs=${v#*=}
        for bsz in ${BATCH_SIZES:-1 4 16 64}; do
            ( IFS=,; for kv in $envs; do [ -n "$kv" ] && export "$kv"; done
              timeout 120 $B/cuda_probe "$M" batch $bsz 32 >"$OUT/batch_${label}_$bsz.json" 2>>"$OUT/batch.err" )
            log "batch $label ($envs) $bsz: rc=$? $(tr -d '\n' <"$OUT/batch_${label}_$bsz.json")"
        done
    done
fi

# --- 120b: generate into /dev/shm (after dropping the 20b) and bench
if has stream; then
    timeout 120 $B/gpu_stream_bench >"$OUT/stream.txt" 2>&1
    log "stream: rc=$?"
    cat "$OUT/stream.txt" >>"$SUM"
fi
if has b120; then
    rm -rf "$M"
    M120=/dev/shm/m120; t0=$SECONDS
    timeout 420 $B/gen_checkpoint --preset 120b --out $M120 --seed 1 >"$OUT/gen120.log" 2>&1
    log "gen 120b: rc=$? $((SECONDS - t0)) s $(du -sh $M120 | cut -f1)"
    for v in ${B120_VARIANTS:-default=}; do
        label=${v%%=*}; envs=${v#*=}
        ( IFS=,; for kv in $envs; do [ -n "$kv" ] && export "$kv"; done
          timeout 150 $B/gptoss bench -m $M120 -p 512 -n 128 -r 2 --device cuda --json ${BENCH_ARGS:-} >"$OUT/bench_120b_$label.json" 2>"$OUT/bench_120b_$label.err" )
        log "bench 120b $label ($envs): rc=$? $(tr -d '\n' <"$OUT/bench_120b_$label.json" | grep -oE '"(decode_tok_s|prompt_tok_s|achieved_gb_s)": *[0-9.]+' | tr '\n' ' ')"
    done
fi
# --- SASS opcode histograms of the decode kernels (cuobjdump exists there)
if has sass; then
    CUOBJ=$(command -v cuobjdump || ls /usr/local/cuda/bin/cuobjdump 2>/dev/null | head -1)
    for f in cuda_moe_decode_v7 cuda_moe_decode_v4 cuda_moe_gemm_v2 cuda_moe_gemm_v4 cuda_attn_prefill cuda_kernels cuda_decode; do
        [ -n "$CUOBJ" ] && [ -f $B/src/cuda/$f.o ] && "$CUOBJ" -sass $B/src/cuda/$f.o >"$OUT/sass_$f.txt" 2>/dev/null
    done
    log "sass dumped"
fi
log "done"
cd "$OUT" && tar czf /tmp/run.tgz --exclude summary.txt . && find . -type f ! -name summary.txt -delete && mv /tmp/run.tgz .
