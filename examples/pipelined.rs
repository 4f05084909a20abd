//! Many sends in flight at once: 100,000 messages (or `--count N`) in
//! batches of 1,000, eight batches awaiting their answers at a time, and
//! the rate it came to.
//!
//! ```text
//! METAQ_ZK=127.0.0.1:2181 METAQ_ROOT=/meta METAQ_TOPIC=demo cargo run --release --example pipelined
//! cargo run --release --example pipelined -- --count 1000000
//! ```

use std::time::Instant;

use futures::stream::{self, StreamExt};
use metaq::{Message, Producer};

/// Messages per `send_all` call: one future and one wake-up for the lot.
const BATCH: usize = 1_000;
/// Batches awaiting answers at once. Every send is queued when its batch
/// starts and its 3 s send timeout runs from then, so the window, not the
/// total, is what may be in flight.
const WINDOW: usize = 8;

/// An environment variable, or `default` when it is not set.
fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// `--count N` from the command line, else 100,000.
fn count_from_args() -> Result<usize, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(100_000),
        [flag, n] if flag == "--count" => n.parse().map_err(|e| format!("--count {n}: {e}")),
        _ => Err("usage: pipelined [--count N]".into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count = count_from_args()?;
    let zk = setting("METAQ_ZK", "127.0.0.1:2181");
    let root = setting("METAQ_ROOT", "/meta");
    let topic = setting("METAQ_TOPIC", "demo");

    let producer = Producer::builder(&zk).root(&root).build().await?;
    producer.publish(&topic).await?;

    let started = Instant::now();
    let batches = (0..count).step_by(BATCH).map(|first| {
        (first..count.min(first + BATCH))
            .map(|i| Message::new(topic.clone(), format!("message {i}")))
            .collect::<Vec<_>>()
    });
    // `buffer_unordered` keeps WINDOW batches going (a FuturesUnordered
    // inside) and starts the next batch as soon as one is answered.
    let mut answered = stream::iter(batches)
        .map(|batch| producer.send_all(batch))
        .buffer_unordered(WINDOW);
    let mut sent = 0;
    while let Some(results) = answered.next().await {
        for result in results {
            result?; // stops at the first failure, which says what became of the message
            sent += 1;
        }
    }
    let elapsed = started.elapsed();

    println!(
        "sent {sent} messages to {topic} in {:.2} s: {:.0} msgs/s",
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64()
    );
    producer.close().await;
    Ok(())
}
