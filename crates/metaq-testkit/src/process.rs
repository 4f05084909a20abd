//! One run of the ZooKeeper JVM, plus the watchdog that kills it if the test
//! process dies first.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::error::TestkitError;
use super::install::Installation;

/// How long a start or restart waits for the server to answer `imok`.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How many lines of the server log go into an error.
const LOG_TAIL_LINES: usize = 40;

/// Files of one server inside its temp dir.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// The temp dir holding everything below.
    pub(crate) root: PathBuf,
    /// `dataDir` (snapshots and transaction logs).
    pub(crate) data: PathBuf,
    /// `zoo.cfg`.
    pub(crate) config: PathBuf,
    /// The server's stdout and stderr.
    pub(crate) log: PathBuf,
}

impl Layout {
    /// Lays out a server inside `root` (which exists), creating the data dir.
    pub(crate) fn create(root: &Path) -> Result<Layout, TestkitError> {
        let layout = Layout {
            root: root.to_owned(),
            data: root.join("data"),
            config: root.join("zoo.cfg"),
            log: root.join("zookeeper.log"),
        };
        fs::create_dir_all(&layout.data)
            .map_err(|e| TestkitError::io(format!("creating {}", layout.data.display()), e))?;
        Ok(layout)
    }

    /// Writes `zoo.cfg` for a standalone server on `127.0.0.1:port`.
    pub(crate) fn write_config(&self, port: u16) -> Result<(), TestkitError> {
        let config = format!(
            "# Written by metaq-testkit.\n\
             tickTime=250\n\
             minSessionTimeout=1000\n\
             maxSessionTimeout=60000\n\
             dataDir={data}\n\
             clientPort={port}\n\
             clientPortAddress=127.0.0.1\n\
             maxClientCnxns=0\n\
             4lw.commands.whitelist=ruok,srvr,stat\n\
             admin.enableServer=false\n\
             # Writes still reach the kernel before a reply, so they survive a\n\
             # killed JVM; only fsync is skipped.\n\
             forceSync=no\n",
            data = self.data.display(),
        );
        fs::write(&self.config, config)
            .map_err(|e| TestkitError::io(format!("writing {}", self.config.display()), e))
    }

    /// The last lines of the server log (empty if there is none).
    pub(crate) fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

/// A running ZooKeeper JVM and its watchdog.
#[derive(Debug)]
pub(crate) struct Running {
    jvm: Child,
    /// Holds the write end of the watchdog's stdin; the watchdog acts when it
    /// reads end-of-file, i.e. when this process has exited.
    watchdog: Option<Child>,
}

impl Running {
    /// Spawns the JVM for `layout` (whose config must be written) and its
    /// watchdog, then waits until the server answers `imok` and serves.
    ///
    /// On failure, everything spawned has been killed and reaped; the
    /// returned flag says whether the port was taken by someone else.
    pub(crate) fn launch(
        install: &Installation,
        layout: &Layout,
        port: u16,
    ) -> Result<Running, (TestkitError, bool)> {
        let mut running = Running::spawn(install, layout, port).map_err(|e| (e, false))?;
        match running.wait_ready(layout, port) {
            Ok(()) => Ok(running),
            Err(e) => {
                running.kill();
                let conflict = matches!(e, TestkitError::Exited { .. }) && port_taken(port, layout);
                Err((e, conflict))
            }
        }
    }

