//! Where messages go: round-robin exactness, random spread, key-hash
//! stability, and that what the producer reports is what the brokers stored.
//! Real ZooKeeper, development brokers over TCP.

mod producer_support;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures::future::join_all;
use metaq::producer::{KeyHash, Random};
use metaq::{Message, Partition};
use producer_support::*;

const TOPIC: &str = "orders";

/// Two brokers × 3 partitions: 600 messages, exactly 100 per partition, in
/// the producer's answers and in the brokers' logs, checksums valid,
/// payloads as sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_exactly_over_two_brokers() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 3)]).await;
    let b1 = broker(&root, 1, &[(TOPIC, 3)]).await;
    let producer = producer(&root).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();
    let all: Vec<Partition> = [parts(0, 3), parts(1, 3)].concat();
    wait_partitions(&producer, TOPIC, &all).await;

    let payloads: Vec<String> = (0..600).map(|i| format!("rr-{i:04}")).collect();
    let results = join_all(
        payloads
            .iter()
            .map(|p| producer.send(Message::new(TOPIC, p.clone()))),
    )
    .await;
    let mut counts: BTreeMap<Partition, usize> = BTreeMap::new();
    let mut offsets = BTreeSet::new();
    for result in results {
        let sent = result.expect("every send succeeds");
        assert_eq!(sent.attempts, 1);
        *counts.entry(sent.partition).or_default() += 1;
        assert!(
            offsets.insert((sent.partition, sent.offset)),
            "offset reused"
        );
        let broker = if sent.partition.broker_id == 0 {
            &b0
        } else {
            &b1
        };
        assert_eq!(sent.broker, broker.uri());
    }
    assert_eq!(counts.len(), 6, "{counts:?}");
    assert!(counts.values().all(|n| *n == 100), "{counts:?}");

    for b in [&b0, &b1] {
        let stored = per_partition(b, TOPIC);
        assert_eq!(stored, (0..3).map(|i| (i, 100)).collect(), "on disk");
    }
    let mut stored: Vec<Vec<u8>> = bodies(&b0, TOPIC);
    stored.extend(bodies(&b1, TOPIC));
    stored.sort();
    let mut expected: Vec<Vec<u8>> = payloads.iter().map(|p| p.as_bytes().to_vec()).collect();
    expected.sort();
    assert_eq!(stored, expected);

    // Every record sits at the offset the producer was told.
    for b in [&b0, &b1] {
        for r in b.records(Some(TOPIC)) {
            let id = b.config().id;
            assert!(offsets.contains(&(Partition::new(id, r.partition), r.offset)));
        }
    }
    producer.close().await;
}

