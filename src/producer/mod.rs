//! The producer: publish topics, send messages, close.
//!
//! ```no_run
//! # async fn demo() -> metaq::Result<()> {
//! use metaq::{Message, Producer};
//! let producer = Producer::builder("127.0.0.1:2181").build().await?;
//! producer.publish("orders").await?;
//! let sent = producer.send(Message::new("orders", "hello")).await?;
//! println!("stored in {} at offset {}", sent.partition, sent.offset);
//! producer.close().await;
//! # Ok(()) }
//! ```
//!
//! # Delivery
//!
//! A send succeeds once the broker answered 200. A send without a key that
//! fails as *not sent* or *maybe sent* is retried on another broker (up to
//! [`ProducerBuilder::retries`] times, all within the send timeout), so
//! delivery is **at least once**: a message whose first answer was lost may
//! be stored twice. Set `retries(0)` for at most once. Keyed messages are
//! never moved to another partition.
//!
//! # Observability
//!
//! [`Producer::stats`] counts what sends came to, with the latency of the
//! successful ones (count, p50, p99, max) and per-broker figures;
//! [`Producer::route_events`] tells every change of a topic's route; and
//! with the `metrics` feature (off by default) sends are reported through
//! the [`metrics`](https://docs.rs/metrics) facade, labelled with `topic`
//! and `broker` (its address): counters `metaq_sent_total`,
//! `metaq_failed_total` (plus `delivery`: `not_sent`, `maybe_sent`,
//! `rejected`, `other`; `broker="none"` when no broker was reached) and
//! `metaq_retries_total` (the broker whose attempt failed), the histogram
//! `metaq_send_latency_seconds` and the gauge `metaq_in_flight` (attempts
//! awaiting an answer).
//!
//! # One broker, without ZooKeeper
//!
//! [`Producer::builder_for_server`] (Java's `serverUrl`) builds a producer
//! whose every topic is served by one broker, with no ZooKeeper session;
//! the broker chooses each put's partition. See
//! [`ProducerBuilder::for_server`] for what changes.
//!
//! # Fire and forget
//!
//! [`Producer::one_way`] makes a [`OneWay`] handle whose `send` queues a
//! message and returns, as Java's async producer: a bounded window, sends
//! made in the background through [`Producer::send_all`], failures counted,
//! logged and handed to a callback. No local spill store.
//!
//! # Where this differs from the Java client
//!
//! * Discovery diffs broker sets instead of closing and reopening every
//!   connection on each change, watches broker addresses too, retries a
//!   failed first lookup instead of caching the failure, and never writes to
//!   ZooKeeper.
//! * Sends are retried on another broker (Java makes exactly one attempt).
//! * Session ids never contain `:` (IPv6 hosts break the Java `TX:` key).

mod broker_stats;
mod builder;
mod fixed;
mod health;
mod in_flight;
mod latency_histogram;
mod one_way;
mod one_way_spill;
mod ordered;
mod ordered_config;
mod partition_send;
mod pinned;
mod route_events;
mod selector;
mod send;
mod send_all;
mod send_metrics;
mod session_id;
mod slow_brokers;
mod stats;
mod store_task;
mod topics;
mod transaction;
mod tx_request;
mod xa;
mod xa_branch;
pub mod xa_code;
mod xa_open;
mod xa_pin;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::debug_span;

pub use crate::protocol::XaTxId;
pub use broker_stats::BrokerStats;
pub use builder::ProducerBuilder;
pub use fixed::BROKER_CHOOSES;
pub use health::BrokerHealth;
pub use latency_histogram::LatencySummary;
pub use one_way::{OneWay, OneWayConfig, OneWayStats, TrySendError, DEFAULT_ONE_WAY_WINDOW};
pub use ordered::{OrderedProducer, OrderedSend, OrderedStats};
pub use ordered_config::{OrderedConfig, DEFAULT_REPLAY_INTERVAL};
pub use route_events::RouteEvent;
pub use selector::{KeyHash, PartitionSelector, Random, RoundRobin, Selection};
pub use send_all::SendAll;
pub use slow_brokers::{SlowBrokers, MIN_SHARE};
pub use stats::ProducerStats;
pub use transaction::Transaction;
pub use xa::{PrepareVote, XaResource};
pub use xa_branch::XaBranch;

