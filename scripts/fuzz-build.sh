#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ (the protocol codecs, tx_key, the ZooKeeper data parsers).
#
#   scripts/fuzz-build.sh            build every target
#   scripts/fuzz-build.sh --run N    build, then run each target for N runs
#                                    on its committed seeds (fuzz/seeds/<target>)
#
# cargo-fuzz is installed from crates.io when missing. It needs nightly-only
# rustc flags (-Zsanitizer=address); on a stable toolchain RUSTC_BOOTSTRAP=1
# unlocks them. Honours CARGO_TARGET_DIR; artifacts of a crash land in
# fuzz/artifacts/<target>/.
set -euo pipefail

cd "$(dirname "$0")/.."

runs=""
if [[ "${1:-}" == "--run" ]]; then
    runs="${2:?usage: $0 [--run N]}"
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-build: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

if ! rustc -vV | grep -q '^release: .*nightly'; then
    export RUSTC_BOOTSTRAP=1
fi

targets=(server_codec client_codec tx_key zk_topic_broker zk_legacy_count zk_broker_uri)

cargo fuzz build

if [[ -n "$runs" ]]; then
    for target in "${targets[@]}"; do
        mkdir -p "fuzz/corpus/$target"
        echo "fuzz-build: $target, $runs runs" >&2
        cargo fuzz run "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
            -runs="$runs" -print_final_stats=1
    done
fi
echo "fuzz-build: ok (${targets[*]})" >&2
