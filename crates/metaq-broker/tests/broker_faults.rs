//! The development broker's fault-injection controls, seen from a raw TCP
//! client and from ZooKeeper: delayed answers, stalls, cut and refused
//! connections, leaving and rejoining ZooKeeper, moving to a new address;
//! plus graceful shutdown draining and a ZooKeeper outage.

mod broker_common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use broker_common::*;
use metaq_testkit::{unique_root, RawClient, TestBroker, ZkServer};

const TOPICS: &[(&str, u32)] = &[("test", 2)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_answers_arrive_late_but_the_put_is_stored_at_once() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, TOPICS).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    let delay = Duration::from_secs(3);
    broker.faults().delay_responses(delay);

    let sent = Instant::now();
    client.send(&put("test", 1, b"slow", 1)).await;
    // Stored well before the answer is due.
    eventually(
        Duration::from_millis(2500),
        "the delayed put to be stored",
        || async { broker.records(None).len() == 1 },
    )
    .await;
    assert!(
        client.response_within(Duration::ZERO).await.is_none(),
        "answered before the delay"
    );
    let answer = client.response().await.unwrap();
    assert!(
        sent.elapsed() >= delay,
        "answered after {:?}",
        sent.elapsed()
    );
    let (id, _, offset) = put_result(&answer);
    assert_eq!((broker.records(None)[0].id, offset), (id, 0));

    // Every kind of answer is delayed.
    let sent = Instant::now();
    assert_eq!(client.call(b"version 2\r\n").await.unwrap().opaque, 2);
    assert!(sent.elapsed() >= delay);

    broker.faults().delay_responses(Duration::ZERO);
    let sent = Instant::now();
    put_result(&client.call(&put("test", 1, b"fast", 3)).await.unwrap());
    assert!(
        sent.elapsed() < delay,
        "still delayed: {:?}",
        sent.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_broker_reads_but_neither_stores_nor_answers() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, TOPICS).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    broker.faults().stall(true);
    let mut batch = put("test", 0, b"lost", 1);
    batch.extend(b"version 2\r\n");
    batch.extend(tx("TX:s-1-1:1", "s-1-1", "BEGIN", None, 3));
    client.send(&batch).await;
    assert!(client
        .response_within(Duration::from_millis(500))
        .await
        .is_none());
    // A new connection is accepted but not answered either.
    let mut other = RawClient::connect(broker.local_addr()).await;
    other.send(b"version 4\r\n").await;
    assert!(other
        .response_within(Duration::from_millis(200))
        .await
        .is_none());

    broker.faults().stall(false);
    // The next answer is for a request sent after the stall: the others are gone.
    let answer = client.call(&put("test", 0, b"kept", 5)).await.unwrap();
    assert_eq!(answer.opaque, 5);
    let (id, _, offset) = put_result(&answer);
    assert_eq!(offset, 0, "the stalled put was stored");
    assert_eq!(
        broker
            .records(None)
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        [id]
    );
    // The stalled BEGIN never happened.
    let answer = client
        .call(&tx("TX:s-1-1:1", "s-1-1", "COMMIT_ONE_PHASE", None, 6))
        .await
        .unwrap();
    assert_eq!(answer.code.0, 500);
    assert_eq!(other.call(b"version 7\r\n").await.unwrap().opaque, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_see_eof_and_new_ones_work() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, TOPICS).await;
    let mut a = RawClient::connect(broker.local_addr()).await;
    let mut b = RawClient::connect(broker.local_addr()).await;
    assert_eq!(a.call(b"version 1\r\n").await.unwrap().opaque, 1);
    assert_eq!(b.call(b"version 2\r\n").await.unwrap().opaque, 2);

    broker.faults().drop_connections();
    assert!(a.is_closed().await);
    assert!(b.is_closed().await);

    // The listener is untouched; a later cut affects only the new connections.
    let mut c = RawClient::connect(broker.local_addr()).await;
    put_result(&c.call(&put("test", 0, b"x", 3)).await.unwrap());
    broker.faults().drop_connections();
    assert!(c.is_closed().await);
    let mut d = RawClient::connect(broker.local_addr()).await;
    assert_eq!(d.call(b"version 4\r\n").await.unwrap().opaque, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_accepted_and_closed_at_once() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, TOPICS).await;
    let mut existing = RawClient::connect(broker.local_addr()).await;
    // Answered, so the broker has accepted it (not just the kernel).
    assert_eq!(existing.call(b"version 0\r\n").await.unwrap().opaque, 0);
    broker.faults().refuse_connections(true);

    let mut refused = RawClient::connect(broker.local_addr()).await;
    assert!(
        refused.is_closed().await,
        "a refused connection stayed open"
    );
    // Open connections keep working.
    assert_eq!(existing.call(b"version 1\r\n").await.unwrap().opaque, 1);

    broker.faults().refuse_connections(false);
    let mut accepted = RawClient::connect(broker.local_addr()).await;
    put_result(&accepted.call(&put("test", 1, b"x", 2)).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregister_and_register_remove_and_restore_every_node() {
    let zk = ZkServer::shared();
    let root = unique_root();
    let broker = TestBroker::start(zk, &root, 6, TOPICS).await;
    let client = zk.client().await;
    let uri = broker.uri().to_string();
    let owner = assert_registered(&client, &root, 6, &uri, TOPICS).await;

    broker.faults().unregister().await.unwrap();
    assert_unregistered(&client, &root, 6, TOPICS).await;
    // It keeps serving.
    let mut raw = RawClient::connect(broker.local_addr()).await;
    put_result(&raw.call(&put("test", 0, b"x", 1)).await.unwrap());
    // Unregistering twice is harmless.
    broker.faults().unregister().await.unwrap();

    broker.faults().register().await.unwrap();
    // Same session, same data.
    assert_eq!(
        assert_registered(&client, &root, 6, &uri, TOPICS).await,
        owner
    );
    broker.shutdown().await;
    assert_unregistered(&client, &root, 6, TOPICS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_to_registers_the_new_address_and_cuts_the_old_connections() {
    let zk = ZkServer::shared();
    let root = unique_root();
    let broker = TestBroker::start(zk, &root, 1, TOPICS).await;
    let client = zk.client().await;
    let old_addr = broker.local_addr();
    let mut old = RawClient::connect(old_addr).await;
    assert_eq!(old.call(b"version 1\r\n").await.unwrap().opaque, 1);

    let new_addr = broker
        .faults()
        .move_to(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    assert_ne!(new_addr.port(), old_addr.port());
    assert_eq!(broker.local_addr(), new_addr);
    let uri = format!("meta://127.0.0.1:{}", new_addr.port());
    assert_eq!(broker.uri().to_string(), uri);
    let (master, _) = ephemeral(&client, &format!("{root}/brokers/ids/1/master")).await;
    assert_eq!(master, uri);
    assert_registered(&client, &root, 1, &uri, TOPICS).await;

    assert!(old.is_closed().await, "the old connection was not cut");
    assert!(
        tokio::net::TcpStream::connect(old_addr).await.is_err(),
        "still listening on the old address"
    );
    let mut new = RawClient::connect(new_addr).await;
    put_result(&new.call(&put("test", 1, b"x", 2)).await.unwrap());
    // Error texts name the new URI.
    let answer = new.call(&put("test", 5, b"x", 3)).await.unwrap();
    assert_eq!(
        text(&answer),
        put_failure(&uri, "test", 5, "wrong partition 5")
    );
}

/// A move right after the broker's ZooKeeper session expired: whether its
/// registration fails (old session) or not, the broker ends up registered
/// at the new address once its new session is open, never left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_right_after_a_session_expiry_still_registers_the_new_address() {
    let zk = ZkServer::shared();
    let root = unique_root();
    let broker = TestBroker::start(zk, &root, 3, TOPICS).await;
    let client = zk.client().await;
    let session = broker.faults().zk_session().await.unwrap();
    zk.expire_session(&session).await;
    // The answer depends on who wins the race with the renewal; the end
    // state must not.
    let moved = broker
        .faults()
        .move_to(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await;
    let uri = format!("meta://127.0.0.1:{}", broker.local_addr().port());
    eventually(
        Duration::from_secs(20),
        "registration at the new address",
        || async {
            node(&client, &format!("{root}/brokers/ids/3/master"))
                .await
                .is_some_and(|(data, _)| data == uri)
        },
    )
    .await;
    assert_registered(&client, &root, 3, &uri, TOPICS).await;
    if let Ok(addr) = moved {
        assert_eq!(addr, broker.local_addr());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_answers_what_it_has_read_then_closes() {
    let zk = ZkServer::shared();
    let root = unique_root();
    let broker = TestBroker::start(zk, &root, 0, TOPICS).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    broker.faults().delay_responses(Duration::from_millis(500));
    client.send(&put("test", 0, b"in flight", 1)).await;
    eventually(Duration::from_secs(5), "the put to be stored", || async {
        broker.records(None).len() == 1
    })
    .await;

    let (_, answer) = tokio::join!(broker.shutdown(), client.response());
    let answer = answer.expect("the answer read before shutdown was dropped");
    assert_eq!(answer.opaque, 1);
    put_result(&answer);
    assert!(client.is_closed().await);
    let zk_client = zk.client().await;
    assert_unregistered(&zk_client, &root, 0, TOPICS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zookeeper_outage_does_not_stop_the_broker() {
    let zk = ZkServer::start().expect("a private ZooKeeper");
    let root = unique_root();
    let broker = TestBroker::start(&zk, &root, 0, TOPICS).await;
    let client = zk.client().await;
    let uri = broker.uri().to_string();
    assert_registered(&client, &root, 0, &uri, TOPICS).await;
    drop(client);

    zk.stop().unwrap();
    // Puts do not need ZooKeeper.
    let mut raw = RawClient::connect(broker.local_addr()).await;
    put_result(&raw.call(&put("test", 0, b"during", 1)).await.unwrap());
    zk.restart().unwrap();

    // The session outlived the short outage (ZooKeeper restores sessions),
    // or expired and the broker registered again; either way every node is
    // back and owned by the broker's current session.
    let client = zk.client().await;
    eventually(
        Duration::from_secs(20),
        "the registration after the outage",
        || async {
            let Ok(session) = broker.faults().zk_session().await else {
                return false;
            };
            for path in ephemeral_paths(&root, 0, TOPICS) {
                match node(&client, &path).await {
                    Some((_, stat)) if stat.ephemeral_owner == session.id().0 => {}
                    _ => return false,
                }
            }
            true
        },
    )
    .await;
    assert_registered(&client, &root, 0, &uri, TOPICS).await;
    put_result(&raw.call(&put("test", 1, b"after", 2)).await.unwrap());
    broker.shutdown().await;
    assert_unregistered(&client, &root, 0, TOPICS).await;
}
