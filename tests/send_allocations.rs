//! What one send allocates in the producer's process. The broker runs as a
//! separate process, so only the producer's allocations are counted.
//!
//! The budget: nothing per message. The put is encoded straight into the
//! connection's write buffer, and its answer waits in the connection's
//! in-flight table, whose room is reused.

mod producer_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use metaq::Message;
use metaq_testkit::BrokerProcess;
use producer_support::*;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const TOPIC: &str = "alloc";
const SENDS: u64 = 20_000;

/// Sequential sends after a warm-up allocate nothing: no frame, no reply
/// slot, no topic or broker copies, no attempt list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_allocates_nothing() {
    init_tracing();
    let root = unique_root();
    let data = tempfile::tempdir().unwrap();
    let args = [
        "--id",
        "0",
        "--listen",
        "127.0.0.1:0",
        "--zk",
        &zk().connect_string(),
        "--root",
        &root,
        "--data-dir",
        data.path().to_str().unwrap(),
        "--topic",
        &format!("{TOPIC}:1"),
        "--flush",
        "os",
    ]
    .map(String::from)
    .to_vec();
    let mut broker = BrokerProcess::spawn(metaq_testkit::broker_binary(), &args).unwrap();
    let producer = producer(&root)
        .send_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    let payload = Bytes::from_static(&[7u8; 100]);
    let messages = |n| {
        (0..n)
            .map(|_| Message::new(TOPIC, payload.clone()))
            .collect::<Vec<_>>()
    };
    for message in messages(2_000) {
        producer.send(message).await.unwrap();
    }
    let batch = messages(SENDS);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for message in batch {
        producer.send(message).await.unwrap();
    }
    let per_send = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / SENDS as f64;
    eprintln!("allocations per send: {per_send:.2}");
    producer.close().await;
    broker.kill();
    // None per send; the margin is for background work (ZooKeeper pings,
    // buffers that grow once).
    assert!(per_send <= 0.05, "{per_send:.3} allocations per send");
}