/// Round-robin with one of two brokers down (registered, refusing
/// connections): its partitions' turns are spread evenly over the usable
/// ones, not all handed to the partition after it. 300 sends: 100 ± 1 on
/// each of broker 0's three partitions, in the answers and on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_evenly_while_a_broker_is_down() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 3)]).await;
    let b1 = broker(&root, 1, &[(TOPIC, 3)]).await;
    let producer = producer(&root).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();
    let all: Vec<Partition> = [parts(0, 3), parts(1, 3)].concat();
    wait_partitions(&producer, TOPIC, &all).await;
    b1.faults().stop_listening();
    b1.faults().drop_connections();
    // Until the producer has seen the connection go, a send may still try
    // broker 1 (and be retried): wait until sends keep to broker 0.
    eventually(
        std::time::Duration::from_secs(10),
        "ten sends in a row on broker 0",
        || async {
            for _ in 0..10 {
                let sent = producer.send(Message::new(TOPIC, "warm-up")).await.ok()?;
                if sent.partition.broker_id != 0 || sent.attempts != 1 {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    let before = per_partition(&b0, TOPIC);

    let mut counts: BTreeMap<Partition, usize> = BTreeMap::new();
    for i in 0..300 {
        let sent = producer
            .send(Message::new(TOPIC, format!("down-{i}")))
            .await
            .unwrap_or_else(|e| panic!("send {i}: {e}"));
        *counts.entry(sent.partition).or_default() += 1;
    }
    assert_eq!(counts.keys().copied().collect::<Vec<_>>(), parts(0, 3));
    let (min, max) = (
        counts.values().min().unwrap(),
        counts.values().max().unwrap(),
    );
    assert!(max - min <= 1, "uneven: {counts:?}");
    let after = per_partition(&b0, TOPIC);
    for index in 0..3 {
        let stored = after[&index] - before.get(&index).copied().unwrap_or(0);
        assert_eq!(
            stored,
            counts[&Partition::new(0, index)],
            "partition 0-{index} on disk"
        );
    }
    producer.close().await;
}

/// The random selector reaches every partition; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_selector_spreads_over_all_partitions() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 3)]).await;
    let b1 = broker(&root, 1, &[(TOPIC, 3)]).await;
    let producer = producer(&root).selector(Random).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();
    let all: Vec<Partition> = [parts(0, 3), parts(1, 3)].concat();
    wait_partitions(&producer, TOPIC, &all).await;

    let results =
        join_all((0..600).map(|i| producer.send(Message::new(TOPIC, format!("r{i}"))))).await;
    let mut counts: HashMap<Partition, usize> = HashMap::new();
    for result in results {
        *counts.entry(result.unwrap().partition).or_default() += 1;
    }
    // Each partition expects 100; the chance of one getting under 40 is negligible.
    for p in &all {
        let n = counts.get(p).copied().unwrap_or(0);
        assert!(n >= 40, "partition {p} got {n}: {counts:?}");
    }
    // Not round-robin in disguise: the counts are not all equal.
    assert!(counts.values().any(|n| *n != 100), "{counts:?}");
    assert_eq!(bodies(&b0, TOPIC).len() + bodies(&b1, TOPIC).len(), 600);
    producer.close().await;
}

/// The key-hash selector sends a key to the same partition every time —
/// the one `KeyHash::hash(key) % len` names in the sorted list — and two
/// producers agree; messages without a key go round-robin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_hash_maps_a_key_to_one_partition() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 3)]).await;
    let b1 = broker(&root, 1, &[(TOPIC, 3)]).await;
    let all: Vec<Partition> = [parts(0, 3), parts(1, 3)].concat();
    let first = producer(&root).selector(KeyHash).build().await.unwrap();
    let second = producer(&root).selector(KeyHash).build().await.unwrap();
    for p in [&first, &second] {
        p.publish(TOPIC).await.unwrap();
        wait_partitions(p, TOPIC, &all).await;
    }

    let keys: Vec<String> = (0..12).map(|i| format!("customer-{i}")).collect();
    let mut seen = BTreeSet::new();
    for key in &keys {
        let expected = all[KeyHash::hash(key.as_bytes()) as usize % all.len()];
        for round in 0..10 {
            let p = if round % 2 == 0 { &first } else { &second };
            let sent = p
                .send(Message::new(TOPIC, format!("{key}/{round}")).with_key(key.clone()))
                .await
                .unwrap();
            assert_eq!(sent.partition, expected, "key {key} round {round}");
        }
        seen.insert(expected);
    }
    assert!(seen.len() > 1, "12 keys all on one partition: {seen:?}");

    // Per key, the stored order is the send order (one partition, one connection per producer).
    let mut stored: Vec<String> = bodies(&b0, TOPIC)
        .into_iter()
        .chain(bodies(&b1, TOPIC))
        .map(|b| String::from_utf8(b).unwrap())
        .collect();
    assert_eq!(stored.len(), 120);
    stored.sort();
    stored.dedup();
    assert_eq!(stored.len(), 120);

    // Without a key: round-robin, exactly even.
    let results =
        join_all((0..60).map(|i| first.send(Message::new(TOPIC, format!("nokey-{i}"))))).await;
    let mut counts: BTreeMap<Partition, usize> = BTreeMap::new();
    for r in results {
        *counts.entry(r.unwrap().partition).or_default() += 1;
    }
    assert!(
        counts.len() == 6 && counts.values().all(|n| *n == 10),
        "{counts:?}"
    );
    first.close().await;
    second.close().await;
}

/// A message with an attribute is stored with it (flag bit 0, attribute
/// block in front of the payload); the offset reported is the record's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribute_is_stored_in_front_of_the_payload() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let producer = producer(&root).build().await.unwrap();
    let sent = producer
        .send(Message::new(TOPIC, "payload").with_attribute("tag1"))
        .await
        .unwrap();
    let sent_plain = producer.send(Message::new(TOPIC, "")).await.unwrap();
    let records = b0.records(Some(TOPIC));
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].flag & 1, 1);
    assert_eq!(&records[0].body[..], b"\0\0\0\x04tag1payload");
    assert_eq!(records[0].offset, sent.offset);
    assert_eq!(records[0].id, sent.message_id);
    assert_eq!(records[1].flag & 1, 0);
    assert!(records[1].body.is_empty());
    assert_eq!(records[1].offset, sent_plain.offset);
    producer.close().await;
}

