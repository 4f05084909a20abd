//! The test harness against a real ZooKeeper: the shared server, private
//! servers with stop/restart, forced session expiry, and that every JVM dies.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use metaq_testkit::{unique_root, ZkEnsemble, ZkServer};
use zookeeper_client::{Acls, Client, CreateMode, CreateOptions, Error, SessionState};

const PERSISTENT: CreateOptions<'static> = CreateMode::Persistent.with_acls(Acls::anyone_all());
const EPHEMERAL: CreateOptions<'static> = CreateMode::Ephemeral.with_acls(Acls::anyone_all());

/// Set in the environment of the child process run by
/// `shared_server_jvm_dies_with_the_test_process`.
const CHILD_ENV: &str = "METAQ_TESTKIT_CHILD";
const CHILD_TEST: &str = "child_process_starts_the_shared_server";

/// Waits (at most `limit`) until the client's session reaches `wanted`.
async fn wait_for_state(client: &Client, wanted: SessionState, limit: Duration) {
    let mut watcher = client.state_watcher();
    let reached = async {
        let mut state = client.state();
        while state != wanted {
            assert!(
                !state.is_terminated(),
                "session ended in {state:?} while waiting for {wanted:?}"
            );
            state = watcher.changed().await;
        }
    };
    tokio::time::timeout(limit, reached)
        .await
        .unwrap_or_else(|_| panic!("session not {wanted:?} within {limit:?}"));
}

/// Whether process `pid` is gone: no `/proc` entry, or a zombie (dead,
/// waiting for a parent that may never reap it).
fn process_is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Err(_) => true,
        Ok(status) => status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
    }
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

#[tokio::test]
async fn shared_server_stores_nodes_under_unique_roots() {
    let zk = ZkServer::shared();
    assert!(std::ptr::eq(zk, ZkServer::shared()));
    assert!(zk.is_running());
    assert_eq!(zk.connect_string(), format!("127.0.0.1:{}", zk.port()));

    let (root, other) = (unique_root(), unique_root());
    assert_ne!(root, other);
    assert!(root.starts_with("/metaq-test-"));

    let client = zk.client().await;
    client.create(&root, b"root", &PERSISTENT).await.unwrap();
    let child = format!("{root}/broker-0");
    client
        .create(&child, b"127.0.0.1:8123", &PERSISTENT)
        .await
        .unwrap();

    let reader = zk.client().await;
    assert_eq!(reader.get_data(&root).await.unwrap().0, b"root");
    assert_eq!(reader.get_data(&child).await.unwrap().0, b"127.0.0.1:8123");
    assert_eq!(reader.list_children(&root).await.unwrap(), ["broker-0"]);
    assert_eq!(reader.check_stat(&other).await.unwrap(), None);
}

#[tokio::test]
async fn private_server_restart_keeps_sessions_and_ephemeral_nodes() {
    let zk = ZkServer::start().expect("private ZooKeeper starts");
    assert!(zk.is_running());
    assert!(zk.pid().is_some());
    let port = zk.port();

    let client = zk.client().await;
    let root = unique_root();
    let ephemeral = format!("{root}/ephemeral");
    client.create(&root, b"", &PERSISTENT).await.unwrap();
    client.create(&ephemeral, b"", &EPHEMERAL).await.unwrap();

    zk.stop().unwrap();
    assert!(!zk.is_running());
    assert_eq!(zk.pid(), None);
    zk.stop().unwrap(); // idempotent
    wait_for_state(&client, SessionState::Disconnected, Duration::from_secs(10)).await;

    zk.restart().unwrap();
    assert!(zk.is_running());
    assert_eq!(zk.port(), port);
    wait_for_state(
        &client,
        SessionState::SyncConnected,
        Duration::from_secs(20),
    )
    .await;

    let stat = client
        .check_stat(&ephemeral)
        .await
        .unwrap()
        .expect("the ephemeral node survives a restart within the session timeout");
    assert_eq!(stat.ephemeral_owner, client.session_id().0);
    // And the session is fully usable.
    client
        .create(&format!("{root}/after"), b"", &EPHEMERAL)
        .await
        .unwrap();
}

