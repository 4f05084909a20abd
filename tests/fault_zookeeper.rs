//! ZooKeeper misbehaving while messages flow: a server that hangs (SIGSTOP)
//! and is then killed and restarted on its data dir, a server down for
//! longer than the producer's session timeout, and members of a 3-server
//! ensemble killed and restarted one after another. In every case no send
//! fails or hangs, every acknowledged message is stored by the broker its
//! answer named, and discovery goes on afterwards (a broker registered
//! after the fault gets traffic).
//!
//! Each test has ZooKeeper servers of its own (real JVMs, killed by pid on
//! drop, also when the test panics) and in-process development brokers;
//! traffic is paced to at most 500 msgs/s.

mod producer_support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use metaq::{Message, Producer, SendResult};
use metaq_broker::{BrokerConfig, FlushPolicy, TopicConfig};
use metaq_testkit::{TestBroker, ZkEnsemble, ZkServer};
use producer_support::*;
use tempfile::TempDir;
use tokio::task::{block_in_place, JoinHandle};
use tokio::time::{sleep, Instant};

/// Sends kept in flight by [`Traffic`]: a window, as a real application
/// pipelines them.
const WINDOW: usize = 16;

/// Pause between two sends of [`Traffic`] (at most 500 msgs/s), so that a
/// test of tens of seconds sends thousands of messages, not millions, on a
/// 2-core machine.
const PAUSE: Duration = Duration::from_millis(2);

/// Time a send may take before it counts as hung: the producer's default
/// 3 s send timeout, plus room for a loaded machine.
const HANG_BOUND: Duration = Duration::from_secs(6);

/// ZooKeeper session of brokers that must outlive every fault (the server
/// restores sessions from its data dir and restarts their timers).
const LONG_SESSION: Duration = Duration::from_secs(40);

/// How long the server stays frozen in the SIGSTOP test: longer than the
/// clients' ping and connect timeouts, so they give up on the connection.
const FREEZE: Duration = Duration::from_secs(8);

/// Bound for conditions that need ZooKeeper to come back or to elect a
/// leader (JVM start-up on a loaded 2-core machine): it detects hangs.
const RECOVERY: Duration = Duration::from_secs(30);

/// One send's message and outcome; a failure is described with what the
/// error says became of the message, a hung send as such.
struct Sent {
    topic: &'static str,
    body: String,
    result: Result<SendResult, String>,
}

/// Keyless sends, round-robin over `topics`, [`WINDOW`] in flight, until
/// [`finish`](Self::finish).
struct Traffic {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    task: JoinHandle<Vec<Sent>>,
}

impl Traffic {
    fn start(producer: &Producer, topics: &'static [&'static str]) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (producer, stop, acked) = (producer.clone(), stop.clone(), acked.clone());
            async move {
                let mut log = Vec::new();
                let mut pending = FuturesUnordered::new();
                let mut record = |sent: Sent| {
                    if sent.result.is_ok() {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    log.push(sent);
                };
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let topic = topics[i % topics.len()];
                    let body = format!("{topic}-{i}");
                    let send = producer.send(Message::new(topic, body.clone()));
                    pending.push(async move {
                        let result = match tokio::time::timeout(HANG_BOUND, send).await {
                            Ok(Ok(sent)) => Ok(sent),
                            Ok(Err(e)) => Err(format!("{e} ({:?})", e.delivery())),
                            Err(_) => Err(format!("no outcome within {HANG_BOUND:?}")),
                        };
                        Sent {
                            topic,
                            body,
                            result,
                        }
                    });
                    i += 1;
                    while pending.len() >= WINDOW {
                        if let Some(sent) = pending.next().await {
                            record(sent);
                        }
                    }
                    sleep(PAUSE).await;
                }
                while let Some(sent) = pending.next().await {
                    record(sent);
                }
                log
            }
        });
        Traffic { stop, acked, task }
    }

    /// Sends acknowledged so far.
    fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until `n` more sends have been acknowledged (progress, not
    /// speed: the bound only detects a hang).
    async fn wait_for_more(&self, n: u64, what: &str) {
        let target = self.acked() + n;
        let what = format!("{n} more acknowledged sends {what}");
        eventually(RECOVERY, &what, || async {
            (self.acked() >= target).then_some(())
        })
        .await;
    }

    /// Stops sending and returns every send, once all have an outcome.
    async fn finish(self) -> Vec<Sent> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the send loop panicked")
    }
}