/// Sends to one partition are stored in the order `send` was called, even
/// when the futures are awaited later and all at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_order_is_kept_per_partition() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let producer = producer(&root).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();
    let futures: Vec<_> = (0..2000)
        .map(|i| producer.send(Message::new(TOPIC, format!("{i:05}"))))
        .collect();
    // Await in reverse: the order was fixed at call time.
    let mut results = Vec::new();
    for f in futures.into_iter().rev() {
        results.push(f.await.unwrap());
    }
    let stored: Vec<Vec<u8>> = bodies(&b0, TOPIC);
    let expected: Vec<Vec<u8>> = (0..2000).map(|i| format!("{i:05}").into_bytes()).collect();
    assert_eq!(stored, expected);
    results.reverse();
    assert!(results.windows(2).all(|w| w[0].offset < w[1].offset));
    producer.close().await;
}

/// With `max_in_flight(2)` and slow answers, extra sends wait for room
/// (backpressure) instead of failing, and all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_connection_makes_sends_wait() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 2)]).await;
    let producer = producer(&root).max_in_flight(2).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();
    b0.faults()
        .delay_responses(std::time::Duration::from_millis(150));
    let started = tokio::time::Instant::now();
    let results =
        join_all((0..10).map(|i| producer.send(Message::new(TOPIC, format!("bp{i}"))))).await;
    let took = started.elapsed();
    for r in results {
        r.unwrap();
    }
    // Five rounds of two, each answered after 150 ms.
    assert!(
        took >= std::time::Duration::from_millis(700),
        "only {took:?}: not limited"
    );
    assert_eq!(bodies(&b0, TOPIC).len(), 10);
    producer.close().await;
}

/// Topics on the same broker share one connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_share_one_connection_per_broker() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[("alpha", 2), ("beta", 3)]).await;
    let producer = producer(&root).build().await.unwrap();
    producer.publish("alpha").await.unwrap();
    producer.publish("beta").await.unwrap();
    producer.publish("alpha").await.unwrap(); // idempotent
    for i in 0..10 {
        producer
            .send(Message::new("alpha", format!("a{i}")))
            .await
            .unwrap();
        producer
            .send(Message::new("beta", format!("b{i}")))
            .await
            .unwrap();
    }
    assert_eq!(other_connections(b0.local_addr()).await, 1);
    assert_eq!(bodies(&b0, "alpha").len(), 10);
    assert_eq!(bodies(&b0, "beta").len(), 10);
    producer.close().await;
}

/// With a default topic, a topic no broker lists yet goes to the default
/// topic's partitions (MetaQ `setDefaultTopic`); once the broker (which
/// accepts it through a wildcard) registers it, its own route is used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_topic_carries_topics_not_yet_in_zookeeper() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[("default", 2), ("adhoc-*", 2)]).await;
    let producer = producer(&root)
        .default_topic("default")
        .build()
        .await
        .unwrap();
    assert_eq!(producer.partitions("default"), parts(0, 2));

    let sent = producer
        .send(Message::new("adhoc-1", "first"))
        .await
        .unwrap();
    assert_eq!(sent.partition.broker_id, 0);
    assert_eq!(bodies(&b0, "adhoc-1"), vec![b"first".to_vec()]);
    assert!(bodies(&b0, "default").is_empty());
    // The broker registered the new topic: the producer follows it.
    wait_partitions(&producer, "adhoc-1", &parts(0, 2)).await;
    producer
        .send(Message::new("adhoc-1", "second"))
        .await
        .unwrap();
    assert_eq!(bodies(&b0, "adhoc-1").len(), 2);
    producer.close().await;
}

/// A chroot in the connect string: brokers and producer under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chroot_in_the_connect_string() {
    init_tracing();
    let chroot = unique_root();
    // The chroot node must exist.
    let client = zk().client().await;
    client
        .create(
            &chroot,
            b"",
            &zookeeper_client::CreateMode::Persistent
                .with_acls(zookeeper_client::Acls::anyone_all()),
        )
        .await
        .unwrap();
    let connect = format!("{}{chroot}", zk().connect_string());
    let dir = tempfile::TempDir::with_prefix("metaq-chroot-").unwrap();
    let mut config = metaq_testkit::test_broker_config(zk(), "/meta", 0, dir.path(), &[(TOPIC, 2)]);
    config.zk_connect = connect.clone();
    let b0 = metaq_testkit::TestBroker::start_with(config, dir).await;
    let producer = metaq::Producer::builder(connect).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();
    producer
        .send(Message::new(TOPIC, "chrooted"))
        .await
        .unwrap();
    assert_eq!(bodies(&b0, TOPIC), vec![b"chrooted".to_vec()]);
    assert!(client
        .get_data(&format!("{chroot}/meta/brokers/ids/0/master"))
        .await
        .is_ok());
    producer.close().await;
}
