//! The partition of a message that must go to one broker: the broker a
//! local transaction or an XA branch is pinned to (docs/protocol.md §2.6, 2.7).

use super::selector::Selection;
use super::topics::TopicState;
use super::ProducerInner;
use crate::cluster::Partition;
use crate::net::Connection;
use crate::Message;

/// Why no partition of the pinned broker can take a message.
pub(crate) enum NotPinnable {
    /// The broker left the topic's route, or moved: what is pinned to it
    /// cannot go on.
    PinnedGone(String),
    /// The broker serves no partition of this topic (or the selector chose
    /// none of them): this message cannot be sent, the rest may.
    NoPartition(String),
}

/// A partition of broker `broker_id` (reached by `pinned`) for `message`,
/// chosen by the producer's selector among that broker's partitions of
/// `state`'s topic.
pub(crate) fn pinned_partition(
    inner: &ProducerInner,
    state: &TopicState,
    message: &Message,
    broker_id: u32,
    pinned: &Connection,
) -> Result<Partition, NotPinnable> {
    let route = state.route.load();
    match route.connections.get(&broker_id) {
        Some(c) if c.uri() == pinned.uri() => {}
        _ => {
            return Err(NotPinnable::PinnedGone(format!(
                "the pinned broker {} is no longer listed for topic {:?}",
                pinned.uri(),
                message.topic()
            )))
        }
    }
    if inner.config.server.is_some() {
        return Ok(super::BROKER_CHOOSES); // the selector is not asked
    }
    let candidates: Vec<Partition> = route
        .partitions
        .iter()
        .copied()
        .filter(|p| p.broker_id == broker_id)
        .collect();
    let selection = Selection::new(&candidates, message, &state.sequence);
    inner
        .config
        .selector
        .select(&selection)
        .filter(|p| p.broker_id == broker_id)
        .ok_or_else(|| {
            NotPinnable::NoPartition(format!(
                "broker {} has no partition of topic {:?}",
                pinned.uri(),
                message.topic()
            ))
        })
}
