#!/usr/bin/env bash
# Every check, as CI runs it: installs what is missing (Debian packages), then
# formatting, lints, all tests (real ZooKeeper, real brokers), the
# docker-compose file, and the fuzz targets' build.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_zookeeper
ensure_packages docker-compose

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --all-targets --all-features -- -D warnings
echo "==> cargo test"
cargo test --all-features
echo "==> docker-compose config"
docker-compose -f docker-compose.yml config -q
if [ -x scripts/fuzz-build.sh ]; then
  echo "==> fuzz targets build"
  scripts/fuzz-build.sh
fi
echo "==> all checks passed"
