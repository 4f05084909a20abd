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
use super::{BrokerConfig, BrokerError};
use crate::cluster::BrokerUri;
use crate::protocol::StatusCode;

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
/// # async fn demo() -> Result<(), metaq::broker::BrokerError> {
/// use metaq::broker::{Broker, BrokerConfig, TopicConfig};
/// let config = BrokerConfig::new(0, "127.0.0.1:2181", "/tmp/metaq-0")
///     .with_listen("127.0.0.1:0".parse().unwrap())
///     .with_topic(TopicConfig::new("test", 4));
/// let broker = Broker::start(config).await?;
/// println!("serving at {}", broker.uri());
/// broker.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    local_addr: Mutex<SocketAddr>,
    tasks: TaskTracker,
    /// Cancelled when the broker stops: ends every task at once.
    all: CancellationToken,
    /// Cancelled at graceful shutdown: connections stop reading.
    drain: CancellationToken,
    /// Cancelled to cut the current connections; replaced after each use.
    connections: Mutex<CancellationToken>,
    /// Stops the current accept loop.
    listener: Mutex<CancellationToken>,
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
    /// # async fn example() -> Result<(), metaq::broker::BrokerError> {
    /// use metaq::broker::{Broker, BrokerConfig, TopicConfig};
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
        let on_disk = store.partitions().into_iter().map(|(topic, _)| topic);
        let registry = Registry::start(Arc::clone(&config), uri.clone(), on_disk).await?;
        let shared = Arc::new(Shared::new(
            Arc::clone(&config),
            uri.clone(),
            store,
            registry,
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
    /// # async fn example(broker: metaq::broker::Broker) -> Result<(), metaq::broker::BrokerError> {
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
    /// # async fn example(broker: metaq::broker::Broker) -> Result<(), metaq::broker::BrokerError> {
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
    /// # async fn example(broker: metaq::broker::Broker) -> Result<(), metaq::broker::BrokerError> {
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
    /// # async fn example(broker: metaq::broker::Broker) -> Result<(), metaq::broker::BrokerError> {
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

    /// Delays every answer by `delay` (zero turns it off). Puts are still
    /// stored at once.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(broker: metaq::broker::Broker) -> Result<(), metaq::broker::BrokerError> {
    /// use std::time::Duration;
    /// use metaq::testkit::RawClient;
    /// broker.delay_responses(Duration::from_millis(500));
    /// let mut client = RawClient::connect(broker.local_addr()).await;
    /// client.send(b"version 1\r\n").await;
    /// assert!(client.response_within(Duration::from_millis(100)).await.is_none());
    /// broker.delay_responses(Duration::ZERO);
    /// # Ok(()) }
    /// ```
    pub fn delay_responses(&self, delay: Duration) {
        self.inner.shared.faults.set_response_delay(delay);
    }

    /// Answers the next `count` plain puts with `code` (body `injected failure`)
    /// without storing them.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(broker: metaq::broker::Broker) -> Result<(), metaq::broker::BrokerError> {
    /// use metaq::protocol::StatusCode;
    /// use metaq::testkit::RawClient;
    /// broker.fail_next_puts(1, StatusCode::INTERNAL_SERVER_ERROR);
    /// let mut client = RawClient::connect(broker.local_addr()).await;
    /// let answer = client.call(b"put test 0 5 0 907060870 1\r\nhello").await.unwrap();
    /// assert_eq!(answer.code, StatusCode::INTERNAL_SERVER_ERROR);
    /// # Ok(()) }
    /// ```
    pub fn fail_next_puts(&self, count: u32, code: StatusCode) {
        self.inner.shared.faults.fail_next_puts(count, code);
    }

    /// While stalled, requests are read and dropped: never stored, never answered.
    /// Use it to test a client's timeouts against a broker that hangs.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(broker: metaq::broker::Broker) -> Result<(), metaq::broker::BrokerError> {
    /// use std::time::Duration;
    /// use metaq::testkit::RawClient;
    /// broker.stall(true);
    /// let mut client = RawClient::connect(broker.local_addr()).await;
    /// client.send(b"version 1\r\n").await;
    /// assert!(client.response_within(Duration::from_secs(1)).await.is_none());
    /// broker.stall(false);
    /// # Ok(()) }
    /// ```
    pub fn stall(&self, stalled: bool) {
        self.inner.shared.faults.set_stalled(stalled);
    }

    /// While refusing, new connections are accepted and closed at once.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(broker: metaq::broker::Broker) -> Result<(), metaq::broker::BrokerError> {
    /// use metaq::testkit::RawClient;
    /// broker.refuse_connections(true);
    /// let mut client = RawClient::connect(broker.local_addr()).await;
    /// assert!(client.is_closed().await);
    /// broker.refuse_connections(false);
    /// # Ok(()) }
    /// ```
    pub fn refuse_connections(&self, refuse: bool) {
        self.inner.shared.faults.set_refuse_connections(refuse);
    }

    /// Cuts every open connection now (their open transactions roll back).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(broker: metaq::broker::Broker) -> Result<(), metaq::broker::BrokerError> {
    /// use metaq::testkit::RawClient;
    /// let mut client = RawClient::connect(broker.local_addr()).await;
    /// broker.drop_connections();
    /// assert!(client.is_closed().await);
    /// # Ok(()) }
    /// ```
    pub fn drop_connections(&self) {
        self.inner.cut_connections();
    }

    /// Stops listening and cuts every connection while staying registered:
    /// to clients it looks like a dead process whose ZooKeeper nodes have not
    /// expired yet (connects are refused, not accepted and closed as with
    /// [`refuse_connections`](Self::refuse_connections)). Undone by
    /// [`listen_again`](Self::listen_again).
    pub fn stop_listening(&self) {
        lock(&self.inner.listener).cancel();
        self.inner.cut_connections();
    }

    /// Listens again on the same address after
    /// [`stop_listening`](Self::stop_listening).
    pub async fn listen_again(&self) -> Result<(), BrokerError> {
        let (listener, _) = bind(self.local_addr()).await?;
        self.inner.spawn_accept_loop(listener);
        Ok(())
    }

    /// Removes this broker's nodes from ZooKeeper; it keeps serving.
    /// Producers then stop sending to it, as if it had gone away.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(broker: metaq::broker::Broker) -> Result<(), metaq::broker::BrokerError> {
    /// use metaq::discovery::ZkPaths;
    /// use metaq::testkit::ZkServer;
    /// let config = broker.config();
    /// let master = ZkPaths::new(&config.root).broker_master(config.id);
    /// broker.unregister().await?;
    /// let zk = ZkServer::shared().client().await;
    /// assert_eq!(zk.check_stat(&master).await.unwrap(), None);
    /// # Ok(()) }
    /// ```
    pub async fn unregister(&self) -> Result<(), BrokerError> {
        self.inner.shared.registry.unregister().await
    }

    /// Registers again (after [`unregister`](Self::unregister)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(broker: metaq::broker::Broker) -> Result<(), metaq::broker::BrokerError> {
    /// use metaq::discovery::ZkPaths;
    /// use metaq::testkit::ZkServer;
    /// let config = broker.config();
    /// let master = ZkPaths::new(&config.root).broker_master(config.id);
    /// broker.unregister().await?;
    /// broker.register().await?;
    /// let zk = ZkServer::shared().client().await;
    /// assert!(zk.check_stat(&master).await.unwrap().is_some());
    /// # Ok(()) }
    /// ```
    pub async fn register(&self) -> Result<(), BrokerError> {
        self.inner.shared.registry.register(None).await
    }

    /// The broker's current ZooKeeper session, so a fault test can force its
    /// expiry; the broker then opens a new session and registers again.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(broker: metaq::broker::Broker) -> Result<(), metaq::broker::BrokerError> {
    /// use metaq::testkit::ZkServer;
    /// let session = broker.zk_session().await?;
    /// ZkServer::shared().expire_session(&session).await;
    /// # Ok(()) }
    /// ```
    pub async fn zk_session(&self) -> Result<zookeeper_client::SessionInfo, BrokerError> {
        self.inner.shared.registry.session().await
    }

    /// Moves to a new listen address: binds it, cuts the connections of the
    /// old one, stops listening there, and registers the new URI. Returns the
    /// new local address.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(broker: metaq::broker::Broker) -> Result<(), metaq::broker::BrokerError> {
    /// let old = broker.local_addr();
    /// let new = broker.move_to("127.0.0.1:0".parse().unwrap()).await?;
    /// assert_ne!(new, old);
    /// assert_eq!(broker.local_addr(), new);
    /// # Ok(()) }
    /// ```
    pub async fn move_to(&self, listen: SocketAddr) -> Result<SocketAddr, BrokerError> {
        let inner = &self.inner;
        let (listener, local_addr) = bind(listen).await?;
        lock(&inner.listener).cancel();
        inner.cut_connections();
        inner.spawn_accept_loop(listener);
        *lock(&inner.local_addr) = local_addr;
        let uri = uri_for(&inner.shared.config, local_addr);
        inner.shared.set_uri(uri.clone());
        inner.shared.registry.register(Some(uri)).await?;
        Ok(local_addr)
    }
}

/// Binds `addr`, returning the listener and its actual address (port 0).
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), BrokerError> {
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
    fn spawn_accept_loop(self: &Arc<Self>, listener: TcpListener) {
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

    fn cut_connections(&self) {
        let mut current = lock(&self.connections);
        current.cancel();
        *current = self.all.child_token();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
pub(super) fn uri_for(config: &BrokerConfig, local: SocketAddr) -> BrokerUri {
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
