//! The ordered producer: each key's messages go to one partition of the
//! topic's layout, in order; while that partition is down they wait in a
//! local store on disk and are replayed, still in order, when it is back.
//! Prints where each key's messages went and what the store holds.
//!
//! ```text
//! METAQ_ZK=127.0.0.1:2181 METAQ_ROOT=/meta METAQ_TOPIC=demo \
//!   METAQ_STORE_DIR=/tmp/metaq-ordered cargo run --example ordered_store
//! ```

use std::time::Duration;

use metaq::producer::{OrderedConfig, OrderedSend};
use metaq::{Message, Producer};

const KEYS: [&str; 3] = ["order-1", "order-2", "order-3"];
const STEPS: [&str; 4] = ["created", "paid", "packed", "shipped"];

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
    let default_dir = std::env::temp_dir().join(format!("metaq-ordered-{}", std::process::id()));
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| setting("METAQ_STORE_DIR", &default_dir.display().to_string()));

    let producer = Producer::builder(&zk).root(&root).build().await?;
    producer.publish(&topic).await?;
    // Without a layout (Java's `topic.num.<topic>`, see OrderedConfig::layout)
    // the partitions listed now are the topic's layout.
    let ordered = producer.ordered(OrderedConfig::new(&dir)).await?;

    for step in STEPS {
        for key in KEYS {
            let message = Message::new(topic.clone(), format!("{key} {step}")).with_key(key);
            match ordered.send(message).await? {
                OrderedSend::Sent(sent) => println!("{key} {step}: partition {}", sent.partition),
                OrderedSend::Stored { partition, .. } => {
                    println!("{key} {step}: kept locally for partition {partition}")
                }
                other => println!("{key} {step}: {other:?}"),
            }
        }
    }
    // Anything kept locally is sent before this returns (or it times out).
    ordered.flush(Duration::from_secs(30)).await?;
    let stats = ordered.stats();
    println!(
        "sent {} stored {} replayed {} held {}",
        stats.sent, stats.stored, stats.replayed, stats.held_messages
    );
    ordered.close();
    producer.close().await;
    Ok(())
}
