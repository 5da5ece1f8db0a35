#!/usr/bin/env bash
# The demo: ari-recorder with its simulated Asterisk on loopback placing a steady mix of calls.
# Needs Rust (cargo); installs Debian's libopus-dev and PocketSphinx (the offline transcription
# engine) when missing. Stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
# The build links Debian's libopus (Opus output), found through pkg-config.
if ! pkg-config --exists opus 2>/dev/null; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libopus-dev pkg-config >/dev/null
fi
# The offline transcription engine: the demo's calls get transcripts (TRANSCRIPTION_ENGINE=auto).
if ! command -v pocketsphinx_continuous >/dev/null || [ ! -f /usr/share/pocketsphinx/model/en-us/en-us/mdef ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pocketsphinx pocketsphinx-en-us >/dev/null
fi
exec cargo run --release --locked -- demo "$@"
