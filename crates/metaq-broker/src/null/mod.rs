//! The null server: a loopback server that answers every `put` with
//! `result 200` at once, registered in ZooKeeper like a broker, so that a
//! producer found through discovery can be measured alone.
//!
//! It stores nothing and checks nothing (no topics, partitions or
//! checksums): the answer to a put is written as soon as its frame is
//! decoded, and every answer to one read goes out in one write. Its cost per
//! message is a fraction of a producer's, so a benchmark against it shows
//! the producer's limit (`metaq bench --null` runs it in a child process so
//! that its CPU is not counted as the producer's).
//!
//! What it answers:
//!
//! * `put`: `200` with `<id> <partition> <offset>`, offsets counting up per
//!   connection (a put over the size limit: `500`);
//! * `transaction`: `200` for every kind but `END`, which is never answered;
//! * `version` and `stats`: `200`; `get`, `offset`, `sync`: `503`;
//! * `quit`, or a frame that does not decode: the connection closes after
//!   the answers to what came before.
//!
//! # Examples
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use metaq_broker::TopicConfig;
//! use metaq_broker::null::NullServer;
//! use metaq::{Message, Producer};
//!
//! let server = NullServer::builder("127.0.0.1:2181")
//!     .topic(TopicConfig::new("bench", 4))
//!     .start()
//!     .await?;
//! let producer = Producer::builder("127.0.0.1:2181").build().await?;
//! let sent = producer.send(Message::new("bench", "hello")).await?;
//! assert_eq!(sent.broker, server.uri());
//! assert_eq!(server.puts_answered(), 1);
//! producer.close().await;
//! server.stop().await;
//! # Ok(()) }
//! ```

mod answer;
mod connection;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::registry::Registry;
use super::{BrokerConfig, BrokerError, TopicConfig};
use metaq::BrokerUri;

pub use answer::NULL_SERVER_VERSION;

/// How long [`NullServer::stop`] waits for connections to end.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Counters shared by the connections.
#[derive(Debug, Default)]
struct Counters {
    puts: AtomicU64,
    connections: AtomicU64,
}

/// Settings of a [`NullServer`], from [`NullServer::builder`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use metaq_broker::TopicConfig;
/// use metaq_broker::null::NullServer;
/// let builder = NullServer::builder("127.0.0.1:2181")
///     .id(3)
///     .root("/bench")
///     .topic(TopicConfig::new("bench", 8))
///     .zk_session_timeout(Duration::from_secs(4));
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct NullServerBuilder {
    /// Only the fields registration reads are used: id, listen address,
    /// host name, ZooKeeper settings, root and topics.
    config: BrokerConfig,
}

impl NullServerBuilder {
    /// Broker id to register under, 0 to 1023. Default 0.
    ///
    /// # Examples
    ///
    /// ```
    /// # use metaq_broker::null::NullServer;
    /// let builder = NullServer::builder("127.0.0.1:2181").id(1);
    /// ```
    pub fn id(mut self, id: u32) -> Self {
        self.config.id = id;
        self
    }

    /// Address to listen on. Default `127.0.0.1:0` (a free port).
    ///
    /// # Examples
    ///
    /// ```
    /// # use metaq_broker::null::NullServer;
    /// let builder = NullServer::builder("127.0.0.1:2181").listen("127.0.0.1:8123".parse().unwrap());
    /// ```
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.config.listen = addr;
        self
    }

    /// MetaQ root in ZooKeeper. Default `/meta`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use metaq_broker::null::NullServer;
    /// let builder = NullServer::builder("127.0.0.1:2181").root("/bench");
    /// ```
    pub fn root(mut self, root: &str) -> Self {
        self.config = self.config.with_root(root);
        self
    }

    /// A topic to register, with its partition count; repeatable. Puts to
    /// any topic are answered, but producers only find registered ones.
    ///
    /// # Examples
    ///
    /// ```
    /// # use metaq_broker::null::NullServer;
    /// use metaq_broker::TopicConfig;
    /// let builder = NullServer::builder("127.0.0.1:2181")
    ///     .topic(TopicConfig::new("bench", 4))
    ///     .topic("other:1".parse().unwrap());
    /// ```
    pub fn topic(mut self, topic: TopicConfig) -> Self {
        self.config.topics.push(topic);
        self
    }

    /// Host written in the registered URI. Default: the listen IP.
    ///
    /// # Examples
    ///
    /// ```
    /// # use metaq_broker::null::NullServer;
    /// let builder = NullServer::builder("127.0.0.1:2181").host_name("localhost");
    /// ```
    pub fn host_name(mut self, host: impl Into<String>) -> Self {
        self.config.host_name = Some(host.into());
        self
    }

    /// ZooKeeper session timeout. Default 30 s.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use metaq_broker::null::NullServer;
    /// let builder = NullServer::builder("127.0.0.1:2181").zk_session_timeout(Duration::from_secs(4));
    /// ```
    pub fn zk_session_timeout(mut self, timeout: Duration) -> Self {
        self.config.zk_session_timeout = timeout;
        self
    }

    /// Upper bound on opening a ZooKeeper session. Default 10 s.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use metaq_broker::null::NullServer;
    /// let builder = NullServer::builder("127.0.0.1:2181").zk_connect_timeout(Duration::from_secs(2));
    /// ```
    pub fn zk_connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.zk_connect_timeout = timeout;
        self
    }

    /// Checks the settings, binds, registers in ZooKeeper and starts
    /// answering. Connections are served by tasks of the current Tokio
    /// runtime.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Config`] for an id over 1023, no topic, a topic with
    /// no partitions or a `*` pattern (checked before anything else);
    /// [`BrokerError::Listen`]; the ZooKeeper errors of
    /// [`Broker::start`](super::Broker::start), including
    /// [`BrokerError::IdTaken`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use metaq_broker::BrokerError;
    /// use metaq_broker::null::NullServer;
    /// // Refused before any connection is tried: nothing to register.
    /// let refused = NullServer::builder("127.0.0.1:2181").start().await;
    /// assert!(matches!(refused, Err(BrokerError::Config { .. })));
    /// # }
    /// ```
    pub async fn start(self) -> Result<NullServer, BrokerError> {
        check(&self.config)?;
        let config = Arc::new(self.config);
        let failed = |e| BrokerError::Listen {
            addr: config.listen,
            source: Arc::new(e),
        };
        let listener = TcpListener::bind(config.listen).await.map_err(failed)?;
        let local_addr = listener.local_addr().map_err(failed)?;
        let uri = super::server::uri_for(&config, local_addr);
        let registry = Registry::start(Arc::clone(&config), uri.clone(), []).await?;
        let counters = Arc::new(Counters::default());
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(accept_loop(
            listener,
            Arc::clone(&counters),
            stop.clone(),
            tasks.clone(),
        ));
        info!(broker = config.id, %uri, "null server started");
        Ok(NullServer {
            id: config.id,
            local_addr,
            uri,
            registry,
            counters,
            stop,
            tasks,
        })
    }
}

