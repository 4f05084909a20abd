//! A server `metaq bench` runs as a child process, stopped by its own pid.
//!
//! The child is this very binary (`metaq bench --serve ...`, see
//! [`serve`](super::serve)), so the server measured is always the one built
//! with the bench: a `metaq-broker` lying next to it could be stale after a
//! `cargo run --bin metaq`.
//!
//! The child's standard input is a pipe whose only writer is this process:
//! closing it asks the child to leave ZooKeeper and exit, and if this
//! process dies first the child sees end-of-file all the same and goes too.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a child has to print its `ready` line.
const READY_WAIT: Duration = Duration::from_secs(60);
/// How long a child has to exit after its stdin closed, before SIGKILL.
const EXIT_WAIT: Duration = Duration::from_secs(15);

pub(crate) struct ServerChild {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
}

impl ServerChild {
    /// Starts `metaq bench <args>` and waits for its `ready ... addr=` line.
    pub(crate) fn spawn(what: &str, args: Vec<OsString>) -> Result<ServerChild, String> {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find this program to start the {what}: {e}"))?;
        let mut child = Command::new(&exe)
            .arg("bench")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the {what} ({}): {e}", exe.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let addr = line
                    .split(' ')
                    .find_map(|word| word.strip_prefix("addr="))
                    .and_then(|a| a.parse::<SocketAddr>().ok());
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                }
            }
        });
        let mut server = ServerChild {
            what: what.to_owned(),
            child,
            stdin,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        match rx.recv_timeout(READY_WAIT) {
            Ok(addr) => {
                server.addr = addr;
                Ok(server)
            }
            Err(_) => {
                server.kill();
                let status = server
                    .child
                    .try_wait()
                    .ok()
                    .flatten()
                    .map_or("killed".to_owned(), |s| s.to_string());
                Err(format!(
                    "the {what} did not become ready within {READY_WAIT:?} ({status}); its errors are above"
                ))
            }
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes its stdin (a graceful stop: it leaves ZooKeeper first) and
    /// waits; SIGKILLs it by pid if it has not exited in time.
    pub(crate) fn stop(mut self) -> Result<(), String> {
        drop(self.stdin.take());
        let deadline = Instant::now() + EXIT_WAIT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(format!("the {} exited with {status}", self.what)),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) | Err(_) => {
                    self.kill();
                    return Err(format!(
                        "the {} (pid {}) did not exit within {EXIT_WAIT:?}; killed it",
                        self.what,
                        self.child.id()
                    ));
                }
            }
        }
    }

    /// SIGKILL by pid (through `Child::kill`) and reap.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        // Only a child not stopped (an error path) is still running here.
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}
