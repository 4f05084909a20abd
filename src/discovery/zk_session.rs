//! [`ZkSession`]: the one ZooKeeper session keeper. Discovery reads through
//! it and the development broker registers through it, so digest
//! authentication, the connect bound (with its explained failure) and the
//! renewal after expiry live in one place.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};
use zookeeper_client::{Client, SessionInfo, SessionState};

use super::reach::{connect_explained, ConnectFailure};
use super::ZkSettings;
use crate::backoff::Backoff;
use crate::Error;

/// A ZooKeeper session that renews itself.
///
/// [`open`](Self::open) opens the first session (bounded by
/// [`connect_timeout`](ZkSettings::connect_timeout), with
/// [`digest_auth`](ZkSettings::digest_auth) if set). A task then follows it:
/// a reconnection after a lost connection is counted in
/// [`CurrentSession::reconnects`]; an expired, closed or refused session is
/// replaced by a new one (retried with jittered backoff from 100 ms to 5 s),
/// counted in [`CurrentSession::generation`]. Ephemeral nodes and watches die
/// with a session, so users [`follow`](Self::follow) it and act on a new
/// generation: discovery lists its topics again, the development broker
/// registers again.
///
/// Cheap to clone; clones share the session. [`close`](Self::close), or
/// dropping the last clone, stops the task and closes the session.
///
/// # Examples
///
/// ```no_run
/// # async fn example() -> Result<(), metaq::Error> {
/// use metaq::discovery::{ZkSession, ZkSettings};
/// let session = ZkSession::open(ZkSettings::new("127.0.0.1:2181")).await?;
/// let mut follow = session.follow();
/// while follow.changed().await.is_ok() {
///     let current = follow.borrow_and_update().clone();
///     println!("session generation {}", current.generation);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ZkSession {
    inner: Arc<Inner>,
}

/// The session as its users see it, sent on each change.
///
/// # Examples
///
/// ```no_run
/// # async fn example(session: metaq::discovery::ZkSession) {
/// let current = session.follow().borrow().clone();
/// match current.client {
///     Some(client) => println!("session {:?}", client.session_id()),
///     None => println!("a new session is being opened"),
/// }
/// # }
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct CurrentSession {
    /// The client; `None` while a new session is being opened, and after
    /// close.
    pub client: Option<Client>,
    /// 1 for the first session, bumped for each new one (the old one's
    /// watches and ephemeral nodes are gone).
    pub generation: u64,
    /// Bumped when the session reconnected after losing its connection
    /// (watches may have missed events meanwhile).
    pub reconnects: u64,
}

impl fmt::Debug for CurrentSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentSession")
            .field("session", &self.client.as_ref().map(Client::session_id))
            .field("generation", &self.generation)
            .field("reconnects", &self.reconnects)
            .finish()
    }
}

/// Owned by the handles: its drop ends the keeper task.
struct Inner {
    settings: ZkSettings,
    current: Arc<watch::Sender<CurrentSession>>,
    cancel: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.current.send_modify(|current| current.client = None);
    }
}

impl fmt::Debug for ZkSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZkSession")
            .field("connect", &self.inner.settings.connect)
            .field("current", &*self.inner.current.borrow())
            .field("closed", &self.inner.cancel.is_cancelled())
            .finish()
    }
}

impl ZkSession {
    /// Checks `settings`, opens the first session and starts keeping it.
    /// Must be called within a Tokio runtime; the keeper task runs on it.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for invalid settings;
    /// [`Error::ZooKeeperUnreachable`] if no session could be established
    /// within `connect_timeout` (its `cause` says what the hosts did);
    /// [`Error::ZooKeeper`] with `operation: "connect"` when the client
    /// refused for another reason (authentication failed, a malformed
    /// connect string).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), metaq::Error> {
    /// use metaq::discovery::{ZkSession, ZkSettings};
    /// let session = ZkSession::open(ZkSettings::new("127.0.0.1:2181")).await?;
    /// assert!(session.info().is_some());
    /// session.close().await;
    /// # Ok(()) }
    /// ```
    pub async fn open(settings: ZkSettings) -> Result<ZkSession, Error> {
        settings.validate()?;
        let client = open_client(&settings).await?;
        let (current, _) = watch::channel(CurrentSession {
            client: Some(client),
            generation: 1,
            reconnects: 0,
        });
        let inner = Inner {
            settings,
            current: Arc::new(current),
            cancel: CancellationToken::new(),
        };
        // The task holds the sender and the settings, not the handle, so
        // that dropping the last handle ends it.
        let task = keep(
            inner.settings.clone(),
            inner.current.clone(),
            inner.cancel.clone(),
        );
        tokio::spawn(task.instrument(info_span!("zk_session", connect = %inner.settings.connect)));
        Ok(ZkSession {
            inner: Arc::new(inner),
        })
    }

    /// The settings the session was opened with.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(session: metaq::discovery::ZkSession) {
    /// println!("connected to {}", session.settings().connect);
    /// # }
    /// ```
    pub fn settings(&self) -> &ZkSettings {
        &self.inner.settings
    }

    /// A receiver of the current session, updated on each new session and
    /// reconnection. Its sender goes when the session is closed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(session: metaq::discovery::ZkSession) {
    /// let mut follow = session.follow();
    /// let seen = follow.borrow_and_update().generation;
    /// follow.wait_for(|current| current.generation > seen).await.ok();
    /// println!("the session was renewed");
    /// # }
    /// ```
    pub fn follow(&self) -> watch::Receiver<CurrentSession> {
        self.inner.current.subscribe()
    }

