//! Why a topic has no route: [`Discovery::describe_topic`] tells a topic no
//! broker serves from a root that does not exist, so that a wrong root and
//! an unserved topic do not read the same.

use std::fmt;

use zookeeper_client::{Client, Error as ZkError};

use super::{read_route, Discovery, TopicRoute};
use crate::protocol::validate_topic;
use crate::Error;

/// Whether a topic is served, and if not, what ZooKeeper holds instead.
///
/// `Display` gives a one-line explanation, meant for people.
///
/// # Examples
///
/// ```
/// use metaq::discovery::TopicPresence;
/// let wrong_root = TopicPresence::RootMissing { topic: "orders".into(), root: "/wrong".into() };
/// assert_eq!(
///     wrong_root.to_string(),
///     "root /wrong does not exist in ZooKeeper (topic \"orders\" was looked for under it)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicPresence {
    /// At least one live broker serves it: its route, as just read.
    Served(TopicRoute),
    /// The root exists, but no live broker serves the topic.
    Unserved {
        /// The topic.
        topic: String,
        /// The (normalised) root searched.
        root: String,
        /// The topic's node looked at: `topics-pub/<topic>`, or the legacy
        /// `topics/<topic>` when only that one exists.
        path: String,
        /// Whether that node exists: a broker registered the topic once,
        /// and every broker of it has left or lost its address since.
        node_exists: bool,
    },
    /// The root itself does not exist, which usually means a wrong root
    /// (or a chroot in the connect string that is not MetaQ's).
    RootMissing {
        /// The topic.
        topic: String,
        /// The (normalised) root searched.
        root: String,
    },
}

impl fmt::Display for TopicPresence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicPresence::Served(route) => write!(
                f,
                "topic {:?} is served by {} broker(s) with {} partition(s)",
                route.topic,
                route.brokers.len(),
                route.partitions.len()
            ),
            TopicPresence::Unserved {
                topic,
                root,
                path,
                node_exists: false,
            } => write!(
                f,
                "topic {topic:?} is not served: no broker under {path} (root {root} exists)"
            ),
            TopicPresence::Unserved {
                topic,
                root,
                path,
                node_exists: true,
            } => write!(
                f,
                "topic {topic:?} is not served: {path} exists but lists no live broker (root {root} exists)"
            ),
            TopicPresence::RootMissing { topic, root } => write!(
                f,
                "root {root} does not exist in ZooKeeper (topic {topic:?} was looked for under it)"
            ),
        }
    }
}

impl Discovery {
    /// Reads once (no watch) whether `topic` is served and, when it is not,
    /// why: its node is missing or empty under an existing root, or the
    /// root itself is missing.
    ///
    /// While the session is being re-opened it waits for the new one, at
    /// most [`connect_timeout`](super::ZkSettings::connect_timeout).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] for a topic that cannot be a node name;
    /// [`Error::Closed`] after [`close`](Self::close);
    /// [`Error::ZooKeeperUnreachable`] when no session came back in time;
    /// [`Error::ZooKeeper`] when a read failed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), metaq::Error> {
    /// use metaq::discovery::{Discovery, TopicPresence, ZkSettings};
    /// let discovery = Discovery::connect(ZkSettings::new("127.0.0.1:2181")).await?;
    /// match discovery.describe_topic("orders").await? {
    ///     TopicPresence::Served(route) => println!("{} partitions", route.partitions.len()),
    ///     why_not => eprintln!("{why_not}"),
    /// }
    /// discovery.close().await;
    /// # Ok(()) }
    /// ```
    pub async fn describe_topic(&self, topic: &str) -> Result<TopicPresence, Error> {
        validate_topic(topic).map_err(|e| Error::invalid(topic, e))?;
        let client = self.client_for_reads().await?;
        let paths = self.paths();
        let route = read_route(&client, paths, topic, self.settings(), None)
            .await
            .map_err(|source| read_failed("list", &paths.topic_pub(topic), source))?;
        if !route.partitions.is_empty() {
            return Ok(TopicPresence::Served(route));
        }
        let root = paths.root().to_owned();
        // Checked after the topic: a root that vanished in between reads as
        // missing, which is what it now is.
        if !exists(&client, &root).await? {
            return Ok(TopicPresence::RootMissing {
                topic: topic.to_owned(),
                root,
            });
        }
        let pub_path = paths.topic_pub(topic);
        let legacy_path = paths.topic_legacy(topic);
        let (path, node_exists) = if exists(&client, &pub_path).await? {
            (pub_path, true)
        } else if exists(&client, &legacy_path).await? {
            (legacy_path, true)
        } else {
            (pub_path, false)
        };
        Ok(TopicPresence::Unserved {
            topic: topic.to_owned(),
            root,
            path,
            node_exists,
        })
    }
}

async fn exists(client: &Client, path: &str) -> Result<bool, Error> {
    client
        .check_stat(path)
        .await
        .map(|stat| stat.is_some())
        .map_err(|source| read_failed("exists", path, source))
}

fn read_failed(operation: &'static str, path: &str, source: ZkError) -> Error {
    Error::ZooKeeper {
        operation,
        path: path.to_owned(),
        source,
    }
}
