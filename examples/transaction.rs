//! Local transactions: the messages of a committed one become visible
//! together, those of a rolled-back one never do. A transaction is pinned
//! to the broker of its first message.
//!
//! ```text
//! METAQ_ZK=127.0.0.1:2181 METAQ_ROOT=/meta METAQ_TOPIC=demo cargo run --example transaction
//! ```

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
    producer.publish(&topic).await?;

    // Each send is stored by the broker but kept out of sight until COMMIT.
    let mut tx = producer.begin_transaction()?;
    for i in 0..3 {
        let sent = tx
            .send(Message::new(topic.clone(), format!("committed {i}")))
            .await?;
        println!(
            "{}: sent committed {i} to partition {}",
            tx.key(),
            sent.partition
        );
    }
    let broker = tx.broker().cloned().expect("pinned by its first send");
    let key = tx.key().to_owned();
    tx.commit().await?;
    println!("{key}: committed 3 messages on {broker}");

    // A rollback discards everything the transaction sent.
    let mut tx = producer.begin_transaction()?;
    tx.send(Message::new(topic.clone(), "rolled back 0"))
        .await?;
    let key = tx.key().to_owned();
    tx.rollback().await?;
    println!("{key}: rolled back 1 message");

    producer.close().await;
    Ok(())
}
