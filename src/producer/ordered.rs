//! The ordered producer: [`OrderedProducer`], made by [`Producer::ordered`]
//! (docs/protocol.md §2.9).
//!
//! Each message goes to the partition its key hashes to in the topic's
//! *layout* (configured, or the partitions listed at the first send), and
//! never to another one. While that partition cannot take it — its broker
//! is down, unlisted or failing — the message is appended to a crash-safe
//! [`LocalStore`] instead of failing, and the send reports
//! [`OrderedSend::Stored`]. Stored messages are replayed oldest first, one
//! at a time, before any newer message of their partition: every send and
//! every replay of a partition holds that partition's lock, and a send
//! first drains what is stored. The store is on disk, so what a killed
//! process held is replayed by the next one that opens the directory.
//!
//! Differences from the Java client, and why:
//! * A message needs a key: order is per key, and Java's abstract
//!   selector is here the key hash over the layout.
//! * A send that finds stored messages for its partition replays them
//!   itself, under the lock, instead of sleeping 100 ms up to three times.
//! * An answer 4xx (the broker will never take the message) is returned to
//!   the caller, not stored under partition `-1--1`; a stored message that
//!   draws one in replay is dropped with an error log, so one bad message
//!   cannot block its partition for ever.
//! * Order holds between sends that do not overlap (one returned before
//!   the next began), as with Java's blocking send; sends of one key made
//!   concurrently have no order to keep.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::ordered_config::OrderedConfig;
use super::partition_send::{send_to_partition, writable};
use super::selector::KeyHash;
use super::store_task::on_store;
use super::topics::TopicState;
use super::Producer;
use crate::cluster::Partition;
use crate::error::{Delivery, Error, Result};
use crate::local_store::{LocalStore, QueueHoldings};
use crate::{Message, SendResult};

/// What became of an ordered send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OrderedSend {
    /// The broker stored it.
    Sent(SendResult),
    /// Its partition could not take it; it is in the local store and will
    /// be replayed, in order, when the partition comes back.
    Stored {
        /// The partition it waits for.
        partition: Partition,
        /// Its sequence number in that partition's store queue.
        seq: u64,
    },
}

/// Counters of an [`OrderedProducer`], from [`OrderedProducer::stats`].
///
/// # Examples
///
/// ```no_run
/// # fn example(ordered: metaq::producer::OrderedProducer) {
/// let stats = ordered.stats();
/// println!("{} sent, {} stored, {} replayed, {} held now", stats.sent, stats.stored, stats.replayed, stats.held_messages);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OrderedStats {
    /// Sends the broker stored at once.
    pub sent: u64,
    /// Sends kept in the local store.
    pub stored: u64,
    /// Of those, sends whose put was written but not answered: the broker
    /// may have stored the message, and its replay then stores it again.
    pub stored_after_maybe_sent: u64,
    /// Stored messages replayed and stored by the broker.
    pub replayed: u64,
    /// Stored messages dropped because the broker refused them with 4xx.
    pub dropped_in_replay: u64,
    /// Messages the local store holds now.
    pub held_messages: u64,
    /// Their bytes on disk.
    pub held_bytes: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    stored: AtomicU64,
    stored_after_maybe_sent: AtomicU64,
    replayed: AtomicU64,
    dropped_in_replay: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

type PartitionLock = Arc<tokio::sync::Mutex<()>>;

struct Shared {
    producer: Producer,
    store: LocalStore,
    config: OrderedConfig,
    /// Layouts read from the route at a topic's first send.
    learned: Mutex<HashMap<String, Arc<[Partition]>>>,
    locks: Mutex<HashMap<(String, Partition), PartitionLock>>,
    counters: Counters,
    stop: CancellationToken,
}

