//! What a producer can tell about itself: after sending some messages,
//! `Producer::stats()` (what the sends came to) and `health(topic)` (each
//! of the topic's brokers as the producer sees it), the figures to put on
//! a dashboard or a health endpoint.
//!
//! ```text
//! METAQ_ZK=127.0.0.1:2181 METAQ_ROOT=/meta METAQ_TOPIC=demo cargo run --example stats
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
    let batch = (0..1_000).map(|i| Message::new(topic.clone(), format!("message {i}")));
    let results = producer.send_all(batch).await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    println!(
        "sent {} messages to {topic}, {failed} failed",
        results.len() - failed
    );

    let stats = producer.stats();
    println!(
        "stats: sent {}, failed {} (not sent {}, maybe sent {}, rejected {}, other {}), \
         retries {} ({} after a maybe-sent attempt), in flight {}",
        stats.sent,
        stats.failed(),
        stats.failed_not_sent,
        stats.failed_maybe_sent,
        stats.failed_rejected,
        stats.failed_other,
        stats.retries,
        stats.retries_after_maybe_sent,
        stats.in_flight
    );
    for broker in producer.health(&topic) {
        let mut state = vec![if broker.connected {
            "connected"
        } else {
            "disconnected"
        }];
        if broker.suspected {
            state.push("suspected after a failure"); // avoided for a few seconds
        }
        if broker.slow {
            state.push("slow"); // given less than its share of keyless sends
        }
        println!(
            "health: broker {} {}: {} partitions, {}, latency {:?}, {} requests in flight",
            broker.broker_id,
            broker.uri,
            broker.partitions,
            state.join(", "),
            broker.latency,
            broker.in_flight
        );
    }
    producer.close().await;
    // Exit non-zero if anything failed, as the other examples do.
    match results.into_iter().find_map(Result::err) {
        Some(first) => Err(format!("{failed} sends failed, the first: {first}").into()),
        None => Ok(()),
    }
}
