#!/usr/bin/env bash
# Runs every benchmark with its peers installed: sox (mu-law transcoding) comes from Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v sox >/dev/null; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends sox >/dev/null
fi
cargo bench --locked "$@"
