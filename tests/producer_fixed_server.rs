//! A producer with a fixed broker and no ZooKeeper (`for_server`, Java's
//! `serverUrl`): sends stored where the broker chose, a transaction, a
//! broker that goes away and comes back, invalid addresses. The brokers
//! register in ZooKeeper as usual; the producers are given no ZooKeeper
//! address at all.

mod producer_support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use metaq::producer::{KeyHash, BROKER_CHOOSES};
use metaq::{Delivery, Error, Message, Partition, Producer, ProducerBuilder};
use producer_support::*;

const TOPIC: &str = "orders";

/// A producer for `addr` alone, with timeouts short enough for tests.
fn fixed(addr: SocketAddr) -> ProducerBuilder {
    Producer::builder_for_server(format!("meta://{addr}"))
        .connect_timeout(Duration::from_secs(5))
        .send_timeout(Duration::from_secs(2))
}

/// 60 sends, keyless and keyed: the broker chose their partitions (more
/// than one of its 3), each is stored at the partition and offset the
/// producer reported, and the route-related APIs show the one broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_go_to_the_fixed_broker_which_chooses_partitions() {
    init_tracing();
    let root = unique_root();
    let broker = broker(&root, 7, &[(TOPIC, 3)]).await;
    // A key-hash selector would send these keys to one partition; with a
    // fixed server the selector is not asked.
    let producer = fixed(broker.local_addr())
        .selector(KeyHash)
        .build()
        .await
        .unwrap();
    assert!(producer.zk_session_info().is_none());
    producer.publish(TOPIC).await.unwrap();
    assert_eq!(producer.partitions(TOPIC), vec![BROKER_CHOOSES]);
    let health = producer.health(TOPIC);
    assert_eq!(health.len(), 1, "{health:?}");
    assert_eq!(health[0].uri, broker.uri());
    assert!(health[0].connected);

    let mut reported = BTreeSet::new();
    let mut payloads = Vec::new();
    for i in 0..60 {
        let payload = format!("fixed-{i:02}");
        let message = if i % 2 == 0 {
            Message::new(TOPIC, payload.clone())
        } else {
            Message::new(TOPIC, payload.clone()).with_key("same key")
        };
        let sent = producer.send(message).await.expect("sent");
        assert_eq!(sent.broker, broker.uri());
        assert_eq!(sent.partition.broker_id, 0, "the broker's id is not known");
        assert!(sent.partition.index < 3, "{sent:?}");
        assert!(sent.offset >= 0, "{sent:?}");
        assert!(reported.insert((sent.partition.index, sent.offset)));
        payloads.push(payload.into_bytes());
    }
    let used: BTreeSet<u32> = reported.iter().map(|(index, _)| *index).collect();
    assert!(
        used.len() > 1,
        "the broker chose one partition only: {used:?}"
    );

    let records = broker.records(Some(TOPIC));
    let stored: BTreeSet<(u32, i64)> = records.iter().map(|r| (r.partition, r.offset)).collect();
    assert_eq!(stored, reported, "stored where the producer was told");
    let mut bodies = bodies(&broker, TOPIC);
    bodies.sort();
    payloads.sort();
    assert_eq!(bodies, payloads);

    let stats = producer.stats();
    assert_eq!(stats.sent, 60);
    assert_eq!(stats.route_changes, 0);
    assert_eq!(stats.brokers.len(), 1, "{:?}", stats.brokers);
    assert_eq!(stats.brokers[0].sent, 60);
    producer.close().await;
}

/// A transaction on the fixed broker: its puts go to partition 0 (the
/// broker refuses `-1` in a transaction) and are stored on commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_commits_on_the_fixed_broker() {
    init_tracing();
    let root = unique_root();
    let broker = broker(&root, 0, &[(TOPIC, 2)]).await;
    let producer = fixed(broker.local_addr()).build().await.unwrap();
    let mut tx = producer.begin_transaction().unwrap();
    for payload in ["tx-a", "tx-b"] {
        let sent = tx.send(Message::new(TOPIC, payload)).await.unwrap();
        assert_eq!(sent.partition, Partition::new(0, 0));
        assert_eq!(sent.offset, -1, "not in the log before commit");
        assert_eq!(sent.broker, broker.uri());
    }
    assert!(bodies(&broker, TOPIC).is_empty(), "nothing before commit");
    tx.commit().await.unwrap();
    assert_eq!(
        bodies(&broker, TOPIC),
        vec![b"tx-a".to_vec(), b"tx-b".to_vec()]
    );
    assert_eq!(
        per_partition(&broker, TOPIC).keys().collect::<Vec<_>>(),
        [&0]
    );
    producer.close().await;
}

