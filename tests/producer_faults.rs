//! Broker faults: one of two brokers stalled or killed, error answers,
//! heartbeats finding a silent broker. Real ZooKeeper, development brokers
//! over TCP (in-process, and a `metaq-broker` child process for SIGKILL).

mod producer_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use metaq::producer::KeyHash;
use metaq::protocol::{Response, StatusCode};
use metaq::{Delivery, Error, Message, Partition, Producer};
use metaq_testkit::BrokerProcess;
use producer_support::*;
use tokio::time::Instant;

const TOPIC: &str = "payments";

/// Sends `n` keyless messages at once; every one must succeed within the
/// send timeout (plus scheduling slack). Returns the partitions used.
async fn keyless_all_succeed(
    producer: &Producer,
    n: usize,
    send_timeout: Duration,
) -> Vec<Partition> {
    let sends = (0..n).map(|i| {
        // A send's time runs from the call: its first attempt is queued then.
        let started = Instant::now();
        let send = producer.send(Message::new(TOPIC, format!("keyless-{i}")));
        async move {
            let result = send.await;
            (started.elapsed(), result)
        }
    });
    let mut used = Vec::new();
    for (elapsed, result) in join_all(sends).await {
        let sent = result.unwrap_or_else(|e| panic!("keyless send failed: {e}"));
        assert!(
            elapsed <= send_timeout + Duration::from_millis(500),
            "a keyless send took {elapsed:?}"
        );
        used.push(sent.partition);
    }
    used
}

/// Checks a failed keyed send to broker `dead`: "maybe sent" or "not sent",
/// one attempt that names the broker, the partition, the time and the cause.
fn check_keyed_failure(error: &Error, dead: &metaq::BrokerUri, elapsed: Duration, bound: Duration) {
    assert!(
        matches!(
            error.delivery(),
            Some(Delivery::MaybeSent | Delivery::NotSent)
        ),
        "{error:?}"
    );
    assert!(error.is_retriable());
    assert!(
        elapsed <= bound,
        "the keyed send failed only after {elapsed:?}: {error}"
    );
    let attempts = error.attempts();
    assert_eq!(attempts.len(), 1, "a keyed send is tried once: {error}");
    let attempt = &attempts[0];
    assert_eq!(&attempt.broker, dead);
    assert_eq!(attempt.partition.broker_id, 1);
    assert!(attempt.elapsed <= elapsed);
    assert!(!attempt.cause.is_empty());
    assert_eq!(Some(attempt.delivery), error.delivery());
    let text = error.to_string();
    assert!(
        text.contains("1 attempt(s)") && text.contains(&dead.to_string()),
        "{text}"
    );
}

/// One of two brokers stalls (reads requests, never answers): keyless sends
/// go to the other within the send timeout; keyed sends for the stalled
/// broker's partitions fail as "maybe sent" within the send timeout; after
/// the stall ends, they succeed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_broker_is_avoided_and_keyed_sends_fail_promptly() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 3)]).await;
    let b1 = broker(&root, 1, &[(TOPIC, 3)]).await;
    let send_timeout = Duration::from_secs(2);
    let producer = producer(&root)
        .send_timeout(send_timeout)
        .selector(KeyHash)
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    let all = [parts(0, 3), parts(1, 3)].concat();
    wait_partitions(&producer, TOPIC, &all).await;
    b1.faults().stall(true);

    let used = keyless_all_succeed(&producer, 60, send_timeout).await;
    assert!(used.iter().all(|p| p.broker_id == 0), "{used:?}");
    // Again, now that broker 1 is avoided.
    keyless_all_succeed(&producer, 60, send_timeout).await;

    let dead_keys = keys_for_broker(&all, 1, 3);
    let live_keys = keys_for_broker(&all, 0, 3);
    let keyed = dead_keys.iter().map(|key| {
        // A send's time runs from the call: its first attempt is queued then.
        let started = Instant::now();
        let send = producer.send(Message::new(TOPIC, "keyed").with_key(key.clone()));
        async move {
            let result = send.await;
            (started.elapsed(), result)
        }
    });
    for (elapsed, result) in join_all(keyed).await {
        let error = result.expect_err("broker 1 is stalled");
        assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
        check_keyed_failure(
            &error,
            &b1.uri(),
            elapsed,
            send_timeout + Duration::from_secs(1),
        );
    }
    for key in &live_keys {
        let sent = producer
            .send(Message::new(TOPIC, "keyed-live").with_key(key.clone()))
            .await
            .unwrap();
        assert_eq!(sent.partition.broker_id, 0);
    }

    b1.faults().stall(false);
    for key in &dead_keys {
        let sent = producer
            .send(Message::new(TOPIC, "keyed-again").with_key(key.clone()))
            .await
            .unwrap();
        assert_eq!(sent.partition.broker_id, 1);
    }
    assert_eq!(bodies(&b1, TOPIC), vec![b"keyed-again".to_vec(); 3]);
    assert_eq!(bodies(&b0, TOPIC).len(), 123);
    // Broker 1 is avoided for a bounded time only: keyless sends return to it.
    eventually(
        Duration::from_secs(15),
        "a keyless send on broker 1 again",
        || {
            let producer = &producer;
            async move {
                let sent = producer.send(Message::new(TOPIC, "back")).await.unwrap();
                (sent.partition.broker_id == 1).then_some(())
            }
        },
    )
    .await;
    producer.close().await;
}

