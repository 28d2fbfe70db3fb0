#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the test suites.
#   bash scripts/pg.sh start [DIR]   initialise (if new) and start a cluster in
#                                    DIR (default: a fresh mktemp -d), wait
#                                    until it accepts connections, print one
#                                    line: the libpq base "host=DIR user=postgres"
#   bash scripts/pg.sh stop DIR      stop it (fast mode) and remove DIR
#
# Layout: DIR (mode 755, owned by the server's user) holds the Unix socket
# (.s.PGSQL.5432), the log (server.log) and the data directory DIR/data
# (mode 700, as initdb wants). No TCP: listen_addresses = ''. Local
# connections are trusted; fsync stays on (the suites test durability).
# Several clusters can run side by side, one per DIR.
#
# PostgreSQL refuses to run as root: called by root, the server runs as the
# `postgres` user (Debian's postgresql package creates it); called by anyone
# else, it runs as the caller. Stop of a stopped cluster, or of a DIR that is
# already gone, is not an error. Only a DIR made by this script is removed.
set -euo pipefail

usage() { echo "usage: $0 start [DIR] | stop DIR" >&2; exit 2; }

MARK=stylestudio-pg # file in DIR: "made by pg.sh", so stop may remove DIR

bindir() { # directory of initdb/pg_ctl: PATH first, then the newest Debian one
  local d
  if d=$(command -v pg_ctl 2>/dev/null) && [ -x "$(dirname "$(readlink -f "$d")")/initdb" ]; then
    dirname "$(readlink -f "$d")"
    return
  fi
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$d" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return; }
  echo "pg.sh: no PostgreSQL server binaries (initdb, pg_ctl); run: bash scripts/deps.sh" >&2
  exit 1
}

as_pg() { # runs a command as the cluster's owner, from a directory it can read
  if [ "$(id -u)" -eq 0 ]; then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && "$@")
  fi
}

running() { # DIR: true when the cluster accepts connections
  "$BIN/pg_isready" -q -h "$1" -U postgres -d postgres -t 1 >/dev/null 2>&1
}

start() {
  local dir=${1:-}
  [ -n "$dir" ] || dir=$(mktemp -d)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd -P)
  if [ ! -e "$dir/$MARK" ] && [ -n "$(ls -A "$dir")" ]; then
    echo "pg.sh: $dir is not empty and was not made by pg.sh" >&2
    exit 1
  fi
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || { echo "pg.sh: no 'postgres' user; run: bash scripts/deps.sh" >&2; exit 1; }
    chown postgres: "$dir"
  fi
  chmod 755 "$dir"
  as_pg test -w "$dir" -a -x "$dir" || {
    echo "pg.sh: the postgres user cannot write $dir (check the modes of its parents)" >&2
    exit 1
  }
  touch "$dir/$MARK"

  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg "$BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
      >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    cat >>"$dir/data/postgresql.conf" <<EOF

# pg.sh: a throwaway test cluster, Unix socket only
listen_addresses = ''
unix_socket_directories = '$dir'
unix_socket_permissions = 0777
max_connections = 300
fsync = on
synchronous_commit = on
full_page_writes = on
EOF
  fi

  if ! running "$dir"; then
    as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -s start >/dev/null ||
      { tail -n 30 "$dir/server.log" >&2; exit 1; }
    local i
    for i in $(seq 1 100); do
      running "$dir" && break
      [ "$i" -eq 100 ] && { echo "pg.sh: cluster in $dir does not accept connections" >&2; tail -n 30 "$dir/server.log" >&2; exit 1; }
      sleep 0.1
    done
  fi
  echo "host=$dir user=postgres"
}

stop() {
  local dir=${1:-}
  [ -n "$dir" ] || usage
  [ -d "$dir" ] || return 0
  dir=$(cd "$dir" && pwd -P)
  if [ ! -e "$dir/$MARK" ]; then
    [ -z "$(ls -A "$dir")" ] && { rmdir "$dir"; return 0; }
    echo "pg.sh: $dir was not made by pg.sh; not removing it" >&2
    exit 1
  fi
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg "$BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 -s stop >/dev/null 2>&1 ||
      ! running "$dir" || { echo "pg.sh: could not stop the cluster in $dir" >&2; exit 1; }
  fi
  rm -rf "$dir"
}

BIN=$(bindir)
case "${1:-}" in
  start) [ $# -le 2 ] || usage; start "${2:-}" ;;
  stop) [ $# -eq 2 ] || usage; stop "$2" ;;
  *) usage ;;
esac
