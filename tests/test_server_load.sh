#!/usr/bin/env bash
# test_server_load.sh - gptoss serve under load (tools/server_load_test.mjs):
# 32 concurrent streaming clients, 500 requests, every 10th disconnects
# mid-stream, greedy probes must match their solo output, zero failures, and
# the server's RSS may not grow by more than RSS_BOUND_MB over the run.
# Prints requests/s and p50/p99 time to first token.
# Knobs (environment): CLIENTS (32), REQUESTS (500), PARALLEL (4, the server's
# --parallel), SERVE_ARGS (more server options), RSS_BOUND_MB (32).
set -u
cd "$(dirname "$0")/.."
. tests/server_lib.sh
MODEL=$BUILD/test-models/tiny
mkdir -p "$BUILD/test-models" "$BUILD/test-logs"
tiny_model "$MODEL"
LOGS=$BUILD/test-logs
CLIENTS=${CLIENTS:-32}
REQUESTS=${REQUESTS:-500}
RSS_BOUND_MB=${RSS_BOUND_MB:-32}
if nm "$GPTOSS" 2>/dev/null | grep -q __asan_init; then
    # AddressSanitizer keeps freed memory in quarantine: RSS says little there
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16"
    RSS_BOUND_MB=256
    echo "load: AddressSanitizer build, RSS bound relaxed to $RSS_BOUND_MB MB"
fi
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status"; }

start_server "$LOGS/server_load.log" -m "$MODEL" --parallel "${PARALLEL:-4}" ${SERVE_ARGS:-}
# warm-up: touches the weights, fills the malloc arenas and the slot caches
node tools/server_load_test.mjs --url "$SERVER_URL" --model tiny --clients "$CLIENTS" --requests 64 \
    >"$LOGS/server_load_warmup.log" 2>&1 || { cat "$LOGS/server_load_warmup.log"; die "warm-up run failed"; }
before=$(rss_kb)
timeout 600 node tools/server_load_test.mjs --url "$SERVER_URL" --model tiny --clients "$CLIENTS" \
    --requests "$REQUESTS" --max-tokens 8 --abort-every 10 | tee "$LOGS/server_load_run.log"
rc=${PIPESTATUS[0]}
after=$(rss_kb)
growth_mb=$(( (after - before) / 1024 ))
echo "load: server RSS before $((before / 1024)) MB, after $((after / 1024)) MB (growth ${growth_mb} MB, bound ${RSS_BOUND_MB} MB)"
f=0
[ "$rc" = 0 ] || { echo "FAIL: the load run reported failures (see above)"; f=1; }
[ "$growth_mb" -le "$RSS_BOUND_MB" ] || { echo "FAIL: RSS grew by ${growth_mb} MB"; f=1; }
gone=$(grep -c '(client gone)' "$LOGS/server_load.log")
echo "load: server logged $gone requests whose client disconnected"
[ "$gone" -ge $((REQUESTS / 20)) ] || { echo "FAIL: expected about $((REQUESTS / 10)) disconnects in the server log, saw $gone"; f=1; }
stop_server || { echo "FAIL: server did not exit cleanly after the load"; f=1; }
echo "$((1 - f)) passed, $f failed"
exit $f
