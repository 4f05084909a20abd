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
use crate::broker::store::{read_records, StoredRecord};
use crate::broker::{Broker, BrokerConfig, TopicConfig};
use crate::protocol::{ClientCodec, Response};

/// Session timeout test brokers use, so a killed broker's nodes go quickly.
pub const TEST_BROKER_SESSION_TIMEOUT: Duration = Duration::from_secs(4);

/// A configuration for a test broker: port 0 on 127.0.0.1, the given root,
/// a 4 s ZooKeeper session, and `topics` as `(name, partitions)`.
///
/// ```no_run
/// use metaq::testkit::{test_broker_config, unique_root, ZkServer};
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
/// use metaq::testkit::{unique_root, TestBroker, ZkServer};
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
    pub async fn start(zk: &ZkServer, root: &str, id: u32, topics: &[(&str, u32)]) -> TestBroker {
        let data_dir = TempDir::with_prefix("metaq-broker-").expect("create a temp data dir");
        let config = test_broker_config(zk, root, id, data_dir.path(), topics);
        Self::start_with(config, data_dir).await
    }

    /// Starts a broker with a configuration of the test's own; its
    /// `data_dir` is replaced by a fresh temporary directory.
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
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Every record on disk (only `topic`'s if given), as `metaq-broker dump` sees them.
    pub fn records(&self, topic: Option<&str>) -> Vec<StoredRecord> {
        read_records(self.data_dir.path(), topic).expect("read the broker's data directory")
    }

    /// Stops gracefully and starts again on the same data directory and
    /// listen address (port 0 gives a new port).
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
pub struct BrokerProcess {
    child: Child,
    addr: SocketAddr,
}

impl BrokerProcess {
    /// Runs `binary` (in integration tests: `env!("CARGO_BIN_EXE_metaq-broker")`)
    /// with `args`, and waits for its `ready` line (at most 30 s).
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

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no unregistering, no flushing beyond what was acknowledged.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (graceful shutdown) and wait for the exit status.
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
/// use metaq::testkit::RawClient;
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

    /// Writes `bytes` as they are.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write to broker");
    }

    /// The next response, or `None` if the broker closed the connection
    /// (or sent nothing within 10 s, or sent a frame that does not decode).
    pub async fn response(&mut self) -> Option<Response> {
        self.response_within(Duration::from_secs(10)).await
    }

    /// Like [`response`](Self::response) with a custom wait.
    pub async fn response_within(&mut self, wait: Duration) -> Option<Response> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Ok(Some(response)) = self.codec.decode(&mut self.buffer) {
                return Some(response);
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buffer));
            match read.await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    /// Sends `bytes` and returns the next response.
    pub async fn call(&mut self, bytes: &[u8]) -> Option<Response> {
        self.send(bytes).await;
        self.response().await
    }

    /// True when the broker has closed the connection (EOF within 5 s).
    pub async fn is_closed(&mut self) -> bool {
        let mut scratch = [0u8; 64];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut scratch)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}
