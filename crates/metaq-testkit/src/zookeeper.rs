//! [`ZkServer`]: a real ZooKeeper server for tests.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use tempfile::TempDir;
use zookeeper_client::{Client, SessionInfo};

use super::error::{TestkitError, INSTALL_HINT};
use super::expire;
use super::install::Installation;
use super::process::{self, Layout, Running};

/// Environment variable naming an external ensemble for [`ZkServer::shared`].
///
/// Set it to run the tests against a ZooKeeper that is already up, e.g.
/// `METAQ_TEST_ZK=127.0.0.1:2181 cargo test`.
///
/// # Examples
///
/// ```no_run
/// use metaq_testkit::{ZkServer, TEST_ZK_ENV};
/// if let Ok(connect) = std::env::var(TEST_ZK_ENV) {
///     assert_eq!(ZkServer::shared().connect_string(), connect.trim());
/// }
/// ```
pub const TEST_ZK_ENV: &str = "METAQ_TEST_ZK";

/// Session timeout of the clients made by [`ZkServer::client`].
///
/// # Examples
///
/// ```no_run
/// # async fn example() {
/// use metaq_testkit::{ZkServer, CLIENT_SESSION_TIMEOUT};
/// let client = ZkServer::shared().client().await;
/// assert_eq!(client.session_timeout(), CLIENT_SESSION_TIMEOUT);
/// # }
/// ```
pub const CLIENT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// How many fresh ports [`ZkServer::start`] tries when the one it picked is
/// taken before the server binds it.
const PORT_ATTEMPTS: usize = 5;

/// Upper bound for the harness's own ZooKeeper round trips (connecting a
/// client, forcing a session expiry).
const CLIENT_DEADLINE: Duration = Duration::from_secs(30);

/// A real ZooKeeper 3.8 server (the Debian package's jar, run in a JVM) on a
/// free `127.0.0.1` port, with its own temp dir for config, data and log.
///
/// Two ways to get one:
///
/// * [`ZkServer::shared`]: one server per test binary, started on first use
///   and shared by all its tests. Tests isolate themselves by working under
///   their own [`unique_root`](super::unique_root), so they can run in
///   parallel. Use this unless the test injects faults.
/// * [`ZkServer::start`]: a private server, for tests that [`stop`](Self::stop)
///   or [`restart`](Self::restart) it. Dropping it kills the JVM and removes
///   its temp dir.
///
/// The server is tuned for tests: `tickTime=250`, sessions may be as short as
/// 1 s (`minSessionTimeout=1000`, `maxSessionTimeout=60000`), no connection
/// limit, four-letter words `ruok`, `srvr` and `stat`, no admin server.
///
/// Every JVM is watched by a small `sh` watchdog that SIGKILLs it (by pid)
/// and removes the temp dir as soon as the test process is gone, however it
/// ends; this is what stops the shared server, which lives in a static and
/// is never dropped.
///
/// # Examples
///
/// ```no_run
/// use metaq_testkit::{unique_root, ZkServer};
/// use zookeeper_client::{Acls, CreateMode};
///
/// # async fn example() {
/// let zk = ZkServer::shared();
/// let client = zk.client().await;
/// let root = unique_root();
/// let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
/// client.create(&root, b"", &persistent).await.unwrap();
/// # }
/// ```
#[derive(Debug)]
pub struct ZkServer {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// A JVM started and owned by the harness.
    Managed(Box<Managed>),
    /// An ensemble named by `METAQ_TEST_ZK`; not controlled by the harness.
    External { connect: String },
}

#[derive(Debug)]
struct Managed {
    port: u16,
    install: Installation,
    layout: Layout,
    /// `None` while stopped.
    running: Mutex<Option<Running>>,
    /// Removed when the server is dropped (after the JVM is dead).
    _dir: TempDir,
}

