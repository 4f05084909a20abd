//! A topic's only broker leaves ZooKeeper for a moment (a graceful restart,
//! a session renewal): its route is empty meanwhile, and keyless sends wait
//! for it to fill again instead of failing. Keyed sends, and topics that
//! never had a broker, still fail promptly. Real ZooKeeper, development
//! brokers (a `metaq-broker` process for the restart).

mod producer_support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metaq::{Error, Message, Producer};
use metaq_testkit::BrokerProcess;
use producer_support::*;
use tokio::time::Instant;

const TOPIC: &str = "restarts";

/// Keyless sends at a steady rate (~1 every 2 ms) until stopped. Returns
/// how many succeeded and the failures' texts.
struct SteadySender {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SteadySender {
    fn start(producer: &Producer) -> SteadySender {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let (producer, stop, sent, failures) = (
                producer.clone(),
                stop.clone(),
                sent.clone(),
                failures.clone(),
            );
            tokio::spawn(async move {
                let mut i = 0u64;
                let mut in_flight = futures::stream::FuturesUnordered::new();
                let mut tick = tokio::time::interval(Duration::from_millis(2));
                use futures::StreamExt;
                loop {
                    tokio::select! {
                        _ = tick.tick(), if !stop.load(Ordering::Relaxed) => {
                            in_flight.push(producer.send(Message::new(TOPIC, format!("s{i}"))));
                            i += 1;
                        }
                        Some(result) = in_flight.next() => match result {
                            Ok(_) => { sent.fetch_add(1, Ordering::Relaxed); }
                            Err(e) => failures.lock().unwrap().push(e.to_string()),
                        },
                        else => break,
                    }
                }
            })
        };
        SteadySender {
            stop,
            sent,
            failures,
            task,
        }
    }

    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        let failures = self.failures.lock().unwrap().clone();
        (self.sent.load(Ordering::Relaxed), failures)
    }
}

fn broker_args(root: &str, port: u16, data: &std::path::Path) -> Vec<String> {
    let zk = zk().connect_string();
    let line = format!(
        "--id 0 --listen 127.0.0.1:{port} --zk {zk} --root {root} --data-dir {} --topic {TOPIC}:2 \
         --flush os --shutdown-grace-ms 200",
        data.display()
    );
    line.split(' ').map(String::from).collect()
}

/// A one-broker cluster restarted gracefully while messages flow (SIGTERM:
/// it leaves ZooKeeper first; started again on the same port and data a
/// second after it was told to stop, so the route is empty for over a
/// second). No send fails, and every acknowledged message is stored. The
/// send timeout is 4 s: a keyless send waits up to half of it (2 s) for the
/// route, leaving room for a loaded test machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_of_the_only_broker_fails_no_keyless_send() {
    init_tracing();
    let root = unique_root();
    let data = tempfile::tempdir().unwrap();
    let binary = metaq_testkit::broker_binary();
    let mut b0 = BrokerProcess::spawn(&binary, &broker_args(&root, 0, data.path())).unwrap();
    let port = b0.addr().port();
    let producer = producer(&root)
        .send_timeout(Duration::from_secs(4))
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();

    let sender = SteadySender::start(&producer);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = Instant::now();
    let status = tokio::task::block_in_place(|| b0.terminate()).unwrap();
    assert!(status.success(), "the broker's graceful stop: {status:?}");
    eventually(Duration::from_secs(5), "the route to empty", || async {
        producer.partitions(TOPIC).is_empty().then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1).saturating_sub(stopping.elapsed())).await;
    let b0 = BrokerProcess::spawn(&binary, &broker_args(&root, port, data.path())).unwrap();
    let at_restart = sender.sent.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (sent, failures) = sender.finish().await;
    assert!(
        failures.is_empty(),
        "{} sends failed, e.g. {:?}",
        failures.len(),
        failures.first()
    );
    assert!(sent > at_restart, "no send completed after the restart");
    producer.close().await;
    drop(b0);
    // Everything acknowledged is stored (the killed process flushed to the OS).
    let dump = std::process::Command::new(binary)
        .args(["dump", "--data-dir"])
        .arg(data.path())
        .args(["--topic", TOPIC])
        .output()
        .unwrap();
    let stored = String::from_utf8_lossy(&dump.stdout).lines().count() as u64;
    assert_eq!(stored, sent, "stored vs acknowledged");
}

/// The only broker's ZooKeeper session expires, three times: it registers
/// again in a new session, and between the two its nodes are gone. No
/// keyless send fails. (The test server's forced expiry can leave the route
/// empty for up to ~2 s while the broker's client notices; a 6 s send
/// timeout lets a send wait 3 s for it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_renewal_of_the_only_broker_fails_no_keyless_send() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 2)]).await;
    let producer = producer(&root)
        .send_timeout(Duration::from_secs(6))
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    let sender = SteadySender::start(&producer);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let session = b0.faults().zk_session().await.unwrap();
        zk().expire_session(&session).await;
        eventually(Duration::from_secs(15), "a new broker session", || async {
            let now = b0.faults().zk_session().await.ok()?;
            (now.id() != session.id()).then_some(())
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (sent, failures) = sender.finish().await;
    assert!(
        failures.is_empty(),
        "{} sends failed, e.g. {:?}",
        failures.len(),
        failures.first()
    );
    assert_eq!(bodies(&b0, TOPIC).len() as u64, sent);
    producer.close().await;
}

/// While the route is empty: a keyless send waits, and succeeds once the
/// broker is back; a keyed send fails at once; a send to a topic that never
/// had a broker fails at once too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_keyless_sends_to_a_served_topic_wait_for_an_empty_route() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let producer = producer(&root)
        .send_timeout(Duration::from_secs(4))
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    producer.send(Message::new(TOPIC, "before")).await.unwrap();
    b0.faults().unregister().await.unwrap();
    eventually(Duration::from_secs(10), "the route to empty", || async {
        producer.partitions(TOPIC).is_empty().then_some(())
    })
    .await;

    let waiting = tokio::spawn({
        let producer = producer.clone();
        async move { producer.send(Message::new(TOPIC, "keyless")).await }
    });
    let started = Instant::now();
    let keyed = producer
        .send(Message::new(TOPIC, "keyed").with_key("k"))
        .await
        .expect_err("a keyed send has no partition");
    assert!(matches!(keyed, Error::NoPartition { .. }), "{keyed:?}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let unserved = producer
        .send(Message::new("unserved", "x"))
        .await
        .expect_err("nobody serves it");
    assert!(
        matches!(unserved, Error::NoPartition { .. }),
        "{unserved:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the keyless send should still wait");
    b0.faults().register().await.unwrap();
    let sent = waiting
        .await
        .unwrap()
        .expect("sent once the broker is back");
    assert_eq!(sent.partition.broker_id, 0);
    assert_eq!(
        bodies(&b0, TOPIC),
        vec![b"before".to_vec(), b"keyless".to_vec()]
    );
    producer.close().await;
}
