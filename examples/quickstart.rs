//! Publish a topic, send a few hundred messages, print where they went, close.
//!
//! ```text
//! cargo run --example quickstart -- 127.0.0.1:2181 /meta demo
//! ```

use std::collections::BTreeMap;

use futures::future::join_all;
use metaq::{Message, Producer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let zk = args.next().unwrap_or_else(|| "127.0.0.1:2181".into());
    let root = args.next().unwrap_or_else(|| "/meta".into());
    let topic = args.next().unwrap_or_else(|| "demo".into());

    let producer = Producer::builder(&zk).root(&root).build().await?;
    producer.publish(&topic).await?;
    println!(
        "{topic} has partitions {:?}",
        producer
            .partitions(&topic)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );

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
    producer.close().await;
    println!("closed cleanly");
    Ok(())
}