impl ZkServer {
    /// Starts a private server on a free `127.0.0.1` port with its own temp
    /// dir, and waits until it answers `ruok` with `imok` (and serves
    /// requests).
    ///
    /// If the port is taken between picking it and the server binding it,
    /// another free port is tried (a few times). Blocks for up to 30 s per
    /// attempt; a server that does not come up is killed and the error
    /// carries the tail of its log.
    ///
    /// Use a private server for fault injection ([`stop`](Self::stop),
    /// [`restart`](Self::restart)); other tests should use
    /// [`shared`](Self::shared).
    ///
    /// # Errors
    ///
    /// [`TestkitError::NotInstalled`] without Java or the ZooKeeper jar (the
    /// message says how to install them), [`TestkitError::Exited`] or
    /// [`TestkitError::StartTimeout`] if the server does not come up,
    /// [`TestkitError::Io`] if the temp dir or a process cannot be created.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use metaq_testkit::ZkServer;
    ///
    /// let zk = ZkServer::start().expect("ZooKeeper starts");
    /// assert!(zk.connect_string().starts_with("127.0.0.1:"));
    /// zk.stop().unwrap();
    /// zk.restart().unwrap(); // same port, same data
    /// drop(zk); // kills the JVM, removes its temp dir
    /// ```
    pub fn start() -> Result<ZkServer, TestkitError> {
        let install = Installation::detect()?;
        let dir = tempfile::Builder::new()
            .prefix("metaq-testkit-zk-")
            .tempdir()
            .map_err(|e| TestkitError::io("creating a temp dir for ZooKeeper", e))?;
        let layout = Layout::create(dir.path())?;
        let mut attempt = 1;
        loop {
            let port = process::free_port()?;
            layout.write_config(port)?;
            match Running::launch(&install, &layout, port) {
                Ok(running) => {
                    return Ok(ZkServer {
                        kind: Kind::Managed(Box::new(Managed {
                            port,
                            install,
                            layout,
                            running: Mutex::new(Some(running)),
                            _dir: dir,
                        })),
                    })
                }
                Err((_, true)) if attempt < PORT_ATTEMPTS => attempt += 1,
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// The server shared by all tests of this test binary, started on first
    /// use (later calls return at once).
    ///
    /// If the environment variable `METAQ_TEST_ZK` is set (e.g.
    /// `127.0.0.1:2181`), no server is started and that ensemble is used;
    /// it must then be up, and [`stop`](Self::stop) and
    /// [`restart`](Self::restart) are refused.
    ///
    /// [`restart`](Self::restart) on the shared server is possible but
    /// disturbs every other test running at the time; fault tests should use
    /// [`start`](Self::start).
    ///
    /// It may be called from inside a Tokio runtime (it does not use one); the
    /// first call blocks its thread for the server's start-up, about a
    /// second.
    ///
    /// # Panics
    ///
    /// If the server cannot be started, this and every later call panic with
    /// the reason and the install hint, failing the test (tests never skip
    /// for lack of ZooKeeper).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use metaq_testkit::ZkServer;
    ///
    /// let zk = ZkServer::shared();
    /// assert!(std::ptr::eq(zk, ZkServer::shared()));
    /// println!("ZooKeeper for this test binary: {}", zk.connect_string());
    /// ```
    pub fn shared() -> &'static ZkServer {
        static SHARED: OnceLock<Result<ZkServer, String>> = OnceLock::new();
        let shared = SHARED.get_or_init(|| {
            if let Some(connect) = external_from_env() {
                return Ok(ZkServer {
                    kind: Kind::External { connect },
                });
            }
            ZkServer::start().map_err(|e| match e {
                TestkitError::NotInstalled { .. } => e.to_string(),
                e => format!("{e}\n({INSTALL_HINT})"),
            })
        });
        match shared {
            Ok(server) => server,
            Err(message) => panic!("metaq testkit: cannot start the shared ZooKeeper: {message}"),
        }
    }

    /// The connect string for clients: `127.0.0.1:PORT`, or the value of
    /// `METAQ_TEST_ZK` for an external ensemble.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use metaq_testkit::ZkServer;
    ///
    /// let zk = ZkServer::start().unwrap();
    /// assert_eq!(zk.connect_string(), format!("127.0.0.1:{}", zk.port()));
    /// ```
    pub fn connect_string(&self) -> String {
        match &self.kind {
            Kind::Managed(m) => format!("127.0.0.1:{}", m.port),
            Kind::External { connect } => connect.clone(),
        }
    }

    /// The client port. For an external ensemble, the port of its first
    /// host (2181 if none is given).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use metaq_testkit::ZkServer;
    /// let zk = ZkServer::start().unwrap();
    /// assert!(zk.connect_string().ends_with(&format!(":{}", zk.port())));
    /// ```
    pub fn port(&self) -> u16 {
        match &self.kind {
            Kind::Managed(m) => m.port,
            Kind::External { connect } => first_port(connect),
        }
    }

    /// The process id of the server's JVM while it runs; `None` when stopped
    /// or external.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use metaq_testkit::ZkServer;
    /// let zk = ZkServer::start().unwrap();
    /// assert!(zk.pid().is_some());
    /// zk.stop().unwrap();
    /// assert_eq!(zk.pid(), None);
    /// ```
    pub fn pid(&self) -> Option<u32> {
        match &self.kind {
            Kind::Managed(m) => {
                let mut running = m.lock();
                let r = running.as_mut()?;
                r.exit_status().is_none().then(|| r.pid())
            }
            Kind::External { .. } => None,
        }
    }

    /// The temp dir holding `zoo.cfg`, the data dir and `zookeeper.log` (the
    /// server's output); `None` for an external ensemble.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use metaq_testkit::ZkServer;
    /// let zk = ZkServer::start().unwrap();
    /// let dir = zk.dir().unwrap();
    /// assert!(dir.join("zoo.cfg").is_file());
    /// ```
    pub fn dir(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Managed(m) => Some(&m.layout.root),
            Kind::External { .. } => None,
        }
    }

    /// The last lines of the server's log (empty for an external ensemble);
    /// handy in assertion messages.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use metaq_testkit::ZkServer;
    /// let zk = ZkServer::start().unwrap();
    /// assert!(zk.is_running(), "ZooKeeper died; its log ends with:\n{}", zk.log_tail());
    /// ```
    pub fn log_tail(&self) -> String {
        match &self.kind {
            Kind::Managed(m) => m.layout.log_tail(),
            Kind::External { .. } => String::new(),
        }
    }

    /// Stops the server: kills its JVM (SIGKILL, by pid, like a crash) and
    /// waits for it to exit. The data dir is kept for
    /// [`restart`](Self::restart). Stopping a stopped server does nothing.
    ///
    /// Clients see the connection drop; their sessions live on in the data
    /// dir and survive a restart within their timeout.
    ///
    /// # Errors
    ///
    /// [`TestkitError::External`] for an external ensemble.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use metaq_testkit::ZkServer;
    /// let zk = ZkServer::start().unwrap();
    /// zk.stop().unwrap();
    /// assert!(!zk.is_running());
    /// zk.stop().unwrap(); // already stopped: nothing to do
    /// ```
    pub fn stop(&self) -> Result<(), TestkitError> {
        let m = self.managed("stop")?;
        if let Some(mut running) = m.lock().take() {
            running.kill();
        }
        Ok(())
    }

    /// Freezes the server's JVM with SIGSTOP (sent to its pid), like a host
    /// that hangs: its sockets stay open and connections are still accepted
    /// by the kernel, but nothing is answered, so clients notice only by
    /// their own timeouts. [`thaw`](Self::thaw) resumes it;
    /// [`stop`](Self::stop), [`restart`](Self::restart) and dropping the
    /// server kill it frozen or not. Does nothing to a stopped server.
    ///
    /// # Errors
    ///
    /// [`TestkitError::External`] for an external ensemble,
    /// [`TestkitError::Io`] if the signal cannot be sent.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use metaq_testkit::ZkServer;
    ///
    /// let zk = ZkServer::start().unwrap();
    /// zk.freeze().unwrap();
    /// assert!(zk.is_running()); // alive, answering nothing
    /// zk.restart().unwrap(); // SIGKILL, then a new JVM on the same data dir
    /// ```
    pub fn freeze(&self) -> Result<(), TestkitError> {
        self.signal("freeze", "STOP")
    }

    /// Resumes a server frozen by [`freeze`](Self::freeze) (SIGCONT to its
    /// pid); it answers what it was sent meanwhile, unless its clients gave
    /// up first. Does nothing to a running or stopped server.
    ///
    /// # Errors
    ///
    /// As [`freeze`](Self::freeze).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use metaq_testkit::ZkServer;
    ///
    /// let zk = ZkServer::start().unwrap();
    /// zk.freeze().unwrap();
    /// zk.thaw().unwrap();
    /// ```
    pub fn thaw(&self) -> Result<(), TestkitError> {
        self.signal("thaw", "CONT")
    }

    fn signal(&self, operation: &'static str, signal: &str) -> Result<(), TestkitError> {
        let m = self.managed(operation)?;
        match m.lock().as_mut() {
            Some(running) => running.signal(signal),
            None => Ok(()),
        }
    }

    /// Starts the server again on the same port with the same data dir and
    /// waits until it answers `imok`; a running (or
    /// [frozen](Self::freeze)) server is killed first with SIGKILL, as a
    /// crash would.
    ///
    /// Sessions whose timeout has not passed survive (with their ephemeral
    /// nodes): ZooKeeper restores them from its transaction log and
    /// restarts their timers, and clients reconnect on their own.
    ///
    /// # Errors
    ///
    /// [`TestkitError::Exited`] or [`TestkitError::StartTimeout`] if the
    /// server does not come up (e.g. the port has been taken meanwhile),
    /// [`TestkitError::External`] for an external ensemble.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use metaq_testkit::ZkServer;
    ///
    /// let zk = ZkServer::start().unwrap();
    /// zk.stop().unwrap();
    /// assert!(!zk.is_running());
    /// zk.restart().unwrap();
    /// assert!(zk.is_running());
    /// ```
    pub fn restart(&self) -> Result<(), TestkitError> {
        let m = self.managed("restart")?;
        let mut running = m.lock();
        if let Some(mut old) = running.take() {
            old.kill();
        }
        let new = Running::launch(&m.install, &m.layout, m.port).map_err(|(e, _)| e)?;
        *running = Some(new);
        Ok(())
    }

    /// Whether the server's JVM is alive (always `true` for an external
    /// ensemble, which the harness does not control).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use metaq_testkit::ZkServer;
    /// let zk = ZkServer::start().unwrap();
    /// assert!(zk.is_running());
    /// ```
    pub fn is_running(&self) -> bool {
        match &self.kind {
            Kind::Managed(m) => m.lock().as_mut().is_some_and(|r| r.exit_status().is_none()),
            Kind::External { .. } => true,
        }
    }

    /// A client connected to this server with a session timeout of 10 s.
    ///
    /// # Panics
    ///
    /// If no session can be established (it's for tests); the message says
    /// why and includes the server's log tail.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() {
    /// use metaq_testkit::ZkServer;
    ///
    /// let client = ZkServer::shared().client().await;
    /// assert!(client.list_children("/").await.unwrap().contains(&"zookeeper".to_owned()));
    /// # }
    /// ```
    pub async fn client(&self) -> Client {
        self.client_with_session_timeout(CLIENT_SESSION_TIMEOUT)
            .await
    }

    /// A client connected to this server asking for the given session
    /// timeout (the server grants 1 s to 60 s). Short sessions let tests see
    /// ephemeral nodes of a lost client vanish quickly.
    ///
    /// # Panics
    ///
    /// As [`client`](Self::client).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() {
    /// use std::time::Duration;
    /// use metaq_testkit::ZkServer;
    /// let client = ZkServer::shared().client_with_session_timeout(Duration::from_secs(2)).await;
    /// assert_eq!(client.session_timeout(), Duration::from_secs(2));
    /// # }
    /// ```
    pub async fn client_with_session_timeout(&self, session_timeout: Duration) -> Client {
        let connect = self.connect_string();
        let attempt = Client::connector()
            .with_session_timeout(session_timeout)
            .connect(&connect);
        match tokio::time::timeout(CLIENT_DEADLINE, attempt).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => panic!("{}", self.client_failure(&format!("failed: {e}"))),
            Err(_) => panic!(
                "{}",
                self.client_failure(&format!("timed out after {CLIENT_DEADLINE:?}"))
            ),
        }
    }

