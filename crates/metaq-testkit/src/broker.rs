//! Development brokers for tests: in-process ([`TestBroker`]) or as a child
//! process of the `metaq-broker` binary ([`BrokerProcess`]), plus a raw
//! protocol client ([`RawClient`]) that writes exactly the bytes a test gives.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

use super::ZkServer;
use metaq::protocol::{ClientCodec, Response};
use metaq_broker::store::{read_records, StoredRecord};
use metaq_broker::{Broker, BrokerConfig, TopicConfig};

/// Session timeout test brokers use, so a killed broker's nodes go quickly.
///
/// # Examples
///
/// ```no_run
/// use metaq_testkit::{test_broker_config, unique_root, ZkServer, TEST_BROKER_SESSION_TIMEOUT};
/// let config = test_broker_config(ZkServer::shared(), &unique_root(), 0, "/tmp/b0", &[]);
/// assert_eq!(config.zk_session_timeout, TEST_BROKER_SESSION_TIMEOUT);
/// ```
pub const TEST_BROKER_SESSION_TIMEOUT: Duration = Duration::from_secs(4);

/// A configuration for a test broker: port 0 on 127.0.0.1, the given root,
/// a 4 s ZooKeeper session, and `topics` as `(name, partitions)`.
///
/// ```no_run
/// use metaq_testkit::{test_broker_config, unique_root, ZkServer};
/// let config = test_broker_config(ZkServer::shared(), &unique_root(), 0, "/tmp/b0", &[("test", 4)]);
/// assert_eq!(config.listen.port(), 0);
/// ```
pub fn test_broker_config(
    zk: &ZkServer,
    root: &str,
    id: u32,
    data_dir: impl Into<PathBuf>,
    topics: &[(&str, u32)],
) -> BrokerConfig {
    let mut config = BrokerConfig::new(id, zk.connect_string(), data_dir)
        .with_listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .with_root(root)
        .with_zk_session_timeout(TEST_BROKER_SESSION_TIMEOUT);
    for (name, partitions) in topics {
        config = config.with_topic(TopicConfig::new(*name, *partitions));
    }
    config
}

/// An in-process development broker with its own temporary data directory.
///
/// Derefs to [`Broker`] for the fault-injection controls. Dropping it stops
/// the broker abruptly and deletes the data; call
/// [`shutdown`](Broker::shutdown) first for a graceful stop.
///
/// ```no_run
/// # async fn demo() {
/// use metaq_testkit::{unique_root, TestBroker, ZkServer};
/// let broker = TestBroker::start(ZkServer::shared(), &unique_root(), 0, &[("test", 2)]).await;
/// assert!(broker.records(Some("test")).is_empty());
/// # }
/// ```
pub struct TestBroker {
    broker: Option<Broker>,
    config: BrokerConfig,
    data_dir: TempDir,
}

impl TestBroker {
    /// Starts broker `id` serving `topics` under `root`. Panics on failure (it is for tests).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() {
    /// use metaq_testkit::{unique_root, TestBroker, ZkServer};
    /// let root = unique_root();
    /// let broker = TestBroker::start(ZkServer::shared(), &root, 0, &[("orders", 4)]).await;
    /// assert_eq!(broker.config().topic("orders").unwrap().partitions, 4);
    /// # }
    /// ```
    pub async fn start(zk: &ZkServer, root: &str, id: u32, topics: &[(&str, u32)]) -> TestBroker {
        let data_dir = TempDir::with_prefix("metaq-broker-").expect("create a temp data dir");
        let config = test_broker_config(zk, root, id, data_dir.path(), topics);
        Self::start_with(config, data_dir).await
    }

    /// Starts a broker with a configuration of the test's own; its
    /// `data_dir` is replaced by a fresh temporary directory.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() {
    /// use metaq_broker::FlushPolicy;
    /// use metaq_testkit::{test_broker_config, unique_root, TestBroker, ZkServer};
    /// let zk = ZkServer::shared();
    /// // The data directory given here is replaced by the temporary one.
    /// let config = test_broker_config(zk, &unique_root(), 0, "unused", &[("t", 1)])
    ///     .with_flush(FlushPolicy::Os);
    /// let broker = TestBroker::start_with(config, tempfile::tempdir().unwrap()).await;
    /// assert_eq!(broker.config().flush, FlushPolicy::Os);
    /// # }
    /// ```
    pub async fn start_with(mut config: BrokerConfig, data_dir: TempDir) -> TestBroker {
        config.data_dir = data_dir.path().to_owned();
        let broker = Broker::start(config.clone())
            .await
            .unwrap_or_else(|e| panic!("test broker {} failed to start: {e}", config.id));
        TestBroker {
            broker: Some(broker),
            config,
            data_dir,
        }
    }

