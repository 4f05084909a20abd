//! Bad input, unserved topics, and the producer's end: typed errors before
//! any byte is written, `close()` with sends in flight, and no task left
//! running after `close()` or after the last handle is dropped.
//! Real ZooKeeper, development brokers over TCP.

mod producer_support;

use std::time::Duration;

use metaq::{Delivery, Error, Message, Producer};
use producer_support::*;
use tokio::time::Instant;

const TOPIC: &str = "lifecycle";
/// How long the producer's tasks and connections may take to go.
const GONE_WITHIN: Duration = Duration::from_secs(10);

/// Every bad message fails with its own error, as "not sent", and the
/// broker (whose connection is already open) receives nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_before_anything_is_written() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 2)]).await;
    let producer = producer(&root)
        .max_message_size(1024)
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    // The producer's socket is up once published; the broker counts it
    // when its accept loop gets to it, a moment later.
    eventually(
        Duration::from_secs(10),
        "the broker sees the producer's connection",
        || async { (other_connections(b0.local_addr()).await == 1).then_some(()) },
    )
    .await;

    let long = "x".repeat(256);
    for topic in [
        "a b",
        "a/b",
        "",
        "tö",
        "tab\there",
        "crlf\r\n",
        long.as_str(),
    ] {
        let error = producer
            .send(Message::new(topic, "x"))
            .await
            .expect_err(topic);
        assert!(
            matches!(&error, Error::InvalidMessage { topic: t, .. } if t == topic),
            "{topic:?}: {error:?}"
        );
        assert_eq!(error.delivery(), Some(Delivery::NotSent));
        assert!(!error.is_retriable());
        assert!(error.attempts().is_empty());
        let error = producer.publish(topic).await.expect_err(topic);
        assert!(matches!(error, Error::InvalidMessage { .. }), "{error:?}");
    }
    // 255 bytes is still a topic (no broker serves it).
    let error = producer
        .send(Message::new("y".repeat(255), "x"))
        .await
        .expect_err("unserved");
    assert!(matches!(error, Error::NoPartition { .. }), "{error:?}");

    for message in [
        Message::new(TOPIC, vec![0u8; 1025]),
        Message::new(TOPIC, vec![0u8; 1018]).with_attribute("abc"), // 4 + 3 + 1018
        Message::new(TOPIC, vec![0u8; 4 << 20]),
    ] {
        let size = message.body_len();
        let error = producer.send(message).await.expect_err("too large");
        assert!(
            matches!(error, Error::MessageTooLarge { size: s, max: 1024, .. } if s == size),
            "{error:?}"
        );
        assert_eq!(error.delivery(), Some(Delivery::NotSent));
        assert!(!error.is_retriable());
    }
    let stats = stats(b0.local_addr()).await;
    assert_eq!(stats["cmd_put"], "0");
    assert_eq!(stats["put_failed"], "0");
    assert!(b0.records(None).is_empty());

    // The limit itself is fine.
    let sent = producer
        .send(Message::new(TOPIC, vec![7u8; 1017]).with_attribute("abc"))
        .await
        .unwrap();
    assert_eq!(sent.attempts, 1);
    assert_eq!(b0.records(Some(TOPIC)).len(), 1);
    assert_eq!(b0.records(Some(TOPIC))[0].length, 1024);
    producer.close().await;
}

/// A topic no broker serves: sends fail at once as `NoPartition` (after
/// the first listing); `publish` gives `TopicUnavailable` after its
/// configured wait; once a broker appears, sends succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unserved_topic_fails_promptly_then_works_once_served() {
    init_tracing();
    let root = unique_root();
    let _other = broker(&root, 0, &[("elsewhere", 1)]).await;
    let producer = producer(&root)
        .publish_timeout(Duration::from_secs(1))
        .build()
        .await
        .unwrap();

    let started = Instant::now();
    let error = producer
        .send(Message::new(TOPIC, "early"))
        .await
        .expect_err("nobody serves it");
    assert!(
        matches!(&error, Error::NoPartition { topic, .. } if topic == TOPIC),
        "{error:?}"
    );
    assert_eq!(error.delivery(), Some(Delivery::NotSent));
    assert!(error.is_retriable());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let error = producer
        .send(Message::new(TOPIC, "again"))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::NoPartition { .. }), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let error = producer.publish(TOPIC).await.expect_err("nobody serves it");
    let waited = started.elapsed();
    assert!(
        matches!(&error, Error::TopicUnavailable { topic, waited, .. } if topic == TOPIC && *waited == Duration::from_secs(1)),
        "{error:?}"
    );
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(3),
        "publish gave up after {waited:?}"
    );
    assert!(producer.partitions(TOPIC).is_empty());

    // A broker starts serving it: the topic is still watched.
    let b1 = broker(&root, 1, &[(TOPIC, 2)]).await;
    let sent = eventually(
        Duration::from_secs(5),
        "a send once the broker is there",
        || {
            let producer = &producer;
            async move { producer.send(Message::new(TOPIC, "late")).await.ok() }
        },
    )
    .await;
    assert_eq!(sent.partition.broker_id, 1);
    producer.publish(TOPIC).await.unwrap();
    assert_eq!(bodies(&b1, TOPIC), vec![b"late".to_vec()]);
    producer.close().await;
}

