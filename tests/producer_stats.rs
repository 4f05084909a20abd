//! `Producer::stats` and dedupe ids: what sends came to, counted by kind,
//! and the duplicates at-least-once delivery makes, visible in the stats
//! and recognisable by their ids; send latencies, per-broker figures and
//! route changes; with the `metrics` feature, the same through a recorder.
//! Real ZooKeeper, development brokers.

mod producer_support;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use metaq::producer::{KeyHash, RouteEvent, DEDUPE_PREFIX};
use metaq::protocol::{split_body, StatusCode};
use metaq::{Message, Producer};
use metaq_testkit::TestBroker;
use producer_support::*;

const TOPIC: &str = "stats";

/// Each outcome lands in its own counter, and nothing is left in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_are_counted_by_kind() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let producer = producer(&root).selector(KeyHash).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();
    let fresh = producer.stats();
    assert_eq!((fresh.sent, fresh.failed(), fresh.retries), (0, 0, 0));
    assert_eq!(fresh.latency, Default::default());
    assert_eq!(fresh.route_changes, 0, "the first listing is no change");
    assert_eq!(fresh.brokers.len(), 1, "{fresh:?}");
    assert_eq!((fresh.brokers[0].sent, fresh.brokers[0].failed), (0, 0));

    let results = producer
        .send_all((0..100).map(|i| Message::new(TOPIC, format!("ok-{i}"))))
        .await;
    assert!(results.iter().all(Result::is_ok));
    producer
        .send(Message::new("no spaces", "refused"))
        .await
        .expect_err("an invalid topic");
    b0.faults()
        .fail_next_puts(1, StatusCode::INTERNAL_SERVER_ERROR);
    producer
        .send(Message::new(TOPIC, "rejected").with_key("k"))
        .await
        .expect_err("the broker answers 500");

    let stats = producer.stats();
    assert_eq!(stats.sent, 100, "{stats:?}");
    assert_eq!(stats.failed_not_sent, 1, "{stats:?}");
    assert_eq!(stats.failed_rejected, 1, "{stats:?}");
    assert_eq!(stats.failed_maybe_sent, 0, "{stats:?}");
    assert_eq!(stats.failed(), 2, "{stats:?}");
    assert_eq!(stats.retries, 0, "{stats:?}");
    assert_eq!(stats.in_flight, 0, "{stats:?}");
    // The refusal reached no broker; the rejection is the broker's.
    assert_eq!(stats.brokers[0].sent, 100, "{stats:?}");
    assert_eq!(stats.brokers[0].failed, 1, "{stats:?}");
    producer.close().await;
}

/// The attribute ids of `topic`'s records on `broker`, with how many
/// records carry each.
fn ids(broker: &TestBroker) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for record in broker.records(Some(TOPIC)) {
        let (attribute, _) = split_body(record.flag, &record.body).expect("a valid body");
        let id = String::from_utf8(attribute.expect("an id").to_vec()).unwrap();
        *ids.entry(id).or_default() += 1;
    }
    ids
}

/// A broker that stores at once but answers late makes the producer time
/// out and retry elsewhere: the message is stored twice. The stats count
/// each such retry, and with dedupe ids both copies carry the same id, so
/// a consumer can drop the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_after_a_maybe_sent_attempt_are_counted_and_carry_the_same_id() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let b1 = broker(&root, 1, &[(TOPIC, 1)]).await;
    // Strict round-robin, so that half of the sends go to the late broker.
    let producer: Producer = producer(&root)
        .slow_brokers(None)
        .send_timeout(Duration::from_millis(900))
        .retries(2)
        .dedupe_ids(true)
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    wait_partitions(&producer, TOPIC, &[parts(0, 1), parts(1, 1)].concat()).await;
    b0.faults().delay_responses(Duration::from_millis(1_500));

    for i in 0..10 {
        let sent = producer
            .send(Message::new(TOPIC, format!("dup-{i}")))
            .await
            .unwrap_or_else(|e| panic!("send {i}: {e}"));
        assert_eq!(sent.partition.broker_id, 1, "send {i} was answered late");
    }
    let stats = producer.stats();
    let (late, fast) = (ids(&b0), ids(&b1));
    assert_eq!(stats.sent, 10, "{stats:?}");
    assert_eq!(fast.len(), 10, "every message stored once on broker 1");
    assert!(!late.is_empty(), "no send went to the late broker");
    assert_eq!(
        stats.retries_after_maybe_sent,
        late.len() as u64,
        "{stats:?}"
    );
    assert_eq!(stats.retries, stats.retries_after_maybe_sent, "{stats:?}");
    // Each copy on the late broker has its twin, by id, on the other.
    for (id, copies) in &late {
        assert_eq!(*copies, 1, "{id}");
        assert_eq!(fast.get(id), Some(&1), "{id} has no twin");
        assert!(id.starts_with(DEDUPE_PREFIX), "{id}");
    }
    let distinct: HashSet<&String> = fast.keys().collect();
    assert_eq!(distinct.len(), 10, "ids are unique per message");
    producer.close().await;
}