    /// The broker's data directory.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() {
    /// use metaq_testkit::{unique_root, TestBroker, ZkServer};
    /// let broker = TestBroker::start(ZkServer::shared(), &unique_root(), 0, &[("t", 1)]).await;
    /// assert_eq!(broker.config().data_dir, broker.data_dir());
    /// # }
    /// ```
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Every record on disk (only `topic`'s if given), as `metaq-broker dump` sees them.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() {
    /// use metaq_testkit::{unique_root, RawClient, TestBroker, ZkServer};
    /// let broker = TestBroker::start(ZkServer::shared(), &unique_root(), 0, &[("t", 1)]).await;
    /// let mut client = RawClient::connect(broker.local_addr()).await;
    /// client.call(b"put t 0 5 0 907060870 1\r\nhello").await.unwrap();
    /// let records = broker.records(Some("t"));
    /// assert_eq!(&records[0].body[..], b"hello");
    /// # }
    /// ```
    pub fn records(&self, topic: Option<&str>) -> Vec<StoredRecord> {
        read_records(self.data_dir.path(), topic).expect("read the broker's data directory")
    }

    /// Stops gracefully and starts again on the same data directory and
    /// listen address (port 0 gives a new port).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() {
    /// use metaq_testkit::{unique_root, TestBroker, ZkServer};
    /// let zk = ZkServer::shared();
    /// let mut broker = TestBroker::start(zk, &unique_root(), 0, &[("t", 1)]).await;
    /// let before = broker.records(None);
    /// broker.restart().await;
    /// assert_eq!(broker.records(None), before); // the data survives
    /// # }
    /// ```
    pub async fn restart(&mut self) {
        if let Some(broker) = self.broker.take() {
            broker.shutdown().await;
        }
        let broker = Broker::start(self.config.clone())
            .await
            .unwrap_or_else(|e| panic!("test broker {} failed to restart: {e}", self.config.id));
        self.broker = Some(broker);
    }
}

impl Deref for TestBroker {
    type Target = Broker;

