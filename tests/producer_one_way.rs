//! `Producer::one_way`: fire-and-forget sends through a bounded window,
//! failures counted and handed to the callback, flush, close and drop.
//! Real ZooKeeper, development brokers over TCP.

mod producer_support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metaq::producer::{OneWayConfig, TrySendError};
use metaq::protocol::StatusCode;
use metaq::{Delivery, Error, Message};
use producer_support::*;

const TOPIC: &str = "oneway";

/// Failed messages and their errors, as the callback received them.
type Failures = Arc<Mutex<Vec<(Message, Error)>>>;

/// A config whose callback collects failures into the returned list.
fn collecting(config: OneWayConfig) -> (OneWayConfig, Failures) {
    let failures = Failures::default();
    let sink = Arc::clone(&failures);
    let config = config.on_failure(move |message, error| {
        sink.lock().unwrap().push((message, error));
    });
    (config, failures)
}

fn payloads(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:05}")).collect()
}

fn as_set<'a>(bodies: impl IntoIterator<Item = &'a [u8]>) -> BTreeSet<Vec<u8>> {
    bodies.into_iter().map(<[u8]>::to_vec).collect()
}

/// 10,000 one-way sends over two brokers: after `flush` every one is
/// stored exactly once, and the counters say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sends_are_all_stored_after_flush() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 2)]).await;
    let b1 = broker(&root, 1, &[(TOPIC, 2)]).await;
    let producer = producer(&root).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();
    wait_partitions(&producer, TOPIC, &[parts(0, 2), parts(1, 2)].concat()).await;
    let (config, failures) = collecting(OneWayConfig::default());
    let one_way = producer.one_way(config);

    let sent = payloads("fire", 10_000);
    for payload in &sent {
        one_way
            .send(Message::new(TOPIC, payload.clone()))
            .await
            .expect("open");
    }
    one_way.flush(Duration::from_secs(60)).await.unwrap();

    let stats = one_way.stats();
    assert_eq!(stats.accepted, 10_000, "{stats:?}");
    assert_eq!(stats.sent, 10_000, "{stats:?}");
    assert_eq!(stats.failed(), 0, "{stats:?}");
    assert_eq!(stats.in_window, 0, "{stats:?}");
    assert!(failures.lock().unwrap().is_empty());
    let mut stored = bodies(&b0, TOPIC);
    stored.extend(bodies(&b1, TOPIC));
    assert_eq!(stored.len(), 10_000, "each message stored once");
    assert_eq!(
        as_set(stored.iter().map(Vec::as_slice)),
        as_set(sent.iter().map(|p| p.as_bytes()))
    );
    assert!(!bodies(&b0, TOPIC).is_empty() && !bodies(&b1, TOPIC).is_empty());
    // The producer's own counters saw the same sends.
    assert_eq!(producer.stats().sent, 10_000);
    one_way.close().await.unwrap();
    producer.close().await;
}

/// A broker answering errors: the failed messages are counted as rejected
/// and handed to the callback, each with its error; with the stored ones
/// they make up exactly what was sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_and_handed_to_the_callback() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let producer = producer(&root).retries(0).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();
    let (config, failures) = collecting(OneWayConfig::default());
    let one_way = producer.one_way(config);

    b0.faults()
        .fail_next_puts(7, StatusCode::INTERNAL_SERVER_ERROR);
    let sent = payloads("maybe", 50);
    for payload in &sent {
        one_way
            .try_send(Message::new(TOPIC, payload.clone()))
            .expect("room in the default window");
    }
    one_way.flush(Duration::from_secs(30)).await.unwrap();

    let stats = one_way.stats();
    assert_eq!(stats.accepted, 50, "{stats:?}");
    assert_eq!(stats.failed_rejected, 7, "{stats:?}");
    assert_eq!(stats.failed(), 7, "{stats:?}");
    assert_eq!(stats.sent, 43, "{stats:?}");
    let failures = std::mem::take(&mut *failures.lock().unwrap());
    assert_eq!(failures.len(), 7);
    for (message, error) in failures.iter() {
        assert_eq!(message.topic(), TOPIC);
        assert_eq!(error.delivery(), Some(Delivery::Rejected), "{error:?}");
    }
    // The first seven puts failed: those are the first seven messages.
    let failed: Vec<&[u8]> = failures.iter().map(|(m, _)| m.payload().as_ref()).collect();
    let expected: Vec<&[u8]> = sent[..7].iter().map(|p| p.as_bytes()).collect();
    assert_eq!(failed, expected);
    let stored = bodies(&b0, TOPIC);
    let rest: Vec<Vec<u8>> = sent[7..].iter().map(|p| p.as_bytes().to_vec()).collect();
    assert_eq!(stored, rest, "the others stored, in order");
    one_way.close().await.unwrap();
    producer.close().await;
}