/// One of two brokers is killed (SIGKILL; its ZooKeeper nodes stay until
/// its session times out): keyless sends keep succeeding on the other,
/// keyed sends for its partitions fail as "not sent" or "maybe sent" at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_broker_is_avoided_and_keyed_sends_fail_promptly() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 3)]).await;
    let data = tempfile::TempDir::with_prefix("metaq-killed-").unwrap();
    let args: Vec<String> = [
        "--id",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--zk",
        &zk().connect_string(),
        "--root",
        &root,
        "--data-dir",
        data.path().to_str().unwrap(),
        "--topic",
        &format!("{TOPIC}:3"),
        "--flush",
        "os",
        // Its nodes outlive it for the whole test: the producer must cope
        // with a registered but dead broker.
        "--zk-session-timeout-ms",
        "60000",
    ]
    .map(String::from)
    .to_vec();
    let mut b1 = BrokerProcess::spawn(metaq_testkit::broker_binary(), &args).unwrap();
    let dead_uri: metaq::BrokerUri = format!("meta://{}", b1.addr()).parse().unwrap();
    let send_timeout = Duration::from_secs(2);
    let producer = producer(&root)
        .send_timeout(send_timeout)
        .selector(KeyHash)
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    let all = [parts(0, 3), parts(1, 3)].concat();
    wait_partitions(&producer, TOPIC, &all).await;
    let used = keyless_all_succeed(&producer, 60, send_timeout).await;
    assert_eq!(used.iter().filter(|p| p.broker_id == 1).count(), 30);

    b1.kill();
    let used = keyless_all_succeed(&producer, 120, send_timeout).await;
    assert!(used.iter().all(|p| p.broker_id == 0), "{used:?}");

    for key in keys_for_broker(&all, 1, 5) {
        let started = Instant::now();
        let error = producer
            .send(Message::new(TOPIC, "keyed").with_key(key))
            .await
            .expect_err("broker 1 is dead");
        check_keyed_failure(
            &error,
            &dead_uri,
            started.elapsed(),
            Duration::from_millis(500),
        );
        assert!(matches!(error, Error::NotSent { .. }), "{error:?}");
    }
    assert_eq!(
        producer.partitions(TOPIC),
        all,
        "broker 1 is still registered"
    );
    assert_eq!(bodies(&b0, TOPIC).len(), 30 + 120);
    producer.close().await;

    // A producer started now sees a registered broker that refuses
    // connections: publish does not wait for it, sends go to the other.
    let fresh = producer_support::producer(&root)
        .send_timeout(send_timeout)
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    fresh.publish(TOPIC).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "publish waited {:?} for a dead broker",
        started.elapsed()
    );
    assert_eq!(fresh.partitions(TOPIC), all);
    let used = keyless_all_succeed(&fresh, 30, send_timeout).await;
    assert!(used.iter().all(|p| p.broker_id == 0), "{used:?}");
    fresh.close().await;
}

