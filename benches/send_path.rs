//! The whole `Producer::send` path, public API only: a producer found the
//! null server through a real ZooKeeper and sends 100-byte messages over
//! loopback with up to 1,000 in flight. The null server runs on its own
//! thread, so the time measured is the producer's (plus the loopback).
//!
//! `cargo bench --bench send_path` (starts ZooKeeper through the testkit).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::stream::{FuturesUnordered, StreamExt};
use metaq::{Message, Producer};
use metaq_broker::null::NullServer;
use metaq_broker::TopicConfig;
use metaq_testkit::{unique_root, ZkServer};

const TOPIC: &str = "bench";
const WINDOW: usize = 1_000;
const SIZE: usize = 100;

/// A null server on a thread of its own; dropping this stops it.
struct NullServerThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NullServerThread {
    fn start(zk: &str, root: &str) -> NullServerThread {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let builder = NullServer::builder(zk)
            .root(root)
            .topic(TopicConfig::new(TOPIC, 4));
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the null server");
            runtime.block_on(async move {
                let server = builder.start().await.expect("the null server starts");
                let _ = ready_tx.send(());
                let _ = stopped.await;
                server.stop().await;
            });
        });
        ready_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the null server is ready");
        NullServerThread {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for NullServerThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sends `count` messages with at most `WINDOW` in flight; the time taken.
async fn send_window(producer: &Producer, payload: &Bytes, count: u64) -> Duration {
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut issued = 0;
    while issued < count || !in_flight.is_empty() {
        while issued < count && in_flight.len() < WINDOW {
            in_flight.push(producer.send(Message::new(TOPIC, payload.clone())));
            issued += 1;
        }
        if let Some(outcome) = in_flight.next().await {
            outcome.expect("the null server answers every put");
        }
    }
    started.elapsed()
}

fn send_path(c: &mut Criterion) {
    let zk = ZkServer::shared().connect_string();
    let root = unique_root();
    let _server = NullServerThread::start(&zk, &root);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the producer");
    let producer = runtime.block_on(async {
        let producer = Producer::builder(&zk)
            .root(&root)
            .build()
            .await
            .expect("the producer starts");
        producer
            .publish(TOPIC)
            .await
            .expect("the null server serves the topic");
        producer
    });
    let payload = Bytes::from(vec![b'x'; SIZE]);
    let mut group = c.benchmark_group("send_path");
    group.throughput(Throughput::Elements(1));
    group.bench_function("null_server_100B_window_1000", |b| {
        b.iter_custom(|iters| runtime.block_on(send_window(&producer, &payload, iters)))
    });
    group.finish();
    runtime.block_on(producer.close());
}

criterion_group!(benches, send_path);
criterion_main!(benches);
