//! [`Discovery`]: one [`ZkSession`] and one watch task per topic.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, info_span, warn, Instrument};
use zookeeper_client::{Client, SessionInfo};

use super::context::Context;
use super::watcher::{run_topic, RouteSender};
use super::{TopicRoute, ZkPaths, ZkSession, ZkSettings};
use crate::protocol::validate_topic;
use crate::Error;

/// How long [`Discovery::close`] waits for its tasks to end.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Watches MetaQ's ZooKeeper nodes and keeps an immutable [`TopicRoute`] per
/// topic up to date.
///
/// One [`ZkSession`] serves every topic; when it expires a new one is
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
            .field("connect", &self.settings().connect)
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
        let paths = ZkPaths::new(&settings.root);
        let session = ZkSession::open(settings).await?;
        info!(root = %paths.root(), "discovery started");
        let inner = Inner {
            context: Arc::new(Context { paths, session }),
            topics: Mutex::new(HashMap::new()),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            runtime: tokio::runtime::Handle::current(),
        };
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
            self.inner.context.session.follow(),
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
        inner.context.session.close().await;
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
        self.inner.context.session.info()
    }
}

impl Discovery {
    /// Where the layout's nodes are, for one-off reads (`presence`).
    pub(super) fn paths(&self) -> &ZkPaths {
        &self.inner.context.paths
    }

    /// The settings it was opened with.
    pub(super) fn settings(&self) -> &ZkSettings {
        self.inner.context.session.settings()
    }

    /// The current client for one-off reads; while a new session is being
    /// opened, waits for it at most `connect_timeout`.
    pub(super) async fn client_for_reads(&self) -> Result<Client, Error> {
        if self.inner.cancel.is_cancelled() {
            return Err(Error::Closed);
        }
        let session = &self.inner.context.session;
        session
            .client_within(session.settings().connect_timeout)
            .await
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
        // The tasks hold no handle: they end on the token, and with them
        // the last handles of the session.
        self.shut_down();
    }
}
