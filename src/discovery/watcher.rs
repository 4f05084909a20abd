//! The per-topic watch task and its bookkeeping of ZooKeeper watches.
//!
//! A ZooKeeper watch fires once. [`Watches`] remembers, per node and kind,
//! the watch that is still pending; a listing arms a watch only where none
//! is pending (or the previous one fired), and reads the other nodes
//! without a watch. So periodic re-lists and re-lists after a reconnect add
//! no watches, and watches of nodes a listing no longer needs (a removed
//! broker's `master`) are dropped, which removes them from the client.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use zookeeper_client::{Error as ZkError, OneshotWatcher, WatchedEvent};

use super::read::{describe_change, list, Reader, Reported};
use super::session::{Context, SessionSlot};
use super::TopicRoute;
use crate::backoff::Backoff;

/// The sending side of a topic's route channel.
pub(super) type RouteSender = watch::Sender<Option<Arc<TopicRoute>>>;

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
    fn drain_fired(&mut self) -> bool {
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

/// Runs the watch of one topic until `cancel` fires or the session side is
/// gone. Publishes on `routes` each time the route changes.
pub(super) async fn run_topic(
    topic: String,
    context: Arc<Context>,
    routes: Arc<RouteSender>,
    mut session: watch::Receiver<SessionSlot>,
    cancel: CancellationToken,
) {
    let settings = &context.settings;
    let mut watches = Watches::new();
    let mut reported = Reported::default();
    let mut generation = None;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    // A listing is wanted (and when it may run, after a failure).
    let mut wanted = true;
    let mut retry_at: Option<Instant> = None;
    let mut next_relist = Instant::now() + settings.relist_interval;
    info!("watching topic");
    loop {
        if wanted && retry_at.is_none() {
            let slot = session.borrow_and_update().clone();
            if let Some(client) = slot.client {
                if generation != Some(slot.generation) {
                    // The watches of an old session are dead.
                    watches.clear();
                    generation = Some(slot.generation);
                }
                watches.drain_fired();
                let previous = routes.borrow().clone();
                let mut reader = Reader {
                    client: &client,
                    watches: Some(&mut watches),
                    reported: Some(&mut reported),
                };
                let listing = list(
                    &mut reader,
                    &context.paths,
                    &topic,
                    settings,
                    previous.as_deref(),
                );
                let result = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break,
                    result = listing => result,
                };
                match result {
                    Ok(route) => {
                        watches.finish_listing(true);
                        reported.finish_listing(true);
                        debug!(
                            pending_watches = watches.pending(),
                            armed_total = watches.armed_total(),
                            "listed"
                        );
                        publish(&routes, route);
                        wanted = false;
                        backoff.reset();
                        next_relist = Instant::now() + settings.relist_interval;
                    }
                    Err(error) => {
                        watches.finish_listing(false);
                        reported.finish_listing(false);
                        let delay = backoff.next_delay();
                        if session_ended(&error) {
                            // The session task is opening a new one; its
                            // arrival triggers the next listing.
                            debug!(%error, "listing interrupted by the end of the session");
                        } else {
                            warn!(%error, retry_in = ?delay, "listing the topic failed; keeping the last route");
                        }
                        retry_at = Some(Instant::now() + delay);
                    }
                }
            }
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            changed = session.changed() => {
                if changed.is_err() {
                    break;
                }
                // New session or reconnected: list again now.
                wanted = true;
                retry_at = None;
            }
            (key, event) = watches.next_fired() => {
                debug!(?key, event = ?event.event_type, state = ?event.session_state, "watch fired");
                wanted = true;
            }
            _ = sleep_until(next_relist) => {
                debug!("periodic re-list");
                wanted = true;
                next_relist = Instant::now() + settings.relist_interval;
            }
            _ = sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                retry_at = None;
            }
        }
    }
    debug!("topic watch stopped");
}

/// Whether a listing failed because its session is over (expired, closed).
fn session_ended(error: &ZkError) -> bool {
    matches!(
        error,
        ZkError::SessionExpired | ZkError::ClientClosed | ZkError::AuthFailed
    )
}

