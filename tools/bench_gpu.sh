#!/usr/bin/env bash
# tools/bench_gpu.sh - the GPU benchmark suite, run ON the GPU machine from the
# repository root (see docs/CUDA_NOTES.md for the numbers and how they were made):
#
#   here:   bash tools/device_prep.sh            # builds build-cudadev (sm_90a) + cuda_probe
#   device: bash tools/bench_gpu.sh [--120b] [--profile]
#           (through the device tool: run(command="bash tools/bench_gpu.sh", carry=["build-cudadev"]))
#
# Writes $OUT/summary.txt, results.jsonl (our numbers: cuda_probe bench, gptoss bench
# --json, batched decode, memory at 32k), tf20.json/tf20.log (transformers on the same
# 20b checkpoint: fp32 logits comparison over 200 tokens, bf16 prefill/decode speed),
# parity.log (tests/test_cuda_parity) and, with --profile, prof.txt (ncu kernel times).
# The 20b checkpoint (~13 GB) is generated into /dev/shm; --120b also generates the
# 120b (~65 GB, /dev/shm, after the 20b is deleted) and benchmarks it.
set -u
cd "$(dirname "$0")/.."
STAGES="info test bench20 mem tf20"
for a in "$@"; do
    case "$a" in
    --120b) STAGES="$STAGES bench120" ;;
    --profile) STAGES="$STAGES prof" ;;
    *) echo "usage: $0 [--120b] [--profile]" >&2; exit 2 ;;
    esac
done
STAGES="$STAGES" exec bash tools/device_cuda.sh
