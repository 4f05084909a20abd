//! Configuring a [`Producer`].

use std::sync::Arc;
use std::time::Duration;

use super::selector::{PartitionSelector, RoundRobin};
use super::slow_brokers::SlowBrokers;
use super::Producer;
use crate::cluster::BrokerUri;
use crate::discovery::{normalize_root, ZkSettings};
use crate::error::{Error, Result};
use crate::protocol::{validate_topic, DEFAULT_MAX_BODY};

/// Settings of a producer, filled by [`ProducerBuilder`].
#[derive(Debug, Clone)]
pub(crate) struct ProducerConfig {
    pub(crate) zk: ZkSettings,
    pub(crate) send_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) selector: Arc<dyn PartitionSelector>,
    pub(crate) retries: u32,
    pub(crate) max_in_flight: usize,
    pub(crate) max_message_size: usize,
    pub(crate) default_topic: Option<String>,
    pub(crate) publish_timeout: Duration,
    pub(crate) avoid_period: Duration,
    pub(crate) transaction_timeout: Option<Duration>,
    pub(crate) transaction_request_timeout: Duration,
    /// `None`: strict round-robin over usable brokers.
    pub(crate) slow_brokers: Option<SlowBrokers>,
    pub(crate) dedupe_ids: bool,
    /// A fixed broker instead of ZooKeeper (`ProducerBuilder::for_server`).
    pub(crate) server: Option<BrokerUri>,
}

/// Builds a [`Producer`]. Every setter states its default.
///
/// ```no_run
/// # async fn demo() -> metaq::Result<()> {
/// use std::time::Duration;
/// use metaq::Producer;
/// let producer = Producer::builder("127.0.0.1:2181")
///     .root("/meta")
///     .send_timeout(Duration::from_secs(3))
///     .retries(2)
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ProducerBuilder {
    config: ProducerConfig,
    /// The address given to `for_server`, parsed by `build`.
    server: Option<String>,
}

impl ProducerBuilder {
    /// A builder for the ensemble `zk_connect` (`host:port[,host:port…][/chroot]`).
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::ProducerBuilder;
    /// // Nothing is contacted until `build`.
    /// let builder = ProducerBuilder::new("zk1:2181,zk2:2181/prod");
    /// ```
    pub fn new(zk_connect: impl Into<String>) -> Self {
        Self {
            config: ProducerConfig {
                zk: ZkSettings::new(zk_connect),
                send_timeout: Duration::from_secs(3),
                connect_timeout: Duration::from_secs(10),
                heartbeat_interval: Duration::from_secs(10),
                heartbeat_timeout: Duration::from_secs(5),
                selector: Arc::new(RoundRobin),
                retries: 2,
                max_in_flight: 10_000,
                max_message_size: DEFAULT_MAX_BODY,
                default_topic: None,
                publish_timeout: Duration::from_secs(10),
                avoid_period: Duration::from_secs(5),
                transaction_timeout: None,
                transaction_request_timeout: Duration::from_secs(5),
                slow_brokers: Some(SlowBrokers::default()),
                dedupe_ids: false,
                server: None,
            },
            server: None,
        }
    }

