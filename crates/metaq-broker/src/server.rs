//! The broker as a whole: listener, connections, store and registration,
//! with graceful shutdown and the fault-injection controls tests use.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::connection::{self, Stop};
use super::registry::Registry;
use super::shared::Shared;
use super::store::{MessageStore, StoreConfig};
use super::xa::table::XaTable;
use super::{BrokerConfig, BrokerError};
use metaq::BrokerUri;

/// How long a graceful shutdown waits for connections to finish their answers.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A running development broker.
///
/// Start it with [`Broker::start`]; stop it with [`Broker::shutdown`], which
/// leaves ZooKeeper first, then answers what it has read and closes. Dropping
/// a `Broker` without `shutdown` stops it abruptly (connections cut, nodes
/// removed when the registration task notices).
///
/// ```no_run
/// # async fn demo() -> Result<(), metaq_broker::BrokerError> {
/// use metaq_broker::{Broker, BrokerConfig, TopicConfig};
/// let config = BrokerConfig::new(0, "127.0.0.1:2181", "/tmp/metaq-0")
///     .with_listen("127.0.0.1:0".parse().unwrap())
///     .with_topic(TopicConfig::new("test", 4));
/// let broker = Broker::start(config).await?;
/// println!("serving at {}", broker.uri());
/// broker.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Broker {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("id", &self.inner.shared.config.id)
            .field("local_addr", &*lock(&self.inner.local_addr))
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) shared: Arc<Shared>,
    pub(crate) local_addr: Mutex<SocketAddr>,
    tasks: TaskTracker,
    /// Cancelled when the broker stops: ends every task at once.
    all: CancellationToken,
    /// Cancelled at graceful shutdown: connections stop reading.
    drain: CancellationToken,
    /// Cancelled to cut the current connections; replaced after each use.
    connections: Mutex<CancellationToken>,
    /// Stops the current accept loop.
    pub(crate) listener: Mutex<CancellationToken>,
    shut_down: tokio::sync::Mutex<bool>,
}

impl Broker {
    /// Binds the listen address, opens the store, registers in ZooKeeper and
    /// starts accepting connections.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Config`] for an unusable configuration (checked before
    /// anything else), [`BrokerError::Listen`], [`BrokerError::Storage`],
    /// [`BrokerError::ZooKeeper`], or [`BrokerError::IdTaken`] when another
    /// live broker has the same id.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), metaq_broker::BrokerError> {
    /// use metaq_broker::{Broker, BrokerConfig, TopicConfig};
    /// let config = BrokerConfig::new(0, "127.0.0.1:2181", "/tmp/metaq-0")
    ///     .with_listen("127.0.0.1:0".parse().unwrap())
    ///     .with_topic(TopicConfig::new("test", 4));
    /// let broker = Broker::start(config).await?;
    /// assert_ne!(broker.local_addr().port(), 0);
    /// broker.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn start(config: BrokerConfig) -> Result<Broker, BrokerError> {
        check(&config)?;
        let config = Arc::new(config);
        let (listener, local_addr) = bind(config.listen).await?;
        let uri = uri_for(&config, local_addr);
        let store = open_store(&config).await?;
        // Prepared XA branches are back before the first client can ask.
        let xa = open_xa(&config).await?;
        let on_disk = store.partitions().into_iter().map(|(topic, _)| topic);
        let registry = Registry::start(Arc::clone(&config), uri.clone(), on_disk).await?;
        let shared = Arc::new(Shared::new(
            Arc::clone(&config),
            uri.clone(),
            store,
            registry,
            xa,
        ));
        let all = CancellationToken::new();
        let inner = Arc::new(Inner {
            shared,
            local_addr: Mutex::new(local_addr),
            tasks: TaskTracker::new(),
            drain: all.child_token(),
            connections: Mutex::new(all.child_token()),
            listener: Mutex::new(all.child_token()),
            all,
            shut_down: tokio::sync::Mutex::new(false),
        });
        inner.spawn_accept_loop(listener);
        info!(broker = config.id, %uri, data_dir = %config.data_dir.display(), "broker started");
        Ok(Broker { inner })
    }

    /// The address the broker listens on (the actual port when 0 was asked).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(broker: metaq_broker::Broker) -> Result<(), metaq_broker::BrokerError> {
    /// let addr = broker.local_addr();
    /// assert_eq!(addr.port(), broker.uri().port);
    /// # Ok(()) }
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        *lock(&self.inner.local_addr)
    }

    /// The URI registered in ZooKeeper, `meta://host:port`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(broker: metaq_broker::Broker) -> Result<(), metaq_broker::BrokerError> {
    /// // Listening on 127.0.0.1 with no host name configured:
    /// let uri = broker.uri();
    /// assert_eq!(uri.to_string(), format!("meta://{}", broker.local_addr()));
    /// # Ok(()) }
    /// ```
    pub fn uri(&self) -> BrokerUri {
        self.inner.shared.uri()
    }

    /// The configuration the broker runs with.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(broker: metaq_broker::Broker) -> Result<(), metaq_broker::BrokerError> {
    /// // Does this broker accept puts to `test`?
    /// assert!(broker.config().topic("test").is_some());
    /// # Ok(()) }
    /// ```
    pub fn config(&self) -> &BrokerConfig {
        &self.inner.shared.config
    }

    /// Graceful stop, MetaQ's order: leave ZooKeeper, wait the configured
    /// grace, stop accepting, answer every request already read (bounded by
    /// 10 s), flush the store. Idempotent.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(broker: metaq_broker::Broker) -> Result<(), metaq_broker::BrokerError> {
    /// broker.shutdown().await;
    /// broker.shutdown().await; // a second call returns at once
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        let mut done = inner.shut_down.lock().await;
        if *done {
            return;
        }
        *done = true;
        let id = inner.shared.config.id;
        inner.shared.registry.shutdown().await;
        tokio::time::sleep(inner.shared.config.shutdown_grace).await;
        lock(&inner.listener).cancel();
        inner.drain.cancel();
        inner.tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, inner.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                broker = id,
                "connections did not finish in time; cutting them"
            );
        }
        inner.all.cancel();
        inner.shared.store.close().await;
        info!(broker = id, "broker stopped");
    }
}