/// `close()` waits for sends in flight (answers delayed by the broker),
/// which succeed; afterwards sends and publishes fail with `Closed`, the
/// broker sees no connection, and no task of the producer is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_waits_for_sends_in_flight_and_stops_everything() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 2)]).await;
    let runtime = producer_runtime();
    let handle = runtime.handle().clone();
    let builder = producer(&root);
    let producer: Producer = on(&handle, async move { builder.build().await.unwrap() }).await;
    let p = producer.clone();
    on(&handle, async move { p.publish(TOPIC).await.unwrap() }).await;

    b0.faults().delay_responses(Duration::from_millis(800));
    let sends: Vec<_> = (0..20)
        .map(|i| handle.spawn(producer.send(Message::new(TOPIC, format!("inflight-{i}")))))
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let p = producer.clone();
    on(&handle, async move { p.close().await }).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "close returned after {took:?}, before the answers"
    );
    assert!(
        took < Duration::from_secs(4) + Duration::from_millis(500),
        "close took {took:?}"
    );
    for send in sends {
        assert!(send.is_finished(), "a send still running after close");
        send.await.unwrap().expect("sends in flight complete");
    }
    assert_eq!(b0.records(Some(TOPIC)).len(), 20);

    let error = producer
        .send(Message::new(TOPIC, "late"))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Closed), "{error:?}");
    assert_eq!(error.delivery(), Some(Delivery::NotSent));
    assert!(!error.is_retriable());
    let error = producer.publish(TOPIC).await.unwrap_err();
    assert!(matches!(error, Error::Closed), "{error:?}");
    assert!(producer.zk_session_info().is_none());
    on(&handle, {
        let p = producer.clone();
        async move { p.close().await }
    })
    .await; // idempotent

    b0.faults().delay_responses(Duration::ZERO);
    no_connection_left(b0.local_addr(), GONE_WITHIN).await;
    no_task_left(&runtime, GONE_WITHIN).await;
    assert_eq!(b0.records(Some(TOPIC)).len(), 20);
    drop(producer);
    runtime.shutdown_background();
}

/// `close()` with sends that cannot finish returns once they time out
/// (bounded by the send timeout plus one second); they fail as "maybe sent".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_gives_up_on_sends_that_time_out() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let runtime = producer_runtime();
    let handle = runtime.handle().clone();
    let builder = producer(&root).send_timeout(Duration::from_secs(1));
    let producer: Producer = on(&handle, async move { builder.build().await.unwrap() }).await;
    let p = producer.clone();
    on(&handle, async move { p.publish(TOPIC).await.unwrap() }).await;

    b0.faults().stall(true);
    let sends: Vec<_> = (0..5)
        .map(|i| handle.spawn(producer.send(Message::new(TOPIC, format!("slow-{i}")))))
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let p = producer.clone();
    on(&handle, async move { p.close().await }).await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2500), "close took {took:?}");
    for send in sends {
        let error = send.await.unwrap().expect_err("no answer in time");
        assert_eq!(error.delivery(), Some(Delivery::MaybeSent), "{error:?}");
    }
    b0.faults().stall(false);
    no_connection_left(b0.local_addr(), GONE_WITHIN).await;
    no_task_left(&runtime, GONE_WITHIN).await;
    drop(producer);
    runtime.shutdown_background();
}

/// Dropping the last handle, without `close()`, stops every background task
/// and closes the broker connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_stops_background_tasks() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 2)]).await;
    let b1 = broker(&root, 1, &[(TOPIC, 2)]).await;
    let runtime = producer_runtime();
    let handle = runtime.handle().clone();
    let builder = producer(&root).publish_timeout(Duration::from_millis(300));
    on(&handle, async move {
        let producer = builder.build().await.unwrap();
        let clone = producer.clone();
        for i in 0..10 {
            clone
                .send(Message::new(TOPIC, format!("d{i}")))
                .await
                .unwrap();
        }
        producer.publish("second-topic").await.unwrap_err();
        // Both handles dropped here.
    })
    .await;
    assert_eq!(
        b0.records(Some(TOPIC)).len() + b1.records(Some(TOPIC)).len(),
        10
    );
    no_connection_left(b0.local_addr(), GONE_WITHIN).await;
    no_connection_left(b1.local_addr(), GONE_WITHIN).await;
    no_task_left(&runtime, GONE_WITHIN).await;
    runtime.shutdown_background();
}