    /// A builder for a producer without ZooKeeper, whose every topic is
    /// served by the one broker at `uri` (`meta://host:port`), as the Java
    /// client's `serverUrl` setting.
    ///
    /// * No ZooKeeper session is opened; the ZooKeeper settings (`root`,
    ///   `zk_session_timeout`, `zk_digest_auth`, `relist_interval`) are
    ///   ignored.
    /// * Every put names partition `-1`: the broker chooses one of the
    ///   topic's partitions, and [`SendResult::partition`] is the index it
    ///   answered (broker id 0: the broker's id is not known without
    ///   ZooKeeper). The selector is not asked, so a key does not choose a
    ///   partition either (as in Java); a keyed send is still attempted
    ///   once and fails at once when the connection is down.
    /// * A transaction's puts go to partition 0 of the broker, since the
    ///   broker refuses `-1` in a transaction (Java's fail).
    /// * [`Producer::publish`] returns once the first connection attempt
    ///   ended, connected or not (at most `connect_timeout`); a broker
    ///   that is down makes sends fail as usual (`NotSent` after waiting
    ///   for it within the send timeout), and they succeed again once it
    ///   is back.
    /// * [`Producer::partitions`] lists [`BROKER_CHOOSES`] alone,
    ///   [`Producer::health`] the one broker (id 0);
    ///   [`Producer::route_events`] never tells anything (the route never
    ///   changes); [`Producer::zk_session_info`] is `None`.
    ///
    /// The address is checked by [`build`](Self::build): an invalid one is
    /// [`Error::Config`].
    ///
    /// [`SendResult::partition`]: crate::SendResult::partition
    /// [`BROKER_CHOOSES`]: super::BROKER_CHOOSES
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), metaq::Error> {
    /// use metaq::{Message, ProducerBuilder};
    /// let producer = ProducerBuilder::for_server("meta://127.0.0.1:8123").build().await?;
    /// let sent = producer.send(Message::new("orders", "hello")).await?;
    /// println!("the broker chose partition {}", sent.partition.index);
    /// # Ok(()) }
    /// ```
    ///
    /// An address that is not `meta://host:port` is refused by `build`:
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use metaq::{Error, ProducerBuilder};
    /// let result = ProducerBuilder::for_server("127.0.0.1:8123").build().await;
    /// assert!(matches!(result, Err(Error::Config { .. })));
    /// # });
    /// ```
    pub fn for_server(uri: impl Into<String>) -> Self {
        Self {
            server: Some(uri.into()),
            ..Self::new("")
        }
    }

    /// MetaQ root in ZooKeeper. Default `/meta`; normalised (`meta/` → `/meta`).
    ///
    /// # Examples
    ///
    /// ```
    /// # use metaq::ProducerBuilder;
    /// let builder = ProducerBuilder::new("127.0.0.1:2181").root("prod/meta/"); // `/prod/meta`
    /// ```
    pub fn root(mut self, root: &str) -> Self {
        self.config.zk.root = normalize_root(root);
        self
    }

    /// ZooKeeper session timeout. Default 30 s.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use metaq::ProducerBuilder;
    /// let builder = ProducerBuilder::new("127.0.0.1:2181").zk_session_timeout(Duration::from_secs(10));
    /// ```
    pub fn zk_session_timeout(mut self, timeout: Duration) -> Self {
        self.config.zk.session_timeout = timeout;
        self
    }

    /// ZooKeeper digest credentials, `user:password`. Default none.
    ///
    /// # Examples
    ///
    /// ```
    /// # use metaq::ProducerBuilder;
    /// let builder = ProducerBuilder::new("127.0.0.1:2181").zk_digest_auth("producer:secret");
    /// ```
    pub fn zk_digest_auth(mut self, user_password: impl Into<String>) -> Self {
        self.config.zk.digest_auth = Some(user_password.into());
        self
    }

    /// How often every topic is listed again even without a ZooKeeper event
    /// (a safety net). Default 30 s.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use metaq::ProducerBuilder;
    /// let builder = ProducerBuilder::new("127.0.0.1:2181").relist_interval(Duration::from_secs(60));
    /// ```
    pub fn relist_interval(mut self, interval: Duration) -> Self {
        self.config.zk.relist_interval = interval;
        self
    }

    /// Time a send may take, retries included. Default 3 s (MetaQ's).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use metaq::ProducerBuilder;
    /// let builder = ProducerBuilder::new("127.0.0.1:2181").send_timeout(Duration::from_millis(500));
    /// ```
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.config.send_timeout = timeout;
        self
    }

    /// Bound on opening a TCP connection, on the first ZooKeeper session,
    /// and on waiting for a new broker's connection. Default 10 s.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use metaq::ProducerBuilder;
    /// let builder = ProducerBuilder::new("127.0.0.1:2181").connect_timeout(Duration::from_secs(2));
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self.config.zk.connect_timeout = timeout;
        self
    }

    /// Time without anything received from the broker after which a
    /// connection sends a `version` heartbeat (so a broker that takes
    /// requests but stops answering is found even while requests are being
    /// written). Default 10 s; the answer must come within 5 s or the
    /// connection is dropped and reopened.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use metaq::ProducerBuilder;
    /// let builder = ProducerBuilder::new("127.0.0.1:2181").heartbeat_interval(Duration::from_secs(30));
    /// ```
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.config.heartbeat_interval = interval;
        self
    }

    /// How partitions are chosen. Default [`RoundRobin`].
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::producer::KeyHash;
    /// # use metaq::ProducerBuilder;
    /// // Same key, same partition: per-key order is kept.
    /// let builder = ProducerBuilder::new("127.0.0.1:2181").selector(KeyHash);
    /// ```
    pub fn selector(mut self, selector: impl PartitionSelector) -> Self {
        self.config.selector = Arc::new(selector);
        self
    }

    /// Extra attempts for a send without a key that failed as not sent or
    /// maybe sent, each on another broker when there is one. Default 2.
    /// Retries make delivery at-least-once: a "maybe sent" message retried
    /// elsewhere may be stored twice.
    ///
    /// # Examples
    ///
    /// ```
    /// # use metaq::ProducerBuilder;
    /// // At most once: a failed send is never tried again.
    /// let builder = ProducerBuilder::new("127.0.0.1:2181").retries(0);
    /// ```
    pub fn retries(mut self, retries: u32) -> Self {
        self.config.retries = retries;
        self
    }

    /// Gives a broker whose answers are far slower than the others' less of
    /// the sends without a key, in proportion to its speed (never less than
    /// one in a hundred, so its recovery is noticed, and never more than
    /// that share of the requests waiting, so it cannot hold the caller's
    /// window). `None` turns it off: strict round-robin over the usable
    /// brokers. Default: on, slow meaning 4 times and 50 ms above the
    /// fastest broker's latency ([`SlowBrokers::default`]). Keyed messages
    /// never move; a custom selector sees slow brokers as not usable in its
    /// first try.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use metaq::producer::SlowBrokers;
    /// use metaq::ProducerBuilder;
    /// // Only brokers 10 times and 200 ms slower than the fastest are avoided.
    /// let tolerant = ProducerBuilder::new("127.0.0.1:2181").slow_brokers(Some(SlowBrokers {
    ///     factor: 10.0,
    ///     margin: Duration::from_millis(200),
    /// }));
    /// // Strict round-robin, as the Java client.
    /// let strict = ProducerBuilder::new("127.0.0.1:2181").slow_brokers(None);
    /// ```
    pub fn slow_brokers(mut self, policy: Option<SlowBrokers>) -> Self {
        self.config.slow_brokers = policy;
        self
    }

    /// Gives every message sent without an attribute a unique one,
    /// `metaq-id:<producer session>/<n>` ([`DEDUPE_PREFIX`]), the same on
    /// every retry of that send, so that a consumer can drop the duplicates
    /// at-least-once delivery makes (a retry after a *maybe sent* attempt,
    /// counted in [`ProducerStats::retries_after_maybe_sent`]): keep the ids
    /// seen in the last few minutes and skip a message whose id is among
    /// them. Messages with an attribute of their own are left as they are
    /// (put an id in it yourself). Default off: the attribute is the user's,
    /// and Java consumers read it as a tag.
    ///
    /// [`DEDUPE_PREFIX`]: super::DEDUPE_PREFIX
    /// [`ProducerStats::retries_after_maybe_sent`]: super::ProducerStats::retries_after_maybe_sent
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = metaq::ProducerBuilder::new("127.0.0.1:2181").dedupe_ids(true);
    /// ```
    pub fn dedupe_ids(mut self, on: bool) -> Self {
        self.config.dedupe_ids = on;
        self
    }

    /// Requests awaiting an answer per broker connection before `send`
    /// waits (backpressure). Default 10 000.
    ///
    /// # Examples
    ///
    /// ```
    /// # use metaq::ProducerBuilder;
    /// let builder = ProducerBuilder::new("127.0.0.1:2181").max_in_flight(1_000);
    /// ```
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.config.max_in_flight = requests;
        self
    }

    /// Largest body (attribute block plus payload) a send accepts. Default 2 MiB.
    ///
    /// # Examples
    ///
    /// ```
    /// # use metaq::ProducerBuilder;
    /// let builder = ProducerBuilder::new("127.0.0.1:2181").max_message_size(64 * 1024);
    /// ```
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// A topic whose brokers take messages of topics no broker lists yet
    /// (MetaQ's `setDefaultTopic`; the brokers must accept them, e.g. with a
    /// wildcard topic). Default none.
    ///
    /// # Examples
    ///
    /// ```
    /// # use metaq::ProducerBuilder;
    /// let builder = ProducerBuilder::new("127.0.0.1:2181").default_topic("fallback");
    /// ```
    pub fn default_topic(mut self, topic: impl Into<String>) -> Self {
        self.config.default_topic = Some(topic.into());
        self
    }

    /// How long [`Producer::publish`] waits for a topic's brokers. Default 10 s.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use metaq::ProducerBuilder;
    /// let builder = ProducerBuilder::new("127.0.0.1:2181").publish_timeout(Duration::from_secs(30));
    /// ```
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.config.publish_timeout = timeout;
        self
    }

    /// Timeout the broker applies to each transaction, sent with BEGIN in
    /// whole seconds; the broker caps it (60 s on MetaQ) and rolls back a
    /// transaction still open when it passes. Default none.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use metaq::ProducerBuilder;
    /// let builder = ProducerBuilder::new("127.0.0.1:2181").transaction_timeout(Duration::from_secs(20));
    /// ```
    pub fn transaction_timeout(mut self, timeout: Duration) -> Self {
        self.config.transaction_timeout = Some(timeout);
        self
    }

    /// Wait for the answer to BEGIN, COMMIT and ROLLBACK. Default 5 s (MetaQ's).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use metaq::ProducerBuilder;
    /// let builder =
    ///     ProducerBuilder::new("127.0.0.1:2181").transaction_request_timeout(Duration::from_secs(2));
    /// ```
    pub fn transaction_request_timeout(mut self, timeout: Duration) -> Self {
        self.config.transaction_request_timeout = timeout;
        self
    }

    /// Connects to ZooKeeper (bounded by the connect timeout) and returns
    /// the producer; a builder made by [`for_server`](Self::for_server)
    /// opens no ZooKeeper session and contacts nothing here (connections
    /// open with the first topic). Publishes the default topic, if any.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for settings that cannot work, such as a
    /// `for_server` address that is not `meta://host:port` (checked before
    /// anything is contacted); [`Error::ZooKeeper`] if no session opened
    /// within the connect timeout; [`Error::TopicUnavailable`] if the
    /// default topic was not listed within the publish timeout.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), metaq::Error> {
    /// use metaq::ProducerBuilder;
    /// let producer = ProducerBuilder::new("127.0.0.1:2181").root("/meta").build().await?;
    /// producer.publish("orders").await?;
    /// assert!(!producer.partitions("orders").is_empty());
    /// producer.close().await;
    /// # Ok(()) }
    /// ```
    ///
    /// Settings that cannot work are refused at once:
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use metaq::{Error, ProducerBuilder};
    /// let result = ProducerBuilder::new("127.0.0.1:2181").max_message_size(0).build().await;
    /// assert!(matches!(result, Err(Error::Config { .. })));
    /// # });
    /// ```
    pub async fn build(self) -> Result<Producer> {
        let mut config = self.config;
        if let Some(server) = &self.server {
            let uri = server.parse::<BrokerUri>().map_err(|e| Error::Config {
                reason: format!("server: {e}"),
            })?;
            config.server = Some(uri);
        }
        // Each setting named as its setter is, so the message points at the call.
        let positive = [
            ("send_timeout", !config.send_timeout.is_zero()),
            ("connect_timeout", !config.connect_timeout.is_zero()),
            ("heartbeat_interval", !config.heartbeat_interval.is_zero()),
            ("max_in_flight", config.max_in_flight > 0),
            ("max_message_size", config.max_message_size > 0),
            (
                "transaction_request_timeout",
                !config.transaction_request_timeout.is_zero(),
            ),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, ok)| !ok) {
            return Err(Error::Config {
                reason: format!("{name} must be positive (it is 0)"),
            });
        }
        if let Some(policy) = &config.slow_brokers {
            if policy.factor.is_nan() || policy.factor < 1.0 {
                return Err(Error::Config {
                    reason: format!(
                        "slow_brokers factor must be at least 1 (it is {})",
                        policy.factor
                    ),
                });
            }
        }
        if let Some(topic) = &config.default_topic {
            validate_topic(topic).map_err(|e| Error::Config {
                reason: format!("default topic: {e}"),
            })?;
        }
        Producer::connect(config).await
    }
}