/// An error answer is final: `Rejected` with the code and the body, one
/// attempt, not retried elsewhere, nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_answer_is_rejected_and_not_retried() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 2)]).await;
    let b1 = broker(&root, 1, &[(TOPIC, 2)]).await;
    let producer = producer(&root).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();
    wait_partitions(&producer, TOPIC, &[parts(0, 2), parts(1, 2)].concat()).await;
    b0.faults().fail_next_puts(1, StatusCode(500));
    b1.faults().fail_next_puts(1, StatusCode(500));

    let error = producer
        .send(Message::new(TOPIC, "refused"))
        .await
        .expect_err("the broker answers 500");
    let Error::Rejected {
        code,
        message,
        partition,
        broker,
        ..
    } = &error
    else {
        panic!("expected Rejected, got {error:?}");
    };
    assert_eq!(*code, 500);
    assert!(message.contains("injected failure"), "{message}");
    assert_eq!(error.delivery(), Some(Delivery::Rejected));
    assert!(error.is_retriable(), "5xx may succeed later");
    assert_eq!(error.attempts().len(), 1);
    assert_eq!(error.attempts()[0].delivery, Delivery::Rejected);
    assert_eq!(&error.attempts()[0].broker, broker);
    assert_eq!(error.attempts()[0].partition, *partition);

    // Exactly one broker was asked (the other still has its failure armed).
    let (asked, other) = if partition.broker_id == 0 {
        (&b0, &b1)
    } else {
        (&b1, &b0)
    };
    assert_eq!(stat(asked.local_addr(), "put_failed").await, 1);
    assert_eq!(stat(other.local_addr(), "put_failed").await, 0);
    assert!(b0.records(Some(TOPIC)).is_empty() && b1.records(Some(TOPIC)).is_empty());

    other.faults().fail_next_puts(0, StatusCode(500));
    let sent = producer
        .send(Message::new(TOPIC, "accepted"))
        .await
        .unwrap();
    assert_eq!(sent.attempts, 1);
    let stored = [bodies(&b0, TOPIC), bodies(&b1, TOPIC)].concat();
    assert_eq!(stored, vec![b"accepted".to_vec()]);
    producer.close().await;
}

/// Heartbeats find a broker that stopped answering: with a 200 ms interval
/// the connection is dropped (the waiting send fails as "maybe sent",
/// long before its own timeout) and opened again; after the stall, sends
/// succeed on the same producer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_drops_a_silent_connection_and_reconnects() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let producer = producer(&root)
        .heartbeat_interval(Duration::from_millis(200))
        .send_timeout(Duration::from_secs(20))
        .retries(0)
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    producer.send(Message::new(TOPIC, "before")).await.unwrap();
    // Idle heartbeats are answered: the connection stays.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(other_connections(b0.local_addr()).await, 1);

    b0.faults().stall(true);
    let started = Instant::now();
    let error = producer
        .send(Message::new(TOPIC, "stalled"))
        .await
        .expect_err("no answer while stalled");
    let elapsed = started.elapsed();
    assert!(matches!(error, Error::ConnectionLost { .. }), "{error:?}");
    assert_eq!(error.delivery(), Some(Delivery::MaybeSent));
    assert!(error.to_string().contains("heartbeat"), "{error}");
    // 200 ms idle + 5 s for the heartbeat's answer, far below the 20 s send timeout.
    assert!(
        elapsed < Duration::from_secs(8),
        "found only after {elapsed:?}"
    );

    b0.faults().stall(false);
    let sent = eventually(Duration::from_secs(10), "a send after the stall", || {
        let producer = &producer;
        async move { producer.send(Message::new(TOPIC, "after")).await.ok() }
    })
    .await;
    assert_eq!(sent.partition, Partition::new(0, 0));
    assert_eq!(other_connections(b0.local_addr()).await, 1);
    producer.close().await;
}

