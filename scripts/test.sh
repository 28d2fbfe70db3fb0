#!/usr/bin/env bash
# Sets up and runs every test suite against the real binary:
#   unit         Criterion, tests/unit/
#   bench-smoke  every benchmark for a moment (bench/run.sh --smoke)
#   integration  node:test over HTTP/SSE, tests/integration/
#   integration-pg  the same on PostgreSQL
#   (one throwaway PostgreSQL cluster, from scripts/pg.sh, serves the
#   PostgreSQL store's unit tests and integration-pg)
#   browser      playwright-core driving Debian's Chromium, tests/browser/
#   unit and integration again on an ASan+UBSan build
#   integration-tsan  the worker, event, SSE, provider, security and concurrent-create
#                     tests on a TSan build
#   chaos        SIGKILLs under mixed load, tests/chaos/ (SQLite, PostgreSQL)
#   fuzz         libFuzzer targets in tests/fuzz/, 20 s each
# Ends with one line "tests: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --test || exit 1
make -j2 >/dev/null || { echo "build failed"; exit 1; }

logs=$(mktemp -d)
status=0
run() { # name, command...
  local name=$1; shift
  echo "== $name"
  "$@" 2>&1 | tee "$logs/$name.log"
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || { echo "== $name: FAILED (exit $rc)"; status=1; }
}

# A throwaway PostgreSQL cluster (SPEC §9, DESIGN §4.11) for the PostgreSQL
# store's unit tests (each in its own schema) and the integration suite on
# PostgreSQL (the harness gives every data dir its own database). The EXIT
# trap stops and removes it whatever happens.
pg_dir=""
pg_stop() {
  [ -n "$pg_dir" ] || return 0
  bash scripts/pg.sh stop "$pg_dir" || echo "== could not remove the PostgreSQL cluster in $pg_dir"
  pg_dir=""
}
trap pg_stop EXIT
trap 'exit 130' INT TERM
if pg_dir=$(mktemp -d) && bash scripts/pg.sh start "$pg_dir" >/dev/null; then
  export STYLESTUDIO_TEST_PG_URL="postgres:///postgres?host=$pg_dir&user=postgres"
else
  echo "== the PostgreSQL cluster did not start"; status=1
  pg_dir=""
fi

format_check() { # house style: the checked-in .clang-format
  clang-format --dry-run --Werror src/*.c src/*.h tests/unit/*.c tests/fuzz/*.c bench/*.c &&
    echo "format: 1 passed, 0 failed"
}
run format format_check
# The benchmark suite, briefly (bench/run.sh --smoke): asserts only that every
# benchmark runs and prints a number, never how fast.
bench_smoke() {
  local out
  out=$(bash bench/run.sh --smoke) || { echo "$out"; return 1; }
  echo "$out"
  echo "$out" | awk -F'|' '/^\| [a-z]/ && $2 !~ /bench/ && $4 !~ /[0-9]/ { bad++; print "no figure: " $0 }
    END { exit bad > 0 }' && echo "bench-smoke: 1 passed, 0 failed"
}
run bench-smoke bench_smoke
run unit make -j2 unit
run integration node --test --test-concurrency=2 --test-reporter=spec tests/integration/

run integration-pg env STYLESTUDIO_TEST_PG="$pg_dir" \
  node --test --test-concurrency=2 --test-reporter=spec tests/integration/

# Crash test, short form (6 SIGKILLs; tests/chaos/README.md has the long one).
run chaos env CHAOS_KILLS=6 node --test --test-reporter=spec tests/chaos/
run chaos-pg env CHAOS_KILLS=6 STYLESTUDIO_TEST_PG="$pg_dir" node --test --test-reporter=spec tests/chaos/

# The same unit and integration suites on an ASan+UBSan build: memory and
# undefined-behaviour errors and leaks (at clean exits) fail the run.
if make -j2 SAN=asan >/dev/null; then
  export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  run unit-asan make -j2 SAN=asan unit
  run integration-asan env STYLESTUDIO_BIN="$(pwd)/build-asan/stylestudio" \
    node --test --test-concurrency=2 --test-reporter=spec tests/integration/
  unset ASAN_OPTIONS UBSAN_OPTIONS
else
  echo "== asan build failed"; status=1
fi
# The worker, event, SSE, provider and concurrent-create tests (replies
# released by another thread's group commit) on a ThreadSanitizer build (the
# unit tests cannot: Criterion's arena does not start under TSan). Every
# report fails the run except those tests/tsan.supp explains (libraries
# that are not instrumented). One libvips thread per operation keeps TSan's
# cost down; the harness waits 4× as long for the slower binary.
if make -j2 SAN=tsan >/dev/null; then
  tsan_logs=$(mktemp -d)
  run integration-tsan env VIPS_CONCURRENCY=1 STYLESTUDIO_TEST_TIME_SCALE=4 \
    TSAN_OPTIONS="suppressions=$(pwd)/tests/tsan.supp log_path=$tsan_logs/tsan" \
    STYLESTUDIO_BIN="$(pwd)/build-tsan/stylestudio" \
    node --test --test-concurrency=2 --test-reporter=spec tests/integration/sse.test.mjs \
    tests/integration/worker.test.mjs tests/integration/faults.test.mjs \
    tests/integration/providers.test.mjs tests/integration/concurrency.test.mjs \
    tests/integration/batches.test.mjs tests/integration/ratelimit.test.mjs \
    tests/integration/benchmodel.test.mjs tests/integration/security.test.mjs
  tsan_check() {
    local n
    n=$(cat "$tsan_logs"/tsan.* 2>/dev/null | grep -c '^WARNING: ThreadSanitizer')
    echo "tsan: $n reports"
    [ "$n" -eq 0 ] || { cat "$tsan_logs"/tsan.* | head -200; return 1; }
  }
  run tsan-reports tsan_check
  rm -rf "$tsan_logs"
else
  echo "== tsan build failed"; status=1
fi
# libFuzzer on request validation and image probing, briefly.
run fuzz make -j2 SAN=fuzz fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
run browser node --test --test-concurrency=1 --test-reporter=spec tests/browser/
echo "browser screenshots: $(pwd)/tests/results/browser"

# Criterion: "Synthesis: Tested: N | Passing: P | Failing: F | Crashing: C"
# node:test (spec reporter): "ℹ pass N" / "ℹ fail N"
passed=0; failed=0
for f in "$logs"/*.log; do
  while read -r p fl; do passed=$((passed + p)); failed=$((failed + fl)); done < <(
    sed 's/\x1b\[[0-9;]*m//g' "$f" | awk '
      /Synthesis: Tested:/ { for (i = 1; i <= NF; i++) { if ($i == "Passing:") p += $(i+1); if ($i == "Failing:" || $i == "Crashing:") f += $(i+1) } }
      /^ℹ pass / { p += $3 } /^ℹ fail / { f += $3 }
      /^Done [0-9]+ runs in/ { p += 1 }
      /^format: 1 passed/ { p += 1 }
      /^bench-smoke: 1 passed/ { p += 1 }
      /^tsan: 0 reports/ { p += 1 } /^tsan: [1-9][0-9]* reports/ { f += 1 }
      END { print p + 0, f + 0 }')
done
[ "$status" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1
rm -rf "$logs"
echo "tests: $passed passed, $failed failed"
exit $status
