//! [`Discovery`]: one ZooKeeper session, renewed on expiry, and one watch
//! task per topic.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, info_span, warn, Instrument};
use zookeeper_client::{Client, SessionInfo, SessionState};

use super::context::{Context, SessionSlot};
use super::reach::{connect_explained, ConnectFailure};
use super::watcher::{run_topic, RouteSender};
use super::{TopicRoute, ZkPaths, ZkSettings};
use crate::backoff::Backoff;
use crate::protocol::validate_topic;
use crate::Error;

/// How long [`Discovery::close`] waits for its tasks to end.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Watches MetaQ's ZooKeeper nodes and keeps an immutable [`TopicRoute`] per
/// topic up to date.
///
/// One ZooKeeper session serves every topic; when it expires a new one is
/// opened (retried with jittered backoff until it works or the handle is
/// closed) and every topic is listed again. Each topic has one task that
/// lists it when one of its watches fires, when the session reconnects or
/// is renewed, and every [`relist_interval`](ZkSettings::relist_interval).
/// Unlike the Java producer it also watches each broker's
/// `ids/<id>/master` node (address changes are seen), never writes to
/// ZooKeeper, and never replaces a route by an empty one because
/// ZooKeeper is unreachable or a node holds malformed data.
///
/// Cheap to clone; clones share the session and tasks. Dropping the last
/// clone stops every task and closes the session, as [`close`](Self::close)
/// does.
///
/// # Example
///
/// ```no_run
/// use metaq::discovery::{Discovery, ZkSettings};
///
/// # async fn demo() -> Result<(), metaq::Error> {
/// let discovery = Discovery::connect(ZkSettings::new("127.0.0.1:2181").with_root("/meta")).await?;
/// let mut routes = discovery.watch("test");
/// let route = routes.wait_for(Option::is_some).await.expect("open").clone().unwrap();
/// println!("{} partitions on {} brokers", route.partitions.len(), route.brokers.len());
/// discovery.close().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Discovery {
    inner: Arc<Inner>,
}

struct Inner {
    context: Arc<Context>,
    topics: Mutex<HashMap<String, Arc<RouteSender>>>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    runtime: tokio::runtime::Handle,
}

impl fmt::Debug for Discovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let topics: Vec<String> = self.inner.lock_topics().keys().cloned().collect();
        f.debug_struct("Discovery")
            .field("connect", &self.inner.context.settings.connect)
            .field("root", &self.inner.context.paths.root())
            .field("session", &self.session_info().map(|s| s.id()))
            .field("topics", &topics)
            .field("closed", &self.inner.cancel.is_cancelled())
            .finish()
    }
}

impl Discovery {
    /// Checks `settings` and opens the first session, waiting at most
    /// [`connect_timeout`](ZkSettings::connect_timeout).
    ///
    /// Must be called within a Tokio runtime; the tasks run on it.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for invalid settings;
    /// [`Error::ZooKeeperUnreachable`] if no session could be established in
    /// time (its `cause` says what the hosts did: connection refused, name
    /// not resolved, not ZooKeeper, ...); [`Error::ZooKeeper`] with
    /// `operation: "connect"` when the client refused for another reason
    /// (authentication failed, a malformed connect string).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), metaq::Error> {
    /// use metaq::discovery::{Discovery, ZkSettings};
    /// let discovery = Discovery::connect(ZkSettings::new("127.0.0.1:2181")).await?;
    /// assert!(discovery.session_info().is_some());
    /// # Ok(()) }
    /// ```
    ///
    /// Invalid settings fail at once, before ZooKeeper is contacted:
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use metaq::discovery::{Discovery, ZkSettings};
    /// let result = Discovery::connect(ZkSettings::new("127.0.0.1:2181").with_root("/a//b")).await;
    /// assert!(matches!(result, Err(metaq::Error::Config { .. })));
    /// # });
    /// ```
    pub async fn connect(settings: ZkSettings) -> Result<Discovery, Error> {
        settings.validate()?;
        let client = open_session(&settings).await?;
        info!(
            connect = %settings.connect,
            root = %ZkPaths::new(&settings.root).root(),
            session = %client.session_id(),
            "zookeeper session opened for discovery"
        );
        let (session, _) = watch::channel(SessionSlot {
            client: Some(client),
            generation: 1,
            reconnects: 0,
        });
        let context = Arc::new(Context {
            paths: ZkPaths::new(&settings.root),
            settings,
            session,
        });
        let inner = Inner {
            context: context.clone(),
            topics: Mutex::new(HashMap::new()),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            runtime: tokio::runtime::Handle::current(),
        };
        inner.tasks.spawn_on(
            run_session(context, inner.cancel.clone()).instrument(info_span!("discovery_session")),
            &inner.runtime,
        );
        Ok(Discovery {
            inner: Arc::new(inner),
        })
    }

