//! ZooKeeper side of MetaQ: the node layout shared by brokers and producers,
//! and the route snapshots a producer sends by.
//!
//! [`ZkPaths`] derives every path from a normalised root; [`TopicBroker`] is the
//! JSON a master broker writes under `topics-pub` and `topics-sub`;
//! [`TopicRoute`] is one topic's brokers and partitions.
//!
//! [`Discovery`] keeps one route per watched topic up to date from ZooKeeper
//! (settings in [`ZkSettings`]); [`read_route`] reads one route once;
//! [`Discovery::describe_topic`] says why a topic has no route ([`TopicPresence`]).

mod layout;
mod presence;
pub(crate) mod reach;
mod read;
mod route;
mod session;
mod settings;
mod watcher;

pub use layout::{normalize_root, BrokerUri, InvalidBrokerUri, TopicBroker, ZkPaths, DEFAULT_ROOT};
pub use presence::TopicPresence;
pub use read::read_route;
pub use route::{InvalidPartition, Partition, RouteSource, TopicRoute};
pub use session::Discovery;
pub use settings::{ZkSettings, DEFAULT_CONNECT};