/// No send failed, and every acknowledged message is on disk at the broker
/// its answer named; nothing else is stored (a retried send may be stored
/// twice, at-least-once, but only messages that were sent).
fn assert_all_acked_and_stored(test: &str, sent: &[Sent], brokers: &[&TestBroker]) {
    let failed: Vec<&String> = sent
        .iter()
        .filter_map(|s| s.result.as_ref().err())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} sends failed; first: {:?}",
        failed.len(),
        sent.len(),
        failed.first()
    );
    let topics: HashSet<&str> = sent.iter().map(|s| s.topic).collect();
    let mut stored: HashMap<(u32, &str), HashSet<Vec<u8>>> = HashMap::new();
    let mut records = 0;
    for broker in brokers {
        for topic in &topics {
            let bodies = bodies(broker, topic);
            records += bodies.len();
            stored
                .entry((broker.config().id, topic))
                .or_default()
                .extend(bodies);
        }
    }
    let retried = sent
        .iter()
        .filter(|s| s.result.as_ref().is_ok_and(|r| r.attempts > 1))
        .count();
    eprintln!(
        "{test}: {} sends, all acknowledged ({retried} after a retry); {records} records stored",
        sent.len()
    );
    let missing: Vec<String> = sent
        .iter()
        .filter_map(|s| {
            let at = s.result.as_ref().ok()?.partition.broker_id;
            let here = stored
                .get(&(at, s.topic))
                .is_some_and(|bodies| bodies.contains(s.body.as_bytes()));
            (!here).then(|| format!("{} (acknowledged by broker {at})", s.body))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages are not stored; first: {:?}",
        missing.len(),
        sent.len(),
        missing.first()
    );
    let sent_bodies: HashSet<&[u8]> = sent.iter().map(|s| s.body.as_bytes()).collect();
    let unknown: Vec<String> = stored
        .values()
        .flatten()
        .filter(|body| !sent_bodies.contains(body.as_slice()))
        .map(|body| String::from_utf8_lossy(body).into_owned())
        .collect();
    assert!(unknown.is_empty(), "stored but never sent: {unknown:?}");
}

/// Waits until `broker` has stored something of `topic`.
async fn wait_traffic(broker: &TestBroker, topic: &str) {
    let what = format!("traffic of {topic} on broker {}", broker.config().id);
    eventually(RECOVERY, &what, || async {
        (!broker.records(Some(topic)).is_empty()).then_some(())
    })
    .await;
}

/// Brokers sessions that outlive the faults.
fn long_session(config: BrokerConfig) -> BrokerConfig {
    config.with_zk_session_timeout(LONG_SESSION)
}

/// A ZooKeeper server frozen with SIGSTOP for 8 s (clients time out on a
/// connection that stays open), then killed with SIGKILL and started again
/// on its data dir and port. No send fails, sends keep being acknowledged
/// until the end of the freeze, the producer keeps its session (restored by
/// the server from its data dir), and a broker registered after the restart
/// gets traffic beside the two that were there.
///
/// The producer's 15 s session makes its ZooKeeper client give up the
/// frozen connection after 6 s (2/5 of the session) and try to reconnect
/// to a server that accepts connections and answers nothing, while the
/// session itself (given up by the client only after 21 s without an
/// answer) survives the freeze and the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_then_killed_zookeeper_fails_no_send() {
    const TOPIC: &str = "frozen";
    const PRODUCER_SESSION: Duration = Duration::from_secs(15);
    init_tracing();
    let zk = block_in_place(ZkServer::start).unwrap_or_else(|e| panic!("{e}"));
    let root = unique_root();
    let b0 = broker_with(&zk, &root, 0, &[(TOPIC, 2)], long_session).await;
    let b1 = broker_with(&zk, &root, 1, &[(TOPIC, 2)], long_session).await;
    let producer = producer_on(&zk, &root)
        .zk_session_timeout(PRODUCER_SESSION)
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    wait_partitions(&producer, TOPIC, &[parts(0, 2), parts(1, 2)].concat()).await;
    let traffic = Traffic::start(&producer, &[TOPIC]);
    traffic.wait_for_more(100, "before the freeze").await;
    let session = producer.zk_session_info().expect("a session");

    block_in_place(|| zk.freeze()).unwrap();
    let at_freeze = traffic.acked();
    sleep(FREEZE - Duration::from_secs(1)).await;
    let near_end = traffic.acked();
    sleep(Duration::from_secs(1)).await;
    let at_kill = traffic.acked();
    // Sends went on all along, not just until the clients noticed.
    assert!(near_end > at_freeze, "no send acknowledged while frozen");
    assert!(
        at_kill > near_end,
        "no send acknowledged in the last second of the freeze"
    );
    // `restart` SIGKILLs the frozen JVM and starts one on the same data dir.
    block_in_place(|| zk.restart()).unwrap_or_else(|e| panic!("{e}"));

    let b2 = broker_with(&zk, &root, 2, &[(TOPIC, 2)], long_session).await;
    wait_traffic(&b2, TOPIC).await;
    // The brokers' sessions (and nodes) were restored with the data dir.
    wait_partitions(
        &producer,
        TOPIC,
        &[parts(0, 2), parts(1, 2), parts(2, 2)].concat(),
    )
    .await;
    traffic.wait_for_more(200, "after the restart").await;
    let sent = traffic.finish().await;
    // The session outlived the fault: no needless renewal.
    assert_eq!(
        producer.zk_session_info().map(|s| s.id()),
        Some(session.id()),
        "the producer's session changed; ZooKeeper log:\n{}",
        zk.log_tail()
    );
    assert_all_acked_and_stored("frozen", &sent, &[&b0, &b1, &b2]);
    producer.close().await;
    for b in [b0, b1, b2] {
        b.shutdown().await;
    }
}

