//! A producer ended with 100,000 sends in flight, by `close()` or by
//! dropping everything, returns within its bound and leaves no task.
//! Real ZooKeeper, a development broker that answers nothing. (A million
//! sends: `producer_million.rs`.)

mod producer_support;

use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use metaq::{Delivery, Message, Producer};
use producer_support::*;
use tokio::runtime::Runtime;
use tokio::time::Instant;

const TOPIC: &str = "volume";
/// How long the producer's tasks and connections may take to go.
const GONE_WITHIN: Duration = Duration::from_secs(15);
const IN_FLIGHT: usize = 100_000;
const SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// Room beyond the send timeout for a loaded 2-core machine to wind
/// 100,000 sends down; far below "never".
const SLACK: Duration = Duration::from_secs(10);

/// A producer on its own runtime, room for `IN_FLIGHT` sends, one stalled
/// broker (reads nothing, answers nothing), and a task on that runtime
/// driving `IN_FLIGHT` sends, counting outcomes as `(ok, not_sent,
/// maybe_sent, other)`.
struct Stuck {
    runtime: Runtime,
    producer: Producer,
    broker: metaq_testkit::TestBroker,
    sends: tokio::task::JoinHandle<[usize; 4]>,
}

async fn stuck_with_sends_in_flight() -> Stuck {
    let root = unique_root();
    let broker = broker(&root, 0, &[(TOPIC, 2)]).await;
    let runtime = producer_runtime();
    let handle = runtime.handle().clone();
    let builder = producer(&root)
        .max_in_flight(IN_FLIGHT)
        .send_timeout(SEND_TIMEOUT);
    let producer: Producer = on(&handle, async move { builder.build().await.unwrap() }).await;
    let p = producer.clone();
    on(&handle, async move { p.publish(TOPIC).await.unwrap() }).await;
    broker.faults().stall(true);

    let p = producer.clone();
    let sends = handle.spawn(async move {
        let mut pending: FuturesUnordered<_> = (0..IN_FLIGHT)
            .map(|i| p.send(Message::new(TOPIC, format!("stuck-{i}"))))
            .collect();
        let mut counts = [0usize; 4];
        while let Some(result) = pending.next().await {
            let slot = match result.map_err(|e| e.delivery()) {
                Ok(_) => 0,
                Err(Some(Delivery::NotSent)) => 1,
                Err(Some(Delivery::MaybeSent)) => 2,
                Err(_) => 3,
            };
            counts[slot] += 1;
        }
        counts
    });
    // Every send started (its put queued or written) before the end comes.
    eventually(Duration::from_secs(30), "all sends in flight", || async {
        (producer.stats().in_flight >= IN_FLIGHT).then_some(())
    })
    .await;
    Stuck {
        runtime,
        producer,
        broker,
        sends,
    }
}

/// `close()` with 100,000 sends waiting on a broker that answers nothing
/// returns once they time out; each ends with a typed "maybe sent" (its
/// put may have been written), none succeeds, and nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_with_a_hundred_thousand_sends_in_flight_returns_within_the_bound() {
    init_tracing();
    let stuck = stuck_with_sends_in_flight().await;
    let handle = stuck.runtime.handle().clone();
    let started = Instant::now();
    let p = stuck.producer.clone();
    on(&handle, async move { p.close().await }).await;
    let took = started.elapsed();
    assert!(took < SEND_TIMEOUT + SLACK, "close took {took:?}");
    let counts = stuck.sends.await.unwrap();
    eprintln!(
        "close returned after {took:?}; outcomes (ok, not sent, maybe sent, other) {counts:?}"
    );
    assert_eq!(counts, [0, 0, IN_FLIGHT, 0]);
    assert_eq!(stuck.producer.stats().in_flight, 0);
    assert_eq!(stuck.producer.stats().failed_maybe_sent, IN_FLIGHT as u64);

    stuck.broker.faults().stall(false);
    no_connection_left(stuck.broker.local_addr(), GONE_WITHIN).await;
    no_task_left(&stuck.runtime, GONE_WITHIN).await;
    drop(stuck.producer);
    stuck.runtime.shutdown_background();
}

/// Dropping every handle and every send future with 100,000 sends in
/// flight stops the producer's tasks and closes its connection, without
/// waiting for the send timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_producer_with_a_hundred_thousand_sends_in_flight_leaves_nothing() {
    init_tracing();
    let stuck = stuck_with_sends_in_flight().await;
    let started = Instant::now();
    stuck.sends.abort(); // drops the send futures
    assert!(stuck.sends.await.unwrap_err().is_cancelled());
    drop(stuck.producer);
    no_task_left(&stuck.runtime, GONE_WITHIN).await;
    let took = started.elapsed();
    eprintln!("nothing left {took:?} after the drop");
    stuck.broker.faults().stall(false);
    no_connection_left(stuck.broker.local_addr(), GONE_WITHIN).await;
    stuck.runtime.shutdown_background();
}