/// Sends `route` if it differs from the current one, logging what changed.
fn publish(routes: &RouteSender, route: TopicRoute) {
    routes.send_if_modified(|current| {
        if current.as_deref() == Some(&route) {
            return false;
        }
        info!(
            brokers = route.brokers.len(),
            partitions = route.partitions.len(),
            source = ?route.source,
            "route changed: {}",
            describe_change(current.as_deref(), &route)
        );
        *current = Some(Arc::new(route));
        true
    });
}

#[cfg(all(test, feature = "testkit"))]
mod tests {
    use std::time::Duration;

    use zookeeper_client::{Acls, CreateMode};

    use super::*;
    use crate::discovery::{ZkPaths, ZkSettings};
    use crate::testkit::{unique_root, ZkServer};

    /// Re-listing without changes arms no new watch; a change re-arms
    /// exactly the watches that fired; a removed broker's watches go.
    #[tokio::test]
    async fn relisting_does_not_accumulate_watches() {
        let zk = ZkServer::shared();
        let client = zk.client().await;
        let root = unique_root();
        let paths = ZkPaths::new(&root);
        let settings = ZkSettings::new(zk.connect_string()).with_root(&root);
        let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
        let ephemeral = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
        for id in [0, 1] {
            client.mkdir(&paths.broker(id), &persistent).await.unwrap();
            client
                .create(
                    &paths.broker_master(id),
                    format!("meta://h:{}", 8000 + id).as_bytes(),
                    &ephemeral,
                )
                .await
                .unwrap();
        }
        client
            .mkdir(&paths.topic_pub("t"), &persistent)
            .await
            .unwrap();
        for id in [0, 1] {
            client
                .create(
                    &paths.topic_pub_broker("t", id),
                    crate::discovery::TopicBroker::master(id, 2)
                        .to_json()
                        .as_bytes(),
                    &ephemeral,
                )
                .await
                .unwrap();
        }

        let mut watches = Watches::new();
        let mut previous = None;
        for _ in 0..5 {
            let mut reader = Reader {
                client: &client,
                watches: Some(&mut watches),
                reported: None,
            };
            let route = list(&mut reader, &paths, "t", &settings, previous.as_ref())
                .await
                .unwrap();
            watches.finish_listing(true);
            assert_eq!(route.partitions.len(), 4);
            previous = Some(route);
        }
        // Children of topics-pub, two entries' data, two masters.
        assert_eq!(watches.pending(), 5);
        assert_eq!(watches.armed_total(), 5);

        // Broker 1's master changes: that one watch fires and is re-armed.
        client
            .set_data(&paths.broker_master(1), b"meta://h:9001", None)
            .await
            .unwrap();
        let (key, _) = tokio::time::timeout(Duration::from_secs(5), watches.next_fired())
            .await
            .unwrap();
        assert_eq!(key, WatchKey::Exists(paths.broker_master(1)));
        let mut reader = Reader {
            client: &client,
            watches: Some(&mut watches),
            reported: None,
        };
        let route = list(&mut reader, &paths, "t", &settings, previous.as_ref())
            .await
            .unwrap();
        watches.finish_listing(true);
        assert_eq!(route.brokers[&1].port, 9001);
        assert_eq!(watches.pending(), 5);
        assert_eq!(watches.armed_total(), 6);

        // Broker 1 goes away: its entry and master watches are dropped.
        client
            .delete(&paths.topic_pub_broker("t", 1), None)
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut route = previous.clone().unwrap();
        while route.brokers.contains_key(&1) {
            assert!(Instant::now() < deadline, "broker 1 still listed");
            let _ = tokio::time::timeout(Duration::from_millis(200), watches.next_fired()).await;
            watches.drain_fired();
            let mut reader = Reader {
                client: &client,
                watches: Some(&mut watches),
                reported: None,
            };
            route = list(&mut reader, &paths, "t", &settings, Some(&route))
                .await
                .unwrap();
            watches.finish_listing(true);
        }
        // Children of topics-pub, broker 0's entry and master.
        assert_eq!(watches.pending(), 3);
    }
}
