//! Route changes as events: what a topic's route was and what it became,
//! for logs, dashboards and "when did broker 3 leave?".
//!
//! One [`tokio::sync::broadcast`] channel for the producer rather than a
//! `watch` per topic: a `watch` keeps only the latest value, so a receiver
//! that looked late would miss a broker that left and came back, and
//! could not tell what changed. A broadcast delivers every change, each
//! carrying both routes (a receiver keeps no state), for every topic in
//! one receiver, including topics published after it subscribed. A
//! receiver that falls more than [`CAPACITY`] events behind is told how
//! many it missed (`RecvError::Lagged`) and can read the current routes
//! with `Producer::partitions`.

use std::collections::BTreeMap;

use crate::cluster::{BrokerUri, Partition};

/// Events a receiver may fall behind before it loses the oldest: routes
/// change rarely, so this is hours of changes in a healthy cluster and
/// minutes of a flapping one.
pub(crate) const CAPACITY: usize = 256;

/// One change of a topic's route, from
/// [`Producer::route_events`](super::Producer::route_events): partitions
/// or brokers added, removed or moved to another address.
///
/// # Examples
///
/// ```no_run
/// # async fn example(producer: metaq::Producer) {
/// let mut events = producer.route_events();
/// while let Ok(event) = events.recv().await {
///     for (id, address) in event.joined() {
///         println!("{}: broker {id} joined at {address}", event.topic);
///     }
///     for (id, address) in event.left() {
///         println!("{}: broker {id} left {address}", event.topic);
///     }
///     println!("{} now has {} partitions", event.topic, event.new_partitions.len());
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteEvent {
    /// The topic whose route changed.
    pub topic: String,
    /// Its partitions before, sorted.
    pub old_partitions: Vec<Partition>,
    /// Its partitions now, sorted.
    pub new_partitions: Vec<Partition>,
    /// Its brokers before: id → address.
    pub old_brokers: BTreeMap<u32, BrokerUri>,
    /// Its brokers now: id → address.
    pub new_brokers: BTreeMap<u32, BrokerUri>,
}

impl RouteEvent {
    /// The event for `topic` going from `old` to `new`, or `None` when
    /// both routes are the same.
    pub(crate) fn between(
        topic: &str,
        old: (&[Partition], BTreeMap<u32, BrokerUri>),
        new: (&[Partition], &BTreeMap<u32, BrokerUri>),
    ) -> Option<RouteEvent> {
        if old.0 == new.0 && old.1 == *new.1 {
            return None;
        }
        Some(RouteEvent {
            topic: topic.to_owned(),
            old_partitions: old.0.to_vec(),
            new_partitions: new.0.to_vec(),
            old_brokers: old.1,
            new_brokers: new.1.clone(),
        })
    }

    /// Brokers in the new route that were not in the old one at that
    /// address: new brokers, and brokers that moved (at their new address).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(event: metaq::producer::RouteEvent) {
    /// let joined: Vec<u32> = event.joined().map(|(id, _)| id).collect();
    /// println!("{} gained brokers {joined:?}", event.topic);
    /// # }
    /// ```
    pub fn joined(&self) -> impl Iterator<Item = (u32, &BrokerUri)> {
        only_in(&self.new_brokers, &self.old_brokers)
    }

    /// Brokers of the old route that are not in the new one at that
    /// address: brokers that left, and brokers that moved (at their old
    /// address).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(event: metaq::producer::RouteEvent) {
    /// for (id, address) in event.left() {
    ///     eprintln!("{} lost broker {id} ({address})", event.topic);
    /// }
    /// # }
    /// ```
    pub fn left(&self) -> impl Iterator<Item = (u32, &BrokerUri)> {
        only_in(&self.old_brokers, &self.new_brokers)
    }
}

/// Entries of `these` that `others` lacks, or has at another address.
fn only_in<'a>(
    these: &'a BTreeMap<u32, BrokerUri>,
    others: &'a BTreeMap<u32, BrokerUri>,
) -> impl Iterator<Item = (u32, &'a BrokerUri)> {
    these
        .iter()
        .filter(|(id, uri)| others.get(id) != Some(uri))
        .map(|(&id, uri)| (id, uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(entries: &[(u32, &str)]) -> BTreeMap<u32, BrokerUri> {
        entries
            .iter()
            .map(|(id, uri)| (*id, uri.parse().unwrap()))
            .collect()
    }

    #[test]
    fn the_same_route_is_no_event() {
        let parts = [Partition::new(0, 0)];
        let both = brokers(&[(0, "meta://h:1")]);
        assert_eq!(
            RouteEvent::between("t", (&parts, both.clone()), (&parts, &both)),
            None
        );
    }

    #[test]
    fn joined_left_and_moved_brokers_are_told_apart() {
        let old = brokers(&[(0, "meta://h:1"), (1, "meta://h:2")]);
        let new = brokers(&[(1, "meta://h:3"), (2, "meta://h:4")]);
        let event = RouteEvent::between("t", (&[], old), (&[], &new)).expect("a change");
        let joined: Vec<(u32, String)> = event.joined().map(|(i, u)| (i, u.to_string())).collect();
        let left: Vec<(u32, String)> = event.left().map(|(i, u)| (i, u.to_string())).collect();
        assert_eq!(joined, [(1, "meta://h:3".into()), (2, "meta://h:4".into())]);
        assert_eq!(left, [(0, "meta://h:1".into()), (1, "meta://h:2".into())]);
    }

    #[test]
    fn a_partition_change_alone_is_an_event() {
        let same = brokers(&[(0, "meta://h:1")]);
        let event = RouteEvent::between(
            "t",
            (&[Partition::new(0, 0)], same.clone()),
            (&[Partition::new(0, 0), Partition::new(0, 1)], &same),
        )
        .expect("a change");
        assert_eq!(event.joined().count(), 0);
        assert_eq!(event.new_partitions.len(), 2);
    }
}