/// A message with an attribute of its own keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedupe_ids_leave_a_users_attribute_alone() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let producer = producer(&root).dedupe_ids(true).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();
    producer
        .send(Message::new(TOPIC, "tagged").with_attribute("tag-1"))
        .await
        .unwrap();
    producer.send(Message::new(TOPIC, "plain")).await.unwrap();
    let attributes: Vec<String> = ids(&b0).into_keys().collect();
    assert_eq!(attributes.len(), 2, "{attributes:?}");
    assert!(attributes.contains(&"tag-1".to_owned()), "{attributes:?}");
    assert!(
        attributes.iter().any(|a| a.starts_with(DEDUPE_PREFIX)),
        "{attributes:?}"
    );
    producer.close().await;
}

/// Sequential sends over two brokers, one answering 30 ms late: the
/// latency histogram counts every send that succeeded, its percentiles
/// are ordered, the late broker's sends show in p99 and max, and nothing
/// exceeds what the test itself timed. Each broker's figures add up to
/// the producer's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latencies_and_per_broker_figures_add_up() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let b1 = broker(&root, 1, &[(TOPIC, 1)]).await;
    // Strict round-robin: each broker gets every other send.
    let producer = producer(&root).slow_brokers(None).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();
    wait_partitions(&producer, TOPIC, &[parts(0, 1), parts(1, 1)].concat()).await;
    let late = Duration::from_millis(30);
    b1.faults().delay_responses(late);

    let mut timed = Vec::new();
    for i in 0..40 {
        let started = std::time::Instant::now();
        producer
            .send(Message::new(TOPIC, format!("timed-{i}")))
            .await
            .unwrap_or_else(|e| panic!("send {i}: {e}"));
        timed.push(started.elapsed());
    }
    // Every answer of the late broker took 30 ms: its weighed latency says so.
    let weighed = producer.stats().brokers;
    assert!(weighed[1].latency >= late, "{weighed:?}");
    assert!(weighed[0].latency < late, "{weighed:?}");
    b1.faults().delay_responses(Duration::ZERO);
    let started = std::time::Instant::now();
    let batch = producer
        .send_all((0..20).map(|i| Message::new(TOPIC, format!("batch-{i}"))))
        .await;
    timed.push(started.elapsed());
    assert!(batch.iter().all(Result::is_ok));
    timed.sort();

    let stats = producer.stats();
    let latency = stats.latency;
    assert_eq!(stats.sent, 60, "{stats:?}");
    assert_eq!(latency.count, stats.sent, "{latency:?}");
    assert!(latency.p50 <= latency.p99, "{latency:?}");
    assert!(latency.p99 <= latency.max, "{latency:?}");
    // Half of the sequential sends waited for the late broker: they are the
    // slowest 20 of 60, so p99 and max are among them (p99 within the
    // histogram's 6.25 %).
    assert!(latency.max >= late, "{latency:?}");
    assert!(latency.p99 >= late.mul_f64(0.9375), "{latency:?}");
    // The producer times a send from inside the call to the answer's
    // reading, within what the test timed around it.
    assert!(
        latency.max <= timed[timed.len() - 1],
        "{latency:?} {timed:?}"
    );
    assert!(latency.p50 > Duration::ZERO, "{latency:?}");

    let brokers = &stats.brokers;
    assert_eq!(brokers.len(), 2, "{brokers:?}");
    assert_eq!(brokers.iter().map(|b| b.sent).sum::<u64>(), stats.sent);
    for (broker, test_broker) in brokers.iter().zip([&b0, &b1]) {
        assert_eq!(broker.uri, test_broker.uri(), "{brokers:?}");
        assert_eq!(broker.sent, 30, "round-robin splits evenly: {brokers:?}");
        assert_eq!(broker.failed, 0, "{brokers:?}");
        assert_eq!(broker.in_flight, 0, "{brokers:?}");
        assert!(broker.serving, "{brokers:?}");
    }
    assert_eq!((brokers[0].broker_id, brokers[1].broker_id), (0, 1));
    producer.close().await;
}

