//! The soak's own cluster: a private ZooKeeper and N `metaq-broker`
//! processes, each on its own data directory, which the chaos thread kills,
//! terminates, restarts and freezes. Every process is stopped by its pid:
//! by [`Cluster::stop`], or by the drops of [`BrokerProcess`] and
//! [`ZkServer`] on an error path.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use metaq_testkit::{BrokerProcess, ZkServer};
use tempfile::TempDir;

/// The brokers' ZooKeeper session: short, so that a killed broker's nodes
/// go (and its restart, which waits for them, comes) within seconds, and
/// longer than any freeze, so that a freeze alone does not expire sessions.
pub(crate) const BROKER_SESSION: Duration = Duration::from_secs(5);

/// Tries of a restart: the port a broker had may be taken for a moment by
/// a connection's ephemeral port while the broker is down.
const RESTART_TRIES: u32 = 5;

/// What to start.
pub(crate) struct ClusterSpec {
    pub(crate) brokers: u32,
    pub(crate) partitions: u32,
    pub(crate) topic: String,
    pub(crate) root: String,
}

/// One broker: where it keeps its data and listens, across restarts.
struct Slot {
    id: u32,
    data_dir: PathBuf,
    port: u16,
    /// `None` while it is down.
    process: Option<BrokerProcess>,
}

pub(crate) struct Cluster {
    /// Before `zk`: fields drop in order, so on an error path the brokers
    /// are killed before their ZooKeeper.
    slots: Vec<Slot>,
    zk: ZkServer,
    binary: PathBuf,
    spec: ClusterSpec,
    /// Holds every data directory; removed last.
    dir: TempDir,
}

impl Cluster {
    /// Starts ZooKeeper, then the brokers one by one. Blocks (seconds).
    pub(crate) fn start(spec: ClusterSpec) -> Result<Cluster, String> {
        let binary = broker_binary()?;
        let dir = TempDir::with_prefix("metaq-soak-")
            .map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let zk = ZkServer::start().map_err(|e| format!("cannot start ZooKeeper: {e}"))?;
        let mut cluster = Cluster {
            slots: Vec::new(),
            zk,
            binary,
            spec,
            dir,
        };
        for id in 0..cluster.spec.brokers {
            let data_dir = cluster.dir.path().join(format!("broker-{id}"));
            let process = cluster.spawn(id, &data_dir, 0)?;
            cluster.slots.push(Slot {
                id,
                data_dir,
                port: process.addr().port(),
                process: Some(process),
            });
        }
        Ok(cluster)
    }

    /// ZooKeeper's pid (0 if it is not running), connect string and dir.
    pub(crate) fn zk(&self) -> (u32, String, String) {
        let dir = self.zk.dir().map(|d| d.display().to_string());
        (
            self.zk.pid().unwrap_or(0),
            self.zk.connect_string(),
            dir.unwrap_or_default(),
        )
    }

    pub(crate) fn brokers(&self) -> usize {
        self.slots.len()
    }

    /// `(id, pid, port)` of broker `i`; the pid is `None` while it is down.
    pub(crate) fn describe(&self, i: usize) -> (u32, Option<u32>, u16) {
        let slot = &self.slots[i];
        (slot.id, slot.process.as_ref().map(|p| p.pid()), slot.port)
    }

    pub(crate) fn data_dirs(&self) -> Vec<PathBuf> {
        self.slots.iter().map(|s| s.data_dir.clone()).collect()
    }

    /// SIGKILL to broker `i` (a crash: no unregistering, no flushing).
    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(mut process) = self.slots[i].process.take() {
            process.kill();
        }
    }

    /// SIGTERM to broker `i` and wait for it: it leaves ZooKeeper, answers
    /// what it has read and exits. The exit status, if it was running.
    pub(crate) fn terminate(&mut self, i: usize) -> Result<Option<ExitStatus>, String> {
        let Some(mut process) = self.slots[i].process.take() else {
            return Ok(None);
        };
        let pid = process.pid();
        process
            .terminate()
            .map(Some)
            .map_err(|e| format!("SIGTERM to broker {i} (pid {pid}): {e}"))
    }

    /// Starts broker `i` again on its data directory and port. A broker
    /// killed a moment ago waits for its old ZooKeeper session to expire
    /// before it says `ready`, so this takes up to [`BROKER_SESSION`] + 5 s.
    pub(crate) fn restart(&mut self, i: usize) -> Result<(), String> {
        if self.slots[i].process.is_some() {
            return Ok(());
        }
        let (id, data_dir, port) = {
            let slot = &self.slots[i];
            (slot.id, slot.data_dir.clone(), slot.port)
        };
        let mut last = String::new();
        for _ in 0..RESTART_TRIES {
            match self.spawn(id, &data_dir, port) {
                Ok(process) => {
                    self.slots[i].process = Some(process);
                    return Ok(());
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        Err(format!(
            "broker {id} did not restart on port {port} in {RESTART_TRIES} tries: {last}"
        ))
    }

    /// SIGSTOP to the ZooKeeper JVM.
    pub(crate) fn freeze_zk(&self) -> Result<(), String> {
        self.zk
            .freeze()
            .map_err(|e| format!("cannot freeze ZooKeeper: {e}"))
    }

    /// SIGCONT to the ZooKeeper JVM.
    pub(crate) fn thaw_zk(&self) -> Result<(), String> {
        self.zk
            .thaw()
            .map_err(|e| format!("cannot thaw ZooKeeper: {e}"))
    }

    /// Stops every broker still running with SIGTERM (gracefully; each
    /// leaves ZooKeeper first), then ZooKeeper; then `read` gets the data
    /// directories, which are removed once it returns. Returns what `read`
    /// made and the trouble met while stopping.
    pub(crate) fn stop<T>(mut self, read: impl FnOnce(&[PathBuf]) -> T) -> (T, Vec<String>) {
        let mut problems = Vec::new();
        // A frozen ZooKeeper would hold every broker's unregistering up.
        if let Err(e) = self.thaw_zk() {
            problems.push(e);
        }
        for i in 0..self.slots.len() {
            match self.terminate(i) {
                Ok(Some(status)) if !status.success() => {
                    problems.push(format!("broker {i} exited with {status} after SIGTERM"))
                }
                Ok(_) => {}
                Err(e) => problems.push(e),
            }
        }
        if let Err(e) = self.zk.stop() {
            problems.push(format!("stopping ZooKeeper: {e}"));
        }
        let read = read(&self.data_dirs());
        (read, problems)
    }

    fn spawn(&self, id: u32, data_dir: &Path, port: u16) -> Result<BrokerProcess, String> {
        let args: Vec<String> = vec![
            "--id".into(),
            id.to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--zk".into(),
            self.zk.connect_string(),
            "--root".into(),
            self.spec.root.clone(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--topic".into(),
            format!("{}:{}", self.spec.topic, self.spec.partitions),
            // Acknowledged writes are in the kernel before the answer, so
            // they survive SIGKILL of the broker (not of the machine).
            "--flush".into(),
            "os".into(),
            "--zk-session-timeout-ms".into(),
            BROKER_SESSION.as_millis().to_string(),
        ];
        BrokerProcess::spawn(&self.binary, &args)
            .map_err(|e| format!("cannot start broker {id} ({}): {e}", self.binary.display()))
    }
}

/// `metaq-broker`, next to this `metaq` (cargo builds both into one dir).
fn broker_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let binary = exe.with_file_name("metaq-broker");
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!(
            "metaq-broker is not next to metaq ({} is missing); build both (cargo build --bins)",
            binary.display()
        ))
    }
}