#[tokio::test]
async fn expire_session_deletes_ephemerals_and_expires_the_client() {
    let zk = ZkServer::shared();
    let client = zk.client().await;
    let observer = zk.client().await;
    let root = unique_root();
    let ephemeral = format!("{root}/ephemeral");
    client.create(&root, b"", &PERSISTENT).await.unwrap();
    client.create(&ephemeral, b"", &EPHEMERAL).await.unwrap();
    let mut state = client.state_watcher();

    zk.expire_session(client.session()).await;

    assert_eq!(
        observer.check_stat(&ephemeral).await.unwrap(),
        None,
        "the ephemeral node of the expired session is gone"
    );
    let expired = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let s = state.changed().await;
            if s.is_terminated() {
                return s;
            }
        }
    })
    .await
    .expect("the expired client notices");
    assert_eq!(expired, SessionState::Expired);
    assert_eq!(
        client
            .create(&ephemeral, b"", &EPHEMERAL)
            .await
            .unwrap_err(),
        Error::SessionExpired
    );
    // Other sessions are unaffected.
    assert!(observer.check_stat(&root).await.unwrap().is_some());
}

#[tokio::test]
async fn short_sessions_lose_their_ephemerals_when_the_server_is_down_too_long() {
    // Sessions restored after a restart get a fresh timeout; a client that
    // cannot reconnect in that time loses its ephemeral nodes.
    let zk = ZkServer::start().expect("private ZooKeeper starts");
    let client = zk.client_with_session_timeout(Duration::from_secs(1)).await;
    assert!(client.session_timeout() <= Duration::from_secs(2));
    let root = unique_root();
    let ephemeral = format!("{root}/ephemeral");
    client.create(&root, b"", &PERSISTENT).await.unwrap();
    client.create(&ephemeral, b"", &EPHEMERAL).await.unwrap();
    let session = client.session().clone();

    // The client gives up on its own after its session timeout.
    zk.stop().unwrap();
    wait_for_state(&client, SessionState::Expired, Duration::from_secs(10)).await;
    drop(client);
    zk.restart().unwrap();

    let observer = zk.client().await;
    let gone = tokio::time::timeout(Duration::from_secs(10), async {
        while observer.check_stat(&ephemeral).await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        gone.is_ok(),
        "ephemeral node of session {:?} still there",
        session.id()
    );
}

#[tokio::test]
async fn dropping_a_private_server_kills_its_jvm_and_removes_its_dir() {
    let zk = ZkServer::start().expect("private ZooKeeper starts");
    let pid = zk.pid().expect("a running server has a pid");
    let dir = zk.dir().expect("a private server has a dir").to_owned();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert!(dir.join("zoo.cfg").is_file());
    let log = std::fs::read_to_string(dir.join("zookeeper.log")).unwrap();
    assert!(log.contains("starting ZooKeeper on 127.0.0.1:"), "{log}");
    assert!(!zk.log_tail().is_empty());

    drop(zk);

    // Drop kills and reaps the JVM, so its /proc entry is gone at once.
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "JVM {pid} still exists"
    );
    assert!(!dir.exists(), "{} still exists", dir.display());
}

/// The state letter of process `pid` in `/proc` (`T` when stopped).
fn process_state(pid: u32) -> Option<char> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("State:"))?;
    line["State:".len()..].trim().chars().next()
}

/// The state of process `pid` once it is (`want`) or is no longer
/// (`!want`) `state`, read every 10 ms for up to 5 s: a signal is delivered
/// a moment after `kill` returns (seen on a loaded machine: still `R`).
fn settled_state(pid: u32, state: char, want: bool) -> Option<char> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = process_state(pid);
        if (now == Some(state)) == want || std::time::Instant::now() >= deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `ruok` sent to 127.0.0.1:`port`; `None` when nothing answers within
/// `wait` (the kernel still accepts connections for a frozen JVM).
fn ruok(port: u16, wait: Duration) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(wait)).ok()?;
    stream.write_all(b"ruok").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

#[tokio::test]
async fn a_frozen_server_answers_nothing_until_thawed_and_dies_frozen() {
    let zk = ZkServer::start().expect("private ZooKeeper starts");
    let pid = zk.pid().unwrap();
    zk.freeze().unwrap();
    assert_eq!(
        settled_state(pid, 'T', true),
        Some('T'),
        "SIGSTOP stops the JVM"
    );
    assert!(zk.is_running(), "frozen is not dead");
    assert_eq!(ruok(zk.port(), Duration::from_millis(500)), None);

    zk.thaw().unwrap();
    assert_ne!(settled_state(pid, 'T', false), Some('T'));
    assert_eq!(
        ruok(zk.port(), Duration::from_secs(10)).as_deref(),
        Some("imok")
    );

    // A frozen JVM is killed like any other.
    zk.freeze().unwrap();
    drop(zk);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "JVM {pid} still exists"
    );
}

