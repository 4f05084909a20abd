//! `Discovery::describe_topic` against a real ZooKeeper: a served topic, a
//! topic whose node is missing or lists no live broker under an existing
//! root, a missing root, a legacy-only topic, and bad input.

use metaq::discovery::{Discovery, TopicBroker, TopicPresence, ZkPaths, ZkSettings};
use metaq::Error;
use metaq_testkit::{unique_root, ZkServer};
use zookeeper_client::{Acls, Client, CreateMode, CreateOptions};

const PERSISTENT: CreateOptions<'static> = CreateMode::Persistent.with_acls(Acls::anyone_all());
const EPHEMERAL: CreateOptions<'static> = CreateMode::Ephemeral.with_acls(Acls::anyone_all());

/// A root of its own, a client writing nodes under it, and a discovery
/// reading them.
struct Cluster {
    client: Client,
    paths: ZkPaths,
    discovery: Discovery,
}

impl Cluster {
    /// `create_root`: whether the root node exists (with `brokers/ids`).
    async fn new(create_root: bool) -> Cluster {
        let zk = ZkServer::shared();
        let paths = ZkPaths::new(&unique_root());
        let client = zk.client().await;
        if create_root {
            client
                .mkdir(&paths.broker_ids(), &PERSISTENT)
                .await
                .unwrap();
        }
        let settings = ZkSettings::new(zk.connect_string()).with_root(paths.root());
        let discovery = Discovery::connect(settings).await.expect("connects");
        Cluster {
            client,
            paths,
            discovery,
        }
    }

    /// Broker `id`'s ephemeral `master` node with its address.
    async fn master(&self, id: u32) {
        self.client
            .mkdir(&self.paths.broker(id), &PERSISTENT)
            .await
            .unwrap();
        let uri = format!("meta://10.0.0.{id}:8123");
        self.client
            .create(&self.paths.broker_master(id), uri.as_bytes(), &EPHEMERAL)
            .await
            .unwrap();
    }

    /// Broker `id`'s `topics-pub/<topic>/<id>-m` entry.
    async fn pub_entry(&self, topic: &str, id: u32, parts: u32) {
        let dir = self.paths.topic_pub(topic);
        self.client.mkdir(&dir, &PERSISTENT).await.unwrap();
        let json = TopicBroker::master(id, parts).to_json();
        self.client
            .create(
                &self.paths.topic_pub_broker(topic, id),
                json.as_bytes(),
                &EPHEMERAL,
            )
            .await
            .unwrap();
    }

    async fn describe(&self, topic: &str) -> TopicPresence {
        self.discovery
            .describe_topic(topic)
            .await
            .expect("a description")
    }
}

/// A topic with a live broker is served, with the route as read.
#[tokio::test]
async fn a_served_topic_comes_with_its_route() {
    let cluster = Cluster::new(true).await;
    cluster.master(3).await;
    cluster.pub_entry("orders", 3, 2).await;
    match cluster.describe("orders").await {
        TopicPresence::Served(route) => {
            assert_eq!(route.topic, "orders");
            assert_eq!(
                route
                    .partitions
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
                ["3-0", "3-1"]
            );
        }
        other => panic!("expected served, got {other:?}"),
    }
    cluster.discovery.close().await;
}

/// An existing root without the topic's node: unserved, naming the
/// `topics-pub` path searched and saying that the root exists.
#[tokio::test]
async fn a_topic_without_node_under_an_existing_root() {
    let cluster = Cluster::new(true).await;
    let root = cluster.paths.root().to_owned();
    let presence = cluster.describe("nobody").await;
    let path = format!("{root}/brokers/topics-pub/nobody");
    assert_eq!(
        presence,
        TopicPresence::Unserved {
            topic: "nobody".into(),
            root: root.clone(),
            path: path.clone(),
            node_exists: false,
        }
    );
    assert_eq!(
        presence.to_string(),
        format!("topic \"nobody\" is not served: no broker under {path} (root {root} exists)")
    );
    cluster.discovery.close().await;
}

/// The topic's node exists, but its only broker has no `master` node (it
/// is down): unserved, and the text says the node lists no live broker.
#[tokio::test]
async fn a_topic_whose_brokers_are_gone() {
    let cluster = Cluster::new(true).await;
    cluster.pub_entry("orders", 1, 4).await;
    let presence = cluster.describe("orders").await;
    let path = cluster.paths.topic_pub("orders");
    assert!(
        matches!(&presence, TopicPresence::Unserved { path: p, node_exists: true, .. } if *p == path),
        "{presence:?}"
    );
    assert!(
        presence
            .to_string()
            .contains(&format!("{path} exists but lists no live broker")),
        "{presence}"
    );
    cluster.discovery.close().await;
}

/// Only the legacy `topics/<topic>` node exists (an old broker left): that
/// is the path named.
#[tokio::test]
async fn a_legacy_only_topic_names_the_legacy_node() {
    let cluster = Cluster::new(true).await;
    let legacy = cluster.paths.topic_legacy("old");
    cluster.client.mkdir(&legacy, &PERSISTENT).await.unwrap();
    let presence = cluster.describe("old").await;
    assert!(
        matches!(&presence, TopicPresence::Unserved { path, node_exists: true, .. } if *path == legacy),
        "{presence:?}"
    );
    cluster.discovery.close().await;
}

/// A root that does not exist reads differently from an unserved topic.
#[tokio::test]
async fn a_missing_root_is_told_apart() {
    let cluster = Cluster::new(false).await;
    let root = cluster.paths.root().to_owned();
    let presence = cluster.describe("orders").await;
    assert_eq!(
        presence,
        TopicPresence::RootMissing {
            topic: "orders".into(),
            root: root.clone(),
        }
    );
    assert!(
        presence
            .to_string()
            .starts_with(&format!("root {root} does not exist in ZooKeeper")),
        "{presence}"
    );
    cluster.discovery.close().await;
}

/// A topic that cannot be a node name is refused, and a closed discovery
/// says so; neither panics.
#[tokio::test]
async fn bad_topics_and_closed_discovery_are_errors() {
    let cluster = Cluster::new(true).await;
    let invalid = cluster.discovery.describe_topic("my topic").await;
    assert!(
        matches!(&invalid, Err(Error::InvalidMessage { topic, .. }) if topic == "my topic"),
        "{invalid:?}"
    );
    cluster.discovery.close().await;
    let closed = cluster.discovery.describe_topic("orders").await;
    assert!(matches!(closed, Err(Error::Closed)), "{closed:?}");
}
