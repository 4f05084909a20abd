//! Finding the installed ZooKeeper (Debian package `zookeeper`) and Java.

use std::env;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::error::TestkitError;

/// The ZooKeeper server jar installed by the Debian package. Its manifest's
/// `Class-Path` names the other jars it needs.
pub(crate) const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";

/// An SLF4J binding that logs to stderr. Optional: without it the server
/// logs nothing (SLF4J falls back to its no-op logger).
const SLF4J_SIMPLE_JAR: &str = "/usr/share/java/slf4j-simple.jar";

/// The server's main class (standalone mode).
const MAIN_CLASS: &str = "org.apache.zookeeper.server.ZooKeeperServerMain";

/// The main class of an ensemble member (reads `server.N` lines and `myid`).
const QUORUM_MAIN_CLASS: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";

/// A usable Java and ZooKeeper installation.
#[derive(Debug, Clone)]
pub(crate) struct Installation {
    java: PathBuf,
    classpath: OsString,
    main_class: &'static str,
}

impl Installation {
    /// Looks for the ZooKeeper jar and a `java` (in `$JAVA_HOME/bin`, then
    /// on `$PATH`).
    pub(crate) fn detect() -> Result<Installation, TestkitError> {
        let jar = Path::new(ZOOKEEPER_JAR);
        if !jar.is_file() {
            return Err(TestkitError::NotInstalled {
                what: format!("the ZooKeeper server jar {ZOOKEEPER_JAR}"),
            });
        }
        let java = find_java().ok_or_else(|| TestkitError::NotInstalled {
            what: "`java` (neither $JAVA_HOME/bin/java nor on $PATH)".to_owned(),
        })?;
        let mut classpath = OsString::from(ZOOKEEPER_JAR);
        if Path::new(SLF4J_SIMPLE_JAR).is_file() {
            classpath.push(":");
            classpath.push(SLF4J_SIMPLE_JAR);
        }
        Ok(Installation {
            java,
            classpath,
            main_class: MAIN_CLASS,
        })
    }

    /// The same installation, starting ensemble members (`QuorumPeerMain`)
    /// instead of standalone servers.
    pub(crate) fn quorum_peer(&self) -> Installation {
        Installation {
            main_class: QUORUM_MAIN_CLASS,
            ..self.clone()
        }
    }

    /// The JVM command line for a server (standalone, or an ensemble member
    /// after [`quorum_peer`](Self::quorum_peer)): small heap, quick
    /// start-up, logs on stderr, reading `config`.
    pub(crate) fn command(&self, config: &Path, log_dir: &Path) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.java);
        cmd.args([
            "-Xms32m",
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:-UsePerfData",
            "-Xshare:auto",
            "-Djava.awt.headless=true",
            "-Dzookeeper.jmx.log4j.disable=true",
            // Transaction log files are preallocated in chunks of this many KiB
            // (default 64 MiB).
            "-Dzookeeper.preAllocSize=4096",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
        ]);
        let mut log_dir_flag = OsString::from("-Dzookeeper.log.dir=");
        log_dir_flag.push(log_dir);
        cmd.arg(log_dir_flag);
        cmd.arg("-cp")
            .arg(&self.classpath)
            .arg(self.main_class)
            .arg(config);
        cmd
    }
}

fn find_java() -> Option<PathBuf> {
    if let Some(home) = env::var_os("JAVA_HOME").filter(|h| !h.is_empty()) {
        let java = Path::new(&home).join("bin").join("java");
        if is_executable(&java) {
            return Some(java);
        }
    }
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join("java"))
        .find(|java| is_executable(java))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