#[tokio::test]
async fn an_ensemble_elects_a_new_leader_takes_a_member_back_and_dies_on_drop() {
    let ensemble = ZkEnsemble::start().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ensemble.len(), 3);
    let pids: Vec<u32> = (0..3).map(|m| ensemble.pid(m).unwrap()).collect();
    let dirs: Vec<_> = (0..3).map(|m| ensemble.dir(m).to_owned()).collect();
    let leader = ensemble.leader().expect("a leader once started");
    let client = Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(&ensemble.connect_string())
        .await
        .unwrap();
    let root = unique_root();
    client.create(&root, b"before", &PERSISTENT).await.unwrap();

    ensemble.stop(leader);
    assert!(!ensemble.is_running(leader));
    assert!(wait_until(Duration::from_secs(30), || ensemble
        .leader()
        .is_some_and(|l| l != leader)));
    // The two left still take writes (a majority), on the same session
    // once its client has moved to one of them (until then: ConnectionLoss).
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(e) = client.set_data(&root, b"during", None).await {
        assert!(
            e == Error::ConnectionLoss && Instant::now() < deadline,
            "writing with the leader dead: {e}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    ensemble.restart(leader).unwrap();
    assert_eq!(ensemble.mode(leader).as_deref(), Some("follower"));
    // The member that was down has caught up.
    let direct = Client::connector()
        .connect(&format!("127.0.0.1:{}", ensemble.client_port(leader)))
        .await
        .unwrap();
    direct.sync(&root).await.unwrap();
    assert_eq!(direct.get_data(&root).await.unwrap().0, b"during");
    let restarted_pid = ensemble.pid(leader).unwrap();

    drop(ensemble);
    for pid in pids.iter().chain([&restarted_pid]) {
        assert!(process_is_dead(*pid), "JVM {pid} outlived the ensemble");
    }
    for dir in &dirs {
        assert!(!dir.exists(), "{} still exists", dir.display());
    }
}

#[test]
fn a_panic_with_an_ensemble_kills_every_member() {
    let (tx, rx) = std::sync::mpsc::channel();
    let test = std::thread::spawn(move || {
        let ensemble = ZkEnsemble::start().unwrap_or_else(|e| panic!("{e}"));
        tx.send((0..3).map(|m| ensemble.pid(m).unwrap()).collect::<Vec<_>>())
            .unwrap();
        panic!("a failing test holding an ensemble");
    });
    assert!(test.join().is_err(), "the thread panicked");
    let pids = rx.recv().unwrap();
    for pid in pids {
        assert!(process_is_dead(pid), "JVM {pid} outlived the panic");
    }
}

/// Runs this test binary again, as a child process that starts the shared
/// server and exits without dropping it (statics never are): the watchdog
/// must then kill the JVM and remove its dir.
#[test]
fn shared_server_jvm_dies_with_the_test_process() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .env_remove(metaq_testkit::TEST_ZK_ENV)
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("SHARED_ZK ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no SHARED_ZK line in the child's output:\n{stdout}"));
    let (pid, dir) = line.split_once(' ').unwrap();
    let pid: u32 = pid.parse().unwrap();
    let dir = Path::new(dir);

    assert!(
        wait_until(Duration::from_secs(10), || process_is_dead(pid)),
        "shared JVM {pid} outlived its test process"
    );
    assert!(
        wait_until(Duration::from_secs(10), || !dir.exists()),
        "{} outlived its test process",
        dir.display()
    );
}

/// Without ZooKeeper (here: no `java` to be found), a test that needs it
/// fails, and says how to install it; it does not skip.
#[test]
fn missing_zookeeper_fails_the_test_with_the_install_hint() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .env("PATH", "/nonexistent")
        .env_remove("JAVA_HOME")
        .env_remove(metaq_testkit::TEST_ZK_ENV)
        .output()
        .expect("the test binary runs");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "the child passed:\n{all}");
    assert!(all.contains("cannot start the shared ZooKeeper"), "{all}");
    assert!(all.contains("apt-get install -y zookeeper"), "{all}");
    assert!(all.contains("METAQ_TEST_ZK=host:port"), "{all}");
    assert!(!all.contains("SHARED_ZK "), "{all}");
}

/// Helper for the tests above that run this binary again; does nothing in a
/// normal run.
#[test]
fn child_process_starts_the_shared_server() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let zk = ZkServer::shared();
    println!(
        "SHARED_ZK {} {}",
        zk.pid().unwrap(),
        zk.dir().unwrap().display()
    );
}