use builder::ProducerConfig;
use topics::{spawn_route_task, RouteTaskSettings, TopicState};

use crate::cluster::Partition;
use crate::discovery::Discovery;
use crate::error::{Error, Result};
use crate::net::{ConnectionPool, ConnectionSettings};
use crate::protocol::validate_topic;
use crate::{Message, SendResult};

/// A cheap, cloneable handle to one producer: one ZooKeeper session, one
/// connection per broker, shared by every clone and every topic.
///
/// Background tasks end when [`close`](Self::close) is called or the last
/// handle is dropped.
///
/// # Examples
///
/// ```no_run
/// # async fn example() -> Result<(), metaq::Error> {
/// use metaq::{Error, Producer};
/// let producer = Producer::builder("127.0.0.1:2181").build().await?;
/// let handle = producer.clone(); // e.g. for another task
/// producer.close().await;
/// // Clones share one producer: closing one closes them all.
/// assert!(matches!(handle.publish("orders").await, Err(Error::Closed)));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Producer {
    pub(crate) inner: Arc<ProducerInner>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("root", &self.inner.config.zk.root)
            .field("server", &self.inner.config.server)
            .field("topics", &self.inner.topics.load().len())
            .finish()
    }
}

/// Topic states by name. Looked up by every send: hashed with foldhash,
/// not SipHash, which was a visible part of a send's cost.
type TopicMap = HashMap<String, Arc<TopicState>, foldhash::fast::RandomState>;

pub(crate) struct ProducerInner {
    pub(crate) config: ProducerConfig,
    /// ZooKeeper, or the fixed server's one route.
    discovery: fixed::Routes,
    pool: Arc<ConnectionPool>,
    topics: ArcSwap<TopicMap>,
    /// Serialises the creation of topic states (not taken by sends).
    subscribing: Mutex<()>,
    closed: AtomicBool,
    sends: in_flight::SendTracker,
    stop: CancellationToken,
    /// `<host>-<millis>-<seq>`, the middle part of transaction keys.
    pub(crate) session_id: String,
    /// Last transaction number handed out (the first is 1).
    transactions: std::sync::atomic::AtomicU32,
    pub(crate) counters: stats::Counters,
    /// Last dedupe id handed out (see `ProducerBuilder::dedupe_ids`).
    dedupe_ids: std::sync::atomic::AtomicU64,
    /// Route changes of every topic, for `route_events`.
    route_events: broadcast::Sender<RouteEvent>,
}

impl Drop for ProducerInner {
    fn drop(&mut self) {
        self.stop.cancel();
        self.pool.close_all();
    }
}

impl Producer {
    /// A builder for a producer of the ensemble `zk_connect`.
    ///
    /// The same as [`ProducerBuilder::new`]; see
    /// [`ProducerBuilder::build`] for connecting.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use metaq::Producer;
    /// let builder = Producer::builder("zk1:2181,zk2:2181/prod")
    ///     .root("/meta")
    ///     .send_timeout(Duration::from_secs(1));
    /// ```
    pub fn builder(zk_connect: impl Into<String>) -> ProducerBuilder {
        ProducerBuilder::new(zk_connect)
    }

    /// A builder for a producer without ZooKeeper, whose every topic is
    /// served by the broker at `uri` (`meta://host:port`, Java's
    /// `serverUrl`).
    ///
    /// The same as [`ProducerBuilder::for_server`], which tells what
    /// changes (the broker chooses each put's partition).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), metaq::Error> {
    /// use metaq::{Message, Producer};
    /// let producer = Producer::builder_for_server("meta://127.0.0.1:8123").build().await?;
    /// producer.send(Message::new("orders", "hello")).await?;
    /// assert!(producer.zk_session_info().is_none());
    /// # Ok(()) }
    /// ```
    pub fn builder_for_server(uri: impl Into<String>) -> ProducerBuilder {
        ProducerBuilder::for_server(uri)
    }

