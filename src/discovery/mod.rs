//! ZooKeeper side of MetaQ: the node layout shared by brokers and producers.
//!
//! [`ZkPaths`] derives every path from a normalised root; [`TopicBroker`] is the
//! JSON a master broker writes under `topics-pub` and `topics-sub`.

mod layout;

pub use layout::{normalize_root, BrokerUri, InvalidBrokerUri, TopicBroker, ZkPaths, DEFAULT_ROOT};
