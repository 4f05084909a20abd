//! `Producer::stats` and dedupe ids: what sends came to, counted by kind,
//! and the duplicates at-least-once delivery makes, visible in the stats
//! and recognisable by their ids. Real ZooKeeper, development brokers.

mod producer_support;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use metaq::producer::{KeyHash, DEDUPE_PREFIX};
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
    assert_eq!(producer.stats(), Default::default());

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