/// Stops the replay task when the last handle goes.
struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// A producer that keeps each key's messages in order on one partition,
/// holding them in a local store while that partition is unavailable.
/// Cheap to clone; made by [`Producer::ordered`]. Dropping the last clone
/// (or [`close`](Self::close)) stops its background replay; what the store
/// holds stays on disk for the next one.
///
/// ```no_run
/// # async fn demo(producer: metaq::Producer) -> metaq::Result<()> {
/// use metaq::Message;
/// use metaq::producer::{OrderedConfig, OrderedSend};
/// let config = OrderedConfig::new("/var/lib/app/metaq-ordered").layout("payments", "0:2;1:2")?;
/// let ordered = producer.ordered(config).await?;
/// let message = Message::new("payments", "captured").with_key("order-17");
/// match ordered.send(message).await? {
///     OrderedSend::Sent(sent) => println!("stored by {} at {}", sent.broker, sent.offset),
///     OrderedSend::Stored { partition, .. } => println!("kept locally until {partition} is back"),
///     _ => {}
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct OrderedProducer {
    shared: Arc<Shared>,
    _stop: Arc<StopOnDrop>,
}

impl std::fmt::Debug for OrderedProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderedProducer")
            .field("store", &self.shared.store.dir())
            .field("held", &self.shared.store.total_bytes())
            .finish()
    }
}

impl Producer {
    /// An ordered producer over this producer's connections, whose local
    /// store is `config`'s directory. Messages a previous process left in
    /// that store are replayed in the background.
    ///
    /// # Errors
    ///
    /// [`Error::LocalStore`] if the store cannot be opened;
    /// [`Error::Config`] for a producer made with
    /// [`for_server`](Self::builder_for_server) (its broker chooses the
    /// partition, so no key can keep one); [`Error::Closed`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(producer: metaq::Producer) -> metaq::Result<()> {
    /// use metaq::producer::OrderedConfig;
    /// let ordered = producer.ordered(OrderedConfig::new("/tmp/metaq-ordered")).await?;
    /// for held in ordered.holdings() {
    ///     println!("{} {}: {} message(s) waiting", held.topic, held.partition, held.messages);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn ordered(&self, config: OrderedConfig) -> Result<OrderedProducer> {
        self.inner.check_open()?;
        if self.inner.config.server.is_some() {
            return Err(Error::Config {
                reason: "an ordered producer needs ZooKeeper's partitions; a for_server producer lets the broker choose".into(),
            });
        }
        let (dir, store_config) = (config.dir.clone(), config.store.clone());
        let store = tokio::task::spawn_blocking(move || LocalStore::open(dir, store_config))
            .await
            .map_err(|e| Error::LocalStore {
                path: config.dir.clone(),
                operation: "open",
                cause: e.to_string(),
            })??;
        if !store.is_empty() {
            info!(dir = %config.dir.display(), bytes = store.total_bytes(), "ordered producer: replaying what the store holds");
        }
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            producer: self.clone(),
            store,
            config,
            learned: Mutex::default(),
            locks: Mutex::default(),
            counters: Counters::default(),
            stop: stop.clone(),
        });
        tokio::spawn(replay_loop(Arc::clone(&shared)));
        Ok(OrderedProducer {
            shared,
            _stop: Arc::new(StopOnDrop(stop)),
        })
    }
}