/// A full window: `try_send` gives the message back with `Full` and
/// counts it; every message it accepted is stored, in order, and nothing
/// else is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_window_refuses_without_losing_what_it_accepted() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let producer = producer(&root)
        .send_timeout(Duration::from_secs(20))
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    let one_way = producer.one_way(OneWayConfig::default().window(10));
    // Answers held back, so the window cannot empty during the loop.
    b0.faults().delay_responses(Duration::from_secs(2));

    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for payload in payloads("window", 100) {
        match one_way.try_send(Message::new(TOPIC, payload.clone())) {
            Ok(()) => accepted.push(payload),
            Err(TrySendError::Full(message)) => {
                assert_eq!(message.payload().as_ref(), payload.as_bytes());
                refused.push(payload);
            }
            Err(TrySendError::Closed(_)) => panic!("not closed"),
        }
    }
    assert_eq!(accepted.len(), 10, "the window holds ten");
    assert_eq!(refused.len(), 90);
    let stats = one_way.stats();
    assert_eq!(stats.dropped_full, 90, "{stats:?}");
    assert_eq!(stats.accepted, 10, "{stats:?}");
    assert_eq!(stats.in_window, 10, "{stats:?}");

    // `send` waits for room instead: one more, accepted once room comes.
    b0.faults().delay_responses(Duration::ZERO);
    one_way
        .send(Message::new(TOPIC, "waited"))
        .await
        .expect("open");
    accepted.push("waited".to_owned());
    one_way.flush(Duration::from_secs(30)).await.unwrap();
    let stats = one_way.stats();
    assert_eq!((stats.sent, stats.failed()), (11, 0), "{stats:?}");
    let expected: Vec<Vec<u8>> = accepted.iter().map(|p| p.as_bytes().to_vec()).collect();
    assert_eq!(bodies(&b0, TOPIC), expected);
    one_way.close().await.unwrap();
    producer.close().await;
}

/// `close` with messages still queued: it returns once each was stored or
/// reported; later sends are refused with `Closed`, on every clone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_sends_or_reports_everything_queued() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let producer = producer(&root)
        .send_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    let (config, failures) = collecting(OneWayConfig::default());
    let one_way = producer.one_way(config);
    let clone = one_way.clone();
    b0.faults().delay_responses(Duration::from_millis(200));

    let sent = payloads("closing", 3_000);
    for payload in &sent {
        one_way
            .try_send(Message::new(TOPIC, payload.clone()))
            .expect("room in the default window");
    }
    assert!(one_way.stats().in_window > 0, "answers are held back");
    one_way
        .close()
        .await
        .expect("every send ends within the bound");

    assert!(clone.is_closed());
    let late = clone.try_send(Message::new(TOPIC, "late"));
    assert!(matches!(late, Err(TrySendError::Closed(_))), "{late:?}");
    let late = clone.send(Message::new(TOPIC, "late")).await;
    assert!(matches!(late, Err(TrySendError::Closed(_))), "{late:?}");
    let stats = one_way.stats();
    assert_eq!(stats.accepted, 3_000, "{stats:?}");
    assert_eq!(stats.in_window, 0, "{stats:?}");
    assert_eq!(stats.sent + stats.failed(), 3_000, "{stats:?}");
    let mut ended = as_set(bodies(&b0, TOPIC).iter().map(Vec::as_slice));
    let failures = std::mem::take(&mut *failures.lock().unwrap());
    assert_eq!(failures.len() as u64, stats.failed());
    ended.extend(failures.iter().map(|(m, _)| m.payload().to_vec()));
    assert_eq!(ended, as_set(sent.iter().map(|p| p.as_bytes())));
    producer.close().await;
}

