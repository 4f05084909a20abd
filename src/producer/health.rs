//! What the producer knows of a topic's brokers right now: for dashboards,
//! health endpoints and "why does this broker get no traffic?".

use std::time::Duration;

use tokio::time::Instant;

use super::slow_brokers::SlowBrokers;
use super::topics::Route;
use crate::BrokerUri;

/// One broker of a topic as the producer sees it, from
/// [`Producer::health`](super::Producer::health).
///
/// # Examples
///
/// ```no_run
/// # fn example(producer: metaq::Producer) {
/// for broker in producer.health("orders") {
///     if !broker.connected || broker.slow {
///         eprintln!("broker {} ({}) is not pulling its weight: {broker:?}", broker.broker_id, broker.uri);
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BrokerHealth {
    /// The broker's id.
    pub broker_id: u32,
    /// Where the producer connects to it.
    pub uri: BrokerUri,
    /// How many of the topic's partitions it holds.
    pub partitions: usize,
    /// Whether its connection is up.
    pub connected: bool,
    /// Whether sends avoid it for a few seconds after it timed out or
    /// dropped a request (it is tried again afterwards).
    pub suspected: bool,
    /// Whether keyless sends give it less than its share for being far
    /// slower than the fastest broker (see
    /// [`ProducerBuilder::slow_brokers`](super::ProducerBuilder::slow_brokers)).
    pub slow: bool,
    /// Its answer time as the producer weighs it: a peak-sensitive average,
    /// or the age of its oldest unanswered request if that is longer.
    pub latency: Duration,
    /// Requests sent to it and not answered yet (all topics).
    pub in_flight: usize,
}

/// The brokers of `route`, by id.
pub(crate) fn of_route(route: &Route, policy: Option<&SlowBrokers>) -> Vec<BrokerHealth> {
    let now = Instant::now();
    let loads: Vec<_> = route
        .connections
        .iter()
        .map(|(&id, connection)| (id, connection, connection.load(now)))
        .collect();
    let fastest = loads
        .iter()
        .filter(|(_, connection, _)| connection.is_usable())
        .map(|(_, _, load)| load.latency)
        .min();
    let threshold = match (policy, fastest) {
        (Some(policy), Some(fastest)) if loads.len() > 1 => policy.threshold(fastest),
        _ => Duration::MAX,
    };
    loads
        .into_iter()
        .map(|(id, connection, load)| BrokerHealth {
            broker_id: id,
            uri: connection.uri().clone(),
            partitions: route
                .partitions
                .iter()
                .filter(|p| p.broker_id == id)
                .count(),
            connected: connection.is_ready(),
            suspected: connection.is_ready() && !connection.is_usable(),
            slow: connection.is_usable() && load.latency > threshold,
            latency: load.latency,
            in_flight: load.in_flight,
        })
        .collect()
}
