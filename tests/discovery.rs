//! Discovery against a real ZooKeeper: route snapshots from hand-written
//! nodes (laid out exactly as docs/protocol.md §1.2 shows) and from in-process test
//! brokers, through changes, malformed data, session expiry and a server
//! outage.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metaq::discovery::{
    read_route, BrokerUri, Discovery, Partition, RouteSource, TopicBroker, TopicRoute, ZkPaths,
    ZkSettings,
};
use metaq::Error;
use metaq_testkit::{unique_root, TestBroker, ZkServer};
use tokio::sync::watch;
use zookeeper_client::{Acls, Client, CreateMode, CreateOptions};

const PERSISTENT: CreateOptions<'static> = CreateMode::Persistent.with_acls(Acls::anyone_all());
const EPHEMERAL: CreateOptions<'static> = CreateMode::Ephemeral.with_acls(Acls::anyone_all());

/// How long a change may take to show up in a route.
const CHANGE: Duration = Duration::from_secs(5);

type Routes = watch::Receiver<Option<Arc<TopicRoute>>>;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A client writing MetaQ nodes by hand under its own root.
struct Tree {
    client: Client,
    paths: ZkPaths,
}

impl Tree {
    async fn new(zk: &ZkServer) -> Tree {
        Tree {
            client: zk.client().await,
            paths: ZkPaths::new(&unique_root()),
        }
    }

    fn root(&self) -> &str {
        self.paths.root()
    }

    /// `ids/<id>` (persistent, URI) and the ephemeral `ids/<id>/master`.
    async fn master(&self, id: u32, uri: &str) {
        let broker = self.paths.broker(id);
        self.client.mkdir(&broker, &PERSISTENT).await.unwrap();
        self.client
            .set_data(&broker, uri.as_bytes(), None)
            .await
            .unwrap();
        self.client
            .create(&self.paths.broker_master(id), uri.as_bytes(), &EPHEMERAL)
            .await
            .unwrap();
    }

    /// An ephemeral child of `topics-pub/<topic>` with raw data.
    async fn pub_entry(&self, topic: &str, name: &str, data: &str) {
        let dir = self.paths.topic_pub(topic);
        self.client.mkdir(&dir, &PERSISTENT).await.unwrap();
        self.client
            .create(&format!("{dir}/{name}"), data.as_bytes(), &EPHEMERAL)
            .await
            .unwrap();
    }

    /// A master broker's `topics`, `topics-pub` and `topics-sub` entries.
    async fn topic(&self, topic: &str, id: u32, parts: u32) {
        let json = TopicBroker::master(id, parts).to_json();
        self.legacy_entry(topic, &format!("{id}-m"), &parts.to_string())
            .await;
        self.pub_entry(topic, &format!("{id}-m"), &json).await;
        let sub = self.paths.topic_sub_broker(topic, id);
        self.client
            .mkdir(&self.paths.topic_sub(topic), &PERSISTENT)
            .await
            .unwrap();
        self.client
            .create(&sub, json.as_bytes(), &EPHEMERAL)
            .await
            .unwrap();
    }

    /// An ephemeral child of the legacy `topics/<topic>`.
    async fn legacy_entry(&self, topic: &str, name: &str, data: &str) {
        let dir = self.paths.topic_legacy(topic);
        self.client.mkdir(&dir, &PERSISTENT).await.unwrap();
        self.client
            .create(&format!("{dir}/{name}"), data.as_bytes(), &EPHEMERAL)
            .await
            .unwrap();
    }

    async fn set(&self, path: &str, data: &str) {
        self.client
            .set_data(path, data.as_bytes(), None)
            .await
            .unwrap();
    }

    async fn delete(&self, path: &str) {
        self.client.delete(path, None).await.unwrap();
    }

    fn settings(&self, zk: &ZkServer) -> ZkSettings {
        ZkSettings::new(zk.connect_string()).with_root(self.root())
    }
}

fn uri(text: &str) -> BrokerUri {
    text.parse().unwrap()
}

fn parts(list: &[(u32, u32)]) -> Vec<Partition> {
    list.iter().map(|&(b, i)| Partition::new(b, i)).collect()
}

/// `(broker, count)` → every partition of those brokers, sorted.
fn counts(list: &[(u32, u32)]) -> Vec<Partition> {
    list.iter()
        .flat_map(|&(b, n)| (0..n).map(move |i| Partition::new(b, i)))
        .collect()
}