    pub(crate) async fn connect(config: ProducerConfig) -> Result<Producer> {
        let discovery = match &config.server {
            Some(server) => fixed::Routes::fixed(server.clone()),
            None => fixed::Routes::ZooKeeper(Discovery::connect(config.zk.clone()).await?),
        };
        let pool = Arc::new(ConnectionPool::new(ConnectionSettings {
            connect_timeout: config.connect_timeout,
            heartbeat_interval: config.heartbeat_interval,
            heartbeat_timeout: config.heartbeat_timeout,
            max_in_flight: config.max_in_flight,
            max_response_body: crate::protocol::DEFAULT_MAX_BODY,
        }));
        let producer = Producer {
            inner: Arc::new(ProducerInner {
                config,
                discovery,
                pool,
                topics: ArcSwap::default(),
                subscribing: Mutex::new(()),
                closed: AtomicBool::new(false),
                sends: in_flight::SendTracker::default(),
                counters: stats::Counters::default(),
                dedupe_ids: std::sync::atomic::AtomicU64::new(0),
                stop: CancellationToken::new(),
                session_id: session_id::new_session_id(),
                transactions: std::sync::atomic::AtomicU32::new(0),
                route_events: broadcast::channel(route_events::CAPACITY).0,
            }),
        };
        send_metrics::describe();
        if let Some(topic) = producer.inner.config.default_topic.clone() {
            let wait = producer.inner.config.publish_timeout;
            producer.inner.ensure_topic(&topic, wait).await?;
        }
        Ok(producer)
    }

