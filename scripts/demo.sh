#!/usr/bin/env bash
# The main job: a local MetaQ cluster (one ZooKeeper, two development
# brokers) and a look at how the brokers registered. Everything it starts is
# stopped, by pid, when it exits.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_zookeeper

work=$(mktemp -d -t metaq-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

echo "==> building"
cargo build --quiet --release --workspace --bins --example show_registration --example quickstart

zk_port=$(free_port)
echo "==> starting ZooKeeper on 127.0.0.1:$zk_port"
start_zookeeper "$work/zk" "$zk_port"
pids+=("$ZK_PID")

for id in 0 1; do
  target/release/metaq-broker --id "$id" --listen 127.0.0.1:0 --zk "127.0.0.1:$zk_port" \
    --data-dir "$work/broker$id" --topic demo:3 --topic "audit:1" --shutdown-grace-ms 0 \
    >"$work/broker$id.out" 2>"$work/broker$id.log" &
  pids+=("$!")
done
for id in 0 1; do
  for _ in $(seq 1 100); do grep -q '^ready' "$work/broker$id.out" && break; sleep 0.1; done
  grep '^ready' "$work/broker$id.out" || { cat "$work/broker$id.log"; exit 1; }
done

echo "==> registration under /meta"
target/release/examples/show_registration "127.0.0.1:$zk_port" /meta
echo "==> producing through the cluster (examples/quickstart.rs)"
METAQ_ZK="127.0.0.1:$zk_port" METAQ_ROOT=/meta METAQ_TOPIC=demo target/release/examples/quickstart
echo "==> the routes of topic demo, as metaq sees them"
target/release/metaq routes --zk "127.0.0.1:$zk_port" --topic demo
echo "==> 1000 more with the CLI"
target/release/metaq produce --zk "127.0.0.1:$zk_port" --topic demo --count 1000 --size 100
echo "==> what broker 0 stored (first 3 records)"
target/release/metaq-broker dump --data-dir "$work/broker0" --topic demo | head -3
echo "==> stopping"
