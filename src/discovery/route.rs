//! What discovery produces: the brokers and partitions of one topic.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::BrokerUri;

/// A partition, named `<brokerId>-<index>` as MetaQ does (`0-3`).
///
/// Ordered by broker id, then index, numerically.
///
/// ```
/// use metaq::discovery::Partition;
/// let p: Partition = "1-3".parse().unwrap();
/// assert_eq!(p, Partition::new(1, 3));
/// assert_eq!(p.to_string(), "1-3");
/// assert!(Partition::new(2, 0) > Partition::new(1, 10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    /// The broker holding it.
    pub broker_id: u32,
    /// Its index on that broker (the number sent in `put`).
    pub index: u32,
}

impl Partition {
    /// Partition `index` of broker `broker_id`.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::Partition;
    /// let p = Partition::new(1, 3);
    /// assert_eq!((p.broker_id, p.index), (1, 3));
    /// assert_eq!(p.to_string(), "1-3");
    /// ```
    pub const fn new(broker_id: u32, index: u32) -> Self {
        Self { broker_id, index }
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.broker_id, self.index)
    }
}

/// Why a partition name could not be parsed.
///
/// Holds the rejected text (at most 60 characters of it).
///
/// # Examples
///
/// ```
/// use metaq::discovery::{InvalidPartition, Partition};
/// let err = "1:3".parse::<Partition>().unwrap_err();
/// assert_eq!(err, InvalidPartition("1:3".into()));
/// assert!("1-x".parse::<Partition>().is_err());
/// assert!("+1-2".parse::<Partition>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid partition {0:?}: expected <brokerId>-<index>")]
pub struct InvalidPartition(pub String);

impl FromStr for Partition {
    type Err = InvalidPartition;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidPartition(text.chars().take(60).collect());
        let (broker, index) = text.split_once('-').ok_or_else(bad)?;
        Ok(Self {
            broker_id: digits(broker).ok_or_else(bad)?,
            index: digits(index).ok_or_else(bad)?,
        })
    }
}

/// A number written as ASCII digits only: Rust's own parsing also takes a
/// leading `+`, which MetaQ never writes.
pub(crate) fn digits<T: FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

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
