//! Helpers shared by the producer's integration tests (`tests/producer_*.rs`):
//! brokers on the shared ZooKeeper, producers with short timeouts, broker
//! `stats`, and polling with deadlines.
//!
//! Every test uses its own [`unique_root`], so tests run in parallel.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use metaq::{Partition, ProducerBuilder};
use metaq_broker::FlushPolicy;
use metaq_testkit::{test_broker_config, RawClient, TestBroker, ZkServer};
use tempfile::TempDir;
use tokio::time::Instant;

pub use metaq_testkit::unique_root;

/// Logs to the test's output when `RUST_LOG` is set (e.g. `RUST_LOG=metaq=debug`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_test_writer()
        .try_init();
}

/// The ZooKeeper shared by every test of the binary.
pub fn zk() -> &'static ZkServer {
    ZkServer::shared()
}

/// A broker on `zk` under `root`. Flushes like the OS (no fsync per
/// answer): these tests are about the producer, not durability.
pub async fn broker_on(zk: &ZkServer, root: &str, id: u32, topics: &[(&str, u32)]) -> TestBroker {
    broker_with(zk, root, id, topics, |c| c).await
}

/// A broker on the shared ZooKeeper.
pub async fn broker(root: &str, id: u32, topics: &[(&str, u32)]) -> TestBroker {
    broker_on(zk(), root, id, topics).await
}

/// A broker whose configuration the test adjusts.
pub async fn broker_with(
    zk: &ZkServer,
    root: &str,
    id: u32,
    topics: &[(&str, u32)],
    adjust: impl FnOnce(metaq_broker::BrokerConfig) -> metaq_broker::BrokerConfig,
) -> TestBroker {
    let dir = TempDir::with_prefix("metaq-producer-test-").expect("temp dir");
    let config = test_broker_config(zk, root, id, dir.path(), topics).with_flush(FlushPolicy::Os);
    TestBroker::start_with(adjust(config), dir).await
}

/// A producer builder for `root` on the shared ZooKeeper, with timeouts
/// short enough for tests.
pub fn producer(root: &str) -> ProducerBuilder {
    producer_on(zk(), root)
}

/// A producer builder for `root` on `zk`.
pub fn producer_on(zk: &ZkServer, root: &str) -> ProducerBuilder {
    metaq::Producer::builder(zk.connect_string())
        .root(root)
        .connect_timeout(Duration::from_secs(5))
        .publish_timeout(Duration::from_secs(10))
}

/// Polls `check` every 20 ms until it returns `Some`, failing the test
/// with `what` after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the producer's route of `topic` has exactly `expected`.
pub async fn wait_partitions(producer: &metaq::Producer, topic: &str, expected: &[Partition]) {
    let what = format!("partitions of {topic} become {expected:?}");
    eventually(Duration::from_secs(10), &what, || async {
        (producer.partitions(topic) == expected).then_some(())
    })
    .await;
}

/// `n` partitions of broker `id`.
pub fn parts(id: u32, n: u32) -> Vec<Partition> {
    (0..n).map(|i| Partition::new(id, i)).collect()
}

/// The broker's `stats` summary as key → value.
pub async fn stats(addr: SocketAddr) -> HashMap<String, String> {
    let mut client = RawClient::connect(addr).await;
    let response = client
        .call(b"stats  1\r\n")
        .await
        .expect("an answer to stats");
    let body = String::from_utf8_lossy(&response.body).into_owned();
    body.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// One `stats` counter as a number.
pub async fn stat(addr: SocketAddr, key: &str) -> u64 {
    stats(addr)
        .await
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in stats"))
        .parse()
        .expect("a number")
}

/// Connections the broker has open besides the one asking for `stats`.
pub async fn other_connections(addr: SocketAddr) -> u64 {
    stat(addr, "curr_connections").await - 1
}

/// Bodies of `topic`'s records on `broker`, checking every checksum.
pub fn bodies(broker: &TestBroker, topic: &str) -> Vec<Vec<u8>> {
    broker
        .records(Some(topic))
        .into_iter()
        .map(|r| {
            assert!(r.checksum_valid, "bad checksum in {r:?}");
            r.body.to_vec()
        })
        .collect()
}

/// Record count per partition index of `topic` on `broker`.
pub fn per_partition(broker: &TestBroker, topic: &str) -> BTreeMap<u32, usize> {
    let mut counts = BTreeMap::new();
    for r in broker.records(Some(topic)) {
        *counts.entry(r.partition).or_default() += 1;
    }
    counts
}

/// Keys that the key-hash selector maps to a partition of broker `id`,
/// given the sorted partition list.
pub fn keys_for_broker(partitions: &[Partition], id: u32, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("key-{i}"))
        .filter(|k| {
            let p = partitions
                [metaq::producer::KeyHash::hash(k.as_bytes()) as usize % partitions.len()];
            p.broker_id == id
        })
        .take(n)
        .collect()
}

/// A runtime of the producer's own (one worker), so that its tasks can be
/// counted apart from the brokers' (which run on the test's runtime).
pub fn producer_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `future` on `handle` and waits for it here.
pub async fn on<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    future: impl Future<Output = T> + Send + 'static,
) -> T {
    handle.spawn(future).await.unwrap()
}

/// Waits (up to `limit`) until `runtime` has no task left.
pub async fn no_task_left(runtime: &tokio::runtime::Runtime, limit: Duration) {
    eventually(limit, "no task left on the producer's runtime", || async {
        (runtime.metrics().num_alive_tasks() == 0).then_some(())
    })
    .await;
}

/// Waits (up to `limit`) until the broker at `addr` counts no connection
/// but the one asking.
pub async fn no_connection_left(addr: SocketAddr, limit: Duration) {
    eventually(limit, "the broker sees no producer connection", || async {
        (other_connections(addr).await == 0).then_some(())
    })
    .await;
}
