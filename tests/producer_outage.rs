//! ZooKeeper goes away for a while: sends go on with the last routes, and
//! discovery resumes when it is back. Uses a private ZooKeeper server that
//! the test stops and restarts.

mod producer_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metaq::{Delivery, Message};
use metaq_testkit::ZkServer;
use producer_support::*;
use tokio::time::Instant;

const TOPIC: &str = "outage";
const FRESH: &str = "fresh";

/// ZooKeeper stopped for 10 s while messages flow: no send fails. A topic
/// first used during the outage fails within the send timeout (not after
/// the longer publish wait). After the restart discovery goes on: the
/// fresh topic is found and a broker started afterwards gets traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_outage_does_not_stop_sends() {
    init_tracing();
    let zk = ZkServer::start().expect("a private ZooKeeper");
    let root = unique_root();
    // Sessions long enough to survive the outage (the server restores them).
    let long = |c: metaq_broker::BrokerConfig| c.with_zk_session_timeout(Duration::from_secs(40));
    let b0 = broker_with(&zk, &root, 0, &[(TOPIC, 2), (FRESH, 1)], long).await;
    let b1 = broker_with(&zk, &root, 1, &[(TOPIC, 2)], long).await;
    let send_timeout = Duration::from_secs(3);
    let producer = producer_on(&zk, &root)
        .zk_session_timeout(Duration::from_secs(40))
        .send_timeout(send_timeout)
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    wait_partitions(&producer, TOPIC, &[parts(0, 2), parts(1, 2)].concat()).await;

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let sent = Arc::new(AtomicU64::new(0));
    let task = {
        let (producer, stop, failures, sent) = (
            producer.clone(),
            stop.clone(),
            failures.clone(),
            sent.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match producer.send(Message::new(TOPIC, format!("o{i}"))).await {
                    Ok(_) => {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.lock().unwrap().push(e.to_string()),
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    tokio::task::block_in_place(|| zk.stop()).unwrap();
    let down = Instant::now();
    let at_stop = sent.load(Ordering::Relaxed);
    // A topic never used before cannot be listed now: its send fails in time.
    let started = Instant::now();
    let error = producer
        .send(Message::new(FRESH, "during the outage"))
        .await
        .expect_err("ZooKeeper is down");
    assert_eq!(error.delivery(), Some(Delivery::NotSent), "{error:?}");
    assert!(
        started.elapsed() <= send_timeout + Duration::from_millis(500),
        "a send took {:?}: {error}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(down.elapsed())).await;
    let during = sent.load(Ordering::Relaxed) - at_stop;
    assert!(during > 100, "only {during} sends during the outage");
    tokio::task::block_in_place(|| zk.restart()).unwrap();

    // Discovery resumes: the fresh topic is listed, a new broker is found.
    let fresh = eventually(Duration::from_secs(20), "a send to the fresh topic", || {
        let producer = &producer;
        async move { producer.send(Message::new(FRESH, "after")).await.ok() }
    })
    .await;
    assert_eq!(fresh.partition.broker_id, 0);
    let b2 = broker_with(&zk, &root, 2, &[(TOPIC, 2)], long).await;
    eventually(
        Duration::from_secs(20),
        "traffic on the broker started after the outage",
        || async { (!b2.records(Some(TOPIC)).is_empty()).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} sends failed: {:?}",
        failures.len(),
        failures.first()
    );
    let total = sent.load(Ordering::Relaxed) as usize;
    let stored: usize = [&b0, &b1, &b2].iter().map(|b| bodies(b, TOPIC).len()).sum();
    assert_eq!(stored, total);
    producer.close().await;
    for b in [b0, b1, b2] {
        b.shutdown().await;
    }
}
