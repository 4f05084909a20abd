//! One broker without ZooKeeper (Java's `serverUrl`): every topic is sent to
//! the broker named on the command line, which chooses each message's
//! partition. For tests and one-box setups.
//!
//! ```text
//! METAQ_TOPIC=demo cargo run --example fixed_server -- meta://127.0.0.1:8123
//! ```

use metaq::{Message, Producer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "meta://127.0.0.1:8123".to_owned());
    let topic = std::env::var("METAQ_TOPIC").unwrap_or_else(|_| "demo".to_owned());

    let producer = Producer::builder_for_server(&server).build().await?;
    for i in 0..10 {
        let sent = producer
            .send(Message::new(topic.clone(), format!("fixed {i}")))
            .await?;
        // The broker chose the partition; its index is in the result.
        println!(
            "fixed {i}: {} partition index {}",
            sent.broker, sent.partition.index
        );
    }
    producer.close().await;
    Ok(())
}
