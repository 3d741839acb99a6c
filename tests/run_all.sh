#!/usr/bin/env bash
# Runs every test: the cmocka binaries build/tests/test_* (each counts its cases)
# and the script tests tests/test_*.sh (each counts as one case unless it prints
# its own "N passed, N failed" line). Ends with one "N passed, N failed" line.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD
passed=0; failed=0; failed_names=""
count_output() { # $1 = name, $2 = log file, $3 = exit code
    local p f
    p=$(grep -Eo '\[  PASSED  \] [0-9]+' "$2" | awk '{s+=$NF} END {print s+0}')
    f=$(grep -Eo '\[  FAILED  \] [0-9]+' "$2" | awk '{s+=$NF} END {print s+0}')
    if [ "$p" = 0 ] && [ "$f" = 0 ]; then
        if grep -Eq '^[0-9]+ passed, [0-9]+ failed' "$2"; then
            p=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$2" | tail -1 | awk '{print $1}')
            f=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$2" | tail -1 | awk '{print $3}')
        elif [ "$3" = 0 ]; then p=1; else f=1; fi
    fi
    if [ "$3" != 0 ] && [ "$f" = 0 ]; then f=1; fi
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$f" != 0 ]; then failed_names="$failed_names $1"; fi
}
mkdir -p "$BUILD/test-logs"
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t"); log="$BUILD/test-logs/$name.log"
    echo "== $name"
    "$t" >"$log" 2>&1; rc=$?
    grep -E '^\[  (FAILED|PASSED)  \]|^\[  ERROR   \]|FAIL|Error|ERROR' "$log" | head -20
    count_output "$name" "$log" "$rc"
done
for t in tests/test_*.sh; do
    [ -f "$t" ] || continue
    name=$(basename "$t"); log="$BUILD/test-logs/$name.log"
    echo "== $name"
    bash "$t" >"$log" 2>&1; rc=$?
    tail -5 "$log"
    count_output "$name" "$log" "$rc"
done
[ -n "$failed_names" ] && echo "failed:$failed_names"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