    /// Subscribes to `topic` and returns once its brokers are connected, or
    /// with [`Error::TopicUnavailable`] after the publish timeout (the topic
    /// stays watched: a send succeeds as soon as a broker appears).
    /// Idempotent. [`send`](Self::send) publishes by itself; calling this
    /// first moves the wait out of the first send.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), metaq::Error> {
    /// # let producer = metaq::Producer::builder("127.0.0.1:2181").build().await?;
    /// // At start-up: fail early if the topic has no broker.
    /// producer.publish("orders").await?;
    /// assert!(!producer.partitions("orders").is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn publish(&self, topic: &str) -> Result<()> {
        self.inner.check_open()?;
        validate_topic(topic).map_err(|e| Error::invalid(topic, e))?;
        let wait = self.inner.config.publish_timeout;
        let deadline = tokio::time::Instant::now() + wait;
        let state = self.inner.ensure_topic(topic, wait).await?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if state.wait_non_empty(left).await {
            Ok(())
        } else {
            Err(Error::TopicUnavailable {
                topic: topic.to_owned(),
                waited: wait,
                reason: "no broker serves it yet; still watching ZooKeeper".into(),
            })
        }
    }

    /// Sends one message and resolves with where it was stored.
    ///
    /// The request is queued when `send` is called (for a published topic
    /// with room on its connection), so messages to one partition leave in
    /// call order, and awaiting the futures later is fine. Dropping the
    /// future gives up on the answer; a request not yet written is then not
    /// written at all.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), metaq::Error> {
    /// use metaq::{Delivery, Message};
    /// # let producer = metaq::Producer::builder("127.0.0.1:2181").build().await?;
    /// producer.publish("orders").await?;
    /// // Both are queued now, in this order; the answers are awaited later.
    /// let first = producer.send(Message::new("orders", "first"));
    /// let second = producer.send(Message::new("orders", "second"));
    /// let (first, second) = (first.await?, second.await?);
    /// println!("{} at {}, {} at {}", first.partition, first.offset, second.partition, second.offset);
    /// // An invalid message is refused before anything is written.
    /// let refused = producer.send(Message::new("no spaces", "x")).await.unwrap_err();
    /// assert_eq!(refused.delivery(), Some(Delivery::NotSent));
    /// # Ok(()) }
    /// ```
    pub fn send(
        &self,
        message: Message,
    ) -> impl Future<Output = Result<SendResult>> + Send + 'static + use<> {
        let budget = send::Budget {
            start: tokio::time::Instant::now(),
            timeout: self.inner.config.send_timeout,
        };
        self.start_send(message, budget)
    }

    /// [`send`](Self::send) with a timeout of its own instead of the
    /// producer's `send_timeout` (retries included, each attempt a share of
    /// what is left, as for `send`). For the odd message that must not wait
    /// as long as the rest, or may wait longer.
    ///
    /// A zero `timeout` fails at once with [`Error::Config`], nothing sent.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(producer: metaq::Producer) -> Result<(), metaq::Error> {
    /// use std::time::Duration;
    /// use metaq::Message;
    /// let urgent = Message::new("alerts", "disk full");
    /// producer.send_with_timeout(urgent, Duration::from_millis(200)).await?;
    /// # Ok(()) }
    /// ```
    pub fn send_with_timeout(
        &self,
        message: Message,
        timeout: Duration,
    ) -> impl Future<Output = Result<SendResult>> + Send + 'static + use<> {
        let budget = send::Budget {
            start: tokio::time::Instant::now(),
            timeout,
        };
        self.start_send(message, budget)
    }

    /// Sends many messages at once and resolves, when every one has its
    /// outcome, with one result per message in the order given.
    ///
    /// Each message is sent exactly as [`send`](Self::send) would send it
    /// (its own partition choice, retries and timeout), and all are queued
    /// when `send_all` is called, in iteration order. It is cheaper than as
    /// many `send` futures awaited together: one future and one wake-up for
    /// the lot, and answers are read in order rather than each polled on
    /// its own. Dropping the future gives up on every answer not yet read.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), metaq::Error> {
    /// use metaq::Message;
    /// # let producer = metaq::Producer::builder("127.0.0.1:2181").build().await?;
    /// producer.publish("orders").await?;
    /// let batch = (0..100).map(|i| Message::new("orders", format!("order {i}")));
    /// let results = producer.send_all(batch).await;
    /// assert_eq!(results.len(), 100);
    /// let failed = results.iter().filter(|r| r.is_err()).count();
    /// println!("{} stored, {failed} failed", results.len() - failed);
    /// # Ok(()) }
    /// ```
    pub fn send_all<I>(&self, messages: I) -> SendAll
    where
        I: IntoIterator<Item = Message>,
    {
        let budget = send::Budget {
            start: tokio::time::Instant::now(),
            timeout: self.inner.config.send_timeout,
        };
        SendAll::new(
            messages
                .into_iter()
                .map(|message| self.start_send(message, budget)),
        )
    }

    /// A send within `budget` (its start read once for a batch): its first
    /// attempt queued now when possible.
    fn start_send(&self, message: Message, budget: send::Budget) -> send::SendFuture {
        let span = debug_span!("send", topic = %message.topic());
        let message = self.inner.with_dedupe_id(message);
        let token = self.inner.sends.token();
        let early = self
            .inner
            .check_open()
            .and_then(|()| message.validate(self.inner.config.max_message_size))
            .and_then(|()| {
                if budget.timeout.is_zero() {
                    return Err(Error::Config {
                        reason: "a send's timeout must be above zero".to_owned(),
                    });
                }
                Ok(())
            });
        let state = match early {
            Err(e) => {
                self.inner.counters.failed(message.topic(), &e);
                send::SendState::Refused(Some(e))
            }
            Ok(()) => {
                // Queued now, so messages leave in the order of the calls;
                // the first attempt gets its share of the send timeout.
                let share = budget.timeout / send::max_attempts(&self.inner, &message);
                let first =
                    span.in_scope(|| self.inner.try_queue(&message, &[], budget.start, share));
                match first {
                    Ok(in_flight) => send::SendState::First {
                        producer: self.clone(),
                        message,
                        budget,
                        in_flight,
                    },
                    not_yet => send::SendState::driven(
                        self.clone(),
                        message,
                        budget,
                        send::Progress::first(not_yet),
                    ),
                }
            }
        };
        send::SendFuture::new(state, span, token)
    }

    /// Waits until every send in flight has ended (including sends started
    /// meanwhile), as librdkafka's `flush`; the producer stays open. Sends
    /// end by their own timeouts, so a `timeout` above `send_timeout` is
    /// only reached if sends keep coming.
    ///
    /// # Errors
    ///
    /// [`Error::FlushTimeout`] with the sends still in flight when `timeout`
    /// passed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(producer: metaq::Producer) -> Result<(), metaq::Error> {
    /// use std::time::Duration;
    /// use metaq::Message;
    /// for i in 0..100 {
    ///     // Spawned sends: their results are not awaited here.
    ///     tokio::spawn(producer.send(Message::new("orders", format!("order {i}"))));
    /// }
    /// producer.flush(Duration::from_secs(10)).await?;
    /// assert_eq!(producer.in_flight(), 0);
    /// # Ok(()) }
    /// ```
    pub async fn flush(&self, timeout: Duration) -> Result<()> {
        match tokio::time::timeout(timeout, self.inner.sends.idle()).await {
            Ok(()) => Ok(()),
            Err(_elapsed) => Err(Error::FlushTimeout {
                timeout,
                in_flight: self.inner.sends.len(),
            }),
        }
    }

    /// Sends started and not yet ended (`send`, `send_with_timeout` and
    /// the messages of `send_all`; not transactions).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(producer: metaq::Producer) {
    /// let send = producer.send(metaq::Message::new("orders", "one"));
    /// assert_eq!(producer.in_flight(), 1);
    /// drop(send); // a dropped send ends too
    /// assert_eq!(producer.in_flight(), 0);
    /// # }
    /// ```
    pub fn in_flight(&self) -> usize {
        self.inner.sends.len()
    }

    /// What this producer's sends came to so far: successes, failures by
    /// kind, retries, the retries that may have stored a message twice,
    /// the sends in flight, the latency of the sends that succeeded, each
    /// broker's figures and how often routes changed.
    ///
    /// Meant for a dashboard's scrape or a log line every few seconds, not
    /// for every send: it reads a few hundred atomics and looks at every
    /// topic's route (no lock a send takes).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), metaq::Error> {
    /// use metaq::Message;
    /// # let producer = metaq::Producer::builder("127.0.0.1:2181").build().await?;
    /// producer.send(Message::new("orders", "hello")).await?;
    /// let stats = producer.stats();
    /// assert_eq!(stats.sent, 1);
    /// assert_eq!(stats.failed(), 0);
    /// assert_eq!(stats.latency.count, 1);
    /// assert_eq!(stats.brokers.iter().map(|b| b.sent).sum::<u64>(), 1);
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> ProducerStats {
        let inner = &self.inner;
        let mut stats = inner.counters.snapshot(inner.sends.len());
        let topics = inner.topics.load();
        let policy = inner.config.slow_brokers.as_ref();
        let health = topics
            .values()
            .flat_map(|topic| health::of_route(&topic.route.load(), policy));
        stats.brokers = broker_stats::collect(inner.pool.all_tallies(), health);
        stats.route_changes = topics
            .values()
            .map(|topic| topic.changes.load(Ordering::Relaxed))
            .sum();
        stats
    }

    /// Every later change of any topic's route, as it is applied: which
    /// topic, its partitions and brokers before and after (see
    /// [`RouteEvent`]). Each change is also logged (`tracing`, info,
    /// "route changed") and counted in [`ProducerStats::route_changes`].
    ///
    /// A [`broadcast`] receiver rather than a `watch` per topic: every
    /// change is delivered, not only the latest (a broker that left and
    /// came back is two events), for all topics in one receiver. A
    /// receiver more than 256 events behind loses the oldest and is told
    /// how many (`RecvError::Lagged`); the current routes are then in
    /// [`partitions`](Self::partitions) and [`health`](Self::health). The
    /// channel closes (`RecvError::Closed`) when the last handle of the
    /// producer is dropped. A producer built with
    /// [`ProducerBuilder::for_server`] has a route that never changes: it
    /// tells nothing.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(producer: metaq::Producer) {
    /// use tokio::sync::broadcast::error::RecvError;
    /// let mut events = producer.route_events();
    /// tokio::spawn(async move {
    ///     loop {
    ///         match events.recv().await {
    ///             Ok(event) => println!(
    ///                 "{}: {} → {} partitions, joined {:?}",
    ///                 event.topic,
    ///                 event.old_partitions.len(),
    ///                 event.new_partitions.len(),
    ///                 event.joined().collect::<Vec<_>>(),
    ///             ),
    ///             Err(RecvError::Lagged(missed)) => eprintln!("missed {missed} route changes"),
    ///             Err(RecvError::Closed) => break,
    ///         }
    ///     }
    /// });
    /// # }
    /// ```
    pub fn route_events(&self) -> broadcast::Receiver<RouteEvent> {
        self.inner.route_events.subscribe()
    }

    /// The partitions a topic has right now (empty if unknown or unserved).
    ///
    /// Only topics this producer published or sent to are known. A
    /// producer built with [`ProducerBuilder::for_server`] lists
    /// [`BROKER_CHOOSES`] alone: the broker chooses each put's partition.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), metaq::Error> {
    /// # let producer = metaq::Producer::builder("127.0.0.1:2181").build().await?;
    /// producer.publish("orders").await?;
    /// for partition in producer.partitions("orders") {
    ///     println!("orders has partition {partition}");
    /// }
    /// assert!(producer.partitions("never-published").is_empty());
    /// # Ok(()) }
    /// ```
    pub fn partitions(&self, topic: &str) -> Vec<Partition> {
        self.inner
            .topic(topic)
            .map(|t| t.route.load().partitions.clone())
            .unwrap_or_default()
    }

    /// The brokers of a topic as the producer sees them now: connected or
    /// not, avoided after a failure, slow, their latency and requests in
    /// flight, in broker-id order. Empty for a topic this producer has not
    /// published or sent to, or that no broker serves. With
    /// [`ProducerBuilder::for_server`], the one broker, as id 0.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), metaq::Error> {
    /// # let producer = metaq::Producer::builder("127.0.0.1:2181").build().await?;
    /// producer.publish("orders").await?;
    /// let health = producer.health("orders");
    /// let up = health.iter().filter(|b| b.connected).count();
    /// println!("{up} of {} brokers of orders connected", health.len());
    /// # Ok(()) }
    /// ```
    pub fn health(&self, topic: &str) -> Vec<BrokerHealth> {
        self.inner
            .topic(topic)
            .map(|t| health::of_route(&t.route.load(), self.inner.config.slow_brokers.as_ref()))
            .unwrap_or_default()
    }

    /// The producer's current ZooKeeper session (`None` while a new one is
    /// being opened, or after close): its id is what ZooKeeper's server
    /// logs and `cons` command name, to tell this producer's connection
    /// among many.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), metaq::Error> {
    /// # let producer = metaq::Producer::builder("127.0.0.1:2181").build().await?;
    /// let session = producer.zk_session_info().expect("build opened one");
    /// println!("zookeeper session {}", session.id());
    /// producer.close().await;
    /// assert!(producer.zk_session_info().is_none());
    /// # Ok(()) }
    /// ```
    pub fn zk_session_info(&self) -> Option<zookeeper_client::SessionInfo> {
        self.inner.discovery.session_info()
    }

    /// Stops new sends, waits for those in flight (at most the send timeout
    /// plus one second), then closes every connection and the ZooKeeper
    /// session. Idempotent.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), metaq::Error> {
    /// use metaq::{Error, Message};
    /// # let producer = metaq::Producer::builder("127.0.0.1:2181").build().await?;
    /// producer.close().await; // waits for sends in flight
    /// let late = producer.send(Message::new("orders", "too late")).await;
    /// assert!(matches!(late, Err(Error::Closed)));
    /// # Ok(()) }
    /// ```
    pub async fn close(&self) {
        let inner = &self.inner;
        inner.closed.store(true, Ordering::Release);
        let bound = inner.config.send_timeout + Duration::from_secs(1);
        let _ = tokio::time::timeout(bound, inner.sends.idle()).await;
        inner.stop.cancel();
        inner.pool.close_all();
        inner.discovery.close().await;
    }
}

