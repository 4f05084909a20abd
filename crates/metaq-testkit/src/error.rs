//! The harness's error type.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// How to get a ZooKeeper the harness can use; part of every "cannot start"
/// message.
pub(crate) const INSTALL_HINT: &str = "ZooKeeper 3.8 is needed: `apt-get install -y zookeeper` \
     (Debian package, provides /usr/share/java/zookeeper.jar and pulls in a JRE), \
     or set METAQ_TEST_ZK=host:port to use a running ensemble";

/// Why the test harness could not start, stop or restart a ZooKeeper server.
///
/// The messages are meant to be read by a person looking at a failed test:
/// [`TestkitError::NotInstalled`] says how to install ZooKeeper, and the
/// start failures carry the tail of the server's log.
///
/// # Examples
///
/// ```no_run
/// use metaq_testkit::{TestkitError, ZkServer};
///
/// match ZkServer::start() {
///     Ok(zk) => println!("ZooKeeper at {}", zk.connect_string()),
///     Err(e @ TestkitError::NotInstalled { .. }) => panic!("{e}"),
///     Err(e) => panic!("ZooKeeper did not start: {e}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestkitError {
    /// Java or the ZooKeeper jar is missing.
    #[error("{what} not found; {hint}", hint = INSTALL_HINT)]
    NotInstalled {
        /// What was looked for and not found (e.g. the jar's path).
        what: String,
    },

    /// An I/O operation of the harness itself failed (temp dir, config
    /// file, spawning a process, ...).
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The server process exited before it answered `imok`.
    #[error(
        "ZooKeeper on 127.0.0.1:{port} exited during start-up ({status}); \
         log {log}:\n{log_tail}"
    )]
    Exited {
        /// The client port the server was given.
        port: u16,
        /// The exit status, as text.
        status: String,
        /// Path of the server's log file.
        log: PathBuf,
        /// The last lines of the server's log.
        log_tail: String,
    },

    /// The server did not answer `imok` in time; it has been killed.
    #[error(
        "ZooKeeper on 127.0.0.1:{port} did not answer `ruok` with `imok` within {waited:?}; \
         log {log}:\n{log_tail}"
    )]
    StartTimeout {
        /// The client port the server was given.
        port: u16,
        /// How long the harness waited.
        waited: Duration,
        /// Path of the server's log file.
        log: PathBuf,
        /// The last lines of the server's log.
        log_tail: String,
    },

    /// The operation needs a server started by the harness, but this one is
    /// an external ensemble named by `METAQ_TEST_ZK`.
    #[error("{operation} is not possible on the external ZooKeeper {connect} (METAQ_TEST_ZK)")]
    External {
        /// The refused operation (`stop`, `restart`).
        operation: &'static str,
        /// The external connect string.
        connect: String,
    },
}

impl TestkitError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        TestkitError::Io {
            context: context.into(),
            source,
        }
    }
}