/// ZooKeeper stopped until the producer's 4 s session is given up (the
/// brokers' last 40 s): sends go on by the last routes with no session at
/// all and none fails. When ZooKeeper is back the producer opens a new
/// session and lists every topic again: a broker that registers only then
/// gets traffic of both topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_down_past_the_session_timeout_renews_the_session() {
    const TOPICS: &[&str] = &["lapsed-a", "lapsed-b"];
    const PRODUCER_SESSION: Duration = Duration::from_secs(4);
    init_tracing();
    let zk = block_in_place(ZkServer::start).unwrap_or_else(|e| panic!("{e}"));
    let root = unique_root();
    let topics: Vec<(&str, u32)> = TOPICS.iter().map(|t| (*t, 2)).collect();
    let b0 = broker_with(&zk, &root, 0, &topics, long_session).await;
    let b1 = broker_with(&zk, &root, 1, &topics, long_session).await;
    let producer = producer_on(&zk, &root)
        .zk_session_timeout(PRODUCER_SESSION)
        .build()
        .await
        .unwrap();
    for topic in TOPICS {
        producer.publish(topic).await.unwrap();
        wait_partitions(&producer, topic, &[parts(0, 2), parts(1, 2)].concat()).await;
    }
    let traffic = Traffic::start(&producer, TOPICS);
    traffic.wait_for_more(100, "before the outage").await;
    let session = producer.zk_session_info().expect("a session");

    block_in_place(|| zk.stop()).unwrap();
    let down = Instant::now();
    // The client gives the session up by itself after its timeout without
    // a word from the server; the producer then tries to open a new one.
    eventually(RECOVERY, "the producer gives up its session", || async {
        producer.zk_session_info().is_none().then_some(())
    })
    .await;
    assert!(
        down.elapsed() >= PRODUCER_SESSION,
        "session given up after {:?}, before its timeout",
        down.elapsed()
    );
    traffic
        .wait_for_more(100, "with no ZooKeeper session")
        .await;
    for topic in TOPICS {
        assert_eq!(
            producer.partitions(topic),
            [parts(0, 2), parts(1, 2)].concat(),
            "route of {topic} changed while ZooKeeper was down"
        );
    }
    block_in_place(|| zk.restart()).unwrap_or_else(|e| panic!("{e}"));

    let renewed = eventually(RECOVERY, "a new ZooKeeper session", || async {
        producer
            .zk_session_info()
            .filter(|s| s.id() != session.id())
    })
    .await;
    let b2 = broker_with(&zk, &root, 2, &topics, long_session).await;
    for topic in TOPICS {
        wait_traffic(&b2, topic).await;
        wait_partitions(
            &producer,
            topic,
            &[parts(0, 2), parts(1, 2), parts(2, 2)].concat(),
        )
        .await;
    }
    traffic.wait_for_more(200, "after the new session").await;
    let sent = traffic.finish().await;
    assert_eq!(
        producer.zk_session_info().map(|s| s.id()),
        Some(renewed.id()),
        "the new session did not last"
    );
    assert_all_acked_and_stored("lapsed", &sent, &[&b0, &b1, &b2]);
    producer.close().await;
    for b in [b0, b1, b2] {
        b.shutdown().await;
    }
}

