#!/usr/bin/env bash
# The benchmark suite: runs every benchmark against fresh servers on
# temporary data directories and prints one table (figure, value, unit,
# target) with the machine it ran on. bench/README.md explains each one.
#
#   bash bench/run.sh            full run (a few minutes)
#   bash bench/run.sh --smoke    seconds: every benchmark runs briefly (tests)
#   bash bench/run.sh --only create,fanout   a subset
#     (create lifecycle delay fanout render ceiling idle compare)
#
# Figures, never assertions: on a shared machine they are noisy; compare
# ratios within one run. Exits non-zero only when a benchmark could not run.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SMOKE=0
ONLY=""
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) SMOKE=1 ;;
    --only) ONLY=",$2,"; shift ;;
    *) echo "usage: bench/run.sh [--smoke] [--only LIST]" >&2; exit 2 ;;
  esac
  shift
done
want() { [ -z "$ONLY" ] || [[ $ONLY == *",$1,"* ]]; }

make -j2 bench-tools >/dev/null || { echo "bench: build failed" >&2; exit 1; }
BIN=${BENCH_BIN:-$ROOT/build/stylestudio} # BENCH_BIN: another build, for before/after in one run
LG=$ROOT/build/loadgen
# 10,000 streams need 10,000 descriptors in the server and in the load generator.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ $SMOKE = 1 ]; then
  DUR=0.3 CONNS="1 16" STREAMS=100 FUSERS=4 USERS=2 IDLE=1 RUNS=1 CEIL=0.3 LCONNS=4 LUSERS=2 QUALITIES=low
else
  DUR=5 CONNS="1 16 64 256" STREAMS=10000 FUSERS=100 USERS=16 IDLE=5 RUNS=9 CEIL=3 LCONNS=32 LUSERS=8 QUALITIES="low auto high"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ss-bench-XXXXXX")      # on disk: durable commits
SHM=$(mktemp -d /dev/shm/ss-bench-XXXXXX 2>/dev/null || mktemp -d)  # fan-out only
RESULTS=$WORK/results.tsv
: >"$RESULTS"
PIDS=()
failed=0
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  rm -rf "$WORK" "$SHM"
}
trap cleanup EXIT

# row BENCH FIGURE VALUE UNIT TARGET
row() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; }
# val FILE NAME: the value of line "NAME value unit"
val() { awk -v k="$2" '$1 == k { print $2; exit }' "$1"; }
fail() { echo "bench: $1 did not run (see above)" >&2; row "$1" "did not run" "-" "-" "-"; failed=1; }

# listen_port OUT: the port a server prints in OUT ("listening on http://HOST:PORT"),
# waiting up to 5 s for the line; "" when it never came
listen_port() {
  for _ in $(seq 100); do
    grep -q '^listening on' "$1" 2>/dev/null && break
    sleep 0.05
  done
  sed -n 's/^listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$1"
}

# start_server DATA ARGS...: sets SRV_PID and PORT
start_server() {
  local data=$1; shift
  local out=$WORK/server.$RANDOM
  # One load generator on one address, many streams per user: the
  # per-address, per-user and total connection limits are lifted here.
  "$BIN" serve --listen 127.0.0.1:0 --data "$data" --log-level warn --rate-free 0 \
    --max-connections 1000000 --max-connections-per-address 0 --max-streams-per-user 0 "$@" \
    >"$out" 2>>"$WORK/server.log" &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  PORT=$(listen_port "$out")
  [ -n "$PORT" ] || { echo "bench: server did not start" >&2; cat "$WORK/server.log" >&2; return 1; }
}
stop_server() { kill "$SRV_PID" 2>/dev/null; wait "$SRV_PID" 2>/dev/null; }

# make_users DATA N TOKENS KEYFILE: N users, one API key each, in parallel
make_users() {
  local data=$1 n=$2 tokens=$3 keys=$4
  seq "$n" | xargs -P 8 -I{} sh -c "'$BIN' user create --data '$data' --log-level warn \
    --email bench{}@example.com --tokens $tokens | sed -n 's/^api_key: //p'" >"$keys"
  [ "$(wc -l <"$keys")" -eq "$n" ]
}

