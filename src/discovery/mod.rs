//! ZooKeeper side of MetaQ: the node layout shared by brokers and producers,
//! and the route snapshots a producer sends by.
//!
//! [`ZkPaths`] derives every path from a normalised root; [`TopicBroker`] is the
//! JSON a master broker writes under `topics-pub` and `topics-sub`;
//! [`TopicRoute`] is one topic's brokers and partitions.
//!
//! [`ZkSession`] opens a ZooKeeper session (settings in [`ZkSettings`]) and
//! renews it on expiry. [`Discovery`] keeps one route per watched topic up
//! to date through one; [`read_route`] reads one route once;
//! [`Discovery::describe_topic`] says why a topic has no route ([`TopicPresence`]).

mod context;
mod handle;
mod layout;
mod presence;
pub(crate) mod reach;
mod read;
mod route;
mod settings;
mod watcher;
mod watches;
mod zk_session;

pub use crate::cluster::{BrokerUri, InvalidBrokerUri, InvalidPartition, Partition};
pub use handle::Discovery;
pub use layout::{normalize_root, TopicBroker, ZkPaths, DEFAULT_ROOT};
pub use presence::TopicPresence;
pub use read::read_route;
pub use route::{RouteSource, TopicRoute};
pub use settings::{ZkSettings, DEFAULT_CONNECT};
pub use zk_session::{CurrentSession, ZkSession};

/// Entry points for the fuzz targets in `fuzz/` (cargo-fuzz builds with
/// `--cfg fuzzing`): the parsers of ZooKeeper node data, which are private
/// otherwise.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    use super::{BrokerUri, RouteSource};

    /// A `topics-pub` entry's `TopicBroker` JSON (`legacy = false`) or a
    /// legacy `topics` entry's decimal text, as a partition count within
    /// `1..=max`.
    pub fn partition_count(legacy: bool, data: &[u8], max: u32) -> Result<u32, String> {
        let source = if legacy {
            RouteSource::Legacy
        } else {
            RouteSource::TopicsPub
        };
        super::read::parse_partition_count(source, data, max)
    }

    /// A broker's `master` node data.
    pub fn master(data: &[u8]) -> Result<Option<BrokerUri>, String> {
        super::read::parse_master(data)
    }

    /// The broker id of a `<id>-m` child name.
    pub fn master_entry_id(name: &str) -> Option<u32> {
        super::read::master_entry_id(name)
    }
}