/// Waits until the route satisfies `done`; panics with the last route if it
/// does not within `limit`.
async fn wait_route(
    routes: &mut Routes,
    limit: Duration,
    what: &str,
    done: impl FnMut(&TopicRoute) -> bool,
) -> Arc<TopicRoute> {
    let mut done = done;
    let waited = tokio::time::timeout(limit, async {
        routes
            .wait_for(|r| r.as_deref().is_some_and(&mut done))
            .await
            .map(|route| route.clone())
    })
    .await;
    match waited {
        Ok(Ok(route)) => route.unwrap(),
        Ok(Err(_)) => panic!("{what}: the route channel closed"),
        Err(_) => panic!(
            "{what}: not seen within {limit:?}; last route: {:?}",
            routes.borrow()
        ),
    }
}

async fn connect(settings: ZkSettings) -> Discovery {
    Discovery::connect(settings)
        .await
        .expect("discovery connects")
}

#[tokio::test]
async fn spec_example_route() {
    init_tracing();
    let zk = ZkServer::shared();
    let tree = Tree::new(zk).await;
    // docs/protocol.md §1.4's tree, broker 1's JSON with its keys the other way round.
    tree.master(0, "meta://10.0.0.5:8123").await;
    tree.client
        .create(
            &tree.paths.broker_config_checksum(0),
            b"2218465417",
            &EPHEMERAL,
        )
        .await
        .unwrap();
    tree.master(1, "meta://10.0.0.6:8123").await;
    tree.topic("test", 0, 4).await;
    tree.legacy_entry("test", "1-m", "2").await;
    tree.pub_entry("test", "1-m", r#"{"broker":"1-m","numParts":2}"#)
        .await;

    let expected = TopicRoute {
        topic: "test".into(),
        brokers: [
            (0, uri("meta://10.0.0.5:8123")),
            (1, uri("meta://10.0.0.6:8123")),
        ]
        .into(),
        partitions: parts(&[(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]),
        source: RouteSource::TopicsPub,
    };

    // The one-shot listing.
    let settings = tree.settings(zk);
    let read = read_route(&tree.client, &tree.paths, "test", &settings, None)
        .await
        .unwrap();
    assert_eq!(read, expected);

    // The watched route; the root may be given un-normalised.
    let settings = ZkSettings {
        root: format!("{}/", tree.root().trim_start_matches('/')),
        ..settings
    };
    let discovery = connect(settings).await;
    let mut routes = discovery.watch("test");
    let route = wait_route(&mut routes, CHANGE, "first route", |_| true).await;
    assert_eq!(*route, expected);
    assert_eq!(
        route.broker_of(Partition::new(1, 1)),
        Some(&uri("meta://10.0.0.6:8123"))
    );
    discovery.close().await;
}

#[tokio::test]
async fn brokers_added_removed_and_moved() {
    init_tracing();
    let zk = ZkServer::shared();
    let tree = Tree::new(zk).await;
    tree.master(0, "meta://127.0.0.1:8000").await;
    tree.topic("t", 0, 2).await;
    let discovery = connect(tree.settings(zk)).await;
    let mut routes = discovery.watch("t");
    let route = wait_route(&mut routes, CHANGE, "broker 0", |_| true).await;
    assert_eq!(route.partitions, counts(&[(0, 2)]));

    // Added.
    let started = Instant::now();
    tree.master(1, "meta://127.0.0.1:8001").await;
    tree.topic("t", 1, 3).await;
    let route = wait_route(&mut routes, CHANGE, "broker 1 added", |r| {
        r.partitions == counts(&[(0, 2), (1, 3)])
    })
    .await;
    assert_eq!(route.brokers[&1], uri("meta://127.0.0.1:8001"));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );

    // Removed: its topics-pub entry goes.
    tree.delete(&tree.paths.topic_pub_broker("t", 1)).await;
    let route = wait_route(&mut routes, CHANGE, "broker 1 removed", |r| {
        !r.brokers.contains_key(&1)
    })
    .await;
    assert_eq!(route.partitions, counts(&[(0, 2)]));
    tree.pub_entry("t", "1-m", &TopicBroker::master(1, 3).to_json())
        .await;
    wait_route(&mut routes, CHANGE, "broker 1 back", |r| {
        r.brokers.len() == 2
    })
    .await;

    // Moved: only the master node's data changes (Java would miss this).
    tree.set(&tree.paths.broker_master(0), "meta://127.0.0.1:9000")
        .await;
    let route = wait_route(&mut routes, CHANGE, "broker 0 moved", |r| {
        r.brokers[&0] == uri("meta://127.0.0.1:9000")
    })
    .await;
    assert_eq!(route.partitions, counts(&[(0, 2), (1, 3)]));

    // Master gone: the broker and its partitions go.
    tree.delete(&tree.paths.broker_master(0)).await;
    let route = wait_route(&mut routes, CHANGE, "broker 0 without master", |r| {
        !r.brokers.contains_key(&0)
    })
    .await;
    assert_eq!(route.partitions, counts(&[(1, 3)]));

    // Master back.
    tree.client
        .create(
            &tree.paths.broker_master(0),
            b"meta://127.0.0.1:9001",
            &EPHEMERAL,
        )
        .await
        .unwrap();
    let route = wait_route(&mut routes, CHANGE, "broker 0 master back", |r| {
        r.brokers.get(&0) == Some(&uri("meta://127.0.0.1:9001"))
    })
    .await;
    assert_eq!(route.partitions, counts(&[(0, 2), (1, 3)]));

    discovery.close().await;
}

#[tokio::test]
async fn malformed_data_is_skipped_or_keeps_previous_values() {
    init_tracing();
    let zk = ZkServer::shared();
    let tree = Tree::new(zk).await;
    for id in 0..=9 {
        tree.master(id, &format!("meta://127.0.0.1:{}", 8000 + id))
            .await;
    }
    tree.topic("t", 0, 2).await;
    tree.pub_entry("t", "1-m", r#"{"numParts":2,"broker":"1-m""#)
        .await; // bad JSON
    tree.pub_entry("t", "2-m", r#"{"numParts":0,"broker":"2-m"}"#)
        .await;
    tree.pub_entry("t", "3-m", r#"{"numParts":100000,"broker":"3-m"}"#)
        .await;
    tree.pub_entry("t", "x-m", r#"{"numParts":1,"broker":"x-m"}"#)
        .await;
    tree.pub_entry("t", "4-s0", r#"{"numParts":1,"broker":"4-s0"}"#)
        .await;
    tree.pub_entry("t", "5-m-x", r#"{"numParts":1,"broker":"5-m-x"}"#)
        .await;
    tree.pub_entry("t", "6-m", r#"{"numParts":1,"broker":"6-m","weight":3}"#)
        .await; // unknown key: accepted
    tree.pub_entry("t", "7-m", r#"{"numParts":"1","broker":"7-m"}"#)
        .await;

    let discovery = connect(tree.settings(zk)).await;
    let mut routes = discovery.watch("t");
    let route = wait_route(&mut routes, CHANGE, "first route", |_| true).await;
    assert_eq!(route.partitions, counts(&[(0, 2), (6, 1)]));
    assert_eq!(route.brokers.keys().copied().collect::<Vec<_>>(), [0, 6]);

    // Broker 0's entry turns malformed in place: its partitions stay. A
    // later good change proves the malformed data was read.
    tree.set(&tree.paths.topic_pub_broker("t", 0), "{\"numParts\":")
        .await;
    tree.pub_entry("t", "8-m", &TopicBroker::master(8, 1).to_json())
        .await;
    let route = wait_route(&mut routes, CHANGE, "broker 8 added", |r| {
        r.brokers.contains_key(&8)
    })
    .await;
    assert_eq!(route.partitions, counts(&[(0, 2), (6, 1), (8, 1)]));

    // Broker 0's master turns malformed: its address stays. A new broker
    // with a malformed master is left out.
    tree.set(&tree.paths.broker_master(0), "not a uri").await;
    tree.set(&tree.paths.broker_master(9), "meta://no-port")
        .await;
    tree.pub_entry("t", "9-m", &TopicBroker::master(9, 1).to_json())
        .await;
    tree.delete(&tree.paths.topic_pub_broker("t", 8)).await;
    let route = wait_route(&mut routes, CHANGE, "broker 8 removed", |r| {
        !r.brokers.contains_key(&8)
    })
    .await;
    assert_eq!(route.brokers[&0], uri("meta://127.0.0.1:8000"));
    assert_eq!(route.partitions, counts(&[(0, 2), (6, 1)]));

    // A blank master means "no master": the broker goes.
    tree.set(&tree.paths.broker_master(6), "").await;
    let route = wait_route(&mut routes, CHANGE, "blank master", |r| {
        !r.brokers.contains_key(&6)
    })
    .await;
    assert_eq!(route.partitions, counts(&[(0, 2)]));

    // Fixed data is taken again.
    tree.set(
        &tree.paths.topic_pub_broker("t", 0),
        &TopicBroker::master(0, 3).to_json(),
    )
    .await;
    tree.set(&tree.paths.broker_master(0), "meta://127.0.0.1:7000")
        .await;
    wait_route(&mut routes, CHANGE, "repaired broker 0", |r| {
        r.brokers[&0] == uri("meta://127.0.0.1:7000") && r.partitions == counts(&[(0, 3)])
    })
    .await;

    // Without a previous route, a malformed broker is simply skipped.
    let read = read_route(&tree.client, &tree.paths, "t", &tree.settings(zk), None)
        .await
        .unwrap();
    assert_eq!(read.brokers.keys().copied().collect::<Vec<_>>(), [0]);
    discovery.close().await;
}

#[tokio::test]
async fn legacy_layout_then_topics_pub() {
    init_tracing();
    let zk = ZkServer::shared();
    let tree = Tree::new(zk).await;
    tree.master(0, "meta://127.0.0.1:8000").await;
    tree.master(1, "meta://127.0.0.1:8001").await;
    tree.legacy_entry("old", "0-m", "3").await;
    tree.legacy_entry("old", "1-m", "1").await;
    tree.legacy_entry("old", "1-s0", "1").await;
    tree.legacy_entry("old", "2-m", "many").await;

    let discovery = connect(tree.settings(zk)).await;
    let mut routes = discovery.watch("old");
    let route = wait_route(&mut routes, CHANGE, "legacy route", |_| true).await;
    assert_eq!(route.source, RouteSource::Legacy);
    assert_eq!(route.partitions, counts(&[(0, 3), (1, 1)]));

    // Legacy changes are followed too.
    tree.delete(&tree.paths.topic_legacy_broker("old", 1)).await;
    wait_route(&mut routes, CHANGE, "legacy broker 1 removed", |r| {
        r.partitions == counts(&[(0, 3)])
    })
    .await;

    // Once topics-pub appears it wins (even while empty: a broker with
    // acceptPublish=false writes only the legacy entry).
    tree.pub_entry("old", "1-m", &TopicBroker::master(1, 2).to_json())
        .await;
    let route = wait_route(&mut routes, CHANGE, "topics-pub route", |r| {
        r.source == RouteSource::TopicsPub && !r.is_empty()
    })
    .await;
    assert_eq!(route.partitions, counts(&[(1, 2)]));
    discovery.close().await;
}

#[tokio::test]
async fn absent_topic_then_a_broker_registers() {
    init_tracing();
    let zk = ZkServer::shared();
    let tree = Tree::new(zk).await;
    let discovery = connect(tree.settings(zk)).await;
    let mut routes = discovery.watch("later");
    let route = wait_route(&mut routes, CHANGE, "empty route", |_| true).await;
    assert!(route.is_empty());
    assert!(route.brokers.is_empty());
    assert_eq!(route.topic, "later");
    // The producer writes nothing (Java would create topics-pub/<topic>).
    assert_eq!(
        tree.client
            .check_stat(&tree.paths.topic_pub("later"))
            .await
            .unwrap(),
        None
    );

    let broker = TestBroker::start(zk, tree.root(), 3, &[("later", 3)]).await;
    // (The broker writes its legacy entry first: a legacy route may show
    // up on the way.)
    let route = wait_route(&mut routes, CHANGE, "broker 3 registered", |r| {
        !r.is_empty() && r.source == RouteSource::TopicsPub
    })
    .await;
    assert_eq!(route.partitions, counts(&[(3, 3)]));
    assert_eq!(route.brokers[&3], broker.uri());
    assert_eq!(route.source, RouteSource::TopicsPub);

    broker.faults().unregister().await.unwrap();
    wait_route(&mut routes, CHANGE, "broker 3 unregistered", |r| {
        r.is_empty()
    })
    .await;
    broker.faults().register().await.unwrap();
    wait_route(&mut routes, CHANGE, "broker 3 registered again", |r| {
        !r.is_empty()
    })
    .await;

    // The broker moves to another port: the new address is seen.
    let moved = broker
        .faults()
        .move_to(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let route = wait_route(&mut routes, CHANGE, "broker 3 moved", |r| {
        r.brokers.get(&3).is_some_and(|u| u.port == moved.port())
    })
    .await;
    assert_eq!(route.partitions, counts(&[(3, 3)]));

    broker.shutdown().await;
    wait_route(&mut routes, CHANGE, "broker 3 shut down", |r| r.is_empty()).await;
    discovery.close().await;
}

#[tokio::test]
async fn recovers_from_session_expiry() {
    init_tracing();
    let zk = ZkServer::shared();
    let tree = Tree::new(zk).await;
    tree.master(0, "meta://127.0.0.1:8000").await;
    tree.topic("t", 0, 2).await;
    let broker = TestBroker::start(zk, tree.root(), 1, &[("t", 1)]).await;
    // A short session: should the expired client sit on a silent
    // connection, it notices within 2/5 of this.
    let settings = tree
        .settings(zk)
        .with_session_timeout(Duration::from_secs(6));
    let discovery = connect(settings).await;
    let mut routes = discovery.watch("t");
    wait_route(&mut routes, CHANGE, "two brokers", |r| r.brokers.len() == 2).await;

    let old = discovery.session_info().expect("a session");
    zk.expire_session(&old).await;
    // The route is kept meanwhile.
    assert_eq!(
        routes.borrow().as_ref().map(|r| r.partitions.len()),
        Some(3)
    );

    // A change made after the expiry is seen, through the new session.
    tree.master(2, "meta://127.0.0.1:8002").await;
    tree.topic("t", 2, 1).await;
    let route = wait_route(
        &mut routes,
        Duration::from_secs(15),
        "broker 2 after expiry",
        |r| r.brokers.contains_key(&2),
    )
    .await;
    assert_eq!(route.partitions, counts(&[(0, 2), (1, 1), (2, 1)]));
    let new = discovery.session_info().expect("a new session");
    assert_ne!(new.id(), old.id());

    // And the new session's watches work.
    broker.faults().unregister().await.unwrap();
    wait_route(&mut routes, CHANGE, "broker 1 gone", |r| {
        !r.brokers.contains_key(&1)
    })
    .await;
    broker.shutdown().await;
    discovery.close().await;
}

#[tokio::test]
async fn keeps_the_route_while_zookeeper_is_down() {
    init_tracing();
    let zk = ZkServer::start().expect("private ZooKeeper starts");
    let tree = Tree::new(&zk).await;
    tree.master(0, "meta://127.0.0.1:8000").await;
    tree.topic("t", 0, 2).await;
    let discovery = connect(
        tree.settings(&zk)
            .with_relist_interval(Duration::from_millis(300)),
    )
    .await;
    let mut routes = discovery.watch("t");
    let before = wait_route(&mut routes, CHANGE, "first route", |_| true).await;
    assert_eq!(before.partitions, counts(&[(0, 2)]));

    zk.stop().unwrap();
    // Re-lists keep failing meanwhile (every 300 ms); the route stays.
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(3) {
        let route = routes.borrow().clone();
        assert_eq!(
            route.as_deref(),
            Some(&*before),
            "route while ZooKeeper is down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    zk.restart().unwrap();

    tree.master(1, "meta://127.0.0.1:8001").await;
    tree.topic("t", 1, 1).await;
    let route = wait_route(
        &mut routes,
        Duration::from_secs(20),
        "change after restart",
        |r| r.brokers.contains_key(&1),
    )
    .await;
    assert_eq!(route.partitions, counts(&[(0, 2), (1, 1)]));
    discovery.close().await;
}

#[tokio::test]
async fn digest_auth_connects() {
    init_tracing();
    let zk = ZkServer::shared();
    let tree = Tree::new(zk).await;
    tree.master(0, "meta://127.0.0.1:8000").await;
    tree.topic("t", 0, 1).await;
    let discovery = connect(tree.settings(zk).with_digest_auth("producer:secret")).await;
    let mut routes = discovery.watch("t");
    let route = wait_route(&mut routes, CHANGE, "route with digest auth", |_| true).await;
    assert_eq!(route.partitions, counts(&[(0, 1)]));
    discovery.close().await;
}

#[tokio::test]
async fn periodic_relists_send_nothing_when_nothing_changed() {
    init_tracing();
    let zk = ZkServer::shared();
    let tree = Tree::new(zk).await;
    tree.master(0, "meta://127.0.0.1:8000").await;
    tree.topic("t", 0, 2).await;
    let settings = tree
        .settings(zk)
        .with_relist_interval(Duration::from_millis(100));
    let discovery = connect(settings).await;
    let mut routes = discovery.watch("t");
    wait_route(&mut routes, CHANGE, "first route", |_| true).await;
    routes.mark_unchanged();
    // About seven re-lists, none of them a change.
    let quiet = tokio::time::timeout(Duration::from_millis(700), routes.changed()).await;
    assert!(quiet.is_err(), "an unchanged route was sent again");
    // A real change still comes through.
    tree.set(&tree.paths.broker_master(0), "meta://127.0.0.1:8100")
        .await;
    wait_route(&mut routes, CHANGE, "moved", |r| r.brokers[&0].port == 8100).await;
    discovery.close().await;
}

#[tokio::test]
async fn shared_watch_and_close() {
    init_tracing();
    let zk = ZkServer::shared();
    let tree = Tree::new(zk).await;
    tree.master(0, "meta://127.0.0.1:8000").await;
    tree.topic("t", 0, 1).await;
    let discovery = connect(tree.settings(zk)).await;
    let mut first = discovery.watch("t");
    let mut second = discovery.clone().watch("t");
    let a = wait_route(&mut first, CHANGE, "first receiver", |_| true).await;
    let b = wait_route(&mut second, CHANGE, "second receiver", |_| true).await;
    assert!(Arc::ptr_eq(&a, &b), "one task, one snapshot");

    tree.master(1, "meta://127.0.0.1:8001").await;
    tree.topic("t", 1, 1).await;
    let a = wait_route(&mut first, CHANGE, "first receiver update", |r| {
        r.brokers.len() == 2
    })
    .await;
    let b = wait_route(&mut second, CHANGE, "second receiver update", |r| {
        r.brokers.len() == 2
    })
    .await;
    assert!(Arc::ptr_eq(&a, &b));

    discovery.close().await;
    for routes in [&mut first, &mut second] {
        tokio::time::timeout(CHANGE, routes.changed())
            .await
            .expect("the sender is dropped at close")
            .expect_err("no more routes after close");
    }
    discovery.close().await; // idempotent
    assert!(discovery.session_info().is_none());
    let mut after = discovery.watch("t");
    assert!(after.borrow().is_none());
    assert!(after.changed().await.is_err());
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_tasks() {
    init_tracing();
    let zk = ZkServer::shared();
    let tree = Tree::new(zk).await;
    let discovery = connect(tree.settings(zk)).await;
    let session = discovery.session_info().unwrap();
    let mut routes = discovery.watch("t");
    wait_route(&mut routes, CHANGE, "empty route", |r| r.is_empty()).await;
    let clone = discovery.clone();
    drop(discovery);
    assert!(clone.session_info().is_some(), "a clone keeps it running");
    drop(clone);
    tokio::time::timeout(CHANGE, routes.changed())
        .await
        .expect("the task ends when the last handle is dropped")
        .expect_err("no more routes");

    // The session was closed, not left to expire: resuming it fails. (A
    // probe that gets in first is detached, so it does not close it itself;
    // the session timeout is 30 s, far beyond this loop.)
    let deadline = Instant::now() + Duration::from_secs(10);
    let connect = zk.connect_string();
    loop {
        let resumed = Client::connector()
            .with_session(session.clone())
            .with_detached()
            .connect(&connect);
        match tokio::time::timeout(Duration::from_secs(5), resumed).await {
            Ok(Err(zookeeper_client::Error::SessionExpired)) => break,
            other => assert!(
                Instant::now() < deadline,
                "the session is still alive: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn connect_errors() {
    init_tracing();
    let invalid =
        Discovery::connect(ZkSettings::new("127.0.0.1:1").with_digest_auth("nouser")).await;
    assert!(matches!(invalid, Err(Error::Config { .. })), "{invalid:?}");

    // Nothing listens on a port we just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let connect = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let failed = Discovery::connect(
        ZkSettings::new(connect.clone()).with_connect_timeout(Duration::from_millis(500)),
    )
    .await;
    match failed {
        Err(Error::ZooKeeperUnreachable {
            connect: tried,
            cause,
            ..
        }) => {
            assert_eq!(tried, connect);
            assert!(cause.contains("connection refused"), "{cause}");
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));

    // A name that does not resolve, and a server that is not ZooKeeper:
    // each failure says so, within the connect timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let not_zk = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        }
    });
    for (connect, expected) in [
        ("no-such-host.invalid:2181".to_owned(), "name not resolved"),
        (not_zk, "not ZooKeeper"),
    ] {
        let started = Instant::now();
        let failed = Discovery::connect(
            ZkSettings::new(connect.clone()).with_connect_timeout(Duration::from_secs(1)),
        )
        .await;
        match failed {
            Err(Error::ZooKeeperUnreachable { cause, .. }) => {
                assert!(cause.contains(expected), "{connect}: {cause}")
            }
            other => panic!("{connect}: expected a connect error, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(3), "{connect}");
    }

    // An unusable topic name gives a closed channel.
    let zk = ZkServer::shared();
    let discovery = connect_shared(zk).await;
    for topic in ["a/b", "", "a b", ".."] {
        let mut bad = discovery.watch(topic);
        assert!(bad.changed().await.is_err(), "{topic:?}");
    }
    discovery.close().await;
}

async fn connect_shared(zk: &ZkServer) -> Discovery {
    connect(ZkSettings::new(zk.connect_string()).with_root(&unique_root())).await
}

/// What a scoped `fmt` subscriber writes, for counting warnings.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Warning lines that contain `needle`.
    fn warnings(&self, needle: &str) -> usize {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines()
            .filter(|line| line.contains("WARN") && line.contains(needle))
            .count()
    }
}

/// Issue 10's malformed ZooKeeper data, beside a good broker and read again
/// every 100 ms: each bad value is skipped with exactly one warning (not
/// one per reading), and the route keeps the good broker and follows its
/// changes. A child whose broker has no `ids/<id>` node at all is left out
/// quietly (debug level): that is also what a broker registering or
/// leaving looks like for a moment.
#[tokio::test]
async fn each_malformed_value_is_skipped_with_one_warning() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    // This runtime has one thread, the test's: every task logs here.
    let _scoped = tracing::subscriber::set_default(subscriber);

    let zk = ZkServer::shared();
    let tree = Tree::new(zk).await;
    tree.master(10, "meta://127.0.0.1:8010").await;
    tree.topic("t", 10, 2).await;
    let huge = 1_000_000_000u64;
    let nested = format!(
        "{{\"numParts\":{}1{}}}",
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    let bad_entries = [
        (11, format!(r#"{{"numParts":{huge},"broker":"11-m"}}"#)),
        (12, r#"{"numParts":-3,"broker":"12-m"}"#.to_owned()),
        (13, r#"{"numParts":2,"broker":"13-m""#.to_owned()),
        (14, nested),
    ];
    for (id, data) in &bad_entries {
        tree.master(*id, &format!("meta://127.0.0.1:80{id}")).await;
        tree.pub_entry("t", &format!("{id}-m"), data).await;
    }
    tree.master(15, "meta://no-port").await;
    tree.pub_entry("t", "15-m", &TopicBroker::master(15, 1).to_json())
        .await;
    tree.pub_entry("t", "16-m", &TopicBroker::master(16, 1).to_json())
        .await; // no ids/16
    tree.pub_entry("t", "not-a-broker", "{}").await;

    let settings = tree
        .settings(zk)
        .with_relist_interval(Duration::from_millis(100));
    let discovery = connect(settings).await;
    let mut routes = discovery.watch("t");
    let route = wait_route(&mut routes, CHANGE, "first route", |_| true).await;
    assert_eq!(route.partitions, counts(&[(10, 2)]));
    // Ten relists or so.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    tree.set(
        &tree.paths.topic_pub_broker("t", 10),
        &TopicBroker::master(10, 3).to_json(),
    )
    .await;
    let route = wait_route(&mut routes, CHANGE, "broker 10's 3 partitions", |r| {
        r.partitions.len() == 3
    })
    .await;
    assert_eq!(route.partitions, counts(&[(10, 3)]));

    for (id, _) in &bad_entries {
        let path = format!("path={} ", tree.paths.topic_pub_broker("t", *id));
        assert_eq!(captured.warnings(&path), 1, "warnings about {path}");
    }
    let master = format!("path={} ", tree.paths.broker_master(15));
    assert_eq!(captured.warnings(&master), 1, "warnings about {master}");
    assert_eq!(captured.warnings("entry=not-a-broker"), 1);
    assert_eq!(captured.warnings("16-m"), 0);
    assert_eq!(captured.warnings("topics-pub/t/10-m"), 0);
    discovery.close().await;
}