    /// Starts watching `topic` (once: later calls share its task and
    /// channel) and returns a receiver of its routes.
    ///
    /// The receiver holds `None` until the first listing completed, then
    /// `Some(route)`. The route may be empty when no broker serves the
    /// topic yet; the task then watches for the topic's nodes to appear. A
    /// new value is sent only when the route changed.
    ///
    /// After [`close`](Self::close), or for a topic that cannot be a
    /// ZooKeeper node name (empty, `.`, `..`, with `/`, a space or
    /// non-ASCII; logged),
    /// the receiver's sender is already gone: it holds `None` and
    /// `changed()` fails.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn demo(discovery: metaq::discovery::Discovery) {
    /// let mut routes = discovery.watch("test");
    /// while routes.changed().await.is_ok() {
    ///     if let Some(route) = routes.borrow_and_update().clone() {
    ///         println!("now {} partitions", route.partitions.len());
    ///     }
    /// }
    /// # }
    /// ```
    pub fn watch(&self, topic: &str) -> watch::Receiver<Option<Arc<TopicRoute>>> {
        if let Err(e) = validate_topic(topic) {
            warn!(error = %Error::invalid(topic, e), "cannot watch this topic");
            return watch::channel(None).1;
        }
        let mut topics = self.inner.lock_topics();
        if self.inner.cancel.is_cancelled() {
            return watch::channel(None).1;
        }
        if let Some(sender) = topics.get(topic) {
            return sender.subscribe();
        }
        let (sender, receiver) = watch::channel(None);
        let sender = Arc::new(sender);
        topics.insert(topic.to_owned(), sender.clone());
        let task = run_topic(
            topic.to_owned(),
            self.inner.context.clone(),
            sender,
            self.inner.context.session.subscribe(),
            self.inner.cancel.clone(),
        );
        self.inner.tasks.spawn_on(
            task.instrument(info_span!("discovery", topic)),
            &self.inner.runtime,
        );
        receiver
    }

    /// Stops every task and closes the session. Route receivers see their
    /// sender dropped. Idempotent.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), metaq::Error> {
    /// use metaq::discovery::{Discovery, ZkSettings};
    /// let discovery = Discovery::connect(ZkSettings::new("127.0.0.1:2181")).await?;
    /// let mut routes = discovery.watch("orders");
    /// discovery.close().await;
    /// while routes.changed().await.is_ok() {} // ends: the sender is gone
    /// assert!(discovery.session_info().is_none());
    /// # Ok(()) }
    /// ```
    pub async fn close(&self) {
        let inner = &self.inner;
        if !inner.cancel.is_cancelled() {
            info!("closing discovery");
        }
        inner.shut_down();
        inner.tasks.close();
        if timeout(CLOSE_WAIT, inner.tasks.wait()).await.is_err() {
            warn!("discovery tasks still running after {CLOSE_WAIT:?}");
        }
        // Tasks are gone: dropping the last client closes the session.
        inner.context.session.send_modify(|slot| slot.client = None);
    }

    /// The current session, `None` while a new one is being opened or
    /// after [`close`](Self::close). Tests use it to force an expiry.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), metaq::Error> {
    /// use metaq::discovery::{Discovery, ZkSettings};
    /// let discovery = Discovery::connect(ZkSettings::new("127.0.0.1:2181")).await?;
    /// let session = discovery.session_info().expect("connect opened one");
    /// println!("zookeeper session {}", session.id());
    /// discovery.close().await;
    /// assert!(discovery.session_info().is_none());
    /// # Ok(()) }
    /// ```
    pub fn session_info(&self) -> Option<SessionInfo> {
        self.inner
            .context
            .session
            .borrow()
            .client
            .as_ref()
            .map(|client| client.session().clone())
    }
}