/// A running null server; see the [module documentation](self).
///
/// Stop it with [`stop`](Self::stop), which leaves ZooKeeper first. Dropping
/// it closes its connections at once; its ZooKeeper nodes are removed by
/// the registration task if the runtime still runs, else when the session
/// expires.
pub struct NullServer {
    id: u32,
    local_addr: SocketAddr,
    uri: BrokerUri,
    registry: Registry,
    counters: Arc<Counters>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for NullServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NullServer")
            .field("id", &self.id)
            .field("uri", &self.uri)
            .field("puts_answered", &self.puts_answered())
            .finish()
    }
}

impl NullServer {
    /// A builder for a null server registering in the ensemble `zk_connect`
    /// (`host:port[,host:port...][/chroot]`), listening on `127.0.0.1:0`.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq_broker::TopicConfig;
    /// use metaq_broker::null::NullServer;
    /// let builder = NullServer::builder("127.0.0.1:2181").topic(TopicConfig::new("bench", 4));
    /// ```
    pub fn builder(zk_connect: impl Into<String>) -> NullServerBuilder {
        let config = BrokerConfig::new(0, zk_connect, PathBuf::new())
            .with_listen(SocketAddr::from(([127, 0, 0, 1], 0)));
        NullServerBuilder { config }
    }

    /// The address it listens on (the actual port when 0 was asked).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(server: metaq_broker::null::NullServer) {
    /// assert_ne!(server.local_addr().port(), 0);
    /// # }
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URI registered in ZooKeeper, `meta://host:port`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(server: metaq_broker::null::NullServer) {
    /// assert_eq!(server.uri().port, server.local_addr().port());
    /// # }
    /// ```
    pub fn uri(&self) -> BrokerUri {
        self.uri.clone()
    }

    /// Puts answered with 200 so far, over every connection. Counted once
    /// per read, after the answers were written.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(server: metaq_broker::null::NullServer) {
    /// println!("{} puts answered", server.puts_answered());
    /// # }
    /// ```
    pub fn puts_answered(&self) -> u64 {
        self.counters.puts.load(Ordering::Relaxed)
    }

    /// Connections open now.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(server: metaq_broker::null::NullServer) {
    /// println!("{} clients connected", server.connections());
    /// # }
    /// ```
    pub fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::Relaxed)
    }

    /// Leaves ZooKeeper, then stops accepting and closes every connection
    /// (waiting at most 5 s for their tasks). Idempotent.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(server: metaq_broker::null::NullServer) {
    /// server.stop().await;
    /// server.stop().await; // a second call returns at once
    /// # }
    /// ```
    pub async fn stop(&self) {
        if self.stop.is_cancelled() {
            return;
        }
        // Producers see it leave before its sockets close.
        self.registry.shutdown().await;
        self.stop.cancel();
        self.tasks.close();
        if tokio::time::timeout(STOP_WAIT, self.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                broker = self.id,
                "null server connections did not end in time"
            );
        }
        info!(broker = self.id, "null server stopped");
    }
}

impl Drop for NullServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    counters: Arc<Counters>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                tasks.spawn(connection::serve(
                    stream,
                    Arc::clone(&counters),
                    stop.clone(),
                ));
            }
            Err(e) => {
                // Out of file descriptors, say: wait a little rather than spin.
                warn!(error = %e, "null server accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The settings a null server can run with.
fn check(config: &BrokerConfig) -> Result<(), BrokerError> {
    let fail = |reason: String| Err(BrokerError::Config { reason });
    if config.id >= 1024 {
        return fail("broker id must be 0 to 1023".into());
    }
    if config.topics.is_empty() {
        return fail("a null server needs at least one topic to register".into());
    }
    for topic in &config.topics {
        if topic.partitions == 0 {
            return fail(format!("topic {} needs at least one partition", topic.name));
        }
        // A pattern is registered on its first put by the development
        // broker; the null server registers only what it is given.
        if topic.is_pattern() {
            return fail(format!(
                "topic {} is a pattern; a null server registers concrete names only",
                topic.name
            ));
        }
    }
    Ok(())
}
