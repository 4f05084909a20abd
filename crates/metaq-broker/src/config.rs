//! Settings of the development broker.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::store::FlushPolicy;
use metaq::discovery::normalize_root;
use metaq::protocol::{validate_topic, DEFAULT_MAX_BODY};

/// A topic the broker accepts, with its partition count.
///
/// The name may contain `*`, matching any run of characters, as in a MetaQ
/// `[topic=…]` section; such a topic is registered in ZooKeeper under the
/// concrete name on its first put. (MetaQ also lets `.` match any character
/// because it builds a regex; here `.` matches only itself.)
///
/// ```
/// use metaq_broker::TopicConfig;
/// let t: TopicConfig = "orders:4".parse().unwrap();
/// assert_eq!((t.name.as_str(), t.partitions), ("orders", 4));
/// assert!(TopicConfig::new("log-*", 2).matches("log-app"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    /// Topic name or `*` pattern.
    pub name: String,
    /// Number of partitions (at least 1).
    pub partitions: u32,
}

impl TopicConfig {
    /// A topic with `partitions` partitions.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq_broker::TopicConfig;
    /// let topic = TopicConfig::new("orders", 4);
    /// assert_eq!(topic, "orders:4".parse().unwrap());
    /// ```
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        Self {
            name: name.into(),
            partitions,
        }
    }

    /// Whether the name contains a `*` wildcard.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq_broker::TopicConfig;
    /// assert!(TopicConfig::new("log-*", 2).is_pattern());
    /// assert!(!TopicConfig::new("orders", 4).is_pattern());
    /// ```
    pub fn is_pattern(&self) -> bool {
        self.name.contains('*')
    }

    /// Whether `topic` is this topic or matches this pattern.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq_broker::TopicConfig;
    /// let pattern = TopicConfig::new("log-*", 2);
    /// assert!(pattern.matches("log-app"));
    /// assert!(!pattern.matches("orders"));
    /// assert!(TopicConfig::new("orders", 4).matches("orders"));
    /// ```
    pub fn matches(&self, topic: &str) -> bool {
        glob_match(self.name.as_bytes(), topic.as_bytes())
    }
}

/// `*`-only glob matching, iterative with one backtrack point.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Why a `NAME:PARTITIONS` topic spec was refused.
///
/// # Examples
///
/// ```
/// use metaq_broker::TopicConfig;
/// let err = "orders:0".parse::<TopicConfig>().unwrap_err();
/// assert_eq!(err.spec, "orders:0");
/// assert_eq!(err.reason, "partition count must be 1 to 1024");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid topic spec {spec:?}: {reason} (expected NAME:PARTITIONS, e.g. orders:4)")]
pub struct InvalidTopicSpec {
    /// The text given.
    pub spec: String,
    /// What is wrong.
    pub reason: String,
}

impl FromStr for TopicConfig {
    type Err = InvalidTopicSpec;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| InvalidTopicSpec {
            spec: spec.to_owned(),
            reason,
        };
        let (name, parts) = spec
            .rsplit_once(':')
            .ok_or_else(|| bad("missing ':'".into()))?;
        validate_topic(name).map_err(|e| bad(e.to_string()))?;
        let partitions: u32 = parts
            .parse()
            .map_err(|_| bad("partition count is not a number".into()))?;
        if !(1..=1024).contains(&partitions) {
            return Err(bad("partition count must be 1 to 1024".into()));
        }
        Ok(Self::new(name, partitions))
    }
}

/// Everything the development broker needs to run.
///
/// Built with [`BrokerConfig::new`] and adjusted with the `with_*` methods;
/// every default is documented on its method.
///
/// ```
/// use metaq_broker::{BrokerConfig, TopicConfig};
/// let config = BrokerConfig::new(0, "127.0.0.1:2181", "/tmp/metaq-data")
///     .with_topic(TopicConfig::new("test", 4))
///     .with_root("/meta");
/// assert_eq!(config.listen.port(), 8123);
/// ```
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Broker id, 0 to 1023 (it is the worker id of message ids).
    pub id: u32,
    /// Address to listen on. Default `127.0.0.1:8123`; port 0 picks a free one.
    pub listen: SocketAddr,
    /// ZooKeeper connect string (`host:port[,host:port…][/chroot]`).
    pub zk_connect: String,
    /// MetaQ root in ZooKeeper, normalised. Default `/meta`.
    pub root: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Topics accepted.
    pub topics: Vec<TopicConfig>,
    /// Host written in the broker URI. Default: the listen address's IP.
    pub host_name: Option<String>,
    /// Port written in the broker URI (and reported as `port` by
    /// `stats`). Default: the port the broker listens on.
    pub advertised_port: Option<u16>,
    /// Largest message body accepted; larger puts get a 500. Default 2 MiB.
    pub max_message_size: usize,
    /// When appended records reach the disk. Default [`FlushPolicy::Group`].
    pub flush: FlushPolicy,
    /// Size at which a new segment file starts. Default 1 GiB.
    pub max_segment_size: u64,
    /// ZooKeeper session timeout. Default 30 s (MetaQ's).
    pub zk_session_timeout: Duration,
    /// Upper bound on opening a ZooKeeper session (at start and after an
    /// expiry). Default 10 s.
    pub zk_connect_timeout: Duration,
    /// Upper bound of a transaction timeout. Default 60 s (MetaQ's).
    pub max_tx_timeout: Duration,
    /// Pause between leaving ZooKeeper and closing connections at shutdown,
    /// so producers see the broker go before its socket does. Default 0
    /// (MetaQ sleeps 5 s).
    pub shutdown_grace: Duration,
}

