//! The development broker's ZooKeeper registration against a real ZooKeeper
//! (docs/protocol.md §1.2, 1.3): every node and its data, removal on graceful stop
//! and on a killed process, re-registration after session expiry, and
//! wildcard topics registered on first put.

mod broker_common;

use std::sync::Arc;
use std::time::Duration;

use broker_common::*;
use metaq_testkit::{
    test_broker_config, unique_root, BrokerProcess, RawClient, TestBroker, ZkServer,
};

const BROKER_0_TOPICS: &[(&str, u32)] = &[("test", 4), ("orders", 2)];
const BROKER_1_TOPICS: &[(&str, u32)] = &[("test", 2), ("audit", 1)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_write_every_node_as_a_java_master_does() {
    let zk = ZkServer::shared();
    let root = unique_root();
    let b0 = TestBroker::start(zk, &root, 0, BROKER_0_TOPICS).await;
    let b1 = TestBroker::start(zk, &root, 1, BROKER_1_TOPICS).await;
    let client = zk.client().await;

    for (broker, id, topics) in [(&b0, 0, BROKER_0_TOPICS), (&b1, 1, BROKER_1_TOPICS)] {
        let uri = format!("meta://127.0.0.1:{}", broker.local_addr().port());
        assert_eq!(broker.uri().to_string(), uri);
        let owner = assert_registered(&client, &root, id, &uri, topics).await;
        // Each broker has a session of its own.
        assert_ne!(owner, client.session_id().0);
        // Nothing else under ids/<id>.
        let mut children = client
            .list_children(&format!("{root}/brokers/ids/{id}"))
            .await
            .unwrap();
        children.sort();
        assert_eq!(children, ["master", "master_config_checksum"]);
    }
    let owner0 = ephemeral(&client, &format!("{root}/brokers/ids/0/master"))
        .await
        .1;
    let owner1 = ephemeral(&client, &format!("{root}/brokers/ids/1/master"))
        .await
        .1;
    assert_ne!(owner0, owner1);

    // The tree a producer lists (docs/protocol.md §1.4).
    let mut ids = client
        .list_children(&format!("{root}/brokers/ids"))
        .await
        .unwrap();
    ids.sort();
    assert_eq!(ids, ["0", "1"]);
    for kind in ["topics", "topics-pub", "topics-sub"] {
        let mut topics = client
            .list_children(&format!("{root}/brokers/{kind}"))
            .await
            .unwrap();
        topics.sort();
        assert_eq!(topics, ["audit", "orders", "test"], "{kind}");
        let mut test = client
            .list_children(&format!("{root}/brokers/{kind}/test"))
            .await
            .unwrap();
        test.sort();
        assert_eq!(test, ["0-m", "1-m"], "{kind}/test");
        assert_eq!(
            client
                .list_children(&format!("{root}/brokers/{kind}/orders"))
                .await
                .unwrap(),
            ["0-m"]
        );
        assert_eq!(
            client
                .list_children(&format!("{root}/brokers/{kind}/audit"))
                .await
                .unwrap(),
            ["1-m"]
        );
    }
    b0.shutdown().await;
    b1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_removes_every_node_but_the_parents() {
    let zk = ZkServer::shared();
    let root = unique_root();
    let b0 = TestBroker::start(zk, &root, 0, BROKER_0_TOPICS).await;
    let b1 = TestBroker::start(zk, &root, 1, BROKER_1_TOPICS).await;
    let client = zk.client().await;
    assert_registered(&client, &root, 0, &b0.uri().to_string(), BROKER_0_TOPICS).await;

    b0.shutdown().await;
    // Removed before shutdown returns, not eventually.
    assert_unregistered(&client, &root, 0, BROKER_0_TOPICS).await;
    // The other broker is untouched, including its node under the shared topic.
    assert_registered(&client, &root, 1, &b1.uri().to_string(), BROKER_1_TOPICS).await;
    // The stopped broker no longer accepts connections.
    assert!(tokio::net::TcpStream::connect(b0.local_addr())
        .await
        .is_err());

    b1.shutdown().await;
    assert_unregistered(&client, &root, 1, BROKER_1_TOPICS).await;
    // A second shutdown is a no-op.
    b1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_removes_every_node_before_the_process_exits() {
    let zk = ZkServer::shared();
    let root = unique_root();
    let data = tempfile::tempdir().unwrap();
    let topics = &[("test", 4), ("orders", 2)];
    // Given as `metaq-test-…/`: normalised to `/metaq-test-…` (docs/protocol.md §1.1).
    let unnormalised = format!("{}/", root.trim_start_matches('/'));
    let mut process = BrokerProcess::spawn(
        BROKER_BIN,
        &broker_args(
            zk,
            &unnormalised,
            3,
            data.path(),
            &["test:4", "orders:2"],
            &[],
        ),
    )
    .unwrap();
    let client = zk.client().await;
    let uri = format!("meta://127.0.0.1:{}", process.addr().port());
    assert_registered(&client, &root, 3, &uri, topics).await;

    let status = process.terminate().unwrap();
    assert!(status.success(), "metaq-broker exited with {status}");
    assert_unregistered(&client, &root, 3, topics).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_leaves_the_nodes_until_the_session_times_out() {
    let zk = ZkServer::shared();
    let root = unique_root();
    let data = tempfile::tempdir().unwrap();
    let topics = &[("test", 2)];
    let mut process = BrokerProcess::spawn(
        BROKER_BIN,
        &broker_args(
            zk,
            &root,
            5,
            data.path(),
            &["test:2"],
            &["--zk-session-timeout-ms", "4000"],
        ),
    )
    .unwrap();
    let client = zk.client().await;
    let uri = format!("meta://127.0.0.1:{}", process.addr().port());
    assert_registered(&client, &root, 5, &uri, topics).await;

    process.kill();
    let killed = std::time::Instant::now();
    // Nobody deleted anything: the session is still alive on the server.
    assert_registered(&client, &root, 5, &uri, topics).await;
    eventually(
        Duration::from_secs(15),
        "the ephemeral nodes to expire",
        || all_absent(&client, &root, 5, topics),
    )
    .await;
    // Expired by ZooKeeper, not deleted at the kill: the session outlived
    // the process by most of its 4 s timeout (minus the time since the last
    // heartbeat before the kill).
    assert!(
        killed.elapsed() >= Duration::from_secs(1),
        "{:?}",
        killed.elapsed()
    );
    // The persistent ids/<id> is not ephemeral: it stays with the URI.
    assert_eq!(
        persistent(&client, &format!("{root}/brokers/ids/5")).await,
        uri
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_registers_everything_again_including_wildcard_topics() {
    let zk = ZkServer::shared();
    let root = unique_root();
    let broker = TestBroker::start(zk, &root, 2, &[("test", 3), ("log-*", 2)]).await;
    let client = zk.client().await;
    let uri = broker.uri().to_string();
    let mut raw = RawClient::connect(broker.local_addr()).await;
    put_result(&raw.call(&put("log-app", 1, b"x", 1)).await.unwrap());
    let topics = &[("test", 3), ("log-app", 2)];
    eventually(Duration::from_secs(10), "log-app to be registered", || {
        all_present(&client, &root, 2, topics)
    })
    .await;
    let before = assert_registered(&client, &root, 2, &uri, topics).await;

    let session = broker.faults().zk_session().await.unwrap();
    assert_eq!(session.id().0, before);
    zk.expire_session(&session).await;

    eventually(
        Duration::from_secs(15),
        "registration in a new session",
        || async {
            for path in ephemeral_paths(&root, 2, topics) {
                match node(&client, &path).await {
                    Some((_, stat)) if stat.ephemeral_owner != before => {}
                    _ => return false,
                }
            }
            true
        },
    )
    .await;
    let after = assert_registered(&client, &root, 2, &uri, topics).await;
    assert_ne!(after, before);
    assert_eq!(broker.faults().zk_session().await.unwrap().id().0, after);
    // The pattern itself is never registered.
    assert!(node(&client, &format!("{root}/brokers/topics/log-*"))
        .await
        .is_none());

    // Still serving, on the same connection.
    put_result(&raw.call(&put("test", 2, b"y", 2)).await.unwrap());
    broker.shutdown().await;
    assert_unregistered(&client, &root, 2, topics).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_topic_is_registered_under_its_name_on_first_put() {
    let zk = ZkServer::shared();
    let root = unique_root();
    let data = tempfile::tempdir().unwrap();
    let mut process = BrokerProcess::spawn(
        BROKER_BIN,
        &broker_args(zk, &root, 4, data.path(), &["log-*:2", "test:1"], &[]),
    )
    .unwrap();
    let client = zk.client().await;
    let uri = format!("meta://127.0.0.1:{}", process.addr().port());
    assert_registered(&client, &root, 4, &uri, &[("test", 1)]).await;
    // Nothing for the pattern until a put names a topic.
    for kind in ["topics", "topics-pub", "topics-sub"] {
        assert_eq!(
            client
                .list_children(&format!("{root}/brokers/{kind}"))
                .await
                .unwrap(),
            ["test"],
            "{kind}"
        );
    }

    let mut raw = RawClient::connect(process.addr()).await;
    // A topic the pattern does not match is refused and not registered.
    let refused = raw.call(&put("audit", 0, b"x", 1)).await.unwrap();
    assert_eq!(refused.code.0, 500);
    // Wrong partition of a matching topic: refused, and not registered
    // (registration follows a successful validation).
    let refused = raw.call(&put("log-web", 2, b"x", 2)).await.unwrap();
    assert_eq!(
        text(&refused),
        put_failure(&uri, "log-web", 2, "wrong partition 2")
    );
    let (_, partition, offset) =
        put_result(&raw.call(&put("log-app", 1, b"hello", 3)).await.unwrap());
    assert_eq!((partition, offset), (1, 0));
    let topics = &[("test", 1), ("log-app", 2)];
    eventually(Duration::from_secs(10), "log-app to be registered", || {
        all_present(&client, &root, 4, topics)
    })
    .await;
    assert_registered(&client, &root, 4, &uri, topics).await;
    let mut names = client
        .list_children(&format!("{root}/brokers/topics-pub"))
        .await
        .unwrap();
    names.sort();
    assert_eq!(names, ["log-app", "test"]);

    // A second put does not register again (same session, same node).
    let czxid = node(&client, &format!("{root}/brokers/topics-pub/log-app/4-m"))
        .await
        .unwrap()
        .1
        .czxid;
    put_result(&raw.call(&put("log-app", 0, b"again", 4)).await.unwrap());
    assert_eq!(
        raw.call(b"version 5\r\n").await.unwrap().opaque,
        5,
        "the broker is still serving"
    );
    assert_eq!(
        node(&client, &format!("{root}/brokers/topics-pub/log-app/4-m"))
            .await
            .unwrap()
            .1
            .czxid,
        czxid
    );

    // Graceful stop removes the dynamically registered topic too.
    assert!(process.terminate().unwrap().success());
    assert_unregistered(&client, &root, 4, topics).await;
}

#[tokio::test]
async fn a_wildcard_does_not_accept_names_that_are_no_topic() {
    let zk = ZkServer::shared();
    let root = unique_root();
    let broker = TestBroker::start(zk, &root, 0, &[("log-*", 2)]).await;
    let uri = broker.uri().to_string();
    let mut raw = RawClient::connect(broker.local_addr()).await;
    // `log-a/b` matches `log-*` but would become the ZooKeeper path
    // topics/log-a/b/0-m (and is no directory name either).
    for (opaque, topic) in [(1, "log-a/b"), (2, "log-a\\b")] {
        let answer = raw.call(&put(topic, 0, b"x", opaque)).await.unwrap();
        assert_eq!(answer.code.0, 500);
        assert_eq!(
            text(&answer),
            put_failure(
                &uri,
                topic,
                0,
                &format!("The server do not accept topic {topic}")
            )
        );
    }
    // Registration is asynchronous: a good topic registered after the bad
    // ones shows that they were not (the registrar handles them in order).
    put_result(&raw.call(&put("log-ok", 0, b"x", 3)).await.unwrap());
    let client = zk.client().await;
    eventually(Duration::from_secs(10), "log-ok to be registered", || {
        all_present(&client, &root, 0, &[("log-ok", 2)])
    })
    .await;
    for kind in ["topics", "topics-pub", "topics-sub"] {
        assert_eq!(
            client
                .list_children(&format!("{root}/brokers/{kind}"))
                .await
                .unwrap(),
            ["log-ok"],
            "{kind}"
        );
    }
    assert_eq!(broker.records(None).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_zookeeper_before_it_stops_serving() {
    let zk = ZkServer::shared();
    let root = unique_root();
    let data = tempfile::tempdir().unwrap();
    // MetaQ sleeps between leaving ZooKeeper and closing its sockets, so
    // producers move away before their connections break (docs/protocol.md §1.3).
    let config = test_broker_config(zk, &root, 0, data.path(), &[("test", 2)])
        .with_shutdown_grace(Duration::from_secs(3));
    let broker = Arc::new(TestBroker::start_with(config, data).await);
    let mut raw = RawClient::connect(broker.local_addr()).await;
    let client = zk.client().await;

    let stopping = Arc::clone(&broker);
    let shutdown = tokio::spawn(async move { stopping.shutdown().await });
    eventually(Duration::from_secs(10), "the nodes to go", || {
        all_absent(&client, &root, 0, &[("test", 2)])
    })
    .await;
    // Unregistered, still serving (within the 3 s grace).
    put_result(&raw.call(&put("test", 0, b"late", 1)).await.unwrap());
    shutdown.await.unwrap();
    assert!(raw.is_closed().await);
    assert_unregistered(&client, &root, 0, &[("test", 2)]).await;
    assert_eq!(broker.records(None).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_broker_without_shutdown_unregisters_it() {
    let zk = ZkServer::shared();
    let root = unique_root();
    let broker = TestBroker::start(zk, &root, 0, &[("test", 2)]).await;
    let mut raw = RawClient::connect(broker.local_addr()).await;
    let client = zk.client().await;
    assert_registered(&client, &root, 0, &broker.uri().to_string(), &[("test", 2)]).await;

    drop(broker);
    assert!(raw.is_closed().await);
    eventually(Duration::from_secs(10), "the nodes to go", || {
        all_absent(&client, &root, 0, &[("test", 2)])
    })
    .await;
    // Deleted, not left to expire: ids/<id> is gone too.
    assert_unregistered(&client, &root, 0, &[("test", 2)]).await;
}

#[tokio::test]
async fn ids_node_with_slaves_is_emptied_instead_of_deleted() {
    let zk = ZkServer::shared();
    let root = unique_root();
    let broker = TestBroker::start(zk, &root, 0, &[("test", 1)]).await;
    let client = zk.client().await;
    // A slave of broker 0 (docs/protocol.md §1.2: ids/<id>/slave<N>, ephemeral).
    let slave = format!("{root}/brokers/ids/0/slave0");
    client
        .create(
            &slave,
            b"meta://127.0.0.1:8124",
            &zookeeper_client::CreateMode::Ephemeral
                .with_acls(zookeeper_client::Acls::anyone_all()),
        )
        .await
        .unwrap();

    broker.shutdown().await;
    // docs/protocol.md §1.3 shutdown step 2: ids/<id> cannot be deleted, so its
    // data is set to the empty string; every node of the master is gone.
    assert_eq!(
        persistent(&client, &format!("{root}/brokers/ids/0")).await,
        ""
    );
    assert_eq!(
        client
            .list_children(&format!("{root}/brokers/ids/0"))
            .await
            .unwrap(),
        ["slave0"]
    );
    assert!(all_absent(&client, &root, 0, &[("test", 1)]).await);
}

/// Reads `child`'s stderr until a line contains `needle` (at most `limit`);
/// returns that line.
async fn stderr_line_with(
    stderr: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
    needle: &str,
    limit: Duration,
) -> String {
    tokio::time::timeout(limit, async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            if line.contains(needle) {
                return line;
            }
        }
        panic!("stderr ended without a line containing {needle:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("no line containing {needle:?} within {limit:?}"))
}

/// A broker whose id is still held by another ZooKeeper session says so at
/// once, and what it waits for, instead of waiting silently; it registers
/// as soon as that session goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_whose_id_is_held_says_what_it_waits_for() {
    use tokio::io::AsyncBufReadExt;
    use zookeeper_client::{Acls, CreateMode};
    let zk = ZkServer::shared();
    let root = unique_root();
    let data = tempfile::tempdir().unwrap();
    let holder = zk.client().await;
    let master = format!("{root}/brokers/ids/7/master");
    holder
        .mkdir(
            &format!("{root}/brokers/ids/7"),
            &CreateMode::Persistent.with_acls(Acls::anyone_all()),
        )
        .await
        .unwrap();
    holder
        .create(
            &master,
            b"meta://127.0.0.1:1",
            &CreateMode::Ephemeral.with_acls(Acls::anyone_all()),
        )
        .await
        .unwrap();
    let mut child = tokio::process::Command::new(BROKER_BIN)
        .args(broker_args(zk, &root, 7, data.path(), &["test:1"], &[]))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let line = stderr_line_with(&mut stderr, "still registered", Duration::from_secs(10)).await;
    assert!(line.contains(&master), "{line}");
    assert!(line.contains("waiting up to"), "{line}");
    assert!(line.contains("meta://127.0.0.1:1"), "{line}");
    // The other session goes: the broker registers and is ready.
    holder.delete(&master, None).await.unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(10), stdout.next_line())
        .await
        .expect("ready within 10 s")
        .unwrap()
        .unwrap_or_default();
    assert!(ready.starts_with("ready id=7"), "{ready}");
    child.kill().await.unwrap();
}

/// A broker that cannot reach ZooKeeper fails after its connect timeout
/// (not its session timeout), naming the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_cannot_reach_zookeeper_says_why() {
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = std::time::Instant::now();
    let output = tokio::process::Command::new(BROKER_BIN)
        .args([
            "--id",
            "0",
            "--listen",
            "127.0.0.1:0",
            "--zk",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            &data.path().display().to_string(),
            "--topic",
            "test:1",
            "--zk-connect-timeout-ms",
            "1500",
        ])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("connection refused"), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?} (the session timeout is 30 s)",
        started.elapsed()
    );
}
