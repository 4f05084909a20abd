//! Per-broker figures for [`ProducerStats`](super::ProducerStats): what
//! sends came to on each broker (counted in the connection's tally as they
//! end) beside what [`health`](super::health) sees of it now.

use std::collections::BTreeMap;
use std::time::Duration;

use super::health::BrokerHealth;
use crate::cluster::BrokerUri;
use crate::net::Tally;

/// One broker as the producer's sends found it, from
/// [`Producer::stats`](super::Producer::stats): every broker address the
/// producer connected to since it was built, including those no route
/// names any more (their counts stay, so the brokers' `sent` add up to the
/// producer's).
///
/// # Examples
///
/// ```no_run
/// # fn example(producer: metaq::Producer) {
/// for broker in producer.stats().brokers {
///     println!(
///         "broker {} ({}): {} sent, {} failed, {} in flight, {:?}{}",
///         broker.broker_id,
///         broker.uri,
///         broker.sent,
///         broker.failed,
///         broker.in_flight,
///         broker.latency,
///         if broker.slow { ", avoided as slow" } else { "" },
///     );
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerStats {
    /// The broker's id (the last a route gave this address); `u32::MAX` if
    /// no route ever named it (a connection only an XA resource made by
    /// [`xa_resource_at`](crate::Producer::xa_resource_at) uses).
    pub broker_id: u32,
    /// Its address.
    pub uri: BrokerUri,
    /// Sends that succeeded there (`send` and `send_all`).
    pub sent: u64,
    /// Attempts that failed there, whether their send was then retried on
    /// another broker or failed.
    pub failed: u64,
    /// Requests sent to it and not answered yet (all topics,
    /// transactions included); 0 once no route names it.
    pub in_flight: usize,
    /// Whether keyless sends of some topic give it less than its share now
    /// for being far slower than that topic's fastest broker.
    pub slow: bool,
    /// Its answer time as the producer weighs it (a peak-sensitive average,
    /// or the age of its oldest unanswered request if longer); zero once no
    /// route names it.
    pub latency: Duration,
    /// Whether a route of a published topic names it now.
    pub serving: bool,
}

/// The brokers of `tallies` (every address connected to), with what the
/// topics' `health` says of those still in a route.
pub(crate) fn collect(
    tallies: Vec<(BrokerUri, std::sync::Arc<Tally>)>,
    health: impl IntoIterator<Item = BrokerHealth>,
) -> Vec<BrokerStats> {
    let mut live: BTreeMap<BrokerUri, BrokerHealth> = BTreeMap::new();
    for broker in health {
        // A broker in several topics' routes: one connection, so one
        // latency and one in-flight count; slow if slow for any topic.
        live.entry(broker.uri.clone())
            .and_modify(|seen| {
                seen.slow |= broker.slow;
                seen.latency = seen.latency.max(broker.latency);
                seen.in_flight = seen.in_flight.max(broker.in_flight);
            })
            .or_insert(broker);
    }
    let mut brokers: Vec<BrokerStats> = tallies
        .into_iter()
        .map(|(uri, tally)| {
            let (sent, failed) = tally.counts();
            let now = live.get(&uri);
            BrokerStats {
                broker_id: now
                    .map(|b| b.broker_id)
                    .or(tally.broker_id())
                    .unwrap_or(u32::MAX),
                sent,
                failed,
                in_flight: now.map_or(0, |b| b.in_flight),
                slow: now.is_some_and(|b| b.slow),
                latency: now.map_or(Duration::ZERO, |b| b.latency),
                serving: now.is_some(),
                uri,
            }
        })
        .collect();
    brokers.sort_by(|a, b| (a.broker_id, &a.uri).cmp(&(b.broker_id, &b.uri)));
    brokers
}