upload() { # PORT KEY → the media URL of the product fixture
  curl -s -H "Authorization: Bearer $2" -H 'Content-Type: image/jpeg' \
    --data-binary @tests/fixtures/product.jpg "http://127.0.0.1:$1/api/upload" |
    sed -n 's/.*"url":"\([^"]*\)".*/\1/p'
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# context switches of all of PID's threads: each is a wake-up (or a preemption)
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches:/ { s += $2 } END { print s }'; }
status_of() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# --- 1. create throughput and latency, durable --------------------------------
if want create; then
  echo "== create (at ${SECONDS}s)" >&2
  d=$WORK/create && mkdir -p "$d"
  if start_server "$d" && make_users "$d" "$USERS" 100000000 "$WORK/keys.create"; then
    url=$(upload "$PORT" "$(head -1 "$WORK/keys.create")")
    body="{\"productImages\":[\"$url\"],\"model\":\"local-studio\",\"style\":\"minimal\",\"quality\":\"auto\",\"aspectRatio\":\"1:1\"}"
    for c in $CONNS; do
      o=$WORK/create.$c
      if "$LG" req --port "$PORT" --keys "$WORK/keys.create" --conns "$c" --duration "$DUR" \
        --body "$body" >"$o"; then
        t="-"; [ "$c" = 64 ] && t=">= 30000"
        row create "throughput, $c conns" "$(val "$o" throughput)" requests/s "$t"
        row create "latency p50 / p99 / p99.9, $c conns" \
          "$(val "$o" latency_p50) / $(val "$o" latency_p99) / $(val "$o" latency_p999)" ms "-"
      else fail "create $c conns"; fi
    done
    # p99 at half the 64-connection (or the largest measured) throughput
    top=$(val "$WORK/create.$(echo "$CONNS" | awk '{ print $NF }')" throughput)
    [ -f "$WORK/create.64" ] && top=$(val "$WORK/create.64" throughput)
    half=$(( ${top:-2} / 2 ))
    o=$WORK/create.half
    if "$LG" req --port "$PORT" --keys "$WORK/keys.create" --conns 64 --duration "$DUR" \
      --rate "$half" --body "$body" >"$o"; then
      row create "latency p50 / p99 at half load ($half/s, 64 conns)" \
        "$(val "$o" latency_p50) / $(val "$o" latency_p99)" ms "p99 <= 5"
    else fail "create half load"; fi
    CREATE_TOP=$top
  else fail create; fi
  stop_server
fi

# --- 6. storage ceiling (same disk, same schema and pragmas) ------------------
if want ceiling; then
  echo "== ceiling (at ${SECONDS}s)" >&2
  d=$WORK/ceiling && mkdir -p "$d"
  o=$WORK/ceiling.out
  if "$ROOT/build/store_ceiling" --seconds "$CEIL" --batch 64 "$d" >"$o" 2>/dev/null; then
    s=$(val "$o" ceiling_single) b=$(val "$o" ceiling_batched)
    row ceiling "SQLite directly, one commit per create" "$s" creates/s "-"
    row ceiling "SQLite directly, 64 creates per commit" "$b" creates/s "-"
    if [ -n "${CREATE_TOP:-}" ]; then
      row ceiling "service create (largest run) / one-commit ceiling" \
        "$(awk -v a="$CREATE_TOP" -v b="$s" 'BEGIN { printf "%.2f", a / b }')" ratio "-"
      row ceiling "service create (largest run) / batched ceiling" \
        "$(awk -v a="$CREATE_TOP" -v b="$b" 'BEGIN { printf "%.2f", a / b }')" ratio "-"
    fi
  else fail ceiling; fi
fi

# --- 8. side by side: the same create in Node.js + pg, on PostgreSQL ----------
# The stack a team would pick instead (bench/compare/server.mjs: node:http on
# node:cluster, one process per core, pg's pool) and the service, each on
# its own database of one throwaway cluster (scripts/pg.sh, fsync on), 16
# users, 64 connections, the same load generator and body. Also each one's
# own CPU per create (the cluster's backends are not counted for either).
tree_ticks() { # PID: CPU ticks of PID and its children
  local t=0 p
  for p in "$1" $(pgrep -P "$1"); do t=$((t + $(cpu_ticks "$p"))); done
  echo "$t"
}
if want compare; then
  echo "== compare (at ${SECONDS}s)" >&2
  PGD=$(mktemp -d)
  [ -d bench/compare/node_modules/pg ] || (cd bench/compare && npm ci --no-audit --no-fund --silent) ||
    echo "bench: npm ci in bench/compare failed" >&2
  if bash scripts/pg.sh start "$PGD" >/dev/null &&
    psql -X -q -h "$PGD" -U postgres -d postgres -c 'CREATE DATABASE ss' -c 'CREATE DATABASE cmp'; then
    CC=64
    [ $SMOKE = 1 ] && CC=16
    # the service on PostgreSQL
    d=$WORK/compare && mkdir -p "$d"
    SSDB="postgres:///ss?host=$PGD&user=postgres"
    if start_server "$d" --db "$SSDB" &&
      seq "$USERS" | xargs -P 8 -I{} sh -c "'$BIN' user create --data '$d' --db '$SSDB' \
        --log-level warn --email cmp{}@example.com --tokens 100000000 | sed -n 's/^api_key: //p'" \
        >"$WORK/keys.cmp.ss"; then
      url=$(upload "$PORT" "$(head -1 "$WORK/keys.cmp.ss")")
      body="{\"productImages\":[\"$url\"],\"model\":\"local-studio\",\"style\":\"minimal\",\"quality\":\"auto\",\"aspectRatio\":\"1:1\"}"
      o=$WORK/compare.ss t0=$(tree_ticks "$SRV_PID")
      if "$LG" req --port "$PORT" --keys "$WORK/keys.cmp.ss" --conns "$CC" --duration "$DUR" \
        --body "$body" >"$o"; then
        echo "cpu_ticks $(($(tree_ticks "$SRV_PID") - t0))" >>"$o"
      else fail "compare (service)"; fi
    else fail "compare (service)"; fi
    stop_server
    # the Node.js app on the same cluster
    CMPDB="postgres:///cmp?host=$PGD&user=postgres"
    for i in $(seq "$USERS"); do echo "cmp_$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')"; done \
      >"$WORK/keys.cmp.node"
    if node bench/compare/server.mjs --db "$CMPDB" --schema &&
      awk -v q="'" '{ printf "INSERT INTO cmp_users (id, token_balance, created_at) VALUES (%su%d%s, 100000000, 0);\n", q, NR, q
        printf "INSERT INTO cmp_api_keys (key_hash, user_id) VALUES (encode(sha256(%s%s%s::bytea), %shex%s), %su%d%s);\n", q, $1, q, q, q, q, NR, q }' \
        "$WORK/keys.cmp.node" | psql -X -q -h "$PGD" -U postgres -d cmp; then
      node bench/compare/server.mjs --db "$CMPDB" >"$WORK/compare.node.srv" 2>>"$WORK/server.log" &
      NPID=$!
      PIDS+=("$NPID")
      NPORT=$(listen_port "$WORK/compare.node.srv")
      body='{"productImages":["https://cdn.example.com/p/1.jpg"],"model":"local-studio","style":"minimal","quality":"auto","aspectRatio":"1:1"}'
      o=$WORK/compare.node t0=$(tree_ticks "$NPID")
      if [ -n "$NPORT" ] && "$LG" req --port "$NPORT" --keys "$WORK/keys.cmp.node" --conns "$CC" \
        --duration "$DUR" --body "$body" >"$o"; then
        echo "cpu_ticks $(($(tree_ticks "$NPID") - t0))" >>"$o"
      else fail "compare (Node.js)"; fi
      kill "$NPID" 2>/dev/null
      wait "$NPID" 2>/dev/null
    else fail "compare (Node.js)"; fi
    hz=$(getconf CLK_TCK)
    per() { awk -v t="$(val "$1" cpu_ticks)" -v n="$(val "$1" ok)" -v hz="$hz" \
      'BEGIN { if (n > 0) printf "%.0f", 1e6 * t / hz / n; else print "?" }'; }
    if [ -f "$WORK/compare.ss" ] && [ -f "$WORK/compare.node" ]; then
      ss=$(val "$WORK/compare.ss" throughput) nd=$(val "$WORK/compare.node" throughput)
      row compare "Node.js $(node --version) + pg, $(nproc) processes, PostgreSQL: create, $CC conns" \
        "$nd" requests/s "-"
      row compare "the service on the same PostgreSQL, $CC conns" "$ss" requests/s "-"
      row compare "p99: Node.js / the service on PostgreSQL" \
        "$(val "$WORK/compare.node" latency_p99) / $(val "$WORK/compare.ss" latency_p99)" ms "-"
      row compare "the app's CPU per create: Node.js / the service on PostgreSQL" \
        "$(per "$WORK/compare.node") / $(per "$WORK/compare.ss")" "µs" "-"
      row compare "the service on PostgreSQL / Node.js" \
        "$(awk -v a="$ss" -v b="$nd" 'BEGIN { printf "%.2f", a / b }')" ratio "-"
      [ -f "$WORK/create.$CC" ] && row compare "the service on SQLite, its default ($CC conns above) / Node.js" \
        "$(awk -v a="$(val "$WORK/create.$CC" throughput)" -v b="$nd" 'BEGIN { printf "%.2f", a / b }')" ratio "-"
    fi
  else fail compare; fi
  bash scripts/pg.sh stop "$PGD" >/dev/null 2>&1
