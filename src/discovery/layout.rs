//! Paths and node data of the MetaQ ZooKeeper layout (docs/protocol.md §1).

use serde::{Deserialize, Serialize};

/// The default root, `/meta`.
///
/// # Examples
///
/// ```
/// use metaq::discovery::{ZkPaths, ZkSettings, DEFAULT_ROOT};
/// assert_eq!(ZkSettings::default().root, DEFAULT_ROOT);
/// assert_eq!(ZkPaths::new(DEFAULT_ROOT).broker_ids(), "/meta/brokers/ids");
/// ```
pub const DEFAULT_ROOT: &str = "/meta";

/// Normalises a root as MetaQ does: a missing leading `/` is added and one
/// trailing `/` is removed, so `meta`, `/meta` and `/meta/` are all `/meta`.
///
/// ```
/// use metaq::discovery::normalize_root;
/// assert_eq!(normalize_root("meta"), "/meta");
/// assert_eq!(normalize_root("/meta/"), "/meta");
/// assert_eq!(normalize_root("/a/b"), "/a/b");
/// ```
pub fn normalize_root(root: &str) -> String {
    let mut root = if root.starts_with('/') {
        root.to_owned()
    } else {
        format!("/{root}")
    };
    if root.ends_with('/') {
        root.pop();
    }
    root
}

/// Every path of the layout, derived from one root.
///
/// ```
/// use metaq::discovery::ZkPaths;
/// let paths = ZkPaths::new("/meta");
/// assert_eq!(paths.broker_master(0), "/meta/brokers/ids/0/master");
/// assert_eq!(paths.topic_pub_broker("test", 0), "/meta/brokers/topics-pub/test/0-m");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkPaths {
    root: String,
}

impl ZkPaths {
    /// Paths under `root`, normalised with [`normalize_root`].
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::discovery::ZkPaths;
    /// assert_eq!(ZkPaths::new("meta/"), ZkPaths::new("/meta"));
    /// assert_eq!(ZkPaths::new("prod/meta").root(), "/prod/meta");
    /// ```
    pub fn new(root: &str) -> Self {
        Self {
            root: normalize_root(root),
        }
    }

    /// The normalised root.
    ///
    /// # Examples
    ///
    /// ```
    /// let paths = metaq::discovery::ZkPaths::new("meta/");
    /// assert_eq!(paths.root(), "/meta");
    /// ```
    pub fn root(&self) -> &str {
        &self.root
    }

    /// `<root>/brokers/ids`
    ///
    /// # Examples
    ///
    /// ```
    /// let paths = metaq::discovery::ZkPaths::new("/meta");
    /// assert_eq!(paths.broker_ids(), "/meta/brokers/ids");
    /// ```
    pub fn broker_ids(&self) -> String {
        format!("{}/brokers/ids", self.root)
    }

    /// `<root>/brokers/ids/<id>`: persistent, data = broker URI (legacy readers).
    ///
    /// # Examples
    ///
    /// ```
    /// let paths = metaq::discovery::ZkPaths::new("/meta");
    /// assert_eq!(paths.broker(3), "/meta/brokers/ids/3");
    /// ```
    pub fn broker(&self, id: u32) -> String {
        format!("{}/brokers/ids/{id}", self.root)
    }

    /// `<root>/brokers/ids/<id>/master`: ephemeral, data = broker URI.
    ///
    /// # Examples
    ///
    /// ```
    /// let paths = metaq::discovery::ZkPaths::new("/meta");
    /// assert_eq!(paths.broker_master(3), "/meta/brokers/ids/3/master");
    /// ```
    pub fn broker_master(&self, id: u32) -> String {
        format!("{}/brokers/ids/{id}/master", self.root)
    }

    /// `<root>/brokers/ids/<id>/master_config_checksum`: ephemeral.
    ///
    /// # Examples
    ///
    /// ```
    /// let paths = metaq::discovery::ZkPaths::new("/meta");
    /// assert_eq!(
    ///     paths.broker_config_checksum(3),
    ///     "/meta/brokers/ids/3/master_config_checksum"
    /// );
    /// ```
    pub fn broker_config_checksum(&self, id: u32) -> String {
        format!("{}/brokers/ids/{id}/master_config_checksum", self.root)
    }