    fn spawn(install: &Installation, layout: &Layout, port: u16) -> Result<Running, TestkitError> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&layout.log)
            .map_err(|e| TestkitError::io(format!("opening {}", layout.log.display()), e))?;
        // A marker between runs (restarts append to the same log); best effort.
        let _ = writeln!(
            log,
            "--- metaq testkit: starting ZooKeeper on 127.0.0.1:{port} ---"
        );
        let stderr = log
            .try_clone()
            .map_err(|e| TestkitError::io("duplicating the log file handle", e))?;
        let jvm = install
            .command(&layout.config, &layout.root)
            .current_dir(&layout.root)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(|e| TestkitError::io("spawning the ZooKeeper JVM", e))?;
        let mut running = Running {
            jvm,
            watchdog: None,
        };
        match spawn_watchdog(running.jvm.id(), &layout.root) {
            Ok(watchdog) => {
                running.watchdog = Some(watchdog);
                Ok(running)
            }
            Err(e) => {
                running.kill();
                Err(e)
            }
        }
    }

    fn wait_ready(&mut self, layout: &Layout, port: u16) -> Result<(), TestkitError> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let started = Instant::now();
        loop {
            if let Some(status) = self.exit_status() {
                return Err(TestkitError::Exited {
                    port,
                    status: status.to_string(),
                    log: layout.log.clone(),
                    log_tail: layout.log_tail(),
                });
            }
            if is_serving(addr) {
                // The answer could come from a stranger that grabbed the port
                // if our JVM failed to bind and is on its way out.
                thread::sleep(Duration::from_millis(50));
                if self.exit_status().is_none() {
                    return Ok(());
                }
                continue;
            }
            if started.elapsed() >= START_TIMEOUT {
                return Err(TestkitError::StartTimeout {
                    port,
                    waited: started.elapsed(),
                    log: layout.log.clone(),
                    log_tail: layout.log_tail(),
                });
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The JVM's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.jvm.id()
    }

    /// `Some` once the JVM has exited (and has been reaped). The watchdog is
    /// then stopped too, so that it can never signal a recycled pid.
    pub(crate) fn exit_status(&mut self) -> Option<ExitStatus> {
        match self.jvm.try_wait() {
            Ok(Some(status)) => {
                self.stop_watchdog();
                Some(status)
            }
            Ok(None) => None,
            // Cannot tell; treat as running, `kill` will sort it out.
            Err(_) => None,
        }
    }

    /// Sends `signal` (a name `kill -s` knows, e.g. `STOP`, `CONT`) to the
    /// JVM by its pid; does nothing once the JVM has exited. The pid cannot
    /// belong to another process: the JVM is only reaped by
    /// [`exit_status`](Self::exit_status) or [`kill`](Self::kill), which
    /// need the same `&mut self`.
    pub(crate) fn signal(&mut self, signal: &str) -> Result<(), TestkitError> {
        if self.exit_status().is_some() {
            return Ok(());
        }
        let pid = self.pid();
        let what = format!("sending SIG{signal} to the ZooKeeper JVM (pid {pid})");
        // The shell's own `kill`: nothing to install besides the `sh` the
        // watchdog already needs, and no `unsafe` libc call.
        let status = Command::new("/bin/sh")
            .arg("-c")
            .arg(r#"kill -s "$1" "$2""#)
            .arg("metaq-testkit-signal")
            .arg(signal)
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .status()
            .map_err(|e| TestkitError::io(what.clone(), e))?;
        if status.success() {
            Ok(())
        } else {
            let error = std::io::Error::other(format!("`kill -s {signal} {pid}` {status}"));
            Err(TestkitError::io(what, error))
        }
    }

    /// Kills the watchdog, then the JVM (SIGKILL, by pid, via [`Child::kill`]),
    /// and reaps both. Infallible in practice: `kill` only fails if the
    /// process was already reaped, and `wait` then returns at once.
    pub(crate) fn kill(&mut self) {
        self.stop_watchdog();
        let _ = self.jvm.kill();
        let _ = self.jvm.wait();
    }

    fn stop_watchdog(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

/// The watchdog: a `sh` that blocks reading its stdin, a pipe whose only
/// writer is this process. End-of-file means this process is gone (normal
/// exit with the shared server still alive in a static, panic=abort, a
/// signal): it then SIGKILLs the JVM by pid, waits for it to die and removes
/// the server's temp dir. While this process lives, the harness kills the
/// watchdog (by its pid) before the JVM, so a recycled pid is never signalled.
fn spawn_watchdog(jvm_pid: u32, dir: &Path) -> Result<Child, TestkitError> {
    const SCRIPT: &str = r#"
while read -r _; do :; done
kill -9 "$1" 2>/dev/null
i=0
while [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null && [ "$i" -lt 100 ]; do
  sleep 0.05
  i=$((i + 1))
done
rm -rf -- "$2"
"#;
    Command::new("/bin/sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("metaq-testkit-zk-watchdog")
        .arg(jvm_pid.to_string())
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| TestkitError::io("spawning the ZooKeeper watchdog (/bin/sh)", e))
}

/// A port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_port() -> Result<u16, TestkitError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| TestkitError::io("binding 127.0.0.1:0 to find a free port", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| TestkitError::io("reading the address of 127.0.0.1:0", e))?
        .port();
    Ok(port)
}

/// After our server exited: was it because the port is in use?
fn port_taken(port: u16, layout: &Layout) -> bool {
    let tail = layout.log_tail();
    tail.contains("Address already in use")
        || tail.contains("BindException")
        || TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err()
}

/// Sends a four-letter word and returns the whole answer.
pub(crate) fn four_letter_word(addr: SocketAddr, word: &str) -> Option<String> {
    let timeout = Duration::from_secs(1);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    stream.write_all(word.as_bytes()).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    String::from_utf8(answer).ok()
}

/// `ruok` answers `imok`, and `srvr` no longer says the server is not
/// serving (`imok` comes a little before the request pipeline is up).
pub(crate) fn is_serving(addr: SocketAddr) -> bool {
    four_letter_word(addr, "ruok").as_deref() == Some("imok")
        && four_letter_word(addr, "srvr").is_some_and(|s| s.contains("Mode:"))
}

/// The last [`LOG_TAIL_LINES`] lines of the file at `path` (at most 16 KiB).
fn log_tail(path: &Path) -> String {
    const MAX: u64 = 16 * 1024;
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(MAX)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(LOG_TAIL_LINES);
            lines[start..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
