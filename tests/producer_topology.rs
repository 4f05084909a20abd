//! The producer follows the cluster by itself: brokers joining, leaving and
//! moving while messages flow, and a forced expiry of its ZooKeeper session.
//! Real ZooKeeper, development brokers over TCP.

mod producer_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metaq::{Message, Partition, Producer, SendResult};
use producer_support::*;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const TOPIC: &str = "events";

/// What a background send loop saw: each send's start time and outcome.
#[derive(Default)]
struct Log {
    sends: Vec<(Instant, Result<SendResult, metaq::Error>)>,
}

/// Sends keyless messages one after another (a few in flight at once)
/// until `stop`, every `pause`.
fn send_loop(
    producer: Producer,
    prefix: &'static str,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Log>>, JoinHandle<()>) {
    let log = Arc::new(Mutex::new(Log::default()));
    let task_log = Arc::clone(&log);
    let task = tokio::spawn(async move {
        let mut i = 0u64;
        let mut pending = futures::stream::FuturesUnordered::new();
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let send = producer.send(Message::new(TOPIC, format!("{prefix}-{i}")));
            pending.push(async move { (started, send.await) });
            i += 1;
            // Keep at most 4 in flight.
            while pending.len() >= 4 {
                use futures::StreamExt;
                if let Some(done) = pending.next().await {
                    task_log.lock().unwrap().sends.push(done);
                }
            }
            tokio::time::sleep(pause).await;
        }
        use futures::StreamExt;
        while let Some(done) = pending.next().await {
            task_log.lock().unwrap().sends.push(done);
        }
    });
    (log, task)
}

fn assert_all_ok(log: &Log) {
    let failed: Vec<String> = log
        .sends
        .iter()
        .filter_map(|(_, r)| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} sends failed, first: {:?}",
        failed.len(),
        log.sends.len(),
        failed.first()
    );
}

/// Every acknowledged send is stored on the broker that acknowledged it,
/// and any record beyond those is a duplicate the producer counted: a retry
/// after an attempt that may have stored it (at-least-once; under load a
/// first attempt can time out, as once on a busy CI machine: 4 sends to a
/// broker that had just joined were stored there and again on the other).
fn assert_stored(producer: &Producer, log: &Log, brokers: &[(u32, &metaq_testkit::TestBroker)]) {
    let mut extra = 0;
    for &(id, broker) in brokers {
        let acked = log
            .sends
            .iter()
            .filter(|(_, r)| r.as_ref().is_ok_and(|s| s.partition.broker_id == id))
            .count();
        let stored = bodies(broker, TOPIC).len();
        assert!(
            stored >= acked,
            "broker {id}: {stored} stored, {acked} acknowledged"
        );
        extra += stored - acked;
    }
    let stats = producer.stats();
    assert!(
        extra as u64 <= stats.retries_after_maybe_sent,
        "{extra} records more than acknowledged, {stats:?}"
    );
}

/// A broker started while messages flow gets some within 1 s of its
/// ZooKeeper nodes appearing (the broker registers before `start` returns).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_joining_mid_stream_gets_traffic_within_a_second() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 3)]).await;
    let producer = producer(&root).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (log, task) = send_loop(
        producer.clone(),
        "join",
        Duration::from_millis(2),
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    let b1 = broker(&root, 1, &[(TOPIC, 2)]).await;
    let registered = Instant::now();
    let first_on_b1 = eventually(Duration::from_secs(10), "a message on broker 1", || {
        let log = &log;
        async move {
            log.lock()
                .unwrap()
                .sends
                .iter()
                .filter(|(_, r)| r.as_ref().is_ok_and(|s| s.partition.broker_id == 1))
                .map(|(t, _)| *t)
                .min()
        }
    })
    .await;
    let lag = first_on_b1.saturating_duration_since(registered);
    assert!(
        lag < Duration::from_secs(1),
        "broker 1 got its first message {lag:?} after registering"
    );
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    let log = std::mem::take(&mut *log.lock().unwrap());
    assert_all_ok(&log);
    assert_eq!(
        producer.partitions(TOPIC),
        [parts(0, 3), parts(1, 2)].concat()
    );
    assert_stored(&producer, &log, &[(0, &b0), (1, &b1)]);
    producer.close().await;
}