/// A broker that reads but never answers is found by heartbeats even while
/// requests keep being written to it: idleness is about answers, not
/// writes. Keyed sends every 100 ms to the stalled broker fail as "maybe
/// sent" once the heartbeat goes unanswered, not at their 20 s timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_finds_a_silent_broker_under_steady_writes() {
    init_tracing();
    let root = unique_root();
    let _b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let producer = producer(&root)
        .heartbeat_interval(Duration::from_millis(200))
        .send_timeout(Duration::from_secs(20))
        .selector(KeyHash)
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    producer.send(Message::new(TOPIC, "before")).await.unwrap();
    _b0.faults().stall(true);
    let started = Instant::now();
    let mut sends = Vec::new();
    for i in 0..60 {
        sends.push(tokio::spawn(
            producer.send(Message::new(TOPIC, format!("s{i}")).with_key("k")),
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
        if sends[0].is_finished() {
            break;
        }
    }
    let first = sends.remove(0).await.unwrap();
    let elapsed = started.elapsed();
    let error = first.expect_err("stalled");
    assert!(matches!(error, Error::ConnectionLost { .. }), "{error:?}");
    assert!(
        elapsed < Duration::from_secs(8),
        "found only after {elapsed:?}"
    );
    _b0.faults().stall(false);
    for send in sends {
        let _ = send.await;
    }
    producer.close().await;
}

/// Every broker stalled: a keyless send makes its three attempts, each on
/// its share of the one send timeout, the first two on different brokers,
/// and the error lists them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_is_listed_when_all_brokers_fail() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let b1 = broker(&root, 1, &[(TOPIC, 1)]).await;
    let send_timeout = Duration::from_millis(1500);
    let producer = producer(&root)
        .send_timeout(send_timeout)
        .retries(2)
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    wait_partitions(&producer, TOPIC, &[parts(0, 1), parts(1, 1)].concat()).await;
    b0.faults().stall(true);
    b1.faults().stall(true);

    let started = Instant::now();
    let error = producer
        .send(Message::new(TOPIC, "nowhere"))
        .await
        .expect_err("nobody answers");
    let elapsed = started.elapsed();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    assert_eq!(error.delivery(), Some(Delivery::MaybeSent));
    assert!(
        elapsed >= send_timeout - Duration::from_millis(50),
        "{elapsed:?}"
    );
    assert!(
        elapsed <= send_timeout + Duration::from_millis(500),
        "{elapsed:?}"
    );
    let attempts = error.attempts();
    assert_eq!(attempts.len(), 3, "{error}");
    assert_ne!(
        attempts[0].broker, attempts[1].broker,
        "the retry went to the same broker"
    );
    for (i, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt.delivery, Delivery::MaybeSent);
        assert!(attempt.cause.contains("no answer"), "{}", attempt.cause);
        // Each attempt had about a third of the budget.
        let expected = send_timeout * (i as u32 + 1) / 3;
        assert!(
            attempt.elapsed >= expected - Duration::from_millis(50)
                && attempt.elapsed <= expected + Duration::from_millis(400),
            "attempt {i} ended after {:?}: {error}",
            attempt.elapsed
        );
    }
    let text = error.to_string();
    assert!(
        text.contains("3 attempt(s)") && text.contains("#3"),
        "{text}"
    );
    producer.close().await;
}

/// Brokers cutting every connection, one broker at a time: the producer
/// reconnects, keyless sends caught by a cut are retried, none fails, and
/// both brokers get traffic afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connections_are_reopened_and_sends_retried() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 2)]).await;
    let b1 = broker(&root, 1, &[(TOPIC, 2)]).await;
    let producer = producer(&root).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();
    wait_partitions(&producer, TOPIC, &[parts(0, 2), parts(1, 2)].concat()).await;

    let sender = {
        let producer = producer.clone();
        tokio::spawn(async move {
            let mut acked = 0usize;
            let mut i = 0;
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(3) {
                let batch = (0..20).map(|_| {
                    i += 1;
                    producer.send(Message::new(TOPIC, format!("cut-{i}")))
                });
                for result in join_all(batch.collect::<Vec<_>>()).await {
                    result.unwrap_or_else(|e| panic!("a send failed: {e}"));
                    acked += 1;
                }
            }
            acked
        })
    };
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if round % 2 == 0 { &b0 } else { &b1 }
            .faults()
            .drop_connections();
    }
    let acked = sender.await.unwrap();
    let stored = bodies(&b0, TOPIC).len() + bodies(&b1, TOPIC).len();
    assert!(stored >= acked, "{stored} stored < {acked} acknowledged");
    // A broker whose connection failed is avoided for a bounded time
    // (5 s by default), then used again.
    let (n0, n1) = (b0.records(Some(TOPIC)).len(), b1.records(Some(TOPIC)).len());
    eventually(
        Duration::from_secs(15),
        "traffic on both brokers again",
        || {
            let (producer, b0, b1) = (&producer, &b0, &b1);
            async move {
                producer.send(Message::new(TOPIC, "after")).await.unwrap();
                (b0.records(Some(TOPIC)).len() > n0 && b1.records(Some(TOPIC)).len() > n1)
                    .then_some(())
            }
        },
    )
    .await;
    assert_eq!(other_connections(b0.local_addr()).await, 1);
    assert_eq!(other_connections(b1.local_addr()).await, 1);
    producer.close().await;
}