impl Discovery {
    /// Where the layout's nodes are, for one-off reads (`presence`).
    pub(super) fn paths(&self) -> &ZkPaths {
        &self.inner.context.paths
    }

    /// The settings it was opened with.
    pub(super) fn settings(&self) -> &ZkSettings {
        &self.inner.context.settings
    }

    /// The current client for one-off reads; while a new session is being
    /// opened, waits for it at most `connect_timeout`.
    pub(super) async fn client_for_reads(&self) -> Result<Client, Error> {
        let mut slot = self.inner.context.session.subscribe();
        let wait = self.settings().connect_timeout;
        let opened = timeout(wait, async {
            loop {
                if self.inner.cancel.is_cancelled() {
                    return None;
                }
                if let Some(client) = slot.borrow_and_update().client.clone() {
                    return Some(client);
                }
                // The sender lives as long as `self`: this cannot fail.
                slot.changed().await.ok()?;
            }
        })
        .await;
        match opened {
            Ok(Some(client)) => Ok(client),
            Ok(None) => Err(Error::Closed),
            Err(_) => Err(Error::ZooKeeperUnreachable {
                connect: self.settings().connect.clone(),
                waited: wait,
                cause: "the expired session was not replaced in time".into(),
            }),
        }
    }
}

impl Inner {
    fn lock_topics(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<RouteSender>>> {
        self.topics.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells every task to stop and lets go of the route senders.
    fn shut_down(&self) {
        let mut topics = self.lock_topics();
        self.cancel.cancel();
        topics.clear();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The tasks hold no handle: they end on the token, and with them the
        // last clients of the session.
        self.shut_down();
        self.context.session.send_modify(|slot| slot.client = None);
    }
}

/// Opens a session as the settings say, bounded by `connect_timeout`.
async fn open_session(settings: &ZkSettings) -> Result<Client, Error> {
    let mut connector = Client::connector().with_session_timeout(settings.session_timeout);
    if let Some(auth) = &settings.digest_auth {
        connector = connector.with_auth("digest", auth.as_bytes());
    }
    connect_explained(connector, &settings.connect, settings.connect_timeout)
        .await
        .map_err(|failure| match failure {
            ConnectFailure::Client(source) => Error::ZooKeeper {
                operation: "connect",
                path: settings.connect.clone(),
                source,
            },
            ConnectFailure::Unreachable { waited, cause } => Error::ZooKeeperUnreachable {
                connect: settings.connect.clone(),
                waited,
                cause,
            },
        })
}

/// Follows the session's state: counts reconnections, and replaces an
/// expired (or otherwise ended) session by a new one.
async fn run_session(context: Arc<Context>, cancel: CancellationToken) {
    let slot = &context.session;
    loop {
        let Some(client) = slot.borrow().client.clone() else {
            return;
        };
        let mut states = client.state_watcher();
        let session_id = client.session_id();
        drop(client);
        let mut state = states.peek_state();
        let mut disconnected = false;
        while !state.is_terminated() {
            match state {
                SessionState::Disconnected => {
                    if !disconnected {
                        warn!(session = %session_id, "zookeeper connection lost; keeping the last routes");
                    }
                    disconnected = true;
                }
                SessionState::SyncConnected | SessionState::ConnectedReadOnly if disconnected => {
                    info!(session = %session_id, "zookeeper reconnected; listing every topic again");
                    disconnected = false;
                    slot.send_modify(|s| s.reconnects += 1);
                }
                _ => {}
            }
            state = tokio::select! {
                _ = cancel.cancelled() => return,
                state = states.changed() => state,
            };
        }
        warn!(session = %session_id, ?state, "zookeeper session ended; opening a new one");
        slot.send_modify(|s| s.client = None);

        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let client = loop {
            let attempt = tokio::select! {
                _ = cancel.cancelled() => return,
                attempt = open_session(&context.settings) => attempt,
            };
            match attempt {
                Ok(client) => break client,
                Err(error) => {
                    let delay = backoff.next_delay();
                    warn!(%error, retry_in = ?delay, "opening a new zookeeper session failed");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = sleep(delay) => {}
                    }
                }
            }
        };
        info!(session = %client.session_id(), "new zookeeper session; listing every topic again");
        slot.send_modify(|s| {
            s.client = Some(client);
            s.generation += 1;
        });
    }
}
