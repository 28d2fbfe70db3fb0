#!/usr/bin/env bash
# Sets up and starts Style Studio on its embedded defaults: SQLite in ./data,
# the offline local-studio renderer, the web studio at /.
# Extra arguments go to `stylestudio serve` (e.g. --listen 127.0.0.1:9000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
make -j"$(nproc)" >/dev/null
cat >&2 <<'MSG'
Style Studio is starting (Ctrl-C stops it).
  Web studio: open the URL below and sign up (new accounts get 10 free tokens).
  API key:    build/stylestudio user create --email you@example.com --tokens 50
              (prints user_id and api_key; use it as 'Authorization: Bearer sk_...')
MSG
exec build/stylestudio serve "$@"