    /// The current client, `None` while a new session is being opened or
    /// after [`close`](Self::close).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(session: metaq::discovery::ZkSession) {
    /// if let Some(client) = session.client() {
    ///     let children = client.list_children("/meta/brokers/ids").await;
    ///     println!("{children:?}");
    /// }
    /// # }
    /// ```
    pub fn client(&self) -> Option<Client> {
        self.inner.current.borrow().client.clone()
    }

    /// The current client; while a new session is being opened, waits for
    /// it at most `wait`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after [`close`](Self::close);
    /// [`Error::ZooKeeperUnreachable`] when no new session came in time.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(session: metaq::discovery::ZkSession) -> Result<(), metaq::Error> {
    /// use std::time::Duration;
    /// let client = session.client_within(Duration::from_secs(5)).await?;
    /// println!("{:?}", client.session_id());
    /// # Ok(()) }
    /// ```
    pub async fn client_within(&self, wait: Duration) -> Result<Client, Error> {
        let mut follow = self.follow();
        let cancel = &self.inner.cancel;
        let opened = timeout(wait, async {
            loop {
                if cancel.is_cancelled() {
                    return None;
                }
                if let Some(client) = follow.borrow_and_update().client.clone() {
                    return Some(client);
                }
                // The sender lives as long as `self`: this cannot fail.
                follow.changed().await.ok()?;
            }
        })
        .await;
        match opened {
            Ok(Some(client)) => Ok(client),
            Ok(None) => Err(Error::Closed),
            Err(_) => Err(Error::ZooKeeperUnreachable {
                connect: self.inner.settings.connect.clone(),
                waited: wait,
                cause: "the expired session was not replaced in time".into(),
            }),
        }
    }

    /// The current session's id and password, `None` while a new one is
    /// being opened or after [`close`](Self::close). The id is what
    /// ZooKeeper's server logs name.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(session: metaq::discovery::ZkSession) {
    /// if let Some(info) = session.info() {
    ///     println!("zookeeper session {}", info.id());
    /// }
    /// # }
    /// ```
    pub fn info(&self) -> Option<SessionInfo> {
        let current = self.inner.current.borrow();
        current
            .client
            .as_ref()
            .map(|client| client.session().clone())
    }

    /// Stops renewing and closes the session (once no clone of the client
    /// is left in use). Idempotent.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(session: metaq::discovery::ZkSession) {
    /// session.close().await;
    /// assert!(session.client().is_none());
    /// # }
    /// ```
    pub async fn close(&self) {
        self.inner.cancel.cancel();
        self.inner
            .current
            .send_modify(|current| current.client = None);
    }
}

/// Opens a session as `settings` say, bounded by `connect_timeout`.
async fn open_client(settings: &ZkSettings) -> Result<Client, Error> {
    let mut connector = Client::connector().with_session_timeout(settings.session_timeout);
    if let Some(auth) = &settings.digest_auth {
        connector = connector.with_auth("digest", auth.as_bytes());
    }
    let client = connect_explained(connector, &settings.connect, settings.connect_timeout)
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
        })?;
    info!(connect = %settings.connect, session = %client.session_id(), "zookeeper session opened");
    Ok(client)
}

/// Follows the session's state: counts reconnections, and replaces an
/// expired (or otherwise ended) session by a new one.
async fn keep(
    settings: ZkSettings,
    current: Arc<watch::Sender<CurrentSession>>,
    cancel: CancellationToken,
) {
    loop {
        let Some(client) = current.borrow().client.clone() else {
            return;
        };
        let mut states = client.state_watcher();
        let session_id = client.session_id();
        // Only the handles keep the client: a close drops the last one.
        drop(client);
        let mut state = states.peek_state();
        let mut disconnected = false;
        while !state.is_terminated() {
            match state {
                SessionState::Disconnected => {
                    if !disconnected {
                        warn!(session = %session_id, "zookeeper connection lost");
                    }
                    disconnected = true;
                }
                SessionState::SyncConnected | SessionState::ConnectedReadOnly if disconnected => {
                    info!(session = %session_id, "zookeeper reconnected");
                    disconnected = false;
                    current.send_modify(|c| c.reconnects += 1);
                }
                _ => {}
            }
            state = tokio::select! {
                _ = cancel.cancelled() => return,
                state = states.changed() => state,
            };
        }
        warn!(session = %session_id, ?state, "zookeeper session ended; opening a new one");
        current.send_modify(|c| c.client = None);
        let Some(client) = reopen(&settings, &cancel).await else {
            return;
        };
        current.send_modify(|c| {
            c.client = Some(client);
            c.generation += 1;
        });
    }
}

/// Opens a new session, retrying with backoff; `None` once cancelled.
async fn reopen(settings: &ZkSettings, cancel: &CancellationToken) -> Option<Client> {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let attempt = tokio::select! {
            _ = cancel.cancelled() => return None,
            attempt = open_client(settings) => attempt,
        };
        match attempt {
            Ok(client) => return Some(client),
            Err(error) => {
                let delay = backoff.next_delay();
                warn!(%error, retry_in = ?delay, "opening a new zookeeper session failed");
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    _ = sleep(delay) => {}
                }
            }
        }
    }
}
