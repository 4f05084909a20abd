//! Routes without ZooKeeper: a producer built with
//! [`ProducerBuilder::for_server`](super::ProducerBuilder::for_server) has
//! one broker for every topic, and lets it choose the partition (Java's
//! `serverUrl`, docs/protocol.md §2.1).

use std::sync::Arc;

use tokio::sync::watch;

use crate::cluster::{BrokerUri, Partition};
use crate::discovery::{Discovery, TopicRoute};

/// The one partition of every topic of a producer built with
/// [`ProducerBuilder::for_server`](super::ProducerBuilder::for_server):
/// "any partition of the fixed broker". Its put carries partition `-1`, so
/// the broker chooses; [`SendResult::partition`](crate::SendResult) then
/// holds the index the broker answered (with broker id 0: without
/// ZooKeeper the broker's id is not known). It is what
/// [`Producer::partitions`](super::Producer::partitions) lists for such a
/// producer, and what its errors name as the partition.
///
/// # Examples
///
/// ```
/// use metaq::producer::BROKER_CHOOSES;
/// assert_eq!((BROKER_CHOOSES.broker_id, BROKER_CHOOSES.index), (0, u32::MAX));
/// assert_eq!(BROKER_CHOOSES.to_string(), "0--1"); // as errors name it
/// assert_eq!("0--1".parse(), Ok(BROKER_CHOOSES));
/// ```
pub const BROKER_CHOOSES: Partition = Partition::new(0, u32::MAX);

/// Where a producer's routes come from.
pub(crate) enum Routes {
    /// ZooKeeper, one watch per topic.
    ZooKeeper(Discovery),
    /// One broker for every topic; the sender is kept so that the route
    /// tasks' receivers stay open.
    Fixed(watch::Sender<Option<Arc<TopicRoute>>>),
}

impl Routes {
    /// Routes that always name `server` alone, with [`BROKER_CHOOSES`].
    pub(crate) fn fixed(server: BrokerUri) -> Self {
        let route = TopicRoute {
            topic: String::new(), // the route task names the topic itself
            brokers: [(BROKER_CHOOSES.broker_id, server)].into(),
            partitions: vec![BROKER_CHOOSES],
            ..TopicRoute::default()
        };
        Routes::Fixed(watch::channel(Some(Arc::new(route))).0)
    }

    /// The routes of `topic`, as they change.
    pub(crate) fn watch(&self, topic: &str) -> watch::Receiver<Option<Arc<TopicRoute>>> {
        match self {
            Routes::ZooKeeper(discovery) => discovery.watch(topic),
            Routes::Fixed(route) => route.subscribe(),
        }
    }

    pub(crate) fn session_info(&self) -> Option<zookeeper_client::SessionInfo> {
        match self {
            Routes::ZooKeeper(discovery) => discovery.session_info(),
            Routes::Fixed(_) => None,
        }
    }

    pub(crate) async fn close(&self) {
        if let Routes::ZooKeeper(discovery) = self {
            discovery.close().await;
        }
    }
}

/// The partition index a put names: `-1` ("the broker chooses") for
/// [`BROKER_CHOOSES`], except in a transaction, where the broker refuses
/// `-1` (§3.4) and partition 0 is used, which every topic of a broker has.
pub(crate) fn put_index(partition: Partition, in_transaction: bool) -> i32 {
    match (partition == BROKER_CHOOSES, in_transaction) {
        (true, false) => -1,
        (true, true) => 0,
        (false, _) => partition.index as i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_chooses_outside_transactions_and_partition_0_inside() {
        assert_eq!(put_index(BROKER_CHOOSES, false), -1);
        assert_eq!(put_index(BROKER_CHOOSES, true), 0);
        assert_eq!(put_index(Partition::new(0, 3), false), 3);
        assert_eq!(put_index(Partition::new(2, 3), true), 3);
    }
}
