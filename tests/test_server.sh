#!/usr/bin/env bash
# test_server.sh - gptoss serve through the official openai npm client
# (tools/server_client_test.mjs): scripted mode (reasoning, tool-call round trip,
# stop strings, logprobs, every error status), sampling mode (batched = solo,
# seeds, prefix cache), API key, queue-full 503, client disconnects and
# round-robin admission across clients.
set -u
cd "$(dirname "$0")/.."
. tests/server_lib.sh
MODEL=$BUILD/test-models/tiny
mkdir -p "$BUILD/test-models" "$BUILD/test-logs"
tiny_model "$MODEL"
LOGS=$BUILD/test-logs
passed=0; failed=0
run_client() { # name, client args...
    local name=$1; shift
    local out="$LOGS/server_client_$name.log"
    timeout 300 node tools/server_client_test.mjs --url "$SERVER_URL" --model tiny "$@" >"$out" 2>&1
    local rc=$?
    grep '^FAIL' "$out"
    local p f
    p=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | awk '{print $1}')
    f=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | awk '{print $3}')
    if [ -z "$p" ]; then tail -20 "$out"; p=0; f=1; fi
    [ "$rc" != 0 ] && [ "$f" = 0 ] && f=1
    echo "$name: $p passed, $f failed"
    passed=$((passed + p)); failed=$((failed + f))
}
check_stop() { # the server must shut down cleanly on SIGTERM
    if stop_server; then passed=$((passed + 1)); else echo "FAIL: $1: server did not exit cleanly on SIGTERM"; failed=$((failed + 1)); fi
}

start_server "$LOGS/server_scripted.log" -m "$MODEL" --script-tokens tests/fixtures/server_script.txt --max-body 200000
run_client scripted --mode scripted
if grep -q 'POST /v1/chat/completions 200 prompt=[0-9]* completion=[0-9]* ttft=' "$LOGS/server_scripted.log"; then
    passed=$((passed + 1))
else
    echo "FAIL: no per-request log lines in $LOGS/server_scripted.log"; failed=$((failed + 1))
fi
check_stop scripted

start_server "$LOGS/server_sampling.log" -m "$MODEL"
run_client sampling --mode sampling
check_stop sampling

start_server "$LOGS/server_auth.log" -m "$MODEL" --api-key test-key-123
run_client auth --mode auth --key test-key-123
check_stop auth

start_server "$LOGS/server_busy.log" -m "$MODEL" --parallel 1 --max-queue 0 --throttle-ms 20
run_client busy --mode busy
check_stop busy

start_server "$LOGS/server_fair.log" -m "$MODEL" --parallel 1 --max-queue 8 --throttle-ms 10
run_client fair --mode fair
check_stop fair

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
