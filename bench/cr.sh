#!/usr/bin/env bash
# One quick figure for before/after comparisons (bench/README.md, "cr"):
# starts BIN serve on a fresh data directory under DATAPARENT (a disk
# directory, or /dev/shm for no fsync cost), makes 16 users, uploads the
# product fixture and runs build/loadgen against it for each connection
# count, printing loadgen's figures plus the server's CPU ticks and context
# switches over the run. Alternate the builds in one run: the machine is
# shared and noisy.
#
#   bash bench/cr.sh BIN DATAPARENT "CONNS..." SECONDS [serve flags...]
#     e.g. bash bench/cr.sh build/stylestudio /dev/shm "1 64 256" 3
#
# Environment: USERS (16); RATE=N paces the load to N requests/s; MODE=life
# runs the lifecycle (one-step generate, a stream per connection, until
# completed: pass --enable-bench-model and MODEL=bench-instant); MODEL
# (local-studio); ATTACH="perf record -g -o /tmp/x.perf" attaches a tool
# to the server (-p PID) for the run.
set -uo pipefail
[ $# -ge 4 ] || { sed -n 2,17p "$0" >&2; exit 2; }
BIN=$1 DP=$2 CONNS=$3 DUR=$4
shift 4
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LG=$ROOT/build/loadgen
[ -x "$LG" ] || make -C "$ROOT" -j2 bench-tools >/dev/null || exit 1
MODEL=${MODEL:-local-studio}
MODE=${MODE:-req}
d=$(mktemp -d "$DP/cr-XXXXXX")
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; [ -n "${SHOWERR:-}" ] && tail -${SHOWERR} "$d/err" >&2; rm -rf "$d"' EXIT
"$BIN" serve --listen 127.0.0.1:0 --data "$d" --log-level warn --rate-free 0 \
  --max-connections 1000000 --max-connections-per-address 0 --max-streams-per-user 0 "$@" \
  >"$d/out" 2>"$d/err" &
PID=$!
for _ in $(seq 100); do
  grep -q '^listening on' "$d/out" 2>/dev/null && break
  sleep 0.05
done
PORT=$(sed -n 's/^listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$d/out")
[ -n "$PORT" ] || { cat "$d/err" >&2; exit 1; }
seq "${USERS:-16}" | xargs -P 8 -I{} sh -c "'$BIN' user create --data '$d' --log-level warn \
  --email cr{}@example.com --tokens 100000000 | sed -n 's/^api_key: //p'" >"$d/keys"
url=$(curl -s -H "Authorization: Bearer $(head -1 "$d/keys")" -H 'Content-Type: image/jpeg' \
  --data-binary @"$ROOT/tests/fixtures/product.jpg" "http://127.0.0.1:$PORT/api/upload" |
  sed -n 's/.*"url":"\([^"]*\)".*/\1/p')
body="{\"productImages\":[\"$url\"],\"model\":\"$MODEL\",\"style\":\"minimal\",\"quality\":\"auto\",\"aspectRatio\":\"1:1\"}"
ticks() { awk '{ print $14 + $15 }' "/proc/$PID/stat"; }
switches() { cat /proc/"$PID"/task/*/status 2>/dev/null | awk '/ctxt_switches:/ { s += $2 } END { print s }'; }
if [ -n "${ATTACH:-}" ]; then
  $ATTACH -p "$PID" >"$d/attach" 2>&1 &
  APID=$!
  sleep 0.5
fi
for c in $CONNS; do
  t0=$(ticks) s0=$(switches)
  if [ "$MODE" = life ]; then
    "$LG" delay --port "$PORT" --keys "$d/keys" --status completed --rate 0 --conns "$c" \
      --duration "$DUR" --path /api/generate --body "$body" >"$d/r"
  else
    "$LG" req --port "$PORT" --keys "$d/keys" --conns "$c" --duration "$DUR" \
      ${RATE:+--rate "$RATE"} --body "$body" >"$d/r"
  fi
  echo "conns=$c $(tr '\n' ' ' <"$d/r") cpu_ticks=$(($(ticks) - t0)) ctxsw=$(($(switches) - s0))"
done
if [ -n "${ATTACH:-}" ]; then
  kill -INT "$APID"
  wait "$APID"
  cat "$d/attach"
fi
