#!/usr/bin/env bash
# Installs every Debian package Style Studio needs to build, run and test.
# Idempotent: packages already present are skipped, so a second run is quick.
set -euo pipefail

PACKAGES=(
  build-essential pkg-config
  libmicrohttpd-dev libjansson-dev libsqlite3-dev libpq-dev
  libcurl4-openssl-dev libvips-dev libsodium-dev
  libcriterion-dev libhttp-parser-dev sqlite3 curl ca-certificates
  clang libclang-rt-14-dev clang-format
  chromium postgresql fonts-dejavu-core fonts-inter
)

missing=()
# Node.js may come from elsewhere than Debian (the image ships one); only add
# Debian's when there is none, so the two never conflict.
command -v node >/dev/null && command -v npm >/dev/null || PACKAGES+=(nodejs npm)
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "deps: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Browser-test driver (playwright-core only: it drives Debian's /usr/bin/chromium).
if [ "${1:-}" = "--test" ] && [ ! -d tests/node_modules/playwright-core ]; then
  (cd tests && npm ci --no-audit --no-fund --silent)
fi
# The benchmark suite's side-by-side app (bench/compare: Node.js + pg).
if [ "${1:-}" = "--test" ] && [ ! -d bench/compare/node_modules/pg ]; then
  (cd bench/compare && npm ci --no-audit --no-fund --silent)
fi
