//! The metaq side of a run: a fresh [`Producer`] found through ZooKeeper,
//! driven through its public API only.

use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use indicatif::ProgressBar;
use metaq::{Message, Producer};

use super::measure::{Measurement, Meter, Tally};
use super::workload::{Mode, Workload, PROGRESS_STEP};

/// Generous: a bench reports slowness, it does not fail on it.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Sends before the measured part, so that connections, buffers and the
/// allocator are warm.
const WARM_UP: u64 = 1_000;

pub(crate) async fn run(
    zk: &str,
    root: &str,
    work: &Workload,
    servers: &[u32],
    progress: &ProgressBar,
) -> Result<Measurement, String> {
    let producer = Producer::builder(zk)
        .root(root)
        .send_timeout(SEND_TIMEOUT)
        .publish_timeout(SEND_TIMEOUT)
        .transaction_request_timeout(SEND_TIMEOUT)
        .build()
        .await
        .map_err(|e| format!("cannot start the producer: {e}"))?;
    let outcome = measured(&producer, work, servers, progress).await;
    producer.close().await;
    outcome
}

async fn measured(
    producer: &Producer,
    work: &Workload,
    servers: &[u32],
    progress: &ProgressBar,
) -> Result<Measurement, String> {
    producer
        .publish(&work.topic)
        .await
        .map_err(|e| format!("topic {}: {e}", work.topic))?;
    let warm_up = window(
        producer,
        work,
        work.count.min(WARM_UP),
        &ProgressBar::hidden(),
    )
    .await;
    if let Some(error) = warm_up.first_error {
        return Err(format!("warm-up sends failed: {error}"));
    }
    let meter = Meter::start(servers);
    let tally = match work.mode {
        Mode::Throughput => window(producer, work, work.count, progress).await,
        Mode::Latency => one_at_a_time(producer, work, progress).await,
        Mode::Transaction => transactions(producer, work, progress).await,
        Mode::Batch => batches(producer, work, progress).await,
    };
    Ok(meter.finish(tally))
}

fn message(work: &Workload) -> Message {
    Message::new(work.topic.as_str(), work.payload.clone())
}

/// Up to `window` sends in flight: a `FuturesUnordered` of `send` futures,
/// refilled as each completes. Latency is from the call to the answer.
async fn window(producer: &Producer, work: &Workload, count: u64, progress: &ProgressBar) -> Tally {
    let mut tally = Tally::default();
    let mut in_flight = FuturesUnordered::new();
    let mut issued = 0;
    let mut done = 0;
    while done < count {
        while issued < count && in_flight.len() < work.window {
            let started = Instant::now();
            let send = producer.send(message(work));
            in_flight.push(async move { (send.await, started.elapsed()) });
            issued += 1;
        }
        let Some((outcome, latency)) = in_flight.next().await else {
            break;
        };
        done += 1;
        match outcome {
            Ok(_) => {
                tally.sent += 1;
                tally.latency.record(latency);
            }
            Err(e) => tally.fail(|| e.to_string()),
        }
        if done % PROGRESS_STEP == 0 {
            progress.inc(PROGRESS_STEP);
        }
    }
    tally
}

/// `send_all` calls of `batch` messages (the last one may be smaller), up to
/// `window` messages in flight. A message's latency is its call's: from
/// `send_all` to its results.
async fn batches(producer: &Producer, work: &Workload, progress: &ProgressBar) -> Tally {
    let mut tally = Tally::default();
    let mut in_flight = FuturesUnordered::new();
    let mut left = work.count;
    loop {
        while left > 0 && in_flight.len() < work.transactions_at_once() {
            let size = left.min(work.batch as u64);
            left -= size;
            let started = Instant::now();
            let batch = producer.send_all((0..size).map(|_| message(work)));
            in_flight.push(async move { (batch.await, started.elapsed()) });
        }
        let Some((results, latency)) = in_flight.next().await else {
            break;
        };
        for result in &results {
            match result {
                Ok(_) => {
                    tally.sent += 1;
                    tally.latency.record(latency);
                }
                Err(e) => tally.fail(|| e.to_string()),
            }
        }
        progress.inc(results.len() as u64);
    }
    tally
}

/// Each send awaited before the next is made.
async fn one_at_a_time(producer: &Producer, work: &Workload, progress: &ProgressBar) -> Tally {
    let mut tally = Tally::default();
    for done in 1..=work.count {
        let started = Instant::now();
        match producer.send(message(work)).await {
            Ok(_) => {
                tally.sent += 1;
                tally.latency.record(started.elapsed());
            }
            Err(e) => tally.fail(|| e.to_string()),
        }
        if done % PROGRESS_STEP == 0 {
            progress.inc(PROGRESS_STEP);
        }
    }
    tally
}

/// Transactions of `batch` messages (the last one may be smaller), several
/// at once; each sends its messages one after another, then commits.
/// Latency is per transaction, begin to commit; a message counts as sent
/// once its transaction committed.
async fn transactions(producer: &Producer, work: &Workload, progress: &ProgressBar) -> Tally {
    let mut tally = Tally::default();
    let mut in_flight = FuturesUnordered::new();
    let mut left = work.count;
    loop {
        while left > 0 && in_flight.len() < work.transactions_at_once() {
            let size = left.min(work.batch as u64);
            left -= size;
            in_flight.push(one_transaction(producer, work, size));
        }
        let Some((size, outcome)) = in_flight.next().await else {
            break;
        };
        match outcome {
            Ok(latency) => {
                tally.sent += size;
                tally.latency.record(latency);
            }
            Err(e) => {
                tally.fail(|| e);
                tally.failed += size - 1;
            }
        }
        progress.inc(size);
    }
    tally
}

async fn one_transaction(
    producer: &Producer,
    work: &Workload,
    size: u64,
) -> (u64, Result<Duration, String>) {
    let started = Instant::now();
    let outcome = async {
        let mut tx = producer.begin_transaction()?;
        for _ in 0..size {
            tx.send(message(work)).await?;
        }
        tx.commit().await
    }
    .await;
    (
        size,
        outcome
            .map(|()| started.elapsed())
            .map_err(|e: metaq::Error| e.to_string()),
    )
}