    /// Forces the expiry of `session` (of another client), for real: the
    /// session is taken over on a second connection and closed with
    /// `closeSession`, as ZooKeeper's own tests do. To win the race against
    /// the session's client, which reconnects as soon as the takeover cuts
    /// its connection, the takeover is done on the wire: the
    /// `ConnectRequest` that `zookeeper-client` builds for the session is
    /// sent to the server followed by `closeSession` in a single write.
    ///
    /// When this returns, the server has confirmed the session is expired:
    /// its ephemeral nodes are deleted, and its client observes
    /// [`SessionState::Expired`](zookeeper_client::SessionState::Expired)
    /// (after a brief `Disconnected`), its requests failing with
    /// [`Error::SessionExpired`](zookeeper_client::Error::SessionExpired).
    ///
    /// Works on the shared server without disturbing other tests.
    ///
    /// # Panics
    ///
    /// If the session cannot be expired within 30 s.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() {
    /// use metaq_testkit::ZkServer;
    /// use zookeeper_client::SessionState;
    ///
    /// let zk = ZkServer::shared();
    /// let client = zk.client().await;
    /// let mut state = client.state_watcher();
    /// zk.expire_session(client.session()).await;
    /// while state.changed().await != SessionState::Expired {}
    /// # }
    /// ```
    pub async fn expire_session(&self, session: &SessionInfo) {
        let server = first_host(&self.connect_string());
        match tokio::time::timeout(CLIENT_DEADLINE, expire::expire(&server, session)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!(
                "metaq testkit: cannot expire ZooKeeper session {}: {e}",
                session.id()
            ),
            Err(_) => panic!(
                "metaq testkit: ZooKeeper session {} still alive after {CLIENT_DEADLINE:?}",
                session.id()
            ),
        }
    }

