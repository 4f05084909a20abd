//! The one-way producer: `try_send` queues a message and returns at once; a
//! background task sends the queue. With a spill store, a full window or a
//! failed send keeps the message on disk instead of dropping it, and it is
//! sent later. Prints the one-way producer's counters.
//!
//! ```text
//! METAQ_ZK=127.0.0.1:2181 METAQ_ROOT=/meta METAQ_TOPIC=demo cargo run --example one_way
//! ```

use std::time::Duration;

use metaq::local_store::{LocalStore, LocalStoreConfig};
use metaq::producer::OneWayConfig;
use metaq::{Message, Producer};

const MESSAGES: usize = 10_000;

/// An environment variable, or `default` when it is not set.
fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let zk = setting("METAQ_ZK", "127.0.0.1:2181");
    let root = setting("METAQ_ROOT", "/meta");
    let topic = setting("METAQ_TOPIC", "demo");
    // The store's directory: the first argument, else METAQ_STORE_DIR.
    let default_dir = std::env::temp_dir().join(format!("metaq-spill-{}", std::process::id()));
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| setting("METAQ_STORE_DIR", &default_dir.display().to_string()));

    let producer = Producer::builder(&zk).root(&root).build().await?;
    producer.publish(&topic).await?;
    let spill = LocalStore::open(&dir, LocalStoreConfig::default())?;
    let config = OneWayConfig::default()
        .window(1_000)
        .spill_to(spill, Duration::from_millis(200))
        .on_failure(|message, error| {
            eprintln!("neither sent nor spilled: {} ({error})", message.topic());
        });
    let one_way = producer.one_way(config);
    for i in 0..MESSAGES {
        // Never refused: a full window spills to the store.
        one_way.try_send(Message::new(topic.clone(), format!("one-way {i}")))?;
    }
    one_way.flush(Duration::from_secs(30)).await?;
    // What was spilled is replayed in the background; wait for it.
    while one_way.stats().spill_held > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    one_way.close().await?;
    let stats = one_way.stats();
    println!(
        "accepted {} sent {} spilled {} replayed {} failed {}",
        stats.accepted,
        stats.sent,
        stats.spilled,
        stats.replayed,
        stats.failed()
    );
    producer.close().await;
    Ok(())
}