impl ProducerInner {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// The next transaction number: 1, 2, … and back to 1 after `i32::MAX`
    /// (the broker parses it as a 32-bit int).
    pub(crate) fn next_transaction_number(&self) -> i32 {
        let previous = self
            .transactions
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(transaction_number_after(n))
            })
            .unwrap_or_else(|n| n); // the closure always answers
        transaction_number_after(previous) as i32
    }

    pub(crate) fn topic(&self, name: &str) -> Option<Arc<TopicState>> {
        self.topics.load().get(name).cloned()
    }

    pub(crate) fn default_topic_state(&self) -> Option<Arc<TopicState>> {
        self.config
            .default_topic
            .as_deref()
            .and_then(|t| self.topic(t))
    }

    /// The topic's state, subscribing to it first if needed.
    fn subscribe(&self, name: &str) -> Arc<TopicState> {
        if let Some(state) = self.topic(name) {
            return state;
        }
        let _guard = self.subscribing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = self.topic(name) {
            return state;
        }
        let state = Arc::new(TopicState::new(name));
        spawn_route_task(
            Arc::clone(&state),
            self.discovery.watch(name),
            Arc::clone(&self.pool),
            RouteTaskSettings {
                connect_wait: self.config.connect_timeout,
                close_delay: self.config.send_timeout,
                events: self.route_events.clone(),
            },
            self.stop.child_token(),
        );
        self.topics.rcu(|topics| {
            let mut topics = HashMap::clone(topics);
            topics.insert(name.to_owned(), Arc::clone(&state));
            topics
        });
        state
    }

    /// Subscribes if needed and waits for discovery's first answer, at most `wait`.
    pub(crate) async fn ensure_topic(&self, name: &str, wait: Duration) -> Result<Arc<TopicState>> {
        let state = self.subscribe(name);
        if state.wait_first_route(wait).await {
            Ok(state)
        } else {
            Err(Error::TopicUnavailable {
                topic: name.to_owned(),
                waited: wait,
                reason: "no listing from ZooKeeper yet".into(),
            })
        }
    }
}

/// The transaction number after `n`: 1, 2, …, `i32::MAX`, then 1 again.
fn transaction_number_after(n: u32) -> u32 {
    n % i32::MAX as u32 + 1
}

impl ProducerInner {
    /// `message` with a dedupe id as its attribute, when the producer was
    /// built with `dedupe_ids(true)` and the message has no attribute.
    fn with_dedupe_id(&self, message: Message) -> Message {
        if !self.config.dedupe_ids || message.attribute().is_some() {
            return message;
        }
        let n = self
            .dedupe_ids
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        message.with_attribute(format!("{DEDUPE_PREFIX}{}/{n}", self.session_id))
    }
}

/// How a dedupe id starts: `metaq-id:<producer session>/<n>`.
pub const DEDUPE_PREFIX: &str = "metaq-id:";

#[cfg(test)]
mod tests {
    use super::transaction_number_after;

    #[test]
    fn transaction_numbers_stay_positive_32_bit_ints() {
        assert_eq!(transaction_number_after(0), 1);
        assert_eq!(transaction_number_after(1), 2);
        assert_eq!(
            transaction_number_after(i32::MAX as u32 - 1),
            i32::MAX as u32
        );
        assert_eq!(transaction_number_after(i32::MAX as u32), 1);
    }
}
