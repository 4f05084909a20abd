//! The servers a bench sends to: an existing cluster (`--zk`), or a private
//! ZooKeeper with development brokers (`--local N`) or a null server
//! (`--null`) in child processes, stopped after the runs.

use std::ffi::OsString;

use metaq_testkit::ZkServer;
use tempfile::TempDir;

use super::child::ServerChild;
use super::serve::ServeRole;

/// Where to send, as the user asked.
#[derive(Clone, Debug)]
pub(crate) enum TargetKind {
    Zk(String),
    Local(u16),
    Null,
}

impl TargetKind {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            TargetKind::Zk(_) => "zk",
            TargetKind::Local(_) => "local",
            TargetKind::Null => "null",
        }
    }
}

/// What a target is made of, for starting it.
pub(crate) struct TargetSpec {
    pub(crate) kind: TargetKind,
    pub(crate) root: String,
    pub(crate) topic: String,
    pub(crate) partitions: u32,
    /// `--flush` of the local brokers, as given (already checked).
    pub(crate) flush: String,
}

/// A running target. [`stop`](Self::stop) ends what was started, each
/// process by its own pid; dropping it does the same, less politely.
pub(crate) struct Target {
    pub(crate) zk_connect: String,
    pub(crate) root: String,
    /// Servers first: they leave ZooKeeper before it stops.
    servers: Vec<ServerChild>,
    zk: Option<ZkServer>,
    /// Data directories of the local brokers, removed after they stop.
    _data: Vec<TempDir>,
}

impl Target {
    pub(crate) fn start(spec: &TargetSpec) -> Result<Target, String> {
        let (role, count) = match &spec.kind {
            TargetKind::Zk(connect) => {
                return Ok(Target {
                    zk_connect: connect.clone(),
                    root: spec.root.clone(),
                    servers: Vec::new(),
                    zk: None,
                    _data: Vec::new(),
                });
            }
            TargetKind::Local(n) => (ServeRole::Broker, u32::from(*n)),
            TargetKind::Null => (ServeRole::Null, 1),
        };
        let zk = ZkServer::start().map_err(|e| format!("cannot start ZooKeeper: {e}"))?;
        let mut target = Target {
            zk_connect: zk.connect_string(),
            root: spec.root.clone(),
            servers: Vec::new(),
            zk: Some(zk),
            _data: Vec::new(),
        };
        for id in 0..count {
            let mut args = vec![
                OsString::from("--serve"),
                OsString::from(match role {
                    ServeRole::Null => "null",
                    ServeRole::Broker => "broker",
                }),
                "--serve-id".into(),
                id.to_string().into(),
                "--zk".into(),
                target.zk_connect.clone().into(),
                "--root".into(),
                spec.root.clone().into(),
                "--topic".into(),
                spec.topic.clone().into(),
                "--partitions".into(),
                spec.partitions.to_string().into(),
                "--flush".into(),
                spec.flush.clone().into(),
            ];
            let what = match role {
                ServeRole::Null => "null server".to_owned(),
                ServeRole::Broker => {
                    let dir = TempDir::with_prefix("metaq-bench-broker-")
                        .map_err(|e| format!("cannot create a data directory: {e}"))?;
                    args.push("--serve-data-dir".into());
                    args.push(dir.path().as_os_str().to_owned());
                    target._data.push(dir);
                    format!("development broker {id}")
                }
            };
            target.servers.push(ServerChild::spawn(&what, args)?);
        }
        Ok(target)
    }

    /// Pids and addresses of the servers started, for the report.
    pub(crate) fn servers(&self) -> Vec<(u32, std::net::SocketAddr)> {
        self.servers.iter().map(|s| (s.pid(), s.addr())).collect()
    }

    /// Stops the servers (gracefully, then by SIGKILL), then ZooKeeper.
    /// Returns the first problem, after stopping everything.
    pub(crate) fn stop(mut self) -> Result<(), String> {
        let mut outcome = Ok(());
        for server in self.servers.drain(..) {
            if let Err(e) = server.stop() {
                outcome = outcome.and(Err(e));
            }
        }
        if let Some(zk) = self.zk.take() {
            if let Err(e) = zk.stop() {
                outcome = outcome.and(Err(format!("stopping ZooKeeper: {e}")));
            }
        }
        outcome
    }
}