/// The broker stops listening: a send fails as not sent; once it listens
/// again, sends succeed. Then a graceful restart on the same address: sends
/// succeed again, and everything acknowledged is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_fails_sends_until_it_is_back() {
    init_tracing();
    let root = unique_root();
    // A fixed port, so that a restart listens where the producer connects.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut broker = broker_with(zk(), &root, 0, &[(TOPIC, 1)], |config| {
        config.with_listen(SocketAddr::from(([127, 0, 0, 1], port)))
    })
    .await;
    let producer = fixed(broker.local_addr()).build().await.unwrap();
    producer.send(Message::new(TOPIC, "before")).await.unwrap();

    broker.faults().stop_listening();
    eventually(
        Duration::from_secs(10),
        "the producer sees the broker gone",
        || async { (!producer.health(TOPIC)[0].connected).then_some(()) },
    )
    .await;
    let error = producer
        .send(Message::new(TOPIC, "while down"))
        .await
        .expect_err("no broker listens");
    assert!(matches!(error, Error::NotSent { .. }), "{error:?}");
    assert_eq!(error.delivery(), Some(Delivery::NotSent));
    // "The broker chooses" is named as Java names partition -1.
    assert!(error.to_string().contains("partition 0--1"), "{error}");
    let keyed = producer
        .send(Message::new(TOPIC, "keyed while down").with_key("k"))
        .await
        .expect_err("no broker listens");
    assert_eq!(keyed.delivery(), Some(Delivery::NotSent), "{keyed:?}");

    broker.faults().listen_again().await.unwrap();
    eventually(Duration::from_secs(10), "a send succeeds again", || async {
        producer.send(Message::new(TOPIC, "after")).await.ok()
    })
    .await;

    broker.restart().await;
    eventually(
        Duration::from_secs(10),
        "a send succeeds after the restart",
        || async { producer.send(Message::new(TOPIC, "restarted")).await.ok() },
    )
    .await;

    let stored = bodies(&broker, TOPIC);
    for expected in ["before", "after", "restarted"] {
        assert!(
            stored.contains(&expected.as_bytes().to_vec()),
            "{expected} not stored"
        );
    }
    assert!(!stored.contains(&b"while down".to_vec()));
    assert!(!stored.contains(&b"keyed while down".to_vec()));
    producer.close().await;
}

/// A producer built for an address where nothing listens: building and
/// publishing succeed (nothing is contacted at build; publish waits only
/// for the first connection attempt), sends fail as not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_never_listened_fails_sends_as_not_sent() {
    init_tracing();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let producer = fixed(addr)
        .send_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    let error = producer
        .send(Message::new(TOPIC, "nowhere"))
        .await
        .expect_err("nothing listens");
    assert!(matches!(error, Error::NotSent { .. }), "{error:?}");
    assert_eq!(producer.stats().failed_not_sent, 1);
    producer.close().await;
}

/// Addresses that are not `meta://host:port` are refused by `build` as a
/// configuration error, before anything is contacted.
#[tokio::test]
async fn an_invalid_server_address_is_a_config_error() {
    for bad in [
        "127.0.0.1:8123",
        "meta://127.0.0.1",
        "meta://127.0.0.1:port",
        "http://127.0.0.1:8123",
        "meta://::1:8123",
        "",
    ] {
        let result = ProducerBuilder::for_server(bad).build().await;
        match result {
            Err(Error::Config { reason }) => assert!(reason.contains("server"), "{reason}"),
            other => panic!("{bad:?}: expected a Config error, got {other:?}"),
        }
    }
}
