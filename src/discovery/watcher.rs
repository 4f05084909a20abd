//! The per-topic watch task: lists the topic, waits for a watch to fire,
//! a reconnect or the re-list interval, and lists again; publishes each
//! changed route. Its watches are kept by [`Watches`](super::watches::Watches).

use std::ops::ControlFlow;
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
    session: watch::Receiver<CurrentSession>,
    cancel: CancellationToken,
) {
    let mut task = TopicWatch::new(topic, context, routes, session, cancel);
    info!("watching topic");
    task.run().await;
    debug!("topic watch stopped");
}

/// The state of one topic's watch task, kept between listings.
struct TopicWatch {
    topic: String,
    context: Arc<Context>,
    routes: Arc<RouteSender>,
    session: watch::Receiver<CurrentSession>,
    cancel: CancellationToken,
    watches: Watches,
    reported: Reported,
    /// The session the watches were armed in.
    generation: Option<u64>,
    backoff: Backoff,
    /// A listing is wanted (and when it may run, after a failure).
    wanted: bool,
    retry_at: Option<Instant>,
    /// When the topic is listed again even if no watch fired.
    next_relist: Instant,
}

impl TopicWatch {
    /// A task that lists the topic first thing.
    fn new(
        topic: String,
        context: Arc<Context>,
        routes: Arc<RouteSender>,
        session: watch::Receiver<CurrentSession>,
        cancel: CancellationToken,
    ) -> Self {
        let next_relist = Instant::now() + context.session.settings().relist_interval;
        Self {
            topic,
            context,
            routes,
            session,
            cancel,
            watches: Watches::new(),
            reported: Reported::default(),
            generation: None,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            wanted: true,
            retry_at: None,
            next_relist,
        }
    }

    /// Lists whenever a listing is wanted and allowed, then waits for the
    /// next reason to list, until cancelled or the session side is gone.
    async fn run(&mut self) {
        loop {
            if self.wanted && self.retry_at.is_none() && self.list_topic().await.is_break() {
                break;
            }
            if self.wait().await.is_break() {
                break;
            }
        }
    }

    /// Lists the topic if a session is up, and takes the outcome; `Break`
    /// if cancelled meanwhile.
    async fn list_topic(&mut self) -> ControlFlow<()> {
        let slot = self.session.borrow_and_update().clone();
        let Some(client) = slot.client else {
            return ControlFlow::Continue(());
        };
        if self.generation != Some(slot.generation) {
            // The watches of an old session are dead.
            self.watches.clear();
            self.generation = Some(slot.generation);
        }
        self.watches.drain_fired();
        let previous = self.routes.borrow().clone();
        let mut reader = Reader {
            client: &client,
            watches: Some(&mut self.watches),
            reported: Some(&mut self.reported),
        };
        let listing = list(
            &mut reader,
            &self.context.paths,
            &self.topic,
            self.context.session.settings(),
            previous.as_deref(),
        );
        let result = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return ControlFlow::Break(()),
            result = listing => result,
        };
        match result {
            Ok(route) => self.listed(route),
            Err(error) => self.failed(&error),
        }
        ControlFlow::Continue(())
    }

    /// After a complete listing: publishes the route and plans the next
    /// periodic re-list.
    fn listed(&mut self, route: TopicRoute) {
        self.watches.finish_listing(true);
        self.reported.finish_listing(true);
        debug!(
            pending_watches = self.watches.pending(),
            armed_total = self.watches.armed_total(),
            "listed"
        );
        publish(&self.routes, route);
        self.wanted = false;
        self.backoff.reset();
        self.next_relist = Instant::now() + self.context.session.settings().relist_interval;
    }

    /// After a failed listing: keeps the last route and plans a retry after
    /// the next backoff delay.
    fn failed(&mut self, error: &ZkError) {
        self.watches.finish_listing(false);
        self.reported.finish_listing(false);
        let delay = self.backoff.next_delay();
        if session_ended(error) {
            // The session task is opening a new one; its
            // arrival triggers the next listing.
            debug!(%error, "listing interrupted by the end of the session");
        } else {
            warn!(%error, retry_in = ?delay, "listing the topic failed; keeping the last route");
        }
        self.retry_at = Some(Instant::now() + delay);
    }

    /// Waits for a new session, a fired watch, the periodic re-list or the
    /// end of a retry delay; `Break` if cancelled or the session side is gone.
    async fn wait(&mut self) -> ControlFlow<()> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return ControlFlow::Break(()),
            changed = self.session.changed() => {
                if changed.is_err() {
                    return ControlFlow::Break(());
                }
                // New session or reconnected: list again now.
                self.wanted = true;
                self.retry_at = None;
            }
            (key, event) = self.watches.next_fired() => {
                debug!(?key, event = ?event.event_type, state = ?event.session_state, "watch fired");
                self.wanted = true;
            }
            _ = sleep_until(self.next_relist) => {
                debug!("periodic re-list");
                self.wanted = true;
                self.next_relist = Instant::now() + self.context.session.settings().relist_interval;
            }
            _ = sleep_until(self.retry_at.unwrap_or_else(Instant::now)), if self.retry_at.is_some() => {
                self.retry_at = None;
            }
        }
        ControlFlow::Continue(())
    }
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

    use zookeeper_client::{Acls, Client, CreateMode};

    use super::*;
    use crate::discovery::watches::WatchKey;
    use crate::discovery::{ZkPaths, ZkSettings};
    use metaq_testkit::{unique_root, ZkServer};

    /// Topic `t` served by brokers 0 and 1 (two partitions each) under a
    /// fresh root, and what a listing of it needs.
    struct Topic {
        client: Client,
        paths: ZkPaths,
        settings: ZkSettings,
    }

    impl Topic {
        /// Registers both brokers' master nodes and topic entries.
        async fn create() -> Topic {
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
            Topic {
                client,
                paths,
                settings,
            }
        }

        /// One complete listing that arms `watches`.
        async fn list(&self, watches: &mut Watches, previous: Option<&TopicRoute>) -> TopicRoute {
            let mut reader = Reader {
                client: &self.client,
                watches: Some(&mut *watches),
                reported: None,
            };
            let route = list(&mut reader, &self.paths, "t", &self.settings, previous)
                .await
                .unwrap();
            watches.finish_listing(true);
            route
        }
    }

    /// Re-listing without changes arms no new watch; a change re-arms
    /// exactly the watches that fired; a removed broker's watches go.
    #[tokio::test]
    async fn relisting_does_not_accumulate_watches() {
        let topic = Topic::create().await;
        let (client, paths) = (&topic.client, &topic.paths);
        let mut watches = Watches::new();
        let mut previous = None;
        for _ in 0..5 {
            let route = topic.list(&mut watches, previous.as_ref()).await;
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
        let route = topic.list(&mut watches, previous.as_ref()).await;
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
            route = topic.list(&mut watches, Some(&route)).await;
        }
        // Children of topics-pub, broker 0's entry and master.
        assert_eq!(watches.pending(), 3);
    }
}
