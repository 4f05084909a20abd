//! Publish a topic, send a few hundred messages, print where they went, close.
//!
//! Connects to an existing cluster named by the environment:
//!
//! ```text
//! METAQ_ZK=127.0.0.1:2181 METAQ_ROOT=/meta METAQ_TOPIC=demo cargo run --example quickstart
//! ```

use std::collections::BTreeMap;

use futures::future::join_all;
use metaq::{Message, Producer};

/// An environment variable, or `default` when it is not set.
fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let zk = setting("METAQ_ZK", "127.0.0.1:2181");
    let root = setting("METAQ_ROOT", "/meta");
    let topic = setting("METAQ_TOPIC", "demo");

    let producer = Producer::builder(&zk).root(&root).build().await?;
    // Fails after the publish timeout (10 s) if no broker serves the topic,
    // rather than leaving the first send to find out.
    producer.publish(&topic).await?;
    let partitions: Vec<String> = producer
        .partitions(&topic)
        .iter()
        .map(ToString::to_string)
        .collect();
    println!("{topic} has partitions {}", partitions.join(" "));

    // Every send is queued at once; the answers are awaited together.
    let sends =
        (0..300).map(|i| producer.send(Message::new(topic.clone(), format!("message {i}"))));
    let mut per_partition = BTreeMap::new();
    for result in join_all(sends).await {
        let sent = result?;
        *per_partition.entry(sent.partition.to_string()).or_insert(0) += 1;
    }
    for (partition, count) in &per_partition {
        println!("partition {partition}: {count} messages");
    }
    println!("sent {} messages", per_partition.values().sum::<usize>());
    producer.close().await;
    println!("closed cleanly");
    Ok(())
}