/// How a [`FakeBroker`] answers a put: given the connection's serial number
/// (1 for the first), the put's opaque and a per-connection counter, the
/// bytes to write.
type PutAnswer = Arc<dyn Fn(u32, i32, &mut i64) -> Vec<u8> + Send + Sync>;

/// A broker of the test's own, answering puts as `answer` says (other
/// requests get a plain 200). Registered in ZooKeeper by hand, as a MetaQ
/// master of `topic` with one partition. Counts the puts it read.
struct FakeBroker {
    _zk: zookeeper_client::Client,
    addr: std::net::SocketAddr,
    puts: Arc<AtomicUsize>,
}

impl FakeBroker {
    /// Answers its first connection's put with garbage, its second's with
    /// an unknown opaque, and later ones properly.
    async fn start(root: &str, id: u32, topic: &str) -> FakeBroker {
        Self::answering(
            root,
            id,
            topic,
            Arc::new(|serial, opaque, offset| {
                let mut out = bytes::BytesMut::new();
                let response = match serial {
                    1 => return b"garbage here\r\n".to_vec(),
                    2 => Response::text(StatusCode(200), opaque ^ 0x5555, "1 0 0"),
                    _ => {
                        *offset += 1;
                        let at = *offset - 1;
                        Response::text(StatusCode(200), opaque, format!("{at} 0 {at}"))
                    }
                };
                response.encode(&mut out).unwrap();
                out.to_vec()
            }),
        )
        .await
    }

    async fn answering(root: &str, id: u32, topic: &str, answer: PutAnswer) -> FakeBroker {
        use futures::StreamExt;
        use metaq::discovery::{TopicBroker, ZkPaths};
        use metaq::protocol::{Request, ServerCodec};
        use tokio::io::AsyncWriteExt;
        use zookeeper_client::{Acls, CreateMode};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let puts = Arc::new(AtomicUsize::new(0));
        let counted = puts.clone();
        tokio::spawn(async move {
            let mut connection = 0;
            while let Ok((stream, _)) = listener.accept().await {
                connection += 1;
                let serial = connection;
                let (answer, puts) = (answer.clone(), counted.clone());
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut frames =
                        tokio_util::codec::FramedRead::new(read, ServerCodec::default());
                    let mut offset = 0i64;
                    while let Some(Ok(request)) = frames.next().await {
                        let Some(opaque) = request.opaque() else {
                            break;
                        };
                        let out = match &request {
                            Request::Put(_) => {
                                puts.fetch_add(1, Ordering::SeqCst);
                                answer(serial, opaque, &mut offset)
                            }
                            _ => {
                                let mut out = bytes::BytesMut::new();
                                Response::text(StatusCode(200), opaque, "fake")
                                    .encode(&mut out)
                                    .unwrap();
                                out.to_vec()
                            }
                        };
                        if write.write_all(&out).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });

        let zk = zk().client().await;
        let paths = ZkPaths::new(root);
        let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
        let ephemeral = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
        zk.mkdir(&paths.broker(id), &persistent).await.unwrap();
        zk.create(
            &paths.broker_master(id),
            format!("meta://{addr}").as_bytes(),
            &ephemeral,
        )
        .await
        .unwrap();
        zk.mkdir(&paths.topic_pub(topic), &persistent)
            .await
            .unwrap();
        zk.create(
            &paths.topic_pub_broker(topic, id),
            TopicBroker::master(id, 1).to_json().as_bytes(),
            &ephemeral,
        )
        .await
        .unwrap();
        FakeBroker {
            _zk: zk,
            addr,
            puts,
        }
    }
}

/// A broker that answers every put with 200 and a body that is not a put
/// result is avoided like one that timed out: after its first unreadable
/// answer, keyless sends go to the other broker (for the avoid period)
/// instead of every second one failing there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_answering_unreadable_successes_is_avoided() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let fake = FakeBroker::answering(
        &root,
        3,
        TOPIC,
        Arc::new(|_, opaque, _| {
            let mut out = bytes::BytesMut::new();
            Response::text(StatusCode(200), opaque, "not a put result")
                .encode(&mut out)
                .unwrap();
            out.to_vec()
        }),
    )
    .await;
    let producer = producer(&root).retries(1).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();
    wait_partitions(
        &producer,
        TOPIC,
        &[Partition::new(0, 0), Partition::new(3, 0)],
    )
    .await;
    for i in 0..20 {
        let sent = producer
            .send(Message::new(TOPIC, format!("m-{i}")))
            .await
            .unwrap_or_else(|e| panic!("send {i}: {e}"));
        assert_eq!(sent.partition, Partition::new(0, 0));
    }
    // One unreadable answer, then the fake broker was left alone.
    assert_eq!(fake.puts.load(Ordering::SeqCst), 1);
    assert_eq!(bodies(&b0, TOPIC).len(), 20);
    producer.close().await;
}

