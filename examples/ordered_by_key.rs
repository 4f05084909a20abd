//! Keyed sends: with the `KeyHash` selector every message of one key goes
//! to the same partition, so a consumer of that partition sees them in the
//! order they were sent. Prints the partition each key's messages went to.
//!
//! ```text
//! METAQ_ZK=127.0.0.1:2181 METAQ_ROOT=/meta METAQ_TOPIC=demo cargo run --example ordered_by_key
//! ```

use std::collections::BTreeSet;

use futures::future::try_join_all;
use metaq::producer::KeyHash;
use metaq::{Message, Producer};

const KEYS: [&str; 5] = [
    "customer-1",
    "customer-2",
    "customer-3",
    "customer-4",
    "customer-5",
];
const EVENTS_PER_KEY: usize = 4;

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
        .selector(KeyHash)
        .build()
        .await?;
    producer.publish(&topic).await?;

    for key in KEYS {
        // Sends are queued in call order, and a keyed send is never moved to
        // another partition, so these are stored in this order.
        let sends = (0..EVENTS_PER_KEY).map(|n| {
            let message = Message::new(topic.clone(), format!("{key} event {n}")).with_key(key);
            producer.send(message)
        });
        let sent = try_join_all(sends).await?;
        let partitions: BTreeSet<String> = sent.iter().map(|s| s.partition.to_string()).collect();
        let offsets: Vec<String> = sent.iter().map(|s| s.offset.to_string()).collect();
        println!(
            "{key} -> partition {} (offsets {})",
            partitions.into_iter().collect::<Vec<_>>().join(" "),
            offsets.join(" ")
        );
    }
    producer.close().await;
    Ok(())
}