impl OrderedProducer {
    /// Sends `message` (which must have a key) to its key's partition, or
    /// keeps it in the local store when that partition cannot take it now.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] for a message without a key or one that
    /// cannot be written; [`Error::Rejected`] with a 4xx code (the broker
    /// will never take it); [`Error::NoPartition`] when the topic has no
    /// layout and ZooKeeper lists no partition for it;
    /// [`Error::LocalStoreFull`] / [`Error::LocalStore`] when it had to be
    /// stored and could not be: it was neither sent nor kept.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(ordered: metaq::producer::OrderedProducer) -> metaq::Result<()> {
    /// use metaq::Message;
    /// for step in ["created", "paid", "shipped"] {
    ///     // One key: these three are stored by the broker in this order.
    ///     ordered.send(Message::new("orders", step).with_key("order-17")).await?;
    /// }
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "ordered_send", skip_all, fields(topic = %message.topic()))]
    pub async fn send(&self, message: Message) -> Result<OrderedSend> {
        let shared = &self.shared;
        let inner = &shared.producer.inner;
        inner.check_open()?;
        message.validate(inner.config.max_message_size)?;
        let Some(key) = message.key() else {
            return Err(Error::InvalidMessage {
                topic: message.topic().to_owned(),
                reason: "an ordered send needs a key (Message::with_key)".into(),
            });
        };
        let layout = shared.layout(message.topic()).await?;
        let partition = layout[KeyHash::hash(key) as usize % layout.len()];
        let state = inner
            .ensure_topic(message.topic(), inner.config.send_timeout)
            .await
            .ok();
        let lock = shared.lock(message.topic(), partition);
        let _turn = lock.lock().await;
        let name = partition.to_string();
        if shared.store.len(message.topic(), &name) > 0 {
            let drained = match &state {
                Some(state) if writable(state, partition) => shared.drain(state, partition).await,
                _ => false,
            };
            if !drained {
                return shared.keep(message, partition, false).await;
            }
        }
        let Some(state) = state.filter(|s| writable(s, partition)) else {
            return shared.keep(message, partition, false).await;
        };
        match send_to_partition(inner, &state, partition, &message).await {
            Ok(sent) => {
                bump(&shared.counters.sent);
                Ok(OrderedSend::Sent(sent))
            }
            Err(e @ Error::Rejected { code, .. }) if code < 500 => Err(e),
            Err(e) => {
                debug!(error = %e, "ordered send failed; keeping it locally");
                let maybe_sent = e.delivery() == Some(Delivery::MaybeSent);
                shared.keep(message, partition, maybe_sent).await
            }
        }
    }

    /// What the local store holds, per topic and partition.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(ordered: metaq::producer::OrderedProducer) {
    /// let waiting: u64 = ordered.holdings().iter().map(|h| h.messages).sum();
    /// println!("{waiting} message(s) wait for their partition");
    /// # }
    /// ```
    pub fn holdings(&self) -> Vec<QueueHoldings> {
        self.shared.store.holdings()
    }

    /// The counters, and what the store holds now.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(ordered: metaq::producer::OrderedProducer) {
    /// let stats = ordered.stats();
    /// assert!(stats.replayed <= stats.stored + stats.held_messages + stats.replayed);
    /// # }
    /// ```
    pub fn stats(&self) -> OrderedStats {
        let c = &self.shared.counters;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        OrderedStats {
            sent: read(&c.sent),
            stored: read(&c.stored),
            stored_after_maybe_sent: read(&c.stored_after_maybe_sent),
            replayed: read(&c.replayed),
            dropped_in_replay: read(&c.dropped_in_replay),
            held_messages: self.holdings().iter().map(|h| h.messages).sum(),
            held_bytes: self.shared.store.total_bytes(),
        }
    }

    /// Tries every stored partition that is writable now, then waits until
    /// the store is empty, at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::FlushTimeout`] with `in_flight` = messages still held.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(ordered: metaq::producer::OrderedProducer) -> metaq::Result<()> {
    /// use std::time::Duration;
    /// ordered.flush(Duration::from_secs(30)).await?; // everything reached its broker
    /// # Ok(()) }
    /// ```
    pub async fn flush(&self, timeout: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.shared.replay_all().await;
            if self.shared.store.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::FlushTimeout {
                    timeout,
                    in_flight: self.stats().held_messages as usize,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the background replay. What the store holds stays on disk;
    /// sends after this still work but nothing is replayed until a new
    /// ordered producer opens the store.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(ordered: metaq::producer::OrderedProducer) {
    /// ordered.close();
    /// # }
    /// ```
    pub fn close(&self) {
        self.shared.stop.cancel();
    }
}

impl Shared {
    /// The topic's partitions: configured, or learned at its first send.
    async fn layout(&self, topic: &str) -> Result<Arc<[Partition]>> {
        if let Some(configured) = self.config.partitions_of(topic) {
            return Ok(configured.into());
        }
        if let Some(learned) = self
            .learned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
        {
            return Ok(Arc::clone(learned));
        }
        let inner = &self.producer.inner;
        let state = inner.ensure_topic(topic, inner.config.send_timeout).await?;
        let partitions: Arc<[Partition]> = state.route.load().partitions.clone().into();
        if partitions.is_empty() {
            return Err(Error::NoPartition {
                topic: topic.to_owned(),
                reason: "no layout configured and ZooKeeper lists no partition".into(),
            });
        }
        let mut learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        info!(
            topic,
            partitions = partitions.len(),
            "ordered producer: layout taken from ZooKeeper"
        );
        Ok(Arc::clone(
            learned.entry(topic.to_owned()).or_insert(partitions),
        ))
    }

    fn lock(&self, topic: &str, partition: Partition) -> PartitionLock {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(locks.entry((topic.to_owned(), partition)).or_default())
    }

    /// Appends `message` to its partition's store queue.
    async fn keep(
        &self,
        message: Message,
        partition: Partition,
        maybe_sent: bool,
    ) -> Result<OrderedSend> {
        let name = partition.to_string();
        let seq = on_store(&self.store, move |store| store.append(&name, &message)).await?;
        bump(&self.counters.stored);
        if maybe_sent {
            bump(&self.counters.stored_after_maybe_sent);
        }
        Ok(OrderedSend::Stored { partition, seq })
    }

    /// Replays `partition`'s stored messages oldest first, stopping at the
    /// first failure. True when its queue is empty. The caller holds the
    /// partition's lock.
    async fn drain(&self, state: &TopicState, partition: Partition) -> bool {
        let inner = &self.producer.inner;
        let (topic, name) = (state.name.to_string(), partition.to_string());
        loop {
            let (t, n) = (topic.clone(), name.clone());
            let front = match on_store(&self.store, move |s| s.peek_front(&t, &n)).await {
                Ok(Some(front)) => front,
                Ok(None) => return true,
                Err(e) => {
                    warn!(error = %e, "ordered replay: cannot read the store");
                    return false;
                }
            };
            match send_to_partition(inner, state, partition, &front.message).await {
                Ok(_) => bump(&self.counters.replayed),
                Err(Error::Rejected { code, message, .. }) if code < 500 => {
                    error!(%topic, %partition, seq = front.seq, code, %message, "stored message refused by the broker; dropped");
                    bump(&self.counters.dropped_in_replay);
                }
                Err(e) => {
                    debug!(%topic, %partition, error = %e, "ordered replay stopped");
                    return false;
                }
            }
            let (t, n, seq) = (topic.clone(), name.clone(), front.seq);
            if let Err(e) = on_store(&self.store, move |s| s.ack_front(&t, &n, seq)).await {
                warn!(error = %e, "ordered replay: cannot record progress");
                return false;
            }
        }
    }

    /// Replays every stored partition that is writable now.
    async fn replay_all(&self) {
        let inner = &self.producer.inner;
        // Only queues that hold something are listed.
        for (topic, name) in self.store.queues() {
            let Ok(partition) = name.parse::<Partition>() else {
                continue; // not a queue of the ordered producer
            };
            let Ok(state) = inner.ensure_topic(&topic, Duration::ZERO).await else {
                continue;
            };
            if !writable(&state, partition) {
                continue;
            }
            let lock = self.lock(&topic, partition);
            let _turn = lock.lock().await;
            if self.drain(&state, partition).await {
                info!(%topic, %partition, "ordered replay: partition drained");
            }
        }
    }
}

/// Replays on every route change and every `replay_interval`, until stopped.
async fn replay_loop(shared: Arc<Shared>) {
    let mut events = Some(shared.producer.route_events());
    loop {
        let route_change = async {
            let Some(rx) = events.as_mut() else {
                return std::future::pending::<()>().await;
            };
            if let Err(tokio::sync::broadcast::error::RecvError::Closed) = rx.recv().await {
                events = None;
            }
        };
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = tokio::time::sleep(shared.config.replay_interval) => {}
            _ = route_change => {}
        }
        if shared.producer.inner.check_open().is_err() {
            return;
        }
        shared.replay_all().await;
    }
}