/// A garbled answer, then an answer for an unknown opaque: each closes that
/// connection only (the send fails as "maybe sent"); the producer
/// reconnects and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbled_or_unknown_answers_close_only_that_connection() {
    init_tracing();
    let root = unique_root();
    let fake = FakeBroker::start(&root, 3, TOPIC).await;
    let producer = producer(&root).retries(0).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();
    assert_eq!(producer.partitions(TOPIC), vec![Partition::new(3, 0)]);

    // Sends while the connection is being reopened fail as not sent; skip those.
    async fn next_written(producer: &Producer) -> Result<metaq::SendResult, Error> {
        eventually(
            Duration::from_secs(10),
            "a send that reached the broker",
            || async {
                match producer.send(Message::new(TOPIC, "x")).await {
                    Err(Error::NotSent { .. }) => None,
                    other => Some(other),
                }
            },
        )
        .await
    }
    let error = next_written(&producer).await.expect_err("garbled answer");
    assert!(matches!(error, Error::ConnectionLost { .. }), "{error:?}");
    assert!(error.to_string().contains("garbled"), "{error}");
    let error = next_written(&producer).await.expect_err("unknown opaque");
    assert!(matches!(error, Error::ConnectionLost { .. }), "{error:?}");
    assert!(error.to_string().contains("unknown opaque"), "{error}");
    for expected in 0..3 {
        let sent = next_written(&producer).await.unwrap();
        assert_eq!(sent.offset, expected);
        assert_eq!(sent.broker.port, fake.addr.port());
    }
    producer.close().await;
}

/// Requests that timed out (their answers never came) do not keep taking
/// room on the connection: once the broker answers again, sends go through
/// even with `max_in_flight` as small as the number of lost requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_requests_free_their_room_on_the_connection() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let producer = producer(&root)
        .max_in_flight(4)
        .send_timeout(Duration::from_millis(500))
        .retries(0)
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    b0.faults().stall(true);
    let lost =
        join_all((0..4).map(|i| producer.send(Message::new(TOPIC, format!("lost-{i}"))))).await;
    for result in lost {
        let error = result.expect_err("stalled");
        assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    }
    b0.faults().stall(false);
    for i in 0..10 {
        producer
            .send(Message::new(TOPIC, format!("after-{i}")))
            .await
            .unwrap_or_else(|e| panic!("send {i} after the stall: {e}"));
    }
    assert_eq!(bodies(&b0, TOPIC).len(), 10);
    // The same connection all along: nothing was reset.
    assert_eq!(other_connections(b0.local_addr()).await, 1);
    producer.close().await;
}