    fn managed(&self, operation: &'static str) -> Result<&Managed, TestkitError> {
        match &self.kind {
            Kind::Managed(m) => Ok(m),
            Kind::External { connect } => Err(TestkitError::External {
                operation,
                connect: connect.clone(),
            }),
        }
    }

    fn client_failure(&self, what: &str) -> String {
        let mut message = format!(
            "metaq testkit: connecting a ZooKeeper client to {} {what}",
            self.connect_string()
        );
        if let Kind::Managed(m) = &self.kind {
            let running = if self.is_running() {
                "running"
            } else {
                "NOT running"
            };
            let serving = process::is_serving(SocketAddr::from((Ipv4Addr::LOCALHOST, m.port)));
            message.push_str(&format!(
                "\nserver: {running}, answering ruok: {serving}; log {}:\n{}",
                m.layout.log.display(),
                m.layout.log_tail()
            ));
        }
        message
    }
}

impl Drop for ZkServer {
    /// Kills the JVM (by its pid) and waits for it; the temp dir is removed
    /// afterwards.
    fn drop(&mut self) {
        if let Kind::Managed(m) = &self.kind {
            if let Some(mut running) = m.lock().take() {
                running.kill();
            }
        }
    }
}

impl Managed {
    /// The process slot; a panic while it was held leaves it usable.
    fn lock(&self) -> MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn external_from_env() -> Option<String> {
    std::env::var(TEST_ZK_ENV)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The first `host:port` of a connect string
/// (`[tcp://]host:port[,host:port...][/chroot]`); port 2181 if not given.
fn first_host(connect: &str) -> String {
    let first = connect.split(',').next().unwrap_or_default();
    let first = first.split_once("://").map_or(first, |(_, rest)| rest);
    let first = first.split('/').next().unwrap_or_default();
    match first.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => first.to_owned(),
        _ => format!("{first}:2181"),
    }
}

/// The port of [`first_host`].
fn first_port(connect: &str) -> u16 {
    first_host(connect)
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(2181)
}

#[cfg(test)]
mod tests {
    use super::{first_host, first_port};

    #[test]
    fn first_host_of_connect_strings() {
        assert_eq!(first_host("127.0.0.1:2182"), "127.0.0.1:2182");
        assert_eq!(first_host("tcp://a:1,b:2/chroot"), "a:1");
        assert_eq!(first_host("zk.example/chroot"), "zk.example:2181");
    }

    #[test]
    fn first_port_of_connect_strings() {
        assert_eq!(first_port("127.0.0.1:2182"), 2182);
        assert_eq!(first_port("a:1,b:2/chroot"), 1);
        assert_eq!(first_port("zk.example"), 2181);
        assert_eq!(first_port("tcp://a:3000,b:4000"), 3000);
        assert_eq!(first_port("a:5/chroot"), 5);
    }
}