/// Dropping every handle without `close`: what was queued is still sent
/// (or, if it failed, reported) by the background task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_finishes_what_is_queued() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let producer = producer(&root).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();
    let (config, failures) = collecting(OneWayConfig::default());
    let one_way = producer.one_way(config);
    b0.faults().delay_responses(Duration::from_millis(100));

    let sent = payloads("dropped", 1_000);
    for payload in &sent {
        one_way
            .try_send(Message::new(TOPIC, payload.clone()))
            .expect("room in the default window");
    }
    drop(one_way);
    let n = sent.len();

    // Each message ends stored or in the callback; wait until all have.
    eventually(
        Duration::from_secs(30),
        "every queued message ended",
        || {
            let done = bodies(&b0, TOPIC).len() + failures.lock().unwrap().len();
            async move { (done == n).then_some(()) }
        },
    )
    .await;
    assert!(failures.lock().unwrap().is_empty(), "nothing failed");
    let expected: Vec<Vec<u8>> = sent.iter().map(|p| p.as_bytes().to_vec()).collect();
    assert_eq!(bodies(&b0, TOPIC), expected, "stored once each, in order");
    producer.close().await;
}

/// Messages queued when the producer itself is closed fail as *not sent*
/// and are reported, not lost silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_producer_reports_what_is_still_queued() {
    init_tracing();
    let root = unique_root();
    let _b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let producer = producer(&root).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();
    let (config, failures) = collecting(OneWayConfig::default());
    let one_way = producer.one_way(config);
    producer.close().await;

    for payload in payloads("after-close", 20) {
        one_way
            .try_send(Message::new(TOPIC, payload))
            .expect("the one-way handle is still open");
    }
    one_way.close().await.unwrap();
    let stats = one_way.stats();
    assert_eq!(stats.failed_not_sent, 20, "{stats:?}");
    let failures = failures.lock().unwrap();
    assert_eq!(failures.len(), 20);
    assert!(failures.iter().all(|(_, e)| matches!(e, Error::Closed)));
}

/// With a spill store: while the only broker refuses connections, a small
/// window fills and failed sends pile up — every one is spilled (none is
/// given back, none reaches the callback); once the broker is back the
/// background replay stores every message, and the spill ends empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spill_store_keeps_what_the_window_and_the_brokers_cannot_take() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 2)]).await;
    let producer = producer(&root)
        .retries(0)
        .send_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    wait_partitions(&producer, TOPIC, &parts(0, 2)).await;
    b0.faults().refuse_connections(true);
    b0.faults().drop_connections();

    let dir = tempfile::tempdir().unwrap();
    let store = metaq::local_store::LocalStore::open(
        dir.path(),
        metaq::local_store::LocalStoreConfig::default(),
    )
    .unwrap();
    let (config, failures) = collecting(
        OneWayConfig::default()
            .window(8)
            .spill_to(store, Duration::from_millis(100)),
    );
    let one_way = producer.one_way(config);
    let sent = payloads("spill", 300);
    for payload in &sent {
        one_way
            .try_send(Message::new(TOPIC, payload.clone()))
            .expect("a full window spills instead of refusing");
    }
    // Everything accepted ends (failed and spilled) while the broker is away.
    one_way.flush(Duration::from_secs(30)).await.unwrap();
    let during = one_way.stats();
    assert_eq!(during.dropped_full, 0, "{during:?}");
    assert_eq!(during.spilled, 300 - during.sent, "{during:?}");
    assert_eq!(during.failed(), 0, "{during:?}");
    assert!(during.spilled >= 292, "a window of 8: {during:?}");
    assert!(during.spill_held > 0, "{during:?}");

    b0.faults().refuse_connections(false);
    eventually(Duration::from_secs(30), "the spill is replayed", || {
        let stats = one_way.stats();
        async move { (stats.spill_held == 0).then_some(()) }
    })
    .await;
    let stats = one_way.stats();
    assert_eq!(stats.replayed, stats.spilled, "{stats:?}");
    assert!(
        failures.lock().unwrap().is_empty(),
        "nothing reached the callback"
    );
    let stored = bodies(&b0, TOPIC);
    let expected = as_set(sent.iter().map(|p| p.as_bytes()));
    assert_eq!(as_set(stored.iter().map(Vec::as_slice)), expected);
    // Nothing was written while the broker refused connections, so
    // nothing can have been stored twice.
    assert_eq!(stored.len(), 300, "{stats:?}");
    assert_eq!(
        stats.failed(),
        0,
        "spilled messages have not failed: {stats:?}"
    );
    one_way.close().await.unwrap();
    producer.close().await;
}