/// Binds `addr`, returning the listener and its actual address (port 0).
pub(crate) async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), BrokerError> {
    let failed = |e| BrokerError::Listen {
        addr,
        source: Arc::new(e),
    };
    let listener = TcpListener::bind(addr).await.map_err(failed)?;
    let local_addr = listener.local_addr().map_err(failed)?;
    Ok((listener, local_addr))
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.inner.all.cancel();
    }
}

impl Inner {
    pub(crate) fn spawn_accept_loop(self: &Arc<Self>, listener: TcpListener) {
        let stop = self.all.child_token();
        *lock(&self.listener) = stop.clone();
        let inner = Arc::clone(self);
        self.tasks.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                match accepted {
                    Ok((stream, peer)) => {
                        if inner.shared.faults.refuse_connections() {
                            continue;
                        }
                        let _ = stream.set_nodelay(true);
                        let stop = Stop {
                            kill: lock(&inner.connections).child_token(),
                            drain: inner.drain.clone(),
                        };
                        let shared = Arc::clone(&inner.shared);
                        inner
                            .tasks
                            .spawn(connection::serve(shared, stream, peer, stop));
                    }
                    Err(e) => {
                        // Usually out of file descriptors: back off, keep serving.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }

    pub(crate) fn cut_connections(&self) {
        let mut current = lock(&self.connections);
        current.cancel();
        *current = self.all.child_token();
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn check(config: &BrokerConfig) -> Result<(), BrokerError> {
    let fail = |reason: &str| {
        Err(BrokerError::Config {
            reason: reason.to_owned(),
        })
    };
    if config.id >= 1024 {
        return fail("broker id must be 0 to 1023 (it is the worker id of message ids)");
    }
    if config.topics.iter().any(|t| t.partitions == 0) {
        return fail("every topic needs at least one partition");
    }
    if config.max_message_size == 0 {
        return fail("the maximum message size must be positive");
    }
    Ok(())
}

/// `meta://<host-name or listen IP>:<advertised or actual port>`. An
/// unspecified listen IP (0.0.0.0) says nothing to clients, so loopback is
/// written instead; set a host name to publish a reachable address.
pub(crate) fn uri_for(config: &BrokerConfig, local: SocketAddr) -> BrokerUri {
    let host = config.host_name.clone().unwrap_or_else(|| {
        let ip = match local.ip() {
            ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            ip => ip,
        };
        ip.to_string()
    });
    BrokerUri {
        host: host.into(),
        port: config.advertised_port.unwrap_or(local.port()),
    }
}

async fn open_store(config: &BrokerConfig) -> Result<MessageStore, BrokerError> {
    let store_config = StoreConfig {
        data_dir: config.data_dir.clone(),
        flush: config.flush,
        max_segment_size: config.max_segment_size,
    };
    let dir = config.data_dir.clone();
    tokio::task::spawn_blocking(move || MessageStore::open(store_config))
        .await
        .map_err(|e| BrokerError::Storage {
            dir: dir.clone(),
            source: Arc::new(std::io::Error::other(e)),
        })?
        .map_err(|e| BrokerError::Storage {
            dir,
            source: Arc::new(e),
        })
}

/// Opens `<data_dir>/xa` and reads the prepared XA branches back.
async fn open_xa(config: &BrokerConfig) -> Result<XaTable, BrokerError> {
    let dir = config.data_dir.clone();
    let opened = tokio::task::spawn_blocking(move || XaTable::open(&dir))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    opened.map_err(|e| BrokerError::Storage {
        dir: config.data_dir.join("xa"),
        source: Arc::new(e),
    })
}