/// Route events until one leaves `TOPIC` with `partitions` (a broker's
/// registration or departure may take more than one step in ZooKeeper).
async fn events_until(
    events: &mut tokio::sync::broadcast::Receiver<RouteEvent>,
    partitions: &[metaq::Partition],
) -> Vec<RouteEvent> {
    let mut seen = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap_or_else(|_| panic!("no route to {partitions:?} within 10 s: {seen:?}"))
            .expect("the channel is open and not lagging");
        assert_eq!(event.topic, TOPIC, "{event:?}");
        let done = event.new_partitions == partitions;
        seen.push(event);
        if done {
            return seen;
        }
    }
}

/// The brokers `pick` names over `events`, in order, without repeats.
fn brokers_named<'a, I>(
    events: &'a [RouteEvent],
    pick: impl Fn(&'a RouteEvent) -> I,
) -> Vec<(u32, String)>
where
    I: Iterator<Item = (u32, &'a metaq::BrokerUri)>,
{
    let mut named: Vec<(u32, String)> = Vec::new();
    for (id, uri) in events.iter().flat_map(pick) {
        if !named.iter().any(|(i, u)| *i == id && *u == uri.to_string()) {
            named.push((id, uri.to_string()));
        }
    }
    named
}

/// A broker joining the topic, then leaving it, changes its route twice:
/// each change is counted and broadcast with the broker it concerns.
/// Afterwards the departed broker keeps its counts in the stats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_changes_are_counted_and_told_as_events() {
    init_tracing();
    let root = unique_root();
    let _b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let producer = producer(&root).selector(KeyHash).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();
    wait_partitions(&producer, TOPIC, &parts(0, 1)).await;
    let mut events = producer.route_events();
    let before = producer.stats().route_changes;

    let both = [parts(0, 1), parts(1, 2)].concat();
    let b1 = broker(&root, 1, &[(TOPIC, 2)]).await;
    let b1_named = vec![(1, b1.uri().to_string())];
    let joining = events_until(&mut events, &both).await;
    assert_eq!(brokers_named(&joining, RouteEvent::joined), b1_named);
    assert_eq!(brokers_named(&joining, RouteEvent::left), []);
    assert_eq!(joining[0].old_partitions, parts(0, 1), "{joining:?}");
    // Counted no later than the route is visible, so no later than told.
    let after_join = producer.stats().route_changes;
    assert_eq!(after_join, before + joining.len() as u64);

    // Two sends to broker 1, then it leaves gracefully.
    for key in keys_for_broker(&producer.partitions(TOPIC), 1, 2) {
        let sent = producer
            .send(Message::new(TOPIC, "to broker 1").with_key(key))
            .await
            .unwrap();
        assert_eq!(sent.partition.broker_id, 1);
    }
    b1.shutdown().await;
    let leaving = events_until(&mut events, &parts(0, 1)).await;
    assert_eq!(brokers_named(&leaving, RouteEvent::left), b1_named);
    assert_eq!(brokers_named(&leaving, RouteEvent::joined), []);
    let last = leaving.last().unwrap();
    assert!(!last.new_brokers.contains_key(&1), "{last:?}");
    let stats = producer.stats();
    assert_eq!(
        stats.route_changes,
        after_join + leaving.len() as u64,
        "{stats:?}"
    );
    let gone = stats
        .brokers
        .iter()
        .find(|b| b.broker_id == 1)
        .expect("a departed broker is still listed");
    assert_eq!((gone.sent, gone.serving), (2, false), "{gone:?}");
    assert_eq!(
        stats.brokers.iter().map(|b| b.sent).sum::<u64>(),
        stats.sent
    );
    producer.close().await;
}