/// A broker on every member of `ensemble`, with a session that outlives
/// an election and time to connect during one.
async fn ensemble_broker(
    ensemble: &ZkEnsemble,
    root: &str,
    id: u32,
    topics: &[(&str, u32)],
) -> TestBroker {
    let dir = TempDir::with_prefix("metaq-fault-zk-").expect("temp dir");
    let mut config = BrokerConfig::new(id, ensemble.connect_string(), dir.path())
        .with_listen(([127, 0, 0, 1], 0).into())
        .with_root(root)
        .with_flush(FlushPolicy::Os)
        .with_zk_session_timeout(Duration::from_secs(20))
        .with_zk_connect_timeout(RECOVERY);
    for (topic, partitions) in topics {
        config = config.with_topic(TopicConfig::new(*topic, *partitions));
    }
    TestBroker::start_with(config, dir).await
}

/// The ensemble's leader, once one is elected.
async fn wait_leader(ensemble: &ZkEnsemble, besides: Option<usize>) -> usize {
    eventually(RECOVERY, "an elected leader", || async {
        block_in_place(|| ensemble.leader()).filter(|&l| Some(l) != besides)
    })
    .await
}

/// A 3-server ensemble: the leader is killed (a broker registering then
/// gets traffic), brought back, and the new leader is killed (another
/// broker registering then gets traffic), then brought back too. The
/// producer and the brokers know all three members and move between them;
/// no send fails, the producer's session survives both elections, and
/// a broker leaving at the end is dropped from the route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensemble_members_dying_fail_no_send() {
    const TOPIC: &str = "ensemble";
    init_tracing();
    let ensemble = block_in_place(ZkEnsemble::start).unwrap_or_else(|e| panic!("{e}"));
    let root = unique_root();
    let b0 = ensemble_broker(&ensemble, &root, 0, &[(TOPIC, 2)]).await;
    let b1 = ensemble_broker(&ensemble, &root, 1, &[(TOPIC, 2)]).await;
    let producer = Producer::builder(ensemble.connect_string())
        .root(&root)
        .zk_session_timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .publish_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    wait_partitions(&producer, TOPIC, &[parts(0, 2), parts(1, 2)].concat()).await;
    let traffic = Traffic::start(&producer, &[TOPIC]);
    traffic.wait_for_more(100, "before the first kill").await;
    let session = producer.zk_session_info().expect("a session");

    let first = wait_leader(&ensemble, None).await;
    block_in_place(|| ensemble.stop(first));
    let b2 = ensemble_broker(&ensemble, &root, 2, &[(TOPIC, 2)]).await;
    wait_traffic(&b2, TOPIC).await;
    traffic
        .wait_for_more(100, "with the first leader dead")
        .await;

    block_in_place(|| ensemble.restart(first)).unwrap_or_else(|e| panic!("{e}"));
    // The restarted member joins as a follower; kill whoever leads now.
    let second = wait_leader(&ensemble, Some(first)).await;
    block_in_place(|| ensemble.stop(second));
    let b3 = ensemble_broker(&ensemble, &root, 3, &[(TOPIC, 2)]).await;
    wait_traffic(&b3, TOPIC).await;
    wait_partitions(
        &producer,
        TOPIC,
        &[parts(0, 2), parts(1, 2), parts(2, 2), parts(3, 2)].concat(),
    )
    .await;
    traffic
        .wait_for_more(100, "with the second leader dead")
        .await;

    block_in_place(|| ensemble.restart(second)).unwrap_or_else(|e| panic!("{e}"));
    // With every member back, a broker leaving is still seen.
    b1.shutdown().await;
    wait_partitions(
        &producer,
        TOPIC,
        &[parts(0, 2), parts(2, 2), parts(3, 2)].concat(),
    )
    .await;
    traffic.wait_for_more(100, "with every member back").await;
    let sent = traffic.finish().await;
    assert_eq!(
        producer.zk_session_info().map(|s| s.id()),
        Some(session.id()),
        "the producer's session did not survive the elections"
    );
    assert_all_acked_and_stored("ensemble", &sent, &[&b0, &b1, &b2, &b3]);
    producer.close().await;
    for b in [b0, b1, b2, b3] {
        b.shutdown().await;
    }
}
