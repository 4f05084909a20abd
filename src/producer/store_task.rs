//! Local store operations run off the async worker threads: the store's
//! I/O is synchronous and may fsync.

use crate::error::{Error, Result};
use crate::local_store::LocalStore;

/// Runs `operation` on `store` on tokio's blocking pool.
pub(crate) async fn on_store<T: Send + 'static>(
    store: &LocalStore,
    operation: impl FnOnce(&LocalStore) -> Result<T> + Send + 'static,
) -> Result<T> {
    let store = store.clone();
    let path = store.dir().to_path_buf();
    tokio::task::spawn_blocking(move || operation(&store))
        .await
        .unwrap_or_else(|e| {
            Err(Error::LocalStore {
                path,
                operation: "run a store task",
                cause: e.to_string(),
            })
        })
}
