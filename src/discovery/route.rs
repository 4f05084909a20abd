//! What discovery produces: the brokers and partitions of one topic.

use std::collections::BTreeMap;

use crate::cluster::{BrokerUri, Partition};

/// Where a route was read from.
///
/// # Examples
///
/// ```
/// use metaq::discovery::{RouteSource, TopicRoute};
/// // MetaQ 1.4.3 and later publish under `topics-pub`; that is the default.
/// assert_eq!(TopicRoute::default().source, RouteSource::TopicsPub);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum RouteSource {
    /// `<root>/brokers/topics-pub/<topic>` (MetaQ 1.4.3 and later).
    #[default]
    TopicsPub,
    /// `<root>/brokers/topics/<topic>`, the legacy layout (plain partition counts).
    Legacy,
}

/// An immutable snapshot of one topic's master brokers and partitions.
///
/// Only brokers with a `master` node are listed; partitions of a broker
/// without one are dropped. Partitions are sorted by broker id, then index.
///
/// Routes come from [`Discovery::watch`](super::Discovery::watch) and
/// [`read_route`](super::read_route); building one by hand is useful in tests.
///
/// # Examples
///
/// ```
/// use metaq::discovery::{Partition, RouteSource, TopicRoute};
/// let route = TopicRoute {
///     topic: "orders".into(),
///     brokers: [(0, "meta://10.0.0.5:8123".parse().unwrap())].into(),
///     partitions: vec![Partition::new(0, 0), Partition::new(0, 1)],
///     source: RouteSource::TopicsPub,
/// };
/// assert_eq!(route.partitions.len(), 2);
/// assert!(!route.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicRoute {
    /// The topic.
    pub topic: String,
    /// Broker id → address.
    pub brokers: BTreeMap<u32, BrokerUri>,
    /// Every partition, sorted.
    pub partitions: Vec<Partition>,
    /// Which layout it came from.
    pub source: RouteSource,
}

impl TopicRoute {
    /// Whether no broker serves the topic.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::discovery::{Partition, TopicRoute};
    /// let mut route = TopicRoute::default();
    /// assert!(route.is_empty());
    /// route.partitions.push(Partition::new(0, 0));
    /// assert!(!route.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    /// The address of a partition's broker.
    ///
    /// `None` if the route does not list that broker.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::discovery::{Partition, TopicRoute};
    /// let mut route = TopicRoute::default();
    /// route.brokers.insert(0, "meta://10.0.0.5:8123".parse().unwrap());
    /// let broker = route.broker_of(Partition::new(0, 2)).unwrap();
    /// assert_eq!(broker.port, 8123);
    /// assert_eq!(route.broker_of(Partition::new(1, 0)), None);
    /// ```
    pub fn broker_of(&self, partition: Partition) -> Option<&BrokerUri> {
        self.brokers.get(&partition.broker_id)
    }
}
