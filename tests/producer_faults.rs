//! Broker faults: one of two brokers stalled or killed, error answers,
//! heartbeats finding a silent broker. Real ZooKeeper, development brokers
//! over TCP (in-process, and a `metaq-broker` child process for SIGKILL).

mod producer_support;

use std::time::Duration;

use futures::future::join_all;
use metaq::producer::KeyHash;
use metaq::protocol::StatusCode;
use metaq::testkit::BrokerProcess;
use metaq::{Delivery, Error, Message, Partition, Producer};
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
        let send = producer.send(Message::new(TOPIC, format!("keyless-{i}")));
        async move {
            let started = Instant::now();
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
    b1.stall(true);

    let used = keyless_all_succeed(&producer, 60, send_timeout).await;
    assert!(used.iter().all(|p| p.broker_id == 0), "{used:?}");
    // Again, now that broker 1 is avoided.
    keyless_all_succeed(&producer, 60, send_timeout).await;

    let dead_keys = keys_for_broker(&all, 1, 3);
    let live_keys = keys_for_broker(&all, 0, 3);
    let keyed = dead_keys.iter().map(|key| {
        let send = producer.send(Message::new(TOPIC, "keyed").with_key(key.clone()));
        async move {
            let started = Instant::now();
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

    b1.stall(false);
    for key in &dead_keys {
        let sent = producer
            .send(Message::new(TOPIC, "keyed-again").with_key(key.clone()))
            .await
            .unwrap();
        assert_eq!(sent.partition.broker_id, 1);
    }
    assert_eq!(bodies(&b1, TOPIC), vec![b"keyed-again".to_vec(); 3]);
    assert_eq!(bodies(&b0, TOPIC).len(), 123);
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
    let mut b1 = BrokerProcess::spawn(env!("CARGO_BIN_EXE_metaq-broker"), &args).unwrap();
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
    b0.fail_next_puts(1, StatusCode(500));
    b1.fail_next_puts(1, StatusCode(500));

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

    other.fail_next_puts(0, StatusCode(500));
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

    b0.stall(true);
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

    b0.stall(false);
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
    _b0.stall(true);
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
    _b0.stall(false);
    for send in sends {
        let _ = send.await;
    }
    producer.close().await;
}