/// A broker leaves just before `close()`: its connection, kept open a
/// while for answers in flight, is closed with the rest, and no task waits
/// out that delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_right_after_a_broker_left_leaves_no_task() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 2)]).await;
    let b1 = broker(&root, 1, &[(TOPIC, 2)]).await;
    let runtime = producer_runtime();
    let handle = runtime.handle().clone();
    // The removed broker's connection would be kept for the send timeout.
    let builder = producer(&root).send_timeout(Duration::from_secs(60));
    let producer: Producer = on(&handle, async move { builder.build().await.unwrap() }).await;
    let p = producer.clone();
    on(&handle, async move { p.publish(TOPIC).await.unwrap() }).await;
    wait_partitions(&producer, TOPIC, &[parts(0, 2), parts(1, 2)].concat()).await;

    b1.faults().unregister().await.unwrap();
    wait_partitions(&producer, TOPIC, &parts(0, 2)).await;
    assert_eq!(
        other_connections(b1.local_addr()).await,
        1,
        "kept for answers in flight"
    );
    let p = producer.clone();
    on(&handle, async move { p.close().await }).await;
    no_connection_left(b0.local_addr(), GONE_WITHIN).await;
    no_connection_left(b1.local_addr(), GONE_WITHIN).await;
    no_task_left(&runtime, GONE_WITHIN).await;
    drop(producer);
    runtime.shutdown_background();
}

/// `build()` fails with a typed error: unreachable ZooKeeper (after the
/// connect timeout), unusable settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_fails_with_typed_errors() {
    init_tracing();
    // Nothing listens on port 1.
    let started = Instant::now();
    let error = Producer::builder("127.0.0.1:1")
        .connect_timeout(Duration::from_secs(1))
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::ZooKeeperUnreachable { cause, .. } if cause.contains("connection refused")),
        "{error:?}"
    );
    assert!(error.to_string().contains("127.0.0.1:1"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(error.delivery(), None);

    let root = unique_root();
    for (builder, named) in [
        (producer(&root).send_timeout(Duration::ZERO), "send_timeout"),
        (
            producer(&root).connect_timeout(Duration::ZERO),
            "connect_timeout",
        ),
        (
            producer(&root).heartbeat_interval(Duration::ZERO),
            "heartbeat_interval",
        ),
        (producer(&root).max_in_flight(0), "max_in_flight"),
        (producer(&root).max_message_size(0), "max_message_size"),
        (
            producer(&root).transaction_request_timeout(Duration::ZERO),
            "transaction_request_timeout",
        ),
        (producer(&root).default_topic("bad topic"), "default topic"),
    ] {
        let error = builder.build().await.unwrap_err();
        assert!(matches!(error, Error::Config { .. }), "{error:?}");
        // The message names the one setting that is wrong, and no other.
        let text = error.to_string();
        assert!(text.contains(named), "{text}");
        let setters = [
            "send_timeout",
            "connect_timeout",
            "heartbeat_interval",
            "max_in_flight",
            "max_message_size",
        ];
        let others = setters
            .iter()
            .filter(|s| **s != named && text.contains(**s));
        assert_eq!(others.count(), 0, "names another setting too: {text}");
    }
}

/// `flush` waits for every send in flight, spawned ones included, and
/// leaves the producer open; a too-short wait says how many are left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_waits_for_sends_in_flight_and_keeps_the_producer_open() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 2)]).await;
    let producer = producer(&root).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();
    producer.flush(Duration::from_millis(10)).await.unwrap(); // none in flight

    b0.faults().delay_responses(Duration::from_millis(600));
    let sends: Vec<_> = (0..50)
        .map(|i| tokio::spawn(producer.send(Message::new(TOPIC, format!("flush-{i}")))))
        .collect();
    assert_eq!(producer.in_flight(), 50);
    let error = producer
        .flush(Duration::from_millis(50))
        .await
        .expect_err("the answers are 600 ms late");
    assert!(
        matches!(error, Error::FlushTimeout { in_flight: 50, .. }),
        "{error:?}"
    );
    producer.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!(producer.in_flight(), 0);
    // Each send has its result (the tasks holding them end a moment later).
    for send in sends {
        send.await.unwrap().expect("each send succeeds");
    }
    assert_eq!(b0.records(Some(TOPIC)).len(), 50);

    b0.faults().delay_responses(Duration::ZERO);
    producer
        .send(Message::new(TOPIC, "after flush"))
        .await
        .expect("still open");
    let dropped = producer.send(Message::new(TOPIC, "dropped"));
    assert_eq!(producer.in_flight(), 1);
    drop(dropped);
    assert_eq!(producer.in_flight(), 0);
    producer.close().await;
}