fi

# --- 2. lifecycle create → generate → completed, bench-instant ----------------
if want lifecycle; then
  echo "== lifecycle (at ${SECONDS}s)" >&2
  d=$WORK/lifecycle && mkdir -p "$d"
  if start_server "$d" --enable-bench-model --workers 2 &&
    make_users "$d" "$LUSERS" 100000000 "$WORK/keys.life"; then
    url=$(upload "$PORT" "$(head -1 "$WORK/keys.life")")
    body="{\"productImages\":[\"$url\"],\"model\":\"bench-instant\",\"style\":\"minimal\",\"quality\":\"auto\",\"aspectRatio\":\"1:1\"}"
    o=$WORK/life.out
    if "$LG" delay --port "$PORT" --keys "$WORK/keys.life" --status completed --rate 0 \
      --conns "$LCONNS" --duration "$DUR" --path /api/generate --body "$body" >"$o"; then
      row lifecycle "generations completed ($LUSERS users, $LCONNS conns, a stream each)" \
        "$(val "$o" completed_rate)" generations/s ">= 10000"
      row lifecycle "create → completed on the stream, p50 / p99" \
        "$(val "$o" commit_to_sse_p50) / $(val "$o" commit_to_sse_p99)" ms "-"
    else fail lifecycle; fi
  else fail lifecycle; fi
  stop_server
