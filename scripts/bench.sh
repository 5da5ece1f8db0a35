#!/usr/bin/env bash
# Runs every benchmark with its peers installed from Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
# Peers measured beside our code: sox (transcoding), opusenc (Opus), lame (MP3), nginx (range streams),
# inotifywait (a bare watcher, for the idle cost), age (sealing), sqlite3 (the CSV export),
# boto3 (S3 uploads, from PyPI);
# python3 and GNU time drive the HTTP benchmarks; libopus to build.
if ! command -v sox >/dev/null || ! command -v opusenc >/dev/null || ! command -v nginx >/dev/null \
  || ! command -v inotifywait >/dev/null || ! command -v python3 >/dev/null || [ ! -x /usr/bin/time ] \
  || ! command -v lame >/dev/null || ! command -v make >/dev/null || ! command -v age >/dev/null \
  || ! command -v sqlite3 >/dev/null \
  || ! pkg-config --exists opus 2>/dev/null; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    sox opus-tools lame nginx inotify-tools libopus-dev pkg-config make gcc libc6-dev python3 python3-pip time age sqlite3 >/dev/null
fi
python3 -c "import boto3" 2>/dev/null || python3 -m pip install --quiet boto3 || python3 -m pip install --quiet --break-system-packages boto3
# The archive benchmark runs against s3s-fs, built once by the test script.
if [ -z "${S3S_FS_BIN:-}" ] && [ ! -x target/tools/bin/s3s-fs ]; then
  cargo install --quiet --locked s3s-fs --version 0.14.1 --features binary --root "$PWD/target/tools"
fi
cargo bench --locked "$@"
# The HTTP-level benchmarks drive the release binary.
if [ $# -eq 0 ]; then
  cargo build --locked --release
  python3 benches/signin_flood.py
  python3 benches/renderings.py
  python3 benches/word_search.py
  python3 benches/api_load.py
fi
