#!/usr/bin/env bash
# Regenerates the test images in tests/fixtures (see tests/fixtures/make_fixtures.c).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
${CC:-cc} -std=gnu11 -O2 -Wall -Wextra -o "$out/make_fixtures" tests/fixtures/make_fixtures.c \
    $(pkg-config --cflags --libs vips)
"$out/make_fixtures" tests/fixtures
ls -l tests/fixtures