fi

# --- 3. commit → SSE delivery at 1,000 events/s -------------------------------
# Twice: on disk (the durable commit, a shared fsync, is part of the figure:
# createdAt is stamped before the transaction) and on tmpfs, where the fsync
# costs nothing, so what remains is the delivery (wake, read, write).
if want delay; then
  for where in disk tmpfs; do
    echo "== delay, $where (at ${SECONDS}s)" >&2
    if [ $where = disk ]; then d=$WORK/delay; else d=$SHM/delay; fi
    mkdir -p "$d"
    if start_server "$d" && make_users "$d" 1 100000000 "$WORK/keys.delay.$where"; then
      url=$(upload "$PORT" "$(head -1 "$WORK/keys.delay.$where")")
      body="{\"productImages\":[\"$url\"],\"model\":\"local-studio\",\"style\":\"minimal\",\"quality\":\"auto\",\"aspectRatio\":\"1:1\"}"
      o=$WORK/delay.$where.out
      if "$LG" delay --port "$PORT" --keys "$WORK/keys.delay.$where" --rate 1000 --conns 16 \
        --duration "$DUR" --body "$body" >"$o"; then
        row delay "events delivered, $where (rate asked: 1000/s)" "$(val "$o" completed_rate)" events/s "-"
        row delay "createdAt → SSE arrival, $where, p50 / p99 (includes the commit)" \
          "$(val "$o" commit_to_sse_p50) / $(val "$o" commit_to_sse_p99)" ms "p99 <= 5"
        # the same creates' send → 201: how much of the figure above the
        # transaction alone takes
        row delay "the creates' send → 201, $where, p50 / p99" \
          "$(val "$o" create_latency_p50) / $(val "$o" create_latency_p99)" ms "-"
      else fail "delay $where"; fi
    else fail "delay $where"; fi
    stop_server
  done
fi

