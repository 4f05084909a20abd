//! What the topic tasks share: the paths and the session. Below the
//! handle and the tasks, so that neither imports the other's internals.

use super::{ZkPaths, ZkSession};

/// What every topic task shares.
pub(super) struct Context {
    pub(super) paths: ZkPaths,
    pub(super) session: ZkSession,
}