impl BrokerConfig {
    /// A configuration with every default and no topics.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq_broker::{BrokerConfig, FlushPolicy};
    /// let config = BrokerConfig::new(0, "127.0.0.1:2181", "/tmp/metaq-0");
    /// assert_eq!(config.root, "/meta");
    /// assert_eq!(config.flush, FlushPolicy::Group);
    /// assert!(config.topics.is_empty());
    /// ```
    pub fn new(id: u32, zk_connect: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            id,
            listen: SocketAddr::from(([127, 0, 0, 1], 8123)),
            zk_connect: zk_connect.into(),
            root: metaq::discovery::DEFAULT_ROOT.to_owned(),
            data_dir: data_dir.into(),
            topics: Vec::new(),
            host_name: None,
            advertised_port: None,
            max_message_size: DEFAULT_MAX_BODY,
            flush: FlushPolicy::Group,
            max_segment_size: 1 << 30,
            zk_session_timeout: Duration::from_secs(30),
            zk_connect_timeout: Duration::from_secs(10),
            max_tx_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::ZERO,
        }
    }

    /// Sets the listen address (default `127.0.0.1:8123`).
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq_broker::BrokerConfig;
    /// // Port 0: the broker picks a free port, see `Broker::local_addr`.
    /// let config = BrokerConfig::new(0, "127.0.0.1:2181", "/tmp/metaq-0")
    ///     .with_listen("0.0.0.0:0".parse().unwrap());
    /// assert_eq!(config.listen.port(), 0);
    /// ```
    pub fn with_listen(mut self, listen: SocketAddr) -> Self {
        self.listen = listen;
        self
    }

    /// Sets the MetaQ root (default `/meta`); it is normalised.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq_broker::BrokerConfig;
    /// let config = BrokerConfig::new(0, "127.0.0.1:2181", "/tmp/metaq-0")
    ///     .with_root("test/meta/");
    /// assert_eq!(config.root, "/test/meta");
    /// ```
    pub fn with_root(mut self, root: &str) -> Self {
        self.root = normalize_root(root);
        self
    }

    /// Adds an accepted topic.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq_broker::{BrokerConfig, TopicConfig};
    /// let config = BrokerConfig::new(0, "127.0.0.1:2181", "/tmp/metaq-0")
    ///     .with_topic(TopicConfig::new("orders", 4))
    ///     .with_topic("log-*:2".parse().unwrap());
    /// assert_eq!(config.topics.len(), 2);
    /// ```
    pub fn with_topic(mut self, topic: TopicConfig) -> Self {
        self.topics.push(topic);
        self
    }

    /// Sets the host written in the broker URI (default: the listen IP).
    /// Needed when producers reach the broker by another address than the
    /// one it listens on.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq_broker::BrokerConfig;
    /// let config = BrokerConfig::new(0, "127.0.0.1:2181", "/tmp/metaq-0")
    ///     .with_listen("0.0.0.0:8123".parse().unwrap())
    ///     .with_host_name("broker0.example.com");
    /// assert_eq!(config.host_name.as_deref(), Some("broker0.example.com"));
    /// ```
    pub fn with_host_name(mut self, host: impl Into<String>) -> Self {
        self.host_name = Some(host.into());
        self
    }

    /// Sets the port written in the broker URI (default: the port the
    /// broker listens on, the actual one when it listens on port 0). With
    /// [`with_host_name`](Self::with_host_name), producers reach the broker
    /// through another address than the one it listens on: a port forward,
    /// a NAT, or a test's proxy in front of it. The broker does not check
    /// that anything answers there.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq_broker::BrokerConfig;
    /// // Listens on 8123; producers connect to the forwarder on 9123.
    /// let config = BrokerConfig::new(0, "127.0.0.1:2181", "/tmp/metaq-0")
    ///     .with_listen("127.0.0.1:8123".parse().unwrap())
    ///     .with_host_name("gateway.example.com")
    ///     .with_advertised_port(9123);
    /// assert_eq!(config.advertised_port, Some(9123));
    /// ```
    pub fn with_advertised_port(mut self, port: u16) -> Self {
        self.advertised_port = Some(port);
        self
    }

    /// Sets the largest accepted body (default 2 MiB).
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq_broker::BrokerConfig;
    /// let config = BrokerConfig::new(0, "127.0.0.1:2181", "/tmp/metaq-0")
    ///     .with_max_message_size(1024);
    /// assert_eq!(config.max_message_size, 1024);
    /// ```
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets the flush policy (default group commit).
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq_broker::{BrokerConfig, FlushPolicy};
    /// // Faster, but an acknowledged message may be lost in a crash.
    /// let config = BrokerConfig::new(0, "127.0.0.1:2181", "/tmp/metaq-0")
    ///     .with_flush(FlushPolicy::Os);
    /// assert_eq!(config.flush, FlushPolicy::Os);
    /// ```
    pub fn with_flush(mut self, flush: FlushPolicy) -> Self {
        self.flush = flush;
        self
    }

    /// Sets the segment size (default 1 GiB).
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq_broker::BrokerConfig;
    /// // Small segments let a test see the log roll over quickly.
    /// let config = BrokerConfig::new(0, "127.0.0.1:2181", "/tmp/metaq-0")
    ///     .with_max_segment_size(4096);
    /// assert_eq!(config.max_segment_size, 4096);
    /// ```
    pub fn with_max_segment_size(mut self, bytes: u64) -> Self {
        self.max_segment_size = bytes;
        self
    }

    /// Sets the ZooKeeper session timeout (default 30 s).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use metaq_broker::BrokerConfig;
    /// // A short session makes a killed broker vanish from ZooKeeper sooner.
    /// let config = BrokerConfig::new(0, "127.0.0.1:2181", "/tmp/metaq-0")
    ///     .with_zk_session_timeout(Duration::from_secs(4));
    /// assert_eq!(config.zk_session_timeout, Duration::from_secs(4));
    /// ```
    pub fn with_zk_session_timeout(mut self, timeout: Duration) -> Self {
        self.zk_session_timeout = timeout;
        self
    }

    /// Sets the bound on opening a ZooKeeper session (default 10 s).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use metaq_broker::BrokerConfig;
    /// // Give up sooner on an unreachable ensemble.
    /// let config = BrokerConfig::new(0, "127.0.0.1:2181", "/tmp/metaq-0")
    ///     .with_zk_connect_timeout(Duration::from_secs(2));
    /// assert_eq!(config.zk_connect_timeout, Duration::from_secs(2));
    /// ```
    pub fn with_zk_connect_timeout(mut self, timeout: Duration) -> Self {
        self.zk_connect_timeout = timeout;
        self
    }

    /// Sets the pause between leaving ZooKeeper and closing sockets (default 0).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use metaq_broker::BrokerConfig;
    /// // MetaQ's own pause, so producers move away before the socket closes.
    /// let config = BrokerConfig::new(0, "127.0.0.1:2181", "/tmp/metaq-0")
    ///     .with_shutdown_grace(Duration::from_secs(5));
    /// assert_eq!(config.shutdown_grace, Duration::from_secs(5));
    /// ```
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// The first topic entry that accepts `topic`, exact names before patterns.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq_broker::{BrokerConfig, TopicConfig};
    /// let config = BrokerConfig::new(0, "127.0.0.1:2181", "/tmp/metaq-0")
    ///     .with_topic(TopicConfig::new("log-*", 2))
    ///     .with_topic(TopicConfig::new("log-app", 8));
    /// assert_eq!(config.topic("log-app").unwrap().partitions, 8);
    /// assert_eq!(config.topic("log-web").unwrap().partitions, 2);
    /// assert!(config.topic("orders").is_none());
    /// ```
    pub fn topic(&self, topic: &str) -> Option<&TopicConfig> {
        self.topics
            .iter()
            .find(|t| !t.is_pattern() && t.name == topic)
            .or_else(|| self.topics.iter().find(|t| t.matches(topic)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"a*c", b"abbbc"));
        assert!(!glob_match(b"a*c", b"abbb"));
        assert!(glob_match(b"*-*", b"x-y"));
        assert!(!glob_match(b"abc", b"abd"));
    }

    #[test]
    fn topic_specs() {
        assert!("t:0".parse::<TopicConfig>().is_err());
        assert!("t".parse::<TopicConfig>().is_err());
        assert!("a b:1".parse::<TopicConfig>().is_err());
        assert_eq!("a:b:2".parse::<TopicConfig>().unwrap().name, "a:b");
    }
}