# --- 4. fan-out: many SSE streams in one process ------------------------------
if want fanout; then
  echo "== fanout (at ${SECONDS}s)" >&2
  d=$SHM/fanout && mkdir -p "$d"
  if start_server "$d" && make_users "$d" "$FUSERS" 1000 "$WORK/keys.fan"; then
    url=$(upload "$PORT" "$(head -1 "$WORK/keys.fan")")
    body="{\"productImages\":[\"$url\"],\"model\":\"local-studio\",\"style\":\"minimal\",\"quality\":\"auto\",\"aspectRatio\":\"1:1\"}"
    o=$WORK/fan.out
    if "$LG" sse --port "$PORT" --keys "$WORK/keys.fan" --streams "$STREAMS" --pid "$SRV_PID" \
      --body "$body" >"$o"; then
      row fanout "$STREAMS streams, $FUSERS users: RSS per stream" "$(val "$o" rss_per_stream)" KiB "<= 8"
      row fanout "server RSS / threads with the streams open" \
        "$(val "$o" rss_with_streams) MiB / $(val "$o" threads_with_streams)" "-" "-"
      row fanout "one change per user → all its streams, p50 / max" \
        "$(val "$o" change_to_all_streams_p50) / $(val "$o" change_to_all_streams_max)" ms "max <= 1000"
      row fanout "GET /api/me while the streams are open" "$(val "$o" api_request_while_open)" ms "answered"
    else fail "fanout ($STREAMS streams)"; fi
  else fail fanout; fi
  stop_server
fi

# --- 5. render local-studio, one core ------------------------------------------
if want render; then
  echo "== render (at ${SECONDS}s)" >&2
  for q in $QUALITIES; do
    o=$WORK/render.$q
    if VIPS_CONCURRENCY=1 taskset -c 0 "$ROOT/build/render_bench" --style realistic --quality "$q" \
      --runs "$RUNS" tests/fixtures/product.jpg >"$o" 2>&1; then
      ms=$(grep -o 'median [0-9.]* ms' "$o" | awk '{ print $2 }')
      # local-studio's long side by quality (docs/api.md): low 1024, auto and medium 1600, high 2048
      case $q in low) px=1024 t="<= 100" ;; high) px=2048 t="<= 300" ;; *) px=1600 t="-" ;; esac
      row render "local-studio ${px}×${px} realistic, quality $q, median of $RUNS, one core" "${ms:-?}" ms "$t"
    else fail "render $q"; fi
  done
fi

# --- 7. idle server -------------------------------------------------------------
if want idle; then
  echo "== idle (at ${SECONDS}s)" >&2
  d=$WORK/idle && mkdir -p "$d"
  if start_server "$d"; then
    sleep 1
    c0=$(cpu_ticks "$SRV_PID") w0=$(switches "$SRV_PID") t0=$(date +%s.%N)
    sleep "$IDLE"
    c1=$(cpu_ticks "$SRV_PID") w1=$(switches "$SRV_PID") t1=$(date +%s.%N)
    hz=$(getconf CLK_TCK)
    row idle "RSS" "$(awk -v k="$(status_of "$SRV_PID" VmRSS)" 'BEGIN { printf "%.1f", k / 1024 }')" MiB "<= 30"
    row idle "threads" "$(status_of "$SRV_PID" Threads)" threads "-"
    row idle "CPU over ${IDLE}s" "$(awk -v a="$c0" -v b="$c1" -v s="$t0" -v e="$t1" -v hz="$hz" \
      'BEGIN { printf "%.2f", 100 * (b - a) / hz / (e - s) }')" "% of a core" "~0"
    # finer than CPU ticks: how often the idle server's threads wake at all
    row idle "wake-ups over ${IDLE}s" "$(awk -v a="$w0" -v b="$w1" -v s="$t0" -v e="$t1" \
      'BEGIN { printf "%.1f", (b - a) / (e - s) }')" "per s" "-"
  else fail idle; fi
  stop_server
fi

# --- the table ------------------------------------------------------------------
cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
echo
echo "machine: $(nproc) cores (${cpu:-unknown CPU}), $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%Y-%m-%d %H:%M UTC')$([ $SMOKE = 1 ] && echo ', SMOKE run: figures meaningless')"
echo
{
  printf 'bench\tfigure\tvalue\tunit\ttarget\n'
  cat "$RESULTS"
} | awk -F'\t' '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }
  NR == 1 { print "| --- | --- | --- | --- | --- |" }'
exit $failed
