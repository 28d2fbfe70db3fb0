#!/usr/bin/env bash
# Counts memcheck errors in the logs of tests/valgrind/stylestudio
# (VALGRIND_LOGS, default /tmp/ss-valgrind); prints them and fails if any.
logs=${1:-${VALGRIND_LOGS:-/tmp/ss-valgrind}}
pat='Invalid (read|write|free)|Mismatched free|Conditional jump|Use of uninitialised|uninitialised byte|Syscall param|Source and destination overlap|Argument .* of function .* has a fishy'
n=$(cat "$logs"/vg.*.log 2>/dev/null | grep -cE "$pat")
files=$(ls "$logs"/vg.*.log 2>/dev/null | wc -l)
echo "valgrind: $files processes, $n errors"
[ "$n" -eq 0 ] || { grep -lE "$pat" "$logs"/vg.*.log | head -3 | xargs -r -n1 sed -n '1,80p'; exit 1; }