    /// `<root>/brokers/topics/<topic>`: the legacy topic node.
    ///
    /// # Examples
    ///
    /// ```
    /// let paths = metaq::discovery::ZkPaths::new("/meta");
    /// assert_eq!(paths.topic_legacy("orders"), "/meta/brokers/topics/orders");
    /// ```
    pub fn topic_legacy(&self, topic: &str) -> String {
        format!("{}/brokers/topics/{topic}", self.root)
    }

    /// `<root>/brokers/topics-pub/<topic>`: what producers watch.
    ///
    /// # Examples
    ///
    /// ```
    /// let paths = metaq::discovery::ZkPaths::new("/meta");
    /// assert_eq!(paths.topic_pub("orders"), "/meta/brokers/topics-pub/orders");
    /// ```
    pub fn topic_pub(&self, topic: &str) -> String {
        format!("{}/brokers/topics-pub/{topic}", self.root)
    }

    /// `<root>/brokers/topics-sub/<topic>`
    ///
    /// # Examples
    ///
    /// ```
    /// let paths = metaq::discovery::ZkPaths::new("/meta");
    /// assert_eq!(paths.topic_sub("orders"), "/meta/brokers/topics-sub/orders");
    /// ```
    pub fn topic_sub(&self, topic: &str) -> String {
        format!("{}/brokers/topics-sub/{topic}", self.root)
    }

    /// `<root>/brokers/topics/<topic>/<id>-m`: data = partition count as text.
    ///
    /// # Examples
    ///
    /// ```
    /// let paths = metaq::discovery::ZkPaths::new("/meta");
    /// assert_eq!(paths.topic_legacy_broker("orders", 3), "/meta/brokers/topics/orders/3-m");
    /// ```
    pub fn topic_legacy_broker(&self, topic: &str, id: u32) -> String {
        format!("{}/{id}-m", self.topic_legacy(topic))
    }

    /// `<root>/brokers/topics-pub/<topic>/<id>-m`: data = [`TopicBroker`] JSON.
    ///
    /// # Examples
    ///
    /// ```
    /// let paths = metaq::discovery::ZkPaths::new("/meta");
    /// assert_eq!(paths.topic_pub_broker("orders", 3), "/meta/brokers/topics-pub/orders/3-m");
    /// ```
    pub fn topic_pub_broker(&self, topic: &str, id: u32) -> String {
        format!("{}/{id}-m", self.topic_pub(topic))
    }

    /// `<root>/brokers/topics-sub/<topic>/<id>-m`: data = [`TopicBroker`] JSON.
    ///
    /// # Examples
    ///
    /// ```
    /// let paths = metaq::discovery::ZkPaths::new("/meta");
    /// assert_eq!(paths.topic_sub_broker("orders", 3), "/meta/brokers/topics-sub/orders/3-m");
    /// ```
    pub fn topic_sub_broker(&self, topic: &str, id: u32) -> String {
        format!("{}/{id}-m", self.topic_sub(topic))
    }
}

/// Data of a `topics-pub` / `topics-sub` child: exactly the two keys the Java
/// reader accepts.
///
/// ```
/// use metaq::discovery::TopicBroker;
/// let tb = TopicBroker::master(0, 4);
/// assert_eq!(tb.to_json(), r#"{"numParts":4,"broker":"0-m"}"#);
/// let back: TopicBroker = serde_json::from_str(r#"{"broker":"0-m","numParts":4}"#).unwrap();
/// assert_eq!(back, tb);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicBroker {
    /// Partitions of the topic on this broker.
    #[serde(rename = "numParts")]
    pub num_parts: i64,
    /// The child node's own name, `<id>-m` for a master.
    pub broker: String,
}

impl TopicBroker {
    /// The entry of master broker `id` with `num_parts` partitions.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::discovery::TopicBroker;
    /// let entry = TopicBroker::master(3, 4);
    /// assert_eq!(entry.broker, "3-m");
    /// assert_eq!(entry.num_parts, 4);
    /// ```
    pub fn master(id: u32, num_parts: u32) -> Self {
        Self {
            num_parts: num_parts.into(),
            broker: format!("{id}-m"),
        }
    }

    /// Compact JSON, key order `numParts`, `broker` (as Jackson writes it).
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::discovery::TopicBroker;
    /// let json = TopicBroker::master(3, 4).to_json();
    /// assert_eq!(json, r#"{"numParts":4,"broker":"3-m"}"#);
    /// ```
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("two plain fields always serialise")
    }
}
