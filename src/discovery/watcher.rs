//! The per-topic watch task: lists the topic, waits for a watch to fire,
//! a reconnect or the re-list interval, and lists again; publishes each
//! changed route. Its watches are kept by [`Watches`](super::watches::Watches).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use zookeeper_client::Error as ZkError;

use super::context::Context;
use super::read::{describe_change, list, Reader, Reported};
use super::watches::Watches;
use super::CurrentSession;
use super::TopicRoute;
use crate::backoff::Backoff;

/// The sending side of a topic's route channel.
pub(super) type RouteSender = watch::Sender<Option<Arc<TopicRoute>>>;

/// Runs the watch of one topic until `cancel` fires or the session side is
/// gone. Publishes on `routes` each time the route changes.
pub(super) async fn run_topic(
    topic: String,
    context: Arc<Context>,
    routes: Arc<RouteSender>,
    mut session: watch::Receiver<CurrentSession>,
    cancel: CancellationToken,
) {
    let settings = context.session.settings();
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use zookeeper_client::{Acls, CreateMode};

    use super::*;
    use crate::discovery::watches::WatchKey;
    use crate::discovery::{ZkPaths, ZkSettings};
    use metaq_testkit::{unique_root, ZkServer};

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
