//! `metaq produce`: send messages, report each one and a summary.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args, ValueEnum};
use futures::stream::{FuturesUnordered, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use metaq::producer::{KeyHash, Random, RoundRobin};
use metaq::{Error, Message, Producer, SendResult};
use serde_json::json;

#[derive(Clone, Copy, ValueEnum)]
enum SelectorName {
    RoundRobin,
    Random,
    KeyHash,
}

#[derive(Args)]
pub(crate) struct ProduceArgs {
    #[command(flatten)]
    cluster: crate::ClusterArgs,
    /// The topic.
    #[arg(long)]
    topic: String,
    /// Number of messages (ignored with --stdin).
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Payload of this many bytes ('x' repeated).
    #[arg(long, conflicts_with_all = ["payload", "stdin"])]
    size: Option<usize>,
    /// Payload text.
    #[arg(long, conflicts_with = "stdin")]
    payload: Option<String>,
    /// Send one message per line of standard input.
    #[arg(long)]
    stdin: bool,
    /// Attribute sent with every message.
    #[arg(long)]
    attribute: Option<String>,
    /// Partition selector.
    #[arg(long, value_enum, default_value = "round-robin")]
    selector: SelectorName,
    /// Key for the key-hash selector (never sent).
    #[arg(long)]
    key: Option<String>,
    /// Sends in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Upper bound on messages per second.
    #[arg(long)]
    rate: Option<f64>,
    /// One JSON line per message and a JSON summary.
    #[arg(long)]
    json: bool,
    /// Send timeout in milliseconds.
    #[arg(long, default_value_t = 3000)]
    timeout_ms: u64,
    /// Retries of a keyless send on another broker.
    #[arg(long, default_value_t = 2)]
    retries: u32,
    /// Send in local transactions of this many messages, committing each.
    #[arg(long, value_name = "BATCH")]
    transaction: Option<usize>,
    /// With --transaction: roll each transaction back instead of committing.
    #[arg(long, requires = "transaction")]
    rollback: bool,
}

#[derive(Default)]
struct Tally {
    sent: u64,
    failed: u64,
    per_partition: BTreeMap<String, u64>,
}

pub(crate) async fn run(args: ProduceArgs) -> Result<bool, String> {
    let mut builder = Producer::builder(&args.cluster.zk)
        .root(&args.cluster.root)
        .send_timeout(Duration::from_millis(args.timeout_ms))
        .retries(args.retries);
    builder = match args.selector {
        SelectorName::RoundRobin => builder.selector(RoundRobin),
        SelectorName::Random => builder.selector(Random),
        SelectorName::KeyHash => builder.selector(KeyHash),
    };
    let producer = builder.build().await.map_err(|e| e.to_string())?;
    if let Err(e) = producer.publish(&args.topic).await {
        producer.close().await;
        return Err(e.to_string());
    }
    let payloads = payloads(&args);
    if let Some(batch) = args.transaction {
        let started = Instant::now();
        let tally = transactional(&producer, &args, payloads, batch.max(1)).await;
        producer.close().await;
        summary(&tally, started.elapsed(), args.json);
        return Ok(tally.failed == 0);
    }
    let total = if args.stdin { None } else { Some(args.count) };
    let progress = progress_bar(total, args.json);
    let interval = args
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut in_flight = FuturesUnordered::new();
    let mut next_at = tokio::time::Instant::now();
    for payload in payloads {
        if let Some(interval) = interval {
            tokio::time::sleep_until(next_at).await;
            next_at += interval;
        }
        while in_flight.len() >= args.concurrency.max(1) {
            if let Some(outcome) = in_flight.next().await {
                report(&outcome, &mut tally, args.json, &progress);
            }
        }
        let mut message = Message::new(args.topic.clone(), payload);
        if let Some(attribute) = &args.attribute {
            message = message.with_attribute(attribute.clone());
        }
        if let Some(key) = &args.key {
            message = message.with_key(key.clone());
        }
        in_flight.push(producer.send(message));
    }
    while let Some(outcome) = in_flight.next().await {
        report(&outcome, &mut tally, args.json, &progress);
    }
    progress.finish_and_clear();
    let elapsed = started.elapsed();
    producer.close().await;
    summary(&tally, elapsed, args.json);
    Ok(tally.failed == 0)
}

/// Sends in transactions of `batch` messages, one transaction at a time.
/// A message counts as sent once its transaction committed (or, with
/// `--rollback`, rolled back as asked).
async fn transactional(
    producer: &Producer,
    args: &ProduceArgs,
    payloads: Box<dyn Iterator<Item = Bytes>>,
    batch: usize,
) -> Tally {
    let mut tally = Tally::default();
    let mut payloads = payloads.peekable();
    while payloads.peek().is_some() {
        let chunk: Vec<Bytes> = payloads.by_ref().take(batch).collect();
        let count = chunk.len() as u64;
        let outcome = run_transaction(producer, args, chunk).await;
        match outcome {
            Ok((key, partitions)) => {
                tally.sent += count;
                for p in &partitions {
                    *tally.per_partition.entry(p.clone()).or_default() += 1;
                }
                if args.json {
                    let state = if args.rollback {
                        "rolled_back"
                    } else {
                        "committed"
                    };
                    println!(
                        "{}",
                        json!({ "transaction": key, "messages": count, "state": state })
                    );
                }
            }
            Err(error) => {
                tally.failed += count;
                let kind = error
                    .delivery()
                    .map_or("error".to_owned(), |d| d.to_string());
                if args.json {
                    println!(
                        "{}",
                        json!({ "error": error.to_string(), "kind": kind, "messages": count })
                    );
                } else {
                    eprintln!("transaction failed ({kind}): {error}");
                }
            }
        }
    }
    tally
}

async fn run_transaction(
    producer: &Producer,
    args: &ProduceArgs,
    chunk: Vec<Bytes>,
) -> Result<(String, Vec<String>), Error> {
    let mut tx = producer.begin_transaction()?;
    let key = tx.key().to_owned();
    let mut partitions = Vec::with_capacity(chunk.len());
    for payload in chunk {
        let mut message = Message::new(args.topic.clone(), payload);
        if let Some(attribute) = &args.attribute {
            message = message.with_attribute(attribute.clone());
        }
        partitions.push(tx.send(message).await?.partition.to_string());
    }
    if args.rollback {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok((key, partitions))
}

fn payloads(args: &ProduceArgs) -> Box<dyn Iterator<Item = Bytes>> {
    if args.stdin {
        let lines = std::io::stdin().lock().lines().map_while(Result::ok);
        // Read up front: the stdin lock cannot be held across awaits.
        return Box::new(lines.collect::<Vec<_>>().into_iter().map(Bytes::from));
    }
    let payload = match (&args.payload, args.size) {
        (Some(text), _) => Bytes::from(text.clone()),
        (None, Some(size)) => Bytes::from(vec![b'x'; size]),
        (None, None) => Bytes::from_static(b"hello from metaq"),
    };
    Box::new(std::iter::repeat_n(payload, args.count as usize))
}

fn progress_bar(total: Option<u64>, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() || total.is_some_and(|t| t < 1000) {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(total) => ProgressBar::new(total),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn report(
    outcome: &Result<SendResult, Error>,
    tally: &mut Tally,
    json: bool,
    progress: &ProgressBar,
) {
    progress.inc(1);
    match outcome {
        Ok(sent) => {
            tally.sent += 1;
            *tally
                .per_partition
                .entry(sent.partition.to_string())
                .or_default() += 1;
            if json {
                println!(
                    "{}",
                    json!({ "partition": sent.partition.to_string(), "offset": sent.offset, "id": sent.message_id })
                );
            }
        }
        Err(error) => {
            tally.failed += 1;
            let kind = error
                .delivery()
                .map_or("error".to_owned(), |d| d.to_string());
            if json {
                println!("{}", json!({ "error": error.to_string(), "kind": kind }));
            } else {
                progress.suspend(|| eprintln!("failed ({kind}): {error}"));
            }
        }
    }
}

fn summary(tally: &Tally, elapsed: Duration, json: bool) {
    let rate = (tally.sent + tally.failed) as f64 / elapsed.as_secs_f64().max(1e-9);
    if json {
        println!(
            "{}",
            json!({
                "sent": tally.sent,
                "failed": tally.failed,
                "elapsed_ms": elapsed.as_millis() as u64,
                "msgs_per_sec": (rate * 10.0).round() / 10.0,
                "per_partition": tally.per_partition,
            })
        );
    } else {
        println!(
            "sent {} failed {} in {:.3}s ({:.0} msgs/s)",
            tally.sent,
            tally.failed,
            elapsed.as_secs_f64(),
            rate
        );
        for (partition, count) in &tally.per_partition {
            println!("  {partition}: {count}");
        }
    }
}