/// A broker that answers every request too late (while heartbeats would
/// still be due much later) cannot make anything grow: each send that
/// times out gives its room and its entry back at once, so round after
/// round of sends time out (none waits for room), and the late answers are
/// recognised and dropped, not taken for garbage: the socket is kept and
/// sends succeed on it once the broker is fast again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_given_up_in_bulk_free_their_room_and_late_answers_are_dropped() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let producer = producer(&root)
        .max_in_flight(4)
        .send_timeout(Duration::from_millis(50))
        .heartbeat_interval(Duration::from_secs(60))
        .retries(0)
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    b0.faults().delay_responses(Duration::from_millis(200));
    for round in 0..40 {
        let results = join_all(
            (0..4).map(|i| producer.send(Message::new(TOPIC, format!("lost-{round}-{i}")))),
        )
        .await;
        for result in results {
            let error = result.expect_err("stalled");
            // A timeout, never "no room": the earlier rounds gave theirs back.
            assert!(
                matches!(error, Error::Timeout { .. }),
                "round {round}: {error:?}"
            );
        }
    }
    b0.faults().delay_responses(Duration::ZERO);
    for i in 0..10 {
        producer
            .send(Message::new(TOPIC, format!("after-{i}")))
            .await
            .unwrap_or_else(|e| panic!("send {i} after the stall: {e}"));
    }
    // The same connection all along: 160 late answers were not garbage.
    assert_eq!(bodies(&b0, TOPIC).len(), 170);
    assert_eq!(other_connections(b0.local_addr()).await, 1);
    producer.close().await;
}

/// While no broker of the topic is connected (a one-broker cluster whose
/// socket was just cut), a send without a key waits for the connection to
/// come back within the send timeout instead of failing at once; a keyed
/// send, which cannot move, still fails promptly as "not sent".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unkeyed_sends_wait_for_a_reconnect_keyed_ones_fail_promptly() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let producer = producer(&root)
        .send_timeout(Duration::from_secs(5))
        .retries(0)
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    producer.send(Message::new(TOPIC, "before")).await.unwrap();

    b0.faults().stop_listening();
    eventually(
        Duration::from_secs(5),
        "the producer saw the cut",
        || async {
            let keyed = producer
                .send(Message::new(TOPIC, "keyed").with_key("k"))
                .await;
            keyed.err()
        },
    )
    .await;
    let started = Instant::now();
    let keyed = producer
        .send(Message::new(TOPIC, "keyed").with_key("k"))
        .await
        .expect_err("its only partition is down");
    assert_eq!(keyed.delivery(), Some(Delivery::NotSent), "{keyed}");
    assert!(started.elapsed() < Duration::from_millis(500), "{keyed}");

    let waiting = tokio::spawn({
        let producer = producer.clone();
        async move { producer.send(Message::new(TOPIC, "during")).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    if waiting.is_finished() {
        panic!(
            "the unkeyed send did not wait: {:?}",
            waiting.await.unwrap()
        );
    }
    b0.faults().listen_again().await.unwrap();
    let result = waiting.await.unwrap().expect("sent once reconnected");
    assert_eq!(result.attempts, 1);
    assert_eq!(bodies(&b0, TOPIC), [b"before".to_vec(), b"during".to_vec()]);
    producer.close().await;
}

/// A send that finds no room on its connection before the send timeout
/// fails as "not sent", and its error lists that attempt. The room is held
/// by a transaction's BEGIN, whose own timeout (5 s) outlasts the send's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_room_before_the_timeout_is_not_sent_with_its_attempt() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let producer = producer(&root)
        .max_in_flight(1)
        .send_timeout(Duration::from_millis(500))
        .transaction_request_timeout(Duration::from_secs(5))
        .retries(0)
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    wait_partitions(&producer, TOPIC, &parts(0, 1)).await;
    b0.faults().delay_responses(Duration::from_secs(2));
    let mut tx = producer.begin_transaction().unwrap();
    let mut holder = Box::pin(tx.send(Message::new(TOPIC, "in a transaction")));
    // One poll queues the BEGIN, which takes the connection's only slot.
    assert!(futures::poll!(holder.as_mut()).is_pending());
    let error = producer
        .send(Message::new(TOPIC, "waits"))
        .await
        .expect_err("no room");
    assert!(matches!(error, Error::NotSent { .. }), "{error:?}");
    assert_eq!(error.attempts().len(), 1, "{error}");
    assert_eq!(error.attempts()[0].broker, b0.uri());
    assert!(error.attempts()[0].cause.contains("no room"), "{error}");
    b0.faults().delay_responses(Duration::ZERO);
    holder
        .await
        .expect("the transaction's put, once BEGIN is answered");
    tx.rollback().await.unwrap();
    b0.faults().delay_responses(Duration::ZERO);
    producer.close().await;
}
