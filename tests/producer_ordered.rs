//! The ordered producer (issue 12, item 2), against a real ZooKeeper and
//! development brokers: a partition unavailable for 5 s under steady keyed
//! traffic loses nothing and keeps every key's order; messages left in the
//! store by a killed producer process are delivered by the next one.

mod producer_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metaq::producer::{OrderedConfig, OrderedProducer, OrderedSend};
use metaq::{Error, Message, Partition};
use metaq_testkit::TestBroker;
use producer_support::*;

const TOPIC: &str = "ordered";
const LAYOUT: &str = "0:2;1:2";

fn all_partitions() -> Vec<Partition> {
    parts(0, 2).into_iter().chain(parts(1, 2)).collect()
}

fn config(dir: &std::path::Path) -> OrderedConfig {
    OrderedConfig::new(dir)
        .layout(TOPIC, LAYOUT)
        .unwrap()
        .replay_interval(Duration::from_millis(200))
}

/// Every stored `key:n` payload per key, in each partition's log order
/// (a key's messages all go to one partition).
fn stored_by_key(brokers: &[&TestBroker]) -> BTreeMap<String, Vec<u64>> {
    let mut by_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for broker in brokers {
        let mut records = broker.records(Some(TOPIC));
        records.sort_by_key(|r| (r.partition, r.offset));
        for record in records {
            assert!(record.checksum_valid);
            let text = String::from_utf8(record.body.to_vec()).unwrap();
            let (key, n) = text.split_once(':').expect("key:n");
            by_key
                .entry(key.to_owned())
                .or_default()
                .push(n.parse().unwrap());
        }
    }
    by_key
}

/// Sends `key:0`, `key:1`, ... one after another until `stop`; returns how
/// many it sent (each one either sent or stored).
async fn keyed_traffic(ordered: OrderedProducer, key: String, stop: Arc<AtomicBool>) -> u64 {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let message = Message::new(TOPIC, format!("{key}:{n}")).with_key(key.clone());
        match ordered.send(message).await {
            Ok(_) => n += 1,
            Err(e) => panic!("ordered send {key}:{n} failed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    n
}

/// Broker 1 refuses every connection for 5 s while eight keys (four on each
/// broker) send steadily. Sends never fail; broker 1's keys are kept
/// locally meanwhile and replayed when it is back; in the end every key's
/// messages are stored in send order, each at least once, and copies are no
/// more than the sends that were stored after a put went unanswered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_down_for_five_seconds_keeps_every_key_in_order() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 2)]).await;
    let b1 = broker(&root, 1, &[(TOPIC, 2)]).await;
    let producer = producer(&root)
        .send_timeout(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    wait_partitions(&producer, TOPIC, &all_partitions()).await;
    let store = tempfile::tempdir().unwrap();
    let ordered = producer.ordered(config(store.path())).await.unwrap();

    let mut keys = keys_for_broker(&all_partitions(), 0, 4);
    keys.extend(keys_for_broker(&all_partitions(), 1, 4));
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = keys
        .iter()
        .map(|key| {
            tokio::spawn(keyed_traffic(
                ordered.clone(),
                key.clone(),
                Arc::clone(&stop),
            ))
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(1)).await;
    b1.faults().refuse_connections(true);
    b1.faults().drop_connections();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let held_while_down = ordered.stats().held_messages;
    b1.faults().refuse_connections(false);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = BTreeMap::new();
    for (key, sender) in keys.iter().zip(senders) {
        sent.insert(key.clone(), sender.await.unwrap());
    }
    ordered
        .flush(Duration::from_secs(30))
        .await
        .expect("the store drains");

    let stats = ordered.stats();
    tracing::info!(?stats, held_while_down, "after the outage");
    assert!(
        held_while_down > 0,
        "broker 1's keys were kept locally while it was down"
    );
    assert!(stats.stored > 0 && stats.replayed > 0, "{stats:?}");
    assert_eq!(stats.held_messages, 0);
    let stored = stored_by_key(&[&b0, &b1]);
    let mut copies = 0;
    for (key, count) in &sent {
        let log = stored.get(key).cloned().unwrap_or_default();
        let mut deduped = log.clone();
        deduped.dedup(); // a copy of an unanswered put comes right after it
        copies += log.len() - deduped.len();
        let expected: Vec<u64> = (0..*count).collect();
        assert_eq!(
            deduped, expected,
            "key {key}: stored out of order or with gaps"
        );
    }
    assert!(
        copies as u64 <= stats.stored_after_maybe_sent,
        "{copies} copies but only {} unanswered puts",
        stats.stored_after_maybe_sent
    );
    producer.close().await;
}

/// A message without a key is refused (order is per key), a full store
/// refuses with `LocalStoreFull` and keeps nothing, and what the store
/// holds is reported per partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_messages_and_a_full_store_are_refused() {
    init_tracing();
    let root = unique_root();
    let _b0 = broker(&root, 0, &[(TOPIC, 2)]).await;
    let b1 = broker(&root, 1, &[(TOPIC, 2)]).await;
    let producer = producer(&root).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();
    wait_partitions(&producer, TOPIC, &all_partitions()).await;
    b1.faults().refuse_connections(true);
    b1.faults().drop_connections();
    let store = tempfile::tempdir().unwrap();
    let small = metaq::local_store::LocalStoreConfig::default().max_bytes(4096);
    let ordered = producer
        .ordered(config(store.path()).store(small))
        .await
        .unwrap();

    let keyless = ordered
        .send(Message::new(TOPIC, "no key"))
        .await
        .unwrap_err();
    assert!(matches!(keyless, Error::InvalidMessage { .. }), "{keyless}");

    let key = keys_for_broker(&all_partitions(), 1, 1).remove(0);
    let mut kept = 0u64;
    let full = loop {
        let message = Message::new(TOPIC, vec![b'x'; 500]).with_key(key.clone());
        match ordered.send(message).await {
            Ok(OrderedSend::Stored { partition, .. }) => {
                assert_eq!(partition.broker_id, 1);
                kept += 1;
            }
            Ok(other) => panic!("broker 1 is refusing connections, yet {other:?}"),
            Err(e) => break e,
        }
        assert!(kept < 100, "a 4 KiB store never filled");
    };
    assert!(matches!(full, Error::LocalStoreFull { .. }), "{full}");
    let holdings = ordered.holdings();
    assert_eq!(holdings.len(), 1, "{holdings:?}");
    assert_eq!(holdings[0].messages, kept);
    assert_eq!(ordered.stats().held_messages, kept);
    producer.close().await;
}
