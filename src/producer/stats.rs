//! What a producer's sends came to, counted as they end: something to
//! alert on, and the number of possible duplicates that at-least-once
//! delivery made.

use std::sync::atomic::{AtomicU64, Ordering};

use super::broker_stats::BrokerStats;
use super::latency_histogram::{LatencyHistogram, LatencySummary};
use super::send_metrics;
use crate::error::{Delivery, Error, Result};
use crate::SendResult;

/// Counts since the producer was built, for [`Producer::stats`]. Covers
/// `send` and `send_all`; transactions are counted apart by their callers.
///
/// [`Producer::stats`]: super::Producer::stats
///
/// # Examples
///
/// ```no_run
/// # async fn example(producer: metaq::Producer) {
/// let stats = producer.stats();
/// println!(
///     "{} sent (p99 {:?}), {} failed, {} possibly stored twice, {} in flight",
///     stats.sent,
///     stats.latency.p99,
///     stats.failed(),
///     stats.retries_after_maybe_sent,
///     stats.in_flight
/// );
/// for broker in &stats.brokers {
///     println!("  {}: {} sent, {} failed", broker.uri, broker.sent, broker.failed);
/// }
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProducerStats {
    /// Sends that succeeded (the broker answered 200).
    pub sent: u64,
    /// Sends that failed with nothing reaching a broker: including messages
    /// refused before sending, topics no broker serves and sends after
    /// `close`.
    pub failed_not_sent: u64,
    /// Sends that failed after a request was written: the message may be
    /// stored.
    pub failed_maybe_sent: u64,
    /// Sends a broker answered with an error code.
    pub failed_rejected: u64,
    /// Sends that failed without a delivery kind (ZooKeeper unreachable
    /// while the topic was first looked up).
    pub failed_other: u64,
    /// Attempts made again on another broker after a failed one.
    pub retries: u64,
    /// Retries whose failed attempt was *maybe sent*: each may have stored
    /// the message twice. An upper bound on the duplicates sends made.
    pub retries_after_maybe_sent: u64,
    /// Sends started and not yet ended.
    pub in_flight: usize,
    /// How long the sends that succeeded took, from the call to the
    /// broker's answer (retries included).
    pub latency: LatencySummary,
    /// Each broker the producer connected to, by id: its sends, failures,
    /// requests in flight, slowness and latency.
    pub brokers: Vec<BrokerStats>,
    /// How many times a topic's route changed (partitions or brokers
    /// added, removed or moved), over every topic; a topic's first listing
    /// is not a change. See [`Producer::route_events`](super::Producer::route_events).
    pub route_changes: u64,
}

impl ProducerStats {
    /// Sends that failed, whatever the kind.
    ///
    /// # Examples
    ///
    /// ```
    /// let stats = metaq::producer::ProducerStats::default();
    /// assert_eq!(stats.failed(), 0);
    /// ```
    pub fn failed(&self) -> u64 {
        self.failed_not_sent + self.failed_maybe_sent + self.failed_rejected + self.failed_other
    }
}

/// Sends counted by how they ended: shared by the producer's counters and
/// the one-way producer's.
#[derive(Debug, Default)]
pub(crate) struct Outcomes {
    pub(crate) sent: AtomicU64,
    pub(crate) failed_not_sent: AtomicU64,
    pub(crate) failed_maybe_sent: AtomicU64,
    pub(crate) failed_rejected: AtomicU64,
    pub(crate) failed_other: AtomicU64,
}

impl Outcomes {
    /// Counts one send that succeeded.
    pub(crate) fn sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one send that failed with `error`, by its delivery kind.
    pub(crate) fn failed(&self, error: &Error) {
        let counter = match error.delivery() {
            Some(Delivery::NotSent) => &self.failed_not_sent,
            Some(Delivery::MaybeSent) => &self.failed_maybe_sent,
            Some(Delivery::Rejected) => &self.failed_rejected,
            None => &self.failed_other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A counter's value (counters are only ever added to).
pub(crate) fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// The live counters behind [`ProducerStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    outcomes: Outcomes,
    retries: AtomicU64,
    retries_after_maybe_sent: AtomicU64,
    /// Latencies of the sends that succeeded (recorded by the send, which
    /// knows when its answer came).
    pub(crate) latency: LatencyHistogram,
}

impl Counters {
    /// A send to `topic` ended with `result`.
    pub(crate) fn ended(&self, topic: &str, result: &Result<SendResult>) {
        match result {
            // Counted by the latency histogram, which every success
            // records: one atomic add per send instead of two.
            Ok(_) => {}
            Err(error) => self.failed(topic, error),
        }
    }

    /// A send to `topic` ended with `error`.
    pub(crate) fn failed(&self, topic: &str, error: &Error) {
        self.outcomes.failed(error);
        send_metrics::count_failure(topic, error);
    }

    /// A send tries again after an attempt that ended as `delivery`.
    pub(crate) fn retried(&self, delivery: Delivery) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        if delivery == Delivery::MaybeSent {
            self.retries_after_maybe_sent
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counts as of now; the caller fills in the brokers and route
    /// changes, which live elsewhere.
    pub(crate) fn snapshot(&self, in_flight: usize) -> ProducerStats {
        let outcomes = &self.outcomes;
        let latency = self.latency.summary();
        ProducerStats {
            sent: latency.count,
            failed_not_sent: read(&outcomes.failed_not_sent),
            failed_maybe_sent: read(&outcomes.failed_maybe_sent),
            failed_rejected: read(&outcomes.failed_rejected),
            failed_other: read(&outcomes.failed_other),
            retries: read(&self.retries),
            retries_after_maybe_sent: read(&self.retries_after_maybe_sent),
            in_flight,
            latency,
            brokers: Vec::new(),
            route_changes: 0,
        }
    }
}