    fn deref(&self) -> &Broker {
        self.broker.as_ref().expect("the broker is running")
    }
}

/// The `metaq-broker` binary running as a child process, for tests that kill
/// a broker outright. Killed (by its pid) when dropped.
///
/// # Examples
///
/// ```no_run
/// use metaq_testkit::{unique_root, BrokerProcess, ZkServer};
/// let zk = ZkServer::shared().connect_string();
/// let root = unique_root();
/// let args = format!("--id 0 --listen 127.0.0.1:0 --zk {zk} --root {root} --data-dir /tmp/b0");
/// let args: Vec<String> = args.split(' ').map(String::from).collect();
/// let mut broker = BrokerProcess::spawn(metaq_testkit::broker_binary(), &args)?;
/// broker.kill(); // like a crash: no unregistering, no flushing
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct BrokerProcess {
    child: Child,
    addr: SocketAddr,
}

impl BrokerProcess {
    /// Runs `binary` (usually [`broker_binary`](crate::broker_binary)())
    /// with `args`, and waits for its `ready` line (at most 30 s).
    ///
    /// # Errors
    ///
    /// The binary cannot be started, or it never printed `ready` (bad
    /// arguments, ZooKeeper not reachable, ...); it is killed then.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use metaq_testkit::BrokerProcess;
    /// # let args: Vec<String> = Vec::new();
    /// let broker = BrokerProcess::spawn(metaq_testkit::broker_binary(), &args)?;
    /// // With `--listen 127.0.0.1:0`, the port comes from the `ready` line.
    /// assert_ne!(broker.addr().port(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn spawn(binary: impl AsRef<Path>, args: &[String]) -> std::io::Result<BrokerProcess> {
        let mut child = Command::new(binary.as_ref())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line
                    .split(' ')
                    .find_map(|word| word.strip_prefix("addr="))
                    .and_then(|a| a.parse::<SocketAddr>().ok())
                {
                    let _ = tx.send(addr);
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => Ok(BrokerProcess { child, addr }),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait()?;
                Err(std::io::Error::other(format!(
                    "metaq-broker did not become ready ({status})"
                )))
            }
        }
    }

    /// The address it listens on, as printed in its `ready` line.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(broker: metaq_testkit::BrokerProcess) {
    /// use metaq_testkit::RawClient;
    /// let mut client = RawClient::connect(broker.addr()).await;
    /// assert!(client.call(b"version 1\r\n").await.is_some());
    /// # }
    /// ```
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The child's pid.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(broker: metaq_testkit::BrokerProcess) {
    /// let proc_dir = format!("/proc/{}", broker.pid());
    /// assert!(std::path::Path::new(&proc_dir).exists());
    /// # }
    /// ```
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no unregistering, no flushing beyond what was acknowledged.
    /// Its ZooKeeper nodes go when its session expires.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(mut broker: metaq_testkit::BrokerProcess) {
    /// let proc_dir = format!("/proc/{}", broker.pid());
    /// broker.kill(); // returns once the process is gone
    /// assert!(!std::path::Path::new(&proc_dir).exists());
    /// # }
    /// ```
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (graceful shutdown) and wait for the exit status.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(mut broker: metaq_testkit::BrokerProcess) -> std::io::Result<()> {
    /// let status = broker.terminate()?;
    /// assert!(status.success());
    /// # Ok(()) }
    /// ```
    pub fn terminate(&mut self) -> std::io::Result<std::process::ExitStatus> {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()?;
        self.child.wait()
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client that writes raw bytes and reads `result` frames, for checking
/// the broker byte by byte.
///
/// ```no_run
/// # async fn demo(addr: std::net::SocketAddr) {
/// use metaq_testkit::RawClient;
/// let mut client = RawClient::connect(addr).await;
/// client.send(b"version 7\r\n").await;
/// assert_eq!(client.response().await.unwrap().opaque, 7);
/// # }
/// ```
pub struct RawClient {
    stream: TcpStream,
    codec: ClientCodec,
    buffer: BytesMut,
}

impl RawClient {
    /// Connects; panics on failure.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(addr: std::net::SocketAddr) {
    /// use metaq_testkit::RawClient;
    /// let mut client = RawClient::connect(addr).await;
    /// assert!(client.call(b"version 1\r\n").await.is_some());
    /// # }
    /// ```
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        RawClient {
            stream,
            codec: ClientCodec::default(),
            buffer: BytesMut::new(),
        }
    }

    /// Writes `bytes` as they are, so a test can send what no encoder would,
    /// or one frame in pieces.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(addr: std::net::SocketAddr) {
    /// use metaq_testkit::RawClient;
    /// let mut client = RawClient::connect(addr).await;
    /// client.send(b"put test 0 5 0 907060870 1\r\nhel").await;
    /// client.send(b"lo").await;
    /// assert!(client.response().await.unwrap().code.is_success());
    /// # }
    /// ```
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write to broker");
    }

    /// The next response, or `None` if the broker closed the connection
    /// (or sent nothing within 10 s, or sent a frame that does not decode).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(addr: std::net::SocketAddr) {
    /// use metaq_testkit::RawClient;
    /// let mut client = RawClient::connect(addr).await;
    /// client.send(b"version 1\r\nversion 2\r\n").await;
    /// assert_eq!(client.response().await.unwrap().opaque, 1);
    /// assert_eq!(client.response().await.unwrap().opaque, 2);
    /// # }
    /// ```
    pub async fn response(&mut self) -> Option<Response> {
        self.response_within(Duration::from_secs(10)).await
    }

    /// Like [`response`](Self::response) with a custom wait.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(addr: std::net::SocketAddr) {
    /// use metaq_testkit::RawClient;
    /// use std::time::Duration;
    /// let mut client = RawClient::connect(addr).await;
    /// client.send(b"quit\r\n").await; // never answered
    /// assert!(client.response_within(Duration::from_millis(200)).await.is_none());
    /// # }
    /// ```
    pub async fn response_within(&mut self, wait: Duration) -> Option<Response> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self.codec.decode(&mut self.buffer) {
                Ok(Some(response)) => return Some(response),
                Ok(None) => {}
                Err(_) => return None,
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buffer));
            match read.await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    /// Sends `bytes` and returns the next response.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(addr: std::net::SocketAddr) {
    /// use metaq_testkit::RawClient;
    /// let answer = RawClient::connect(addr).await.call(b"stats  7\r\n").await.unwrap();
    /// assert_eq!(answer.opaque, 7);
    /// # }
    /// ```
    pub async fn call(&mut self, bytes: &[u8]) -> Option<Response> {
        self.send(bytes).await;
        self.response().await
    }

    /// True when the broker has closed the connection (EOF within 5 s).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(addr: std::net::SocketAddr) {
    /// use metaq_testkit::RawClient;
    /// let mut client = RawClient::connect(addr).await;
    /// client.send(b"hello\r\n").await; // not a command: the broker hangs up
    /// assert!(client.is_closed().await);
    /// # }
    /// ```
    pub async fn is_closed(&mut self) -> bool {
        let mut scratch = [0u8; 64];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut scratch)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}