/// With the `metrics` feature, sends are reported to the installed
/// recorder, labelled with topic and broker: successes and their
/// latencies, retries (on the broker that failed), failures by delivery
/// kind, and attempts in flight (none once the sends ended). The figures
/// match `Producer::stats`.
#[cfg(feature = "metrics")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_feature_reports_sends_by_topic_and_broker() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    const METERED: &str = "metered";
    init_tracing();
    // The only recorder of this binary; other tests' sends use other topics.
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("no other recorder in this test binary");
    let started = std::time::Instant::now();

    let root = unique_root();
    let b0 = broker(&root, 0, &[(METERED, 1)]).await;
    let b1 = broker(&root, 1, &[(METERED, 1)]).await;
    let producer = producer(&root)
        .slow_brokers(None)
        .send_timeout(Duration::from_millis(900))
        .retries(2)
        .build()
        .await
        .unwrap();
    producer.publish(METERED).await.unwrap();
    wait_partitions(&producer, METERED, &[parts(0, 1), parts(1, 1)].concat()).await;
    // Round-robin: some sends on each broker.
    for i in 0..6 {
        producer
            .send(Message::new(METERED, format!("even-{i}")))
            .await
            .unwrap();
    }
    // Broker 0 answers late: a send tried there times out and is retried
    // on broker 1 (broker 0 is then avoided for a while).
    b0.faults().delay_responses(Duration::from_millis(1_500));
    for i in 0..4 {
        let sent = producer
            .send(Message::new(METERED, format!("late-{i}")))
            .await
            .unwrap();
        assert_eq!(sent.partition.broker_id, 1);
    }
    // Broker 1 refuses one put: a failure, not retried.
    b1.faults()
        .fail_next_puts(1, StatusCode::INTERNAL_SERVER_ERROR);
    producer
        .send(Message::new(METERED, "refused"))
        .await
        .expect_err("broker 1 answers 500");
    let elapsed = started.elapsed();

    let stats = producer.stats();
    let snapshot = snapshotter.snapshot().into_vec();
    // The value of `name` for `broker` (and `delivery`) on this topic.
    let value = |name: &str, broker: &metaq::BrokerUri, delivery: Option<&str>| {
        let broker = broker.to_string();
        let found: Vec<&DebugValue> = snapshot
            .iter()
            .filter(|(key, ..)| {
                let key = key.key();
                let label = |wanted: &str| {
                    key.labels()
                        .find(|l| l.key() == wanted)
                        .map(|l| l.value().to_owned())
                };
                key.name() == name
                    && label("topic").as_deref() == Some(METERED)
                    && label("broker") == Some(broker.clone())
                    && label("delivery").as_deref() == delivery
            })
            .map(|(.., value)| value)
            .collect();
        assert!(found.len() <= 1, "{name} twice: {found:?}");
        found.first().copied()
    };
    let count = |name: &str, broker: &metaq::BrokerUri, delivery: Option<&str>| match value(
        name, broker, delivery,
    ) {
        None => 0,
        Some(DebugValue::Counter(n)) => *n,
        Some(other) => panic!("{name} is no counter: {other:?}"),
    };
    let (u0, u1) = (b0.uri(), b1.uri());
    let broker_stats = |uri: &metaq::BrokerUri| {
        stats
            .brokers
            .iter()
            .find(|b| b.uri == *uri)
            .unwrap_or_else(|| panic!("{uri} in {stats:?}"))
            .clone()
    };

    assert_eq!(count("metaq_sent_total", &u0, None), broker_stats(&u0).sent);
    assert_eq!(count("metaq_sent_total", &u1, None), broker_stats(&u1).sent);
    assert!(
        broker_stats(&u0).sent > 0 && broker_stats(&u1).sent > 0,
        "{stats:?}"
    );
    assert_eq!(stats.sent, 10, "{stats:?}");
    assert_eq!(
        count("metaq_sent_total", &u0, None) + count("metaq_sent_total", &u1, None),
        stats.sent
    );
    let mut latencies = Vec::new();
    for uri in [&u0, &u1] {
        match value("metaq_send_latency_seconds", uri, None) {
            Some(DebugValue::Histogram(values)) => latencies.extend(values.iter().map(|v| v.0)),
            None => {}
            Some(other) => panic!("the latency is no histogram: {other:?}"),
        }
    }
    assert_eq!(latencies.len() as u64, stats.sent, "{latencies:?}");
    assert!(
        latencies
            .iter()
            .all(|&s| s > 0.0 && s <= elapsed.as_secs_f64()),
        "{latencies:?} over {elapsed:?}"
    );
    assert!(stats.retries >= 1, "{stats:?}");
    assert_eq!(count("metaq_retries_total", &u0, None), stats.retries);
    assert_eq!(count("metaq_retries_total", &u1, None), 0);
    assert_eq!(stats.failed_rejected, 1, "{stats:?}");
    assert_eq!(count("metaq_failed_total", &u1, Some("rejected")), 1);
    assert_eq!(count("metaq_failed_total", &u0, Some("rejected")), 0);
    for uri in [&u0, &u1] {
        match value("metaq_in_flight", uri, None) {
            Some(DebugValue::Gauge(n)) => assert_eq!(n.0, 0.0, "{uri} still in flight"),
            other => panic!("no in-flight gauge for {uri}: {other:?}"),
        }
    }
    producer.close().await;
}
