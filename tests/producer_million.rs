//! A million sends at the in-flight cap keep the producer's memory flat,
//! and every acknowledged message is on disk. Real ZooKeeper; the sends go
//! to `metaq-broker` processes, and this binary holds this one test, so
//! that this process's memory is the producer's.
//!
//! `METAQ_VOLUME_SENDS=10000000` runs the long variant (default 1,000,000):
//! `METAQ_VOLUME_SENDS=10000000 cargo test --release --all-features --test
//! producer_million -- --nocapture`.

mod producer_support;

use std::path::Path;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use metaq::Message;
use metaq_broker::store::read_records;
use metaq_testkit::BrokerProcess;
use producer_support::*;
use tokio::time::Instant;

const TOPIC: &str = "million";

/// The resident set of this process, from `/proc/self/status`, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

fn broker_process(root: &str, id: u32, data: &Path) -> BrokerProcess {
    let args = [
        "--id",
        &id.to_string(),
        "--listen",
        "127.0.0.1:0",
        "--zk",
        &zk().connect_string(),
        "--root",
        root,
        "--data-dir",
        data.to_str().expect("a UTF-8 temp path"),
        "--topic",
        &format!("{TOPIC}:2"),
        "--flush",
        "os",
    ]
    .map(String::from);
    BrokerProcess::spawn(metaq_testkit::broker_binary(), &args).expect("metaq-broker starts")
}

/// Payload of send `seq`: its number in 8 bytes, padded to 100 bytes.
fn payload(seq: u64) -> Vec<u8> {
    let mut body = vec![b'.'; 100];
    body[..8].copy_from_slice(&seq.to_be_bytes());
    body
}

/// A million sends (10 million with `METAQ_VOLUME_SENDS`) through
/// `send_all` batches at the producer's in-flight cap: the resident set
/// after the first tenth and at the end differ by less than 32 MiB (a leak
/// of 32 bytes a send would show), and the brokers' files hold every
/// acknowledged payload, as many records as acknowledgements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_sends_keep_memory_flat_and_all_are_stored() {
    init_tracing();
    let total: u64 = std::env::var("METAQ_VOLUME_SENDS")
        .ok()
        .map(|n| n.parse().expect("METAQ_VOLUME_SENDS is a number"))
        .unwrap_or(1_000_000);
    let root = unique_root();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut brokers = [
        broker_process(&root, 0, dirs[0].path()),
        broker_process(&root, 1, dirs[1].path()),
    ];
    let producer = producer(&root)
        .send_timeout(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    wait_partitions(&producer, TOPIC, &[parts(0, 2), parts(1, 2)].concat()).await;

    // Two batches in flight of half the cap each keep the cap's worth of
    // sends waiting, as a `FuturesUnordered` of that many would.
    const BATCH: u64 = 5_000;
    let started = Instant::now();
    let mut rss_warm = 0;
    let mut acked = 0u64;
    let mut batches = FuturesUnordered::new();
    let mut next = 0u64;
    while next < total || !batches.is_empty() {
        while next < total && batches.len() < 2 {
            let end = (next + BATCH).min(total);
            let messages = (next..end).map(|seq| Message::new(TOPIC, payload(seq)));
            batches.push(producer.send_all(messages));
            next = end;
        }
        let results = batches.next().await.expect("a batch in flight");
        for result in results {
            result.unwrap_or_else(|e| panic!("send failed: {e}"));
            acked += 1;
        }
        if rss_warm == 0 && acked >= total / 10 {
            rss_warm = rss_kib();
        }
    }
    let elapsed = started.elapsed();
    let rss_end = rss_kib();
    let stats = producer.stats();
    producer.close().await;
    eprintln!(
        "{acked} sends in {elapsed:?} ({:.0} msgs/s); RSS after {} sends {rss_warm} KiB, \
         at the end {rss_end} KiB; {stats:?}",
        acked as f64 / elapsed.as_secs_f64(),
        total / 10,
    );
    assert_eq!(acked, total);
    assert_eq!(stats.sent, total);
    assert!(
        rss_end < rss_warm + 32 * 1024,
        "RSS grew from {rss_warm} KiB to {rss_end} KiB"
    );

    for broker in &mut brokers {
        assert!(broker.terminate().unwrap().success());
    }
    let mut seen = vec![0u8; total as usize];
    let mut records = 0u64;
    for dir in &dirs {
        for record in read_records(dir.path(), Some(TOPIC)).unwrap() {
            let seq = u64::from_be_bytes(record.body[..8].try_into().unwrap());
            seen[seq as usize] = seen[seq as usize].saturating_add(1);
            records += 1;
        }
    }
    let missing = seen.iter().filter(|&&n| n == 0).count();
    assert_eq!(missing, 0, "acknowledged payloads missing on disk");
    // No retries on healthy brokers, so no duplicates either.
    assert_eq!(stats.retries, 0, "{stats:?}");
    assert_eq!(records, acked, "records on disk");
}
