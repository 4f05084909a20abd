//! Latency-aware avoidance: keyless sends give a broker whose answers are
//! far slower than the others' proportionally less traffic.
//!
//! Round-robin alone gives a broker answering 200 ms late half the sends,
//! and the caller's window fills with them (in issue 10's probe, full-speed
//! sending fell from ~35,000 to ~615 msgs/s). As RocketMQ's
//! `sendLatencyFaultEnable` and Finagle's peak-EWMA balancer do, a send
//! looks at each broker's latency ([`Load`]) before choosing. A broker is
//! *slow* when its latency is both `factor` times and `margin` above the
//! fastest broker's: healthy brokers never are, so while all are healthy
//! round-robin is exact. A slow broker keeps a share of the sends equal to
//! its speed relative to the fastest, never below [`MIN_SHARE`] (a trickle,
//! so that its recovery is noticed), and never more requests waiting than
//! that share of all the topic's requests waiting (so it cannot hold the
//! caller's window).

use std::time::Duration;

use tokio::time::Instant;

use super::topics::Route;
use crate::net::{Connection, Load};

/// The smallest share of sends a slow broker keeps: one in a hundred.
pub const MIN_SHARE: f64 = 0.01;

/// When a broker counts as slow; see [`ProducerBuilder::slow_brokers`].
///
/// [`ProducerBuilder::slow_brokers`]: super::ProducerBuilder::slow_brokers
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use metaq::producer::SlowBrokers;
/// let default = SlowBrokers::default();
/// assert_eq!(default.factor, 4.0);
/// assert_eq!(default.margin, Duration::from_millis(50));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowBrokers {
    /// How many times the fastest broker's latency a slow one's is at least.
    pub factor: f64,
    /// How far above the fastest broker's latency a slow one's is at least,
    /// so that jitter among fast brokers (a millisecond against a tenth of
    /// one) never counts.
    pub margin: Duration,
}

impl SlowBrokers {
    /// The latency above which a broker counts as slow, when the fastest
    /// broker's is `fastest`.
    pub(crate) fn threshold(&self, fastest: Duration) -> Duration {
        fastest
            .mul_f64(self.factor)
            .max(fastest.saturating_add(self.margin))
    }
}

impl Default for SlowBrokers {
    fn default() -> Self {
        SlowBrokers {
            factor: 4.0,
            margin: Duration::from_millis(50),
        }
    }
}

/// Most brokers one send looks at; a route with more is not weighed (a
/// MetaQ cluster has a handful of masters).
const MAX_BROKERS: usize = 16;

/// The brokers one send skips in its first choice, and the slow broker
/// whose turn in the trickle it is, if any: the send then goes to it.
#[derive(Debug, Default)]
pub(crate) struct Skipped {
    ids: [u32; MAX_BROKERS],
    len: usize,
    turn: Option<u32>,
}

impl Skipped {
    /// Neither a broker skipped nor a turn: every broker is a fit choice.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0 && self.turn.is_none()
    }

    pub(crate) fn contains(&self, broker_id: u32) -> bool {
        self.ids[..self.len].contains(&broker_id)
    }

    /// Whether the first choice may be a partition of `broker_id`: only
    /// the slow broker's during its turn, else any broker not skipped.
    pub(crate) fn admits(&self, broker_id: u32) -> bool {
        match self.turn {
            Some(turn) => broker_id == turn,
            None => !self.contains(broker_id),
        }
    }

    /// Weighs the route's brokers as of `now` and decides, for each slow
    /// one, whether this send goes there (its turn in the trickle, and
    /// room in its share of what is waiting). A broker in `tried` (this
    /// send failed there) is skipped without using up a turn.
    pub(crate) fn for_send(
        route: &Route,
        tried: &[u32],
        now: Instant,
        policy: &SlowBrokers,
    ) -> Skipped {
        let mut skipped = Skipped::default();
        let n = route.connections.len();
        if !(2..=MAX_BROKERS).contains(&n) {
            return skipped;
        }
        let mut loads = [(0u32, None::<(Load, &Connection)>); MAX_BROKERS];
        let mut fastest = Duration::MAX;
        let mut waiting = 0;
        for (slot, (&id, connection)) in loads.iter_mut().zip(&route.connections) {
            if !connection.is_usable() {
                *slot = (id, None);
                continue;
            }
            let load = connection.load(now);
            fastest = fastest.min(load.latency);
            waiting += load.in_flight;
            *slot = (id, Some((load, connection)));
        }
        if fastest == Duration::MAX {
            return skipped;
        }
        let threshold = policy.threshold(fastest);
        for (id, weighed) in &loads[..n] {
            let Some((load, connection)) = weighed else {
                continue;
            };
            if load.latency <= threshold {
                continue;
            }
            let share = (fastest.as_secs_f64() / load.latency.as_secs_f64()).max(MIN_SHARE);
            let every = (1.0 / share).round() as u64;
            let over_share = load.in_flight as f64 >= (share * waiting as f64).max(1.0);
            // Its turn sends the message there. Merely not skipping it
            // would leave the choice to the selector, whose round-robin
            // advances in step with the turns (one of each per send): a
            // turn could then land on another broker's partition every
            // time, and a slow broker that recovered would never get the
            // answers that show it (found with a broker restarted after a
            // hang: 20 s and more without a single send).
            let takes_turn = skipped.turn.is_none()
                && !tried.contains(id)
                && !over_share
                && connection.take_turn(every);
            if takes_turn {
                skipped.turn = Some(*id);
            } else {
                skipped.ids[skipped.len] = *id;
                skipped.len += 1;
            }
        }
        skipped
    }
}
