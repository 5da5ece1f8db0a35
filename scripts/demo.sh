#!/usr/bin/env bash
# The demo: ari-recorder with its simulated Asterisk on loopback placing a steady mix of calls.
# Needs only Rust (cargo); everything else is built in. Stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first" >&2; exit 1; }
mkdir -p dialplans
exec cargo run --release --locked -- demo "$@"
