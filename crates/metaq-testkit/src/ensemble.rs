//! [`ZkEnsemble`]: three real ZooKeeper servers forming one ensemble on
//! loopback, for tests that kill members.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;

use tempfile::TempDir;

use super::error::TestkitError;
use super::install::Installation;
use super::process::{self, Layout, Running};

/// How many servers a [`ZkEnsemble`] has: the smallest ensemble that
/// survives losing one.
const MEMBERS: usize = 3;

/// How many times [`ZkEnsemble::start`] picks fresh ports when one it
/// picked was taken before its server bound it.
const PORT_ATTEMPTS: usize = 5;

/// A 3-server ZooKeeper 3.8 ensemble on `127.0.0.1` (the Debian package's
/// jar, one `QuorumPeerMain` JVM per member), for tests of what clients do
/// when members die: the leader is killed, an election follows, a member
/// comes back.
///
/// Each member has its own temp dir (config, data dir with its `myid`,
/// log) and three free ports: the client port, and the quorum and election
/// ports of its `server.N=127.0.0.1:quorum:election` line. Members are
/// numbered `0..3` here; member `i` has `myid` `i + 1`. They are tuned like
/// [`ZkServer`](super::ZkServer) (`tickTime=250`, sessions of 1 s to 60 s,
/// four-letter words `ruok`, `srvr`, `stat`, no admin server), with
/// followers given 10 s to sync with a new leader.
///
/// An ensemble is always started by the harness, even when
/// `METAQ_TEST_ZK` names an external one. Every JVM is stopped by its pid:
/// by [`stop`](Self::stop), by dropping the ensemble (also while a test
/// panics), or by its watchdog if the test process ends first.
///
/// # Examples
///
/// ```no_run
/// use metaq_testkit::ZkEnsemble;
///
/// let ensemble = ZkEnsemble::start().expect("three ZooKeeper servers");
/// // Clients get every member and move to another when theirs dies.
/// println!("connect to {}", ensemble.connect_string());
/// let leader = ensemble.leader().expect("a leader");
/// ensemble.stop(leader);
/// ensemble.restart(leader).unwrap(); // back as a follower
/// drop(ensemble); // kills every JVM, removes the temp dirs
/// ```
#[derive(Debug)]
pub struct ZkEnsemble {
    install: Installation,
    members: Vec<Member>,
}

#[derive(Debug)]
struct Member {
    client_port: u16,
    layout: Layout,
    /// `None` while stopped.
    running: Mutex<Option<Running>>,
    /// Removed when the ensemble is dropped (after the JVM is dead).
    _dir: TempDir,
}