/// A broker that leaves ZooKeeper (and keeps serving) gets nothing once
/// its nodes are gone, apart from sends already in flight then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_broker_gets_nothing_after_its_nodes_are_gone() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 3)]).await;
    let b1 = broker(&root, 1, &[(TOPIC, 3)]).await;
    let producer = producer(&root).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();
    wait_partitions(&producer, TOPIC, &[parts(0, 3), parts(1, 3)].concat()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (log, task) = send_loop(
        producer.clone(),
        "leave",
        Duration::from_millis(2),
        stop.clone(),
    );
    eventually(Duration::from_secs(5), "traffic on broker 1", || async {
        (!b1.records(Some(TOPIC)).is_empty()).then_some(())
    })
    .await;

    b1.faults().unregister().await.unwrap();
    let gone = Instant::now();
    // The producer drops broker 1 promptly.
    wait_partitions(&producer, TOPIC, &parts(0, 3)).await;
    let dropped = Instant::now();
    assert!(
        dropped - gone < Duration::from_secs(2),
        "route kept broker 1 for {:?}",
        dropped - gone
    );
    // Sends in flight at that moment may still land on broker 1; let them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let settled = b1.records(Some(TOPIC)).len();
    let before = log.lock().unwrap().sends.len();
    eventually(Duration::from_secs(10), "200 more sends", || async {
        (log.lock().unwrap().sends.len() >= before + 200).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    assert_eq!(
        b1.records(Some(TOPIC)).len(),
        settled,
        "broker 1 got messages after leaving"
    );
    let log = std::mem::take(&mut *log.lock().unwrap());
    assert_all_ok(&log);
    let late_on_b1: Vec<Partition> = log
        .sends
        .iter()
        .filter(|(t, _)| *t >= dropped)
        .filter_map(|(_, r)| r.as_ref().ok())
        .map(|s| s.partition)
        .filter(|p| p.broker_id == 1)
        .collect();
    assert!(
        late_on_b1.is_empty(),
        "sent to broker 1 after it left: {late_on_b1:?}"
    );
    assert_stored(&producer, &log, &[(0, &b0), (1, &b1)]);
    producer.close().await;
}

/// A broker that moves to a new address (its `ids/<id>/master` changes)
/// gets its traffic at the new address; keyless sends caught by the move
/// are retried and succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_change_moves_traffic_to_the_new_address() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 3)]).await;
    let b1 = broker(&root, 1, &[(TOPIC, 3)]).await;
    let old_uri = b1.uri();
    let producer = producer(&root).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();
    wait_partitions(&producer, TOPIC, &[parts(0, 3), parts(1, 3)].concat()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (log, task) = send_loop(
        producer.clone(),
        "move",
        Duration::from_millis(2),
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;

    let new_addr = b1
        .faults()
        .move_to("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let moved = Instant::now();
    let new_uri = b1.uri();
    assert_ne!(new_uri, old_uri);
    assert_eq!(new_uri.port, new_addr.port());
    eventually(
        Duration::from_secs(5),
        "a message at the new address",
        || {
            let log = &log;
            let new_uri = &new_uri;
            async move {
                log.lock()
                    .unwrap()
                    .sends
                    .iter()
                    .any(|(_, r)| r.as_ref().is_ok_and(|s| s.broker == *new_uri))
                    .then_some(())
            }
        },
    )
    .await;
    let before = log.lock().unwrap().sends.len();
    eventually(Duration::from_secs(10), "100 more sends", || async {
        (log.lock().unwrap().sends.len() >= before + 100).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();

    let log = std::mem::take(&mut *log.lock().unwrap());
    assert_all_ok(&log);
    // Well after the move, nothing went to the old address.
    let late_old = log
        .sends
        .iter()
        .filter(|(t, _)| *t > moved + Duration::from_secs(2))
        .filter(|(_, r)| r.as_ref().is_ok_and(|s| s.broker == old_uri))
        .count();
    assert_eq!(late_old, 0);
    let on_new = log
        .sends
        .iter()
        .filter(|(_, r)| r.as_ref().is_ok_and(|s| s.broker == new_uri))
        .count();
    assert!(on_new > 10, "only {on_new} at the new address");
    // Retried sends caught by the cut may be stored twice (at least once), never lost.
    assert_stored(&producer, &log, &[(0, &b0), (1, &b1)]);
    producer.close().await;
}

/// The producer's ZooKeeper session is expired by force: it opens a new one
/// by itself and keeps discovering (a broker added afterwards gets traffic),
/// and sends keep succeeding throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_zookeeper_session_recovers_by_itself() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 2)]).await;
    let producer = producer(&root)
        .zk_session_timeout(Duration::from_secs(4))
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (log, task) = send_loop(
        producer.clone(),
        "expiry",
        Duration::from_millis(5),
        stop.clone(),
    );

    let session = producer.zk_session_info().expect("a session");
    zk().expire_session(&session).await;
    let renewed = eventually(Duration::from_secs(15), "a new ZooKeeper session", || {
        let producer = &producer;
        let old = session.id();
        async move { producer.zk_session_info().filter(|s| s.id() != old) }
    })
    .await;
    assert_ne!(renewed.id(), session.id());

    let b1 = broker(&root, 1, &[(TOPIC, 2)]).await;
    eventually(
        Duration::from_secs(10),
        "traffic on broker 1 after the expiry",
        || async { (!b1.records(Some(TOPIC)).is_empty()).then_some(()) },
    )
    .await;
    assert_eq!(
        producer.partitions(TOPIC),
        [parts(0, 2), parts(1, 2)].concat()
    );
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    let log = std::mem::take(&mut *log.lock().unwrap());
    assert_all_ok(&log);
    assert_stored(&producer, &log, &[(0, &b0), (1, &b1)]);
    producer.close().await;
}

/// Malformed data written into ZooKeeper mid-stream (bad JSON for one
/// broker, then for both, then a bad address) never fails a send and
/// never empties the route the producer sends by.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_zookeeper_data_never_stops_sends() {
    use metaq::discovery::ZkPaths;
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 2)]).await;
    let b1 = broker(&root, 1, &[(TOPIC, 2)]).await;
    let producer = producer(&root).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();
    wait_partitions(&producer, TOPIC, &[parts(0, 2), parts(1, 2)].concat()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (log, task) = send_loop(
        producer.clone(),
        "bad",
        Duration::from_millis(2),
        stop.clone(),
    );

    let client = zk().client().await;
    let paths = ZkPaths::new(&root);
    let settle = || tokio::time::sleep(Duration::from_millis(500));
    client
        .set_data(&paths.topic_pub_broker(TOPIC, 1), b"{not json", None)
        .await
        .unwrap();
    settle().await;
    assert!(!producer.partitions(TOPIC).is_empty());
    client
        .set_data(
            &paths.topic_pub_broker(TOPIC, 0),
            br#"{"numParts":-5,"broker":"0-m"}"#,
            None,
        )
        .await
        .unwrap();
    settle().await;
    assert!(
        !producer.partitions(TOPIC).is_empty(),
        "the route was emptied"
    );
    client
        .set_data(&paths.broker_master(0), b"not an address", None)
        .await
        .unwrap();
    settle().await;
    assert!(
        !producer.partitions(TOPIC).is_empty(),
        "the route was emptied"
    );

    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();
    let log = std::mem::take(&mut *log.lock().unwrap());
    assert_all_ok(&log);
    assert!(log.sends.len() > 100, "{} sends", log.sends.len());
    assert_stored(&producer, &log, &[(0, &b0), (1, &b1)]);
    producer.close().await;
}
