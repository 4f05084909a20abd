//! What the session keeper and the topic tasks share: the settings, the
//! paths, and the current ZooKeeper session. Below both, so that neither
//! imports the other's internals.

use tokio::sync::watch;
use zookeeper_client::Client;

use super::{ZkPaths, ZkSettings};

/// What every task shares: the settings and the current session.
pub(super) struct Context {
    pub(super) settings: ZkSettings,
    pub(super) paths: ZkPaths,
    pub(super) session: watch::Sender<SessionSlot>,
}

/// The current session as the topic tasks see it.
#[derive(Clone, Default)]
pub(super) struct SessionSlot {
    /// The client; `None` while a new session is being opened (and after close).
    pub(super) client: Option<Client>,
    /// Bumped for every new session (the old one's watches are dead).
    pub(super) generation: u64,
    /// Bumped when the session reconnects after a disconnection.
    pub(super) reconnects: u64,
}
