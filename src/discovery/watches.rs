//! Bookkeeping of one topic task's ZooKeeper watches.
//!
//! A ZooKeeper watch fires once. [`Watches`] remembers, per node and kind,
//! the watch that is still pending; a listing arms a watch only where none
//! is pending (or the previous one fired), and reads the other nodes
//! without a watch. So periodic re-lists and re-lists after a reconnect add
//! no watches, and watches of nodes a listing no longer needs (a removed
//! broker's `master`) are dropped, which removes them from the client.

use std::collections::{HashMap, HashSet};

use tokio::task::{AbortHandle, JoinSet};
use zookeeper_client::{OneshotWatcher, WatchedEvent};

/// A watched node and the kind of watch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum WatchKey {
    /// Child watch (`getChildren`): children added or removed, node deleted.
    Children(String),
    /// Data watch (`getData`): data changed, node deleted.
    Data(String),
    /// Exists watch: node created (when absent), data changed or deleted.
    Exists(String),
}

/// The pending watches of one topic task, on one session.
pub(super) struct Watches {
    /// Pending watch → its waiting task.
    armed: HashMap<WatchKey, AbortHandle>,
    /// Keys the current listing needed.
    used: HashSet<WatchKey>,
    /// One task per pending watch, ending when it fires.
    tasks: JoinSet<(WatchKey, WatchedEvent)>,
    /// How many watches were armed in total (for tests).
    armed_total: u64,
}

impl Watches {
    pub(super) fn new() -> Self {
        Self {
            armed: HashMap::new(),
            used: HashSet::new(),
            tasks: JoinSet::new(),
            armed_total: 0,
        }
    }

    /// Whether a watch of this key is pending (armed and not yet seen firing).
    pub(super) fn is_armed(&self, key: &WatchKey) -> bool {
        self.armed.contains_key(key)
    }

    /// Takes over a freshly set watch.
    pub(super) fn arm(&mut self, key: WatchKey, watcher: OneshotWatcher) {
        let task_key = key.clone();
        let handle = self
            .tasks
            .spawn(async move { (task_key, watcher.changed().await) });
        if let Some(old) = self.armed.insert(key, handle) {
            old.abort();
        }
        self.armed_total += 1;
    }

    /// Marks a key as needed by the current listing.
    pub(super) fn touch(&mut self, key: WatchKey) {
        self.used.insert(key);
    }

    /// Ends a listing. After a complete one, watches it did not need are
    /// dropped (which removes them from the client); after a failed one all
    /// are kept.
    pub(super) fn finish_listing(&mut self, complete: bool) {
        let used = std::mem::take(&mut self.used);
        if complete {
            self.armed.retain(|key, handle| {
                let keep = used.contains(key);
                if !keep {
                    handle.abort();
                }
                keep
            });
        }
    }

    /// Drops every watch (the session they belong to is gone).
    pub(super) fn clear(&mut self) {
        self.armed.clear();
        self.used.clear();
        // Dropping the set aborts its tasks and forgets results not yet read.
        self.tasks = JoinSet::new();
    }

    /// Number of pending watches.
    pub(super) fn pending(&self) -> usize {
        self.armed.len()
    }

    /// Total number of watches armed so far.
    pub(super) fn armed_total(&self) -> u64 {
        self.armed_total
    }

    /// Waits for a pending watch to fire and forgets it (so the next
    /// listing arms it again). Never returns while nothing is pending.
    pub(super) async fn next_fired(&mut self) -> (WatchKey, WatchedEvent) {
        loop {
            match self.tasks.join_next_with_id().await {
                None => std::future::pending::<()>().await,
                Some(Ok((id, (key, event)))) => {
                    // Results of aborted (replaced or unneeded) watches are stale.
                    if self.armed.get(&key).is_some_and(|h| h.id() == id) {
                        self.armed.remove(&key);
                        return (key, event);
                    }
                }
                Some(Err(_cancelled)) => {}
            }
        }
    }

    /// Forgets every watch that already fired, without waiting; whether any did.
    pub(super) fn drain_fired(&mut self) -> bool {
        let mut any = false;
        while let Some(result) = self.tasks.try_join_next_with_id() {
            if let Ok((id, (key, _))) = result {
                if self.armed.get(&key).is_some_and(|h| h.id() == id) {
                    self.armed.remove(&key);
                    any = true;
                }
            }
        }
        any
    }
}
