#!/usr/bin/env bash
# test_chat_pty.sh - drives `gptoss chat` in a terminal (tmux): a question with a
# streamed answer, commands (/effort, /help, /save), Ctrl-C in the middle of a long
# answer (the chat must stop that answer and keep running), another question,
# /exit. Then the same chat with piped stdin (no terminal: no escape codes),
# and `gptoss run` (reasoning framing, --hide-reasoning, sampling options).
# Scripted mode (--script-tokens): the k-th answer replays script k.
set -u
cd "$(dirname "$0")/.."
. tests/server_lib.sh
MODEL=$BUILD/test-models/tiny
mkdir -p "$BUILD/test-models" "$BUILD/test-logs"
tiny_model "$MODEL"
command -v tmux >/dev/null || die "tmux is not installed (tools/setup.sh installs it)"
T=$(mktemp -d)
SESSION="gptoss-chat-test-$$"
cleanup() { tmux kill-session -t "$SESSION" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
{
    printf '<|channel|>analysis<|message|>A greeting.<|end|><|start|>assistant<|channel|>final<|message|>Hello from the script.<|return|>\n---\n'
    printf '<|channel|>analysis<|message|>Counting.<|end|><|start|>assistant<|channel|>final<|message|>'
    for i in $(seq 1 3000); do printf 'count '; done
    printf '<|return|>\n---\n'
    printf '<|channel|>analysis<|message|>Short thought.<|end|><|start|>assistant<|channel|>final<|message|>Still here.<|return|>\n'
} >"$T/script.txt"

passed=0; failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1"; failed=$((failed + 1)); }
pane() { tmux capture-pane -p -t "$SESSION" -S -1000 2>/dev/null; }
# wait_for TEXT SECONDS: the pane shows TEXT (fixed string) within SECONDS
wait_for() {
    local i
    for i in $(seq 1 $(($2 * 10))); do
        pane | grep -qF -- "$1" && return 0
        sleep 0.1
    done
    return 1
}
count_of() { pane | grep -cF -- "$1"; }
send() { tmux send-keys -t "$SESSION" "$@"; }

tmux new-session -d -s "$SESSION" -x 160 -y 50 \
    "$GPTOSS chat -m $MODEL --script-tokens $T/script.txt; echo CHAT-EXITED rc=\$?; sleep 60"
wait_for "/help for commands" 20 && ok "banner and prompt shown" || { pane; die "no prompt within 20 s"; }

send "hello" Enter
if wait_for "Hello from the script." 20; then ok "answer streamed"; else bad "no answer (pane below)"; pane; fi
wait_for "Thinking: A greeting." 5 && ok "reasoning shown, labelled" || bad "reasoning not shown"
wait_for "tokens, " 5 && wait_for "tok/s" 1 && ok "status line with tokens and tokens/s" || bad "no status line"

send "/effort high" Enter
wait_for "reasoning effort: high" 5 && ok "/effort" || bad "/effort gave no confirmation"

send "count to a lot" Enter
if wait_for "count count count" 20; then
    send C-c
    if wait_for "stopped]" 10; then ok "Ctrl-C stops the answer"; else bad "Ctrl-C did not stop the answer"; pane | tail -5; fi
    n=$(pane | grep -o 'count' | wc -l)
    [ "$n" -lt 3000 ] && ok "answer was cut short ($n of 3000 words)" || bad "the whole answer was printed ($n words)"
else
    bad "long answer did not start streaming"
fi
sleep 0.5
pane | grep -q "CHAT-EXITED" && bad "chat exited on Ctrl-C" || ok "still running after Ctrl-C"

send "/help" Enter
wait_for "/reset" 5 && ok "/help lists commands" || bad "/help"

send "and now?" Enter
wait_for "Still here." 20 && ok "answers again after Ctrl-C" || bad "no answer after Ctrl-C"

send "/save $T/saved.json" Enter
wait_for "saved " 5 && ok "/save" || bad "/save printed nothing"
if node -e '
const m = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const ok = Array.isArray(m) && m[0].role === "user" && m[0].content === "hello" &&
  m[1].role === "assistant" && m[1].content === "Hello from the script." &&
  m[m.length - 1].content === "Still here." && m.length === 6;
process.exit(ok ? 0 : 1);' "$T/saved.json" 2>/dev/null; then
    ok "saved JSON messages (partial answer kept)"
else
    bad "saved JSON wrong: $(head -c 400 "$T/saved.json" 2>/dev/null)"
fi

send "/exit" Enter
wait_for "CHAT-EXITED rc=0" 10 && ok "/exit leaves with status 0" || bad "/exit did not leave cleanly"

# piped stdin: no terminal, no escape codes
printf 'hello\n/effort low\nsecond question\n' | timeout 60 "$GPTOSS" chat -m "$MODEL" --script-tokens "$T/script.txt" -n 50 >"$T/piped.txt" 2>&1
rc=$?
[ "$rc" = 0 ] && ok "piped chat exits 0 at end of input" || bad "piped chat exit status $rc"
grep -q "Hello from the script." "$T/piped.txt" && ok "piped chat answers" || bad "piped chat: no answer: $(head -c 300 "$T/piped.txt")"
grep -q $'\033' "$T/piped.txt" && bad "escape codes in piped output" || ok "no escape codes when not a terminal"
grep -q -- "--- reasoning ---" "$T/piped.txt" && ok "reasoning labelled in plain text" || bad "no reasoning label in piped output"
grep -q "50 tokens" "$T/piped.txt" && ok "-n limits the answer (status line)" || bad "-n 50 not applied: $(tail -3 "$T/piped.txt")"

n_cached=$(grep -o '([0-9]* cached)' "$T/piped.txt" | tail -1 | tr -dc 0-9)
[ "${n_cached:-0}" -gt 20 ] && ok "second turn reuses the cached prefix ($n_cached tokens)" || bad "no prefix reuse across turns: $(grep cached "$T/piped.txt")"

# gptoss run: reasoning framed (no terminal), then the answer; stats on stderr
timeout 60 "$GPTOSS" run -m "$MODEL" -p "hello" --script-tokens "$T/script.txt" >"$T/run.out" 2>"$T/run.err"
rc=$?
expect=$'--- reasoning ---\nA greeting.\n--- answer ---\nHello from the script.'
[ "$rc" = 0 ] && [ "$(cat "$T/run.out")" = "$expect" ] && ok "run prints reasoning then answer" || bad "run output: rc=$rc $(head -c 300 "$T/run.out")"
grep -q "tokens, .* tok/s" "$T/run.err" && ok "run prints its statistics on stderr" || bad "run stderr: $(head -c 200 "$T/run.err")"
timeout 60 "$GPTOSS" run -m "$MODEL" -p "hello" --script-tokens "$T/script.txt" --hide-reasoning >"$T/run2.out" 2>/dev/null
[ "$(cat "$T/run2.out")" = "Hello from the script." ] && ok "run --hide-reasoning prints the answer only" || bad "run --hide-reasoning: $(head -c 300 "$T/run2.out")"
timeout 60 "$GPTOSS" run -m "$MODEL" -p "hello" --temperature 0 -n 7 --system "Be brief." --reasoning-effort high >/dev/null 2>"$T/run3.err"
grep -q "^\[7 tokens" "$T/run3.err" && ok "run samples (greedy, -n 7)" || bad "run sampling: $(cat "$T/run3.err")"
"$GPTOSS" run -m "$MODEL" -p "x" --reasoning-effort extreme >/dev/null 2>&1 && bad "bad --reasoning-effort accepted" || ok "bad --reasoning-effort refused"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
