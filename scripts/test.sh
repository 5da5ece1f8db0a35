#!/usr/bin/env bash
# Runs every test of ari-recorder. Sets up what the tests need on Debian first: libopus (the
# build links it), PostgreSQL (installed with apt-get when missing, run as a throwaway cluster
# on 127.0.0.1), because the library is tested against real SQLite and PostgreSQL, Chromium
# with its WebDriver, because the page is tested in a real browser, and s3s-fs, a real
# S3-compatible server for the archive.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first" >&2; exit 1; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# libopus (Opus output) is linked from Debian's package, found through pkg-config; LAME (MP3
# output) is built from its sources by its crate, with make and a C compiler.
if ! pkg-config --exists opus 2>/dev/null || ! command -v make >/dev/null || ! command -v cc >/dev/null; then
  echo "installing libopus-dev, pkg-config, make and a C compiler..." >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libopus-dev pkg-config make gcc libc6-dev >/dev/null
fi

# The page's end-to-end tests drive Debian's headless Chromium through chromedriver.
if [ ! -x /usr/bin/chromedriver ] || [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium and chromium-driver for the page tests..." >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi

# Transcription is tested with the offline engine: Debian's PocketSphinx and its English model
# (about 40 MB), and python3 for the OpenAI-compatible server the tests run beside it.
if ! command -v pocketsphinx_continuous >/dev/null || [ ! -f /usr/share/pocketsphinx/model/en-us/en-us/mdef ] || [ ! -x /usr/bin/python3 ]; then
  echo "installing pocketsphinx and pocketsphinx-en-us for the transcription tests..." >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pocketsphinx pocketsphinx-en-us python3 >/dev/null
fi

# axe-core audits the page's accessibility in the browser test. It comes from the npm registry,
# checked against the registry's checksum, and is served to the test page only: it is not part
# of the product.
AXE_VERSION=4.14.1
AXE_SHA1=14d8a6f3f085afd126b8b5ca1e42e50e17fb1d99
AXE_DIR="target/axe-core-$AXE_VERSION"
if [ ! -f "$AXE_DIR/axe.min.js" ]; then
  if ! command -v curl >/dev/null || ! command -v tar >/dev/null; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl ca-certificates tar >/dev/null
  fi
  mkdir -p "$AXE_DIR"
  curl -fsSL "https://registry.npmjs.org/axe-core/-/axe-core-$AXE_VERSION.tgz" -o "$AXE_DIR/axe.tgz"
  echo "$AXE_SHA1  $AXE_DIR/axe.tgz" | sha1sum -c --quiet
  tar -xzf "$AXE_DIR/axe.tgz" -C "$AXE_DIR" package/axe.min.js
  mv "$AXE_DIR/package/axe.min.js" "$AXE_DIR/axe.min.js"
  rm -rf "$AXE_DIR/package" "$AXE_DIR/axe.tgz"
fi
export AXE_CORE_JS="$PWD/$AXE_DIR/axe.min.js"

# The archive is tested against a real S3-compatible server: s3s-fs from crates.io, built once
# into target/tools (about 2 minutes on 2 cores) and reused.
S3S_FS_VERSION=0.14.1
if [ -z "${S3S_FS_BIN:-}" ]; then
  S3S_FS_BIN="$PWD/target/tools/bin/s3s-fs"
  if [ ! -x "$S3S_FS_BIN" ] || ! "$S3S_FS_BIN" --version 2>/dev/null | grep -q "$S3S_FS_VERSION"; then
    echo "building s3s-fs $S3S_FS_VERSION for the archive tests..." >&2
    cargo install --quiet --locked s3s-fs --version "$S3S_FS_VERSION" --features binary --root "$PWD/target/tools"
  fi
  export S3S_FS_BIN
fi

if [ -z "${TEST_POSTGRES_URL:-}" ]; then
  # The client package alone also creates /usr/lib/postgresql/*/bin: look for the server.
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "installing PostgreSQL for the database tests..." >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  fi
  PGBIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")
  PGPORT=${PGPORT:-55432}
  PGDATA="${TMPDIR:-/tmp}/ari-recorder-test-pg-tls"
  # initdb refuses to run as root: run the cluster as the postgres user then.
  as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  # A cluster of an earlier version of this script (no TLS) holds the port: stop it.
  OLD_PGDATA="${TMPDIR:-/tmp}/ari-recorder-test-pg"
  if [ -d "$OLD_PGDATA" ] && as_pg "$PGBIN/pg_ctl" -D "$OLD_PGDATA" status >/dev/null 2>&1; then
    as_pg "$PGBIN/pg_ctl" -D "$OLD_PGDATA" -m fast stop >/dev/null
  fi
  if ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    rm -rf "$PGDATA"
    mkdir -p "$PGDATA"
    [ "$(id -u)" = 0 ] && chown postgres "$PGDATA"
    as_pg "$PGBIN/initdb" -D "$PGDATA" -A trust -U postgres >/dev/null
    # TLS on, with a throwaway CA, so the tests can check sslmode=verify-full.
    command -v openssl >/dev/null || { as_root apt-get update -qq; as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null; }
    (
      cd "$PGDATA"
      openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=ari-recorder test CA" \
        -keyout ca.key -out ca.crt 2>/dev/null
      openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' > server.ext
      openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
        -extfile server.ext -out server.crt 2>/dev/null
      chmod 600 server.key
      [ "$(id -u)" = 0 ] && chown postgres server.key server.crt
      true
    )
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w \
      -o "-p $PGPORT -k $PGDATA -c listen_addresses=127.0.0.1 -c fsync=off -c ssl=on -c ssl_cert_file=$PGDATA/server.crt -c ssl_key_file=$PGDATA/server.key" start >/dev/null
  fi
  export TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PGPORT/postgres"
  export TEST_POSTGRES_CA="$PGDATA/ca.crt"
fi

# Benchmarks are not tests: `cargo bench` (scripts/bench.sh) runs them.
# The tests that need PostgreSQL, Chromium, s3s-fs or PocketSphinx are marked ignored (a plain
# `cargo test` lists them so, with what they need); this script provided them, so it runs them too.
case " $* " in
  *" -- "*) cargo test --locked --lib --bins --tests "$@" --include-ignored ;;
  *) cargo test --locked --lib --bins --tests "$@" -- --include-ignored ;;
esac