impl ZkEnsemble {
    /// Starts three servers on free `127.0.0.1` ports and waits until each
    /// answers `imok` and serves requests, i.e. until they have elected a
    /// leader and the followers have synced with it.
    ///
    /// The members are started at the same time (none can serve before a
    /// majority is up). If a port is taken between picking it and a server
    /// binding it, every member is killed and the ensemble is started again
    /// on fresh ports (a few times). Blocks for up to 30 s per attempt.
    ///
    /// # Errors
    ///
    /// [`TestkitError::NotInstalled`] without Java or the ZooKeeper jar (the
    /// message says how to install them), [`TestkitError::Exited`] or
    /// [`TestkitError::StartTimeout`] if a member does not come up (with
    /// the tail of its log), [`TestkitError::Io`] if a temp dir, a file or
    /// a process cannot be created. Every JVM started is killed first.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use metaq_testkit::ZkEnsemble;
    ///
    /// let ensemble = ZkEnsemble::start().unwrap_or_else(|e| panic!("{e}"));
    /// assert_eq!(ensemble.len(), 3);
    /// assert!((0..3).all(|member| ensemble.is_running(member)));
    /// ```
    pub fn start() -> Result<ZkEnsemble, TestkitError> {
        let install = Installation::detect()?.quorum_peer();
        let mut members = Vec::with_capacity(MEMBERS);
        for _ in 0..MEMBERS {
            let dir = tempfile::Builder::new()
                .prefix("metaq-testkit-zk-ensemble-")
                .tempdir()
                .map_err(|e| TestkitError::io("creating a temp dir for ZooKeeper", e))?;
            members.push(Member {
                client_port: 0,
                layout: Layout::create(dir.path())?,
                running: Mutex::new(None),
                _dir: dir,
            });
        }
        let mut ensemble = ZkEnsemble { install, members };
        let mut attempt = 1;
        loop {
            ensemble.configure()?;
            match ensemble.launch_all() {
                Ok(()) => return Ok(ensemble),
                Err((_, true)) if attempt < PORT_ATTEMPTS => attempt += 1,
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// The connect string naming every member:
    /// `127.0.0.1:P0,127.0.0.1:P1,127.0.0.1:P2`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use metaq_testkit::ZkEnsemble;
    ///
    /// let ensemble = ZkEnsemble::start().unwrap();
    /// assert_eq!(ensemble.connect_string().split(',').count(), 3);
    /// ```
    pub fn connect_string(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// How many members the ensemble has (3).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use metaq_testkit::ZkEnsemble;
    ///
    /// let ensemble = ZkEnsemble::start().unwrap();
    /// for member in 0..ensemble.len() {
    ///     println!("member {member}: port {}", ensemble.client_port(member));
    /// }
    /// ```
    #[allow(clippy::len_without_is_empty)] // never empty
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// The client port of `member` (`0..len()`).
    ///
    /// # Panics
    ///
    /// If there is no such member.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use metaq_testkit::ZkEnsemble;
    ///
    /// let ensemble = ZkEnsemble::start().unwrap();
    /// let port = ensemble.client_port(0);
    /// assert!(ensemble.connect_string().starts_with(&format!("127.0.0.1:{port},")));
    /// ```
    pub fn client_port(&self, member: usize) -> u16 {
        self.members[member].client_port
    }

    /// The process id of `member`'s JVM while it runs; `None` when stopped.
    ///
    /// # Panics
    ///
    /// If there is no such member.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use metaq_testkit::ZkEnsemble;
    ///
    /// let ensemble = ZkEnsemble::start().unwrap();
    /// ensemble.stop(1);
    /// assert_eq!(ensemble.pid(1), None);
    /// assert!(ensemble.pid(0).is_some());
    /// ```
    pub fn pid(&self, member: usize) -> Option<u32> {
        let mut running = self.members[member].lock();
        let r = running.as_mut()?;
        r.exit_status().is_none().then(|| r.pid())
    }

    /// Whether `member`'s JVM is alive.
    ///
    /// # Panics
    ///
    /// If there is no such member.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use metaq_testkit::ZkEnsemble;
    ///
    /// let ensemble = ZkEnsemble::start().unwrap();
    /// assert!(ensemble.is_running(2));
    /// ```
    pub fn is_running(&self, member: usize) -> bool {
        self.pid(member).is_some()
    }

    /// The temp dir of `member`, holding `zoo.cfg`, the data dir (with
    /// `myid`) and `zookeeper.log` (the server's output).
    ///
    /// # Panics
    ///
    /// If there is no such member.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use metaq_testkit::ZkEnsemble;
    ///
    /// let ensemble = ZkEnsemble::start().unwrap();
    /// let myid = std::fs::read_to_string(ensemble.dir(0).join("data/myid")).unwrap();
    /// assert_eq!(myid.trim(), "1");
    /// ```
    pub fn dir(&self, member: usize) -> &Path {
        &self.members[member].layout.root
    }

    /// The last lines of `member`'s log; handy in assertion messages.
    ///
    /// # Panics
    ///
    /// If there is no such member.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use metaq_testkit::ZkEnsemble;
    ///
    /// let ensemble = ZkEnsemble::start().unwrap();
    /// assert!(ensemble.is_running(0), "member 0 died:\n{}", ensemble.log_tail(0));
    /// ```
    pub fn log_tail(&self, member: usize) -> String {
        self.members[member].layout.log_tail()
    }

    /// What `member` says it is in its answer to `srvr`: `"leader"` or
    /// `"follower"`; `None` while it is down or not serving (during an
    /// election, or before it has synced with the leader).
    ///
    /// Blocks for up to a few seconds (the four-letter word's round trip).
    ///
    /// # Panics
    ///
    /// If there is no such member.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use metaq_testkit::ZkEnsemble;
    ///
    /// let ensemble = ZkEnsemble::start().unwrap();
    /// let modes: Vec<_> = (0..3).filter_map(|m| ensemble.mode(m)).collect();
    /// assert_eq!(modes.iter().filter(|m| *m == "leader").count(), 1);
    /// ```
    pub fn mode(&self, member: usize) -> Option<String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.members[member].client_port));
        let answer = process::four_letter_word(addr, "srvr")?;
        answer
            .lines()
            .find_map(|line| line.strip_prefix("Mode:"))
            .map(|mode| mode.trim().to_owned())
    }

    /// The member that is the leader now, as its `srvr` answer says;
    /// `None` during an election. Blocks like [`mode`](Self::mode).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use metaq_testkit::ZkEnsemble;
    ///
    /// let ensemble = ZkEnsemble::start().unwrap();
    /// let leader = ensemble.leader().expect("elected before start returned");
    /// assert_eq!(ensemble.mode(leader).as_deref(), Some("leader"));
    /// ```
    pub fn leader(&self) -> Option<usize> {
        (0..self.len()).find(|&member| self.mode(member).as_deref() == Some("leader"))
    }

    /// Kills `member`'s JVM (SIGKILL, by pid, like a crash) and waits for
    /// it to exit; its data dir is kept for [`restart`](Self::restart).
    /// The others go on (electing a new leader if it led) as long as two
    /// of the three are up. Stopping a stopped member does nothing.
    ///
    /// # Panics
    ///
    /// If there is no such member.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use metaq_testkit::ZkEnsemble;
    ///
    /// let ensemble = ZkEnsemble::start().unwrap();
    /// ensemble.stop(0);
    /// assert!(!ensemble.is_running(0));
    /// ```
    pub fn stop(&self, member: usize) {
        if let Some(mut running) = self.members[member].lock().take() {
            running.kill();
        }
    }

    /// Starts `member` again on the same ports and data dir (killing it
    /// first if it runs) and waits until it serves, i.e. until it has
    /// joined the ensemble's leader, which needs one other member up.
    ///
    /// # Errors
    ///
    /// [`TestkitError::Exited`] or [`TestkitError::StartTimeout`] if it
    /// does not come up within 30 s (with the tail of its log),
    /// [`TestkitError::Io`] if its process cannot be spawned.
    ///
    /// # Panics
    ///
    /// If there is no such member.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use metaq_testkit::ZkEnsemble;
    ///
    /// let ensemble = ZkEnsemble::start().unwrap();
    /// ensemble.stop(2);
    /// ensemble.restart(2).unwrap();
    /// assert!(ensemble.mode(2).is_some());
    /// ```
    pub fn restart(&self, member: usize) -> Result<(), TestkitError> {
        let m = &self.members[member];
        let mut running = m.lock();
        if let Some(mut old) = running.take() {
            old.kill();
        }
        let new = Running::launch(&self.install, &m.layout, m.client_port).map_err(|(e, _)| e)?;
        *running = Some(new);
        Ok(())
    }

    /// Picks fresh ports for every member and writes each one's `zoo.cfg`
    /// and `myid`.
    fn configure(&mut self) -> Result<(), TestkitError> {
        let ports = free_ports(3 * MEMBERS)?;
        let (client, quorum) = ports.split_at(MEMBERS);
        let mut servers = String::new();
        for (i, pair) in quorum.chunks(2).enumerate() {
            servers.push_str(&format!(
                "server.{}=127.0.0.1:{}:{}\n",
                i + 1,
                pair[0],
                pair[1]
            ));
        }
        for (i, member) in self.members.iter_mut().enumerate() {
            member.client_port = client[i];
            let layout = &member.layout;
            let config = format!(
                "# Written by metaq-testkit (ensemble member {i}, myid {myid}).\n\
                 tickTime=250\n\
                 # Ticks a follower has to connect and sync to a leader (10 s), and\n\
                 # to stay in sync (5 s): generous, as three JVMs share few cores.\n\
                 initLimit=40\n\
                 syncLimit=20\n\
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
                 forceSync=no\n\
                 {servers}",
                myid = i + 1,
                data = layout.data.display(),
                port = member.client_port,
            );
            fs::write(&layout.config, config)
                .map_err(|e| TestkitError::io(format!("writing {}", layout.config.display()), e))?;
            let myid = layout.data.join("myid");
            fs::write(&myid, format!("{}\n", i + 1))
                .map_err(|e| TestkitError::io(format!("writing {}", myid.display()), e))?;
        }
        Ok(())
    }

    /// Launches every member at once and waits for all to serve. On
    /// failure every member is killed; the flag says whether a port was
    /// taken by someone else (worth trying fresh ports).
    fn launch_all(&self) -> Result<(), (TestkitError, bool)> {
        let results: Vec<Result<Running, (TestkitError, bool)>> = thread::scope(|scope| {
            let launches: Vec<_> = self
                .members
                .iter()
                .map(|m| scope.spawn(|| Running::launch(&self.install, &m.layout, m.client_port)))
                .collect();
            launches
                .into_iter()
                .map(|launch| {
                    launch.join().unwrap_or_else(|_| {
                        let error = std::io::Error::other("the thread starting it panicked");
                        Err((
                            TestkitError::io("starting a ZooKeeper member", error),
                            false,
                        ))
                    })
                })
                .collect()
        });
        let mut errors = Vec::new();
        for (member, result) in self.members.iter().zip(results) {
            match result {
                Ok(running) => *member.lock() = Some(running),
                Err(error) => errors.push(error),
            }
        }
        if errors.is_empty() {
            return Ok(());
        }
        for member in 0..self.len() {
            self.stop(member);
        }
        // One member losing a port can make the others time out waiting for
        // a majority: fresh ports are worth a try if any port was taken.
        let conflict = errors.iter().any(|(_, taken)| *taken);
        let (error, _) = errors.swap_remove(0);
        Err((error, conflict))
    }
}

impl Drop for ZkEnsemble {
    /// Kills every member's JVM (by its pid) and waits for it; the temp
    /// dirs are removed afterwards.
    fn drop(&mut self) {
        for member in 0..self.len() {
            self.stop(member);
        }
    }
}

impl Member {
    /// The process slot; a panic while it was held leaves it usable.
    fn lock(&self) -> MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `n` distinct ports on 127.0.0.1 that were free a moment ago (all bound
/// at once, so none is handed out twice).
fn free_ports(n: usize) -> Result<Vec<u16>, TestkitError> {
    let listeners = (0..n)
        .map(|_| {
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .map_err(|e| TestkitError::io("binding 127.0.0.1:0 to find a free port", e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(|e| TestkitError::io("reading the address of 127.0.0.1:0", e))
        })
        .collect()
}
