//! A partition selector of your own, given to the builder: messages marked
//! `urgent` (their attribute) get the topic's first partition to themselves,
//! a fast lane no bulk traffic queues in; the rest go round-robin over the
//! other partitions.
//!
//! ```text
//! METAQ_ZK=127.0.0.1:2181 METAQ_ROOT=/meta METAQ_TOPIC=demo cargo run --example custom_selector
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use futures::future::try_join_all;
use metaq::producer::{PartitionSelector, Selection};
use metaq::{Message, Partition, Producer};

/// Urgent messages to the first partition, the others round-robin over the
/// rest. Called for every message (and every retry), so it must be quick.
///
/// It never asks `s.is_usable(partition)`: an urgent message rather fails
/// than leaves its lane. A selector that may move messages should skip the
/// partitions that are not usable (broker down or just failed).
#[derive(Debug)]
struct UrgentLane;

impl PartitionSelector for UrgentLane {
    fn select(&self, s: &Selection<'_>) -> Option<Partition> {
        // Partitions come sorted (broker id, then index), so "first" is the
        // same partition for every producer.
        let (lane, rest) = s.partitions.split_first()?;
        if s.message.attribute() == Some("urgent") || rest.is_empty() {
            return Some(*lane);
        }
        // `sequence` is a counter per topic that the producer keeps for us.
        let turn = s.sequence.fetch_add(1, Ordering::Relaxed);
        Some(rest[(turn % rest.len() as u64) as usize])
    }
}

/// An environment variable, or `default` when it is not set.
fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let zk = setting("METAQ_ZK", "127.0.0.1:2181");
    let root = setting("METAQ_ROOT", "/meta");
    let topic = setting("METAQ_TOPIC", "demo");

    let producer = Producer::builder(&zk)
        .root(&root)
        .selector(UrgentLane)
        .build()
        .await?;
    producer.publish(&topic).await?;

    // One message in ten is urgent.
    let sends = (0..100).map(|i| {
        let message = if i % 10 == 0 {
            Message::new(topic.clone(), format!("urgent {i}")).with_attribute("urgent")
        } else {
            Message::new(topic.clone(), format!("bulk {i}"))
        };
        producer.send(message)
    });
    let mut per_partition: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (i, sent) in try_join_all(sends).await?.into_iter().enumerate() {
        let (urgent, bulk) = per_partition.entry(sent.partition.to_string()).or_default();
        if i % 10 == 0 {
            *urgent += 1;
        } else {
            *bulk += 1;
        }
    }
    for (partition, (urgent, bulk)) in &per_partition {
        println!("partition {partition}: {urgent} urgent, {bulk} bulk");
    }
    producer.close().await;
    Ok(())
}
