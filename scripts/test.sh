#!/usr/bin/env bash
# Every check, as CI runs it: installs what is missing (Debian packages), then
# formatting, lints, all tests (real ZooKeeper, real brokers), the
# docker-compose file, and the fuzz targets' build.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_zookeeper
ensure_packages docker-compose

# A clean build writes several GiB; say how much room there is, so a linker
# that dies writing a binary can be told from a bug.
df -h . | sed 's/^/==> disk: /'
# Incremental caches would double what a one-off build writes.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "==> the client crate depends on no tool"
# The broker, the CLI's crates and the harness stay out of `metaq` itself.
if cargo tree -p metaq -e normal --prefix none | grep -E '^(clap|indicatif|tracing-subscriber|nix|tempfile|metaq-broker|metaq-testkit|metaq-cli) '; then
  echo "metaq depends on the crates above; only its dev-dependencies may" >&2
  exit 1
fi
echo "==> cargo test"
# --workspace: the client, the broker, the CLI and the test harness; it also
# builds every binary before any test runs (the client's fault tests start
# metaq-broker processes).
cargo test --workspace --all-features
echo "==> cargo doc (warnings are errors; the README is the client's front page)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
echo "==> docker-compose config"
docker-compose -f docker-compose.yml config -q
if [ -x scripts/fuzz-build.sh ]; then
  echo "==> fuzz targets build"
  scripts/fuzz-build.sh
fi
echo "==> all checks passed"
