//! Errors of the development broker.

use std::sync::Arc;

/// Why the broker could not start or change its registration.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use metaq_broker::{Broker, BrokerConfig, BrokerError};
/// // Broker ids are 0 to 1023; the config is checked before anything starts.
/// let config = BrokerConfig::new(1024, "127.0.0.1:2181", "/tmp/metaq-unused");
/// let Err(err) = Broker::start(config).await else { panic!("started") };
/// assert!(matches!(err, BrokerError::Config { .. }));
/// # }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The configuration is unusable.
    #[error("invalid broker configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// Binding the listen address failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The socket error.
        source: Arc<std::io::Error>,
    },
    /// Opening the data directory failed.
    #[error("cannot open data directory {dir}: {source}")]
    Storage {
        /// The directory.
        dir: std::path::PathBuf,
        /// The I/O error.
        source: Arc<std::io::Error>,
    },
    /// ZooKeeper refused an operation or could not be reached.
    #[error("zookeeper {operation} {path:?} failed: {source}")]
    ZooKeeper {
        /// What was being done (`connect`, `create`, `delete`, …).
        operation: &'static str,
        /// The node (or the connect string for `connect`).
        path: String,
        /// The client's error.
        source: zookeeper_client::Error,
    },
    /// No ZooKeeper session could be opened within the connect timeout.
    #[error("cannot reach ZooKeeper {connect:?} within {waited:?}: {cause}")]
    ZooKeeperUnreachable {
        /// The connect string.
        connect: String,
        /// How long it tried.
        waited: std::time::Duration,
        /// What each host did (connection refused, name not resolved, ...).
        cause: String,
    },
    /// Another live broker holds this broker id.
    #[error("broker id {id} is already registered at {path} (another broker, or a previous session that has not expired)")]
    IdTaken {
        /// The broker id.
        id: u32,
        /// The master node.
        path: String,
    },
    /// The broker is shutting down or has stopped.
    #[error("the broker has stopped")]
    Stopped,
}

impl BrokerError {
    pub(crate) fn zk(operation: &'static str, path: &str, source: zookeeper_client::Error) -> Self {
        Self::ZooKeeper {
            operation,
            path: path.to_owned(),
            source,
        }
    }
}
