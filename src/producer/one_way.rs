//! The one-way (fire-and-forget) producer: [`OneWay`], made by
//! [`Producer::one_way`].
//!
//! A send queues the message and returns; a background task sends what is
//! queued through the producer's ordinary [`send_all`](Producer::send_all)
//! path (same partition choice, retries and timeouts), counts the
//! outcomes, logs failures (rate-limited) and hands each failed message to
//! the optional failure callback.
//!
//! The window is a semaphore of `window` permits: a message holds one from
//! the moment it is accepted until its outcome has been handled, so it
//! bounds messages queued plus messages in flight. Each accepted message
//! also holds a token of a [`SendTracker`] (taken *before* its permit), so
//! `flush` and `close` also wait for a send still waiting for room.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::Instant;

use tokio_util::sync::CancellationToken;

use super::in_flight::{SendToken, SendTracker};
use super::one_way_spill::{self, Spill};
use super::stats::{read, Outcomes};
use super::Producer;
use crate::error::{Error, Result};
use crate::local_store::LocalStore;
use crate::Message;

/// The default [`OneWayConfig::window`]: messages accepted and not yet
/// ended, at most.
///
/// # Examples
///
/// ```
/// use metaq::producer::{OneWayConfig, DEFAULT_ONE_WAY_WINDOW};
/// // Twice the default, for bursts.
/// let config = OneWayConfig::default().window(2 * DEFAULT_ONE_WAY_WINDOW);
/// assert_eq!(config.window_size(), 20_000);
/// ```
pub const DEFAULT_ONE_WAY_WINDOW: usize = 10_000;

/// Messages handed to `send_all` at once by the background task.
const BATCH: usize = 1024;

/// How often, at most, failures are logged one line each; the failures in
/// between are counted and told in the next line.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// What is called with each message whose send failed, and why.
type FailureCallback = Arc<dyn Fn(Message, Error) + Send + Sync + 'static>;

/// Settings of a [`OneWay`] producer, for [`Producer::one_way`].
///
/// # Examples
///
/// ```
/// use metaq::producer::OneWayConfig;
/// let config = OneWayConfig::default()
///     .window(50_000)
///     .on_failure(|message, error| {
///         eprintln!("lost a message to {}: {error}", message.topic());
///     });
/// assert_eq!(config.window_size(), 50_000);
/// ```
#[derive(Clone)]
pub struct OneWayConfig {
    window: usize,
    on_failure: Option<FailureCallback>,
    spill: Option<(LocalStore, Duration)>,
}

impl Default for OneWayConfig {
    fn default() -> Self {
        OneWayConfig {
            window: DEFAULT_ONE_WAY_WINDOW,
            on_failure: None,
            spill: None,
        }
    }
}

impl std::fmt::Debug for OneWayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneWayConfig")
            .field("window", &self.window)
            .field("on_failure", &self.on_failure.is_some())
            .field("spill", &self.spill.as_ref().map(|(store, _)| store.dir()))
            .finish()
    }
}

impl OneWayConfig {
    /// At most this many messages accepted and not yet ended (queued or
    /// in flight); [`DEFAULT_ONE_WAY_WINDOW`] (10,000) by default. When the
    /// window is full, [`OneWay::try_send`] refuses with
    /// [`TrySendError::Full`] and [`OneWay::send`] waits for room. Values
    /// below 1 are taken as 1.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = metaq::producer::OneWayConfig::default().window(100);
    /// assert_eq!(config.window_size(), 100);
    /// ```
    pub fn window(mut self, window: usize) -> Self {
        self.window = window.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// The window set (see [`window`](Self::window)).
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::producer::{OneWayConfig, DEFAULT_ONE_WAY_WINDOW};
    /// assert_eq!(OneWayConfig::default().window_size(), DEFAULT_ONE_WAY_WINDOW);
    /// ```
    pub fn window_size(&self) -> usize {
        self.window
    }

    /// Called with every message whose send failed (after its retries) and
    /// the error, from the producer's background task: it must not block
    /// (hand the message to a channel or spawn a task for slow work). A
    /// panic in it is caught and logged. Every failure is also counted in
    /// [`OneWayStats`] and logged.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::producer::OneWayConfig;
    /// let (failed_tx, failed_rx) = std::sync::mpsc::channel();
    /// let config = OneWayConfig::default().on_failure(move |message, error| {
    ///     let _ = failed_tx.send((message, error));
    /// });
    /// # drop((config, failed_rx));
    /// ```
    pub fn on_failure(mut self, callback: impl Fn(Message, Error) + Send + Sync + 'static) -> Self {
        self.on_failure = Some(Arc::new(callback));
        self
    }

    /// Spills to `store` instead of dropping (Java's default "ignore
    /// processor", docs/protocol.md §2.8): `try_send` on a full window
    /// appends the message to the store (an fsync, with the store's
    /// default policy, on the caller's thread) and returns `Ok`; a send
    /// that failed after its retries is appended instead of being handed
    /// to `on_failure` (which then sees only what the store could not
    /// take, and messages the broker refused for good). What the store
    /// holds is sent in the background every `replay_every` while the
    /// window has room, through the ordinary send path — at least once: a
    /// message whose put went unanswered may be stored twice. A store
    /// handed to a later one-way producer is replayed by it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use metaq::local_store::{LocalStore, LocalStoreConfig};
    /// use metaq::producer::OneWayConfig;
    /// # let dir = std::env::temp_dir().join(format!("metaq-doc-{}-spill", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let store = LocalStore::open(&dir, LocalStoreConfig::default())?;
    /// let config = OneWayConfig::default().spill_to(store, Duration::from_secs(1));
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), metaq::Error>(())
    /// ```
    pub fn spill_to(mut self, store: LocalStore, replay_every: Duration) -> Self {
        self.spill = Some((store, replay_every));
        self
    }
}

/// Why [`OneWay::try_send`] or [`OneWay::send`] did not accept a message;
/// the message is given back.
///
/// # Examples
///
/// ```
/// use metaq::producer::TrySendError;
/// use metaq::Message;
/// let error = TrySendError::Full(Message::new("orders", "hello"));
/// assert!(error.is_full());
/// assert_eq!(error.into_message().topic(), "orders");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrySendError {
    /// The window is full: as many messages as the window holds are queued
    /// or in flight. Counted in [`OneWayStats::dropped_full`].
    #[error("the one-way window is full")]
    Full(Message),
    /// The one-way producer was closed.
    #[error("the one-way producer is closed")]
    Closed(Message),
}

impl TrySendError {
    /// The message that was not accepted.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::producer::TrySendError;
    /// let error = TrySendError::Closed(metaq::Message::new("orders", "late"));
    /// assert_eq!(error.into_message().payload().as_ref(), b"late");
    /// ```
    pub fn into_message(self) -> Message {
        match self {
            TrySendError::Full(message) | TrySendError::Closed(message) => message,
        }
    }

    /// Whether the window was full (rather than the producer closed).
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::producer::TrySendError;
    /// assert!(!TrySendError::Closed(metaq::Message::new("orders", "x")).is_full());
    /// ```
    pub fn is_full(&self) -> bool {
        matches!(self, TrySendError::Full(_))
    }
}

/// What a [`OneWay`] producer's messages came to so far (all its clones
/// together). Every accepted message ends up exactly once in `sent` or one
/// of the `failed_*` counts; until then it is counted in `in_window`.
///
/// # Examples
///
/// ```no_run
/// # fn example(one_way: metaq::producer::OneWay) {
/// let stats = one_way.stats();
/// println!(
///     "{} accepted, {} sent, {} failed, {} refused (window full), {} pending",
///     stats.accepted,
///     stats.sent,
///     stats.failed(),
///     stats.dropped_full,
///     stats.in_window
/// );
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OneWayStats {
    /// Messages accepted by `send` or `try_send`.
    pub accepted: u64,
    /// Messages stored (the broker answered 200).
    pub sent: u64,
    /// Failed with nothing reaching a broker (including invalid messages
    /// and sends after the producer was closed).
    pub failed_not_sent: u64,
    /// Failed after a request was written: the message may be stored.
    pub failed_maybe_sent: u64,
    /// A broker answered with an error code.
    pub failed_rejected: u64,
    /// Failed without a delivery kind.
    pub failed_other: u64,
    /// Messages `try_send` refused because the window was full (never
    /// accepted; the caller got them back).
    pub dropped_full: u64,
    /// Messages appended to the spill store: refused by a full window (not
    /// counted in `accepted`, nor in `dropped_full`) or accepted and failed
    /// (not counted in the `failed_*` fields, which count only messages
    /// given up on).
    pub spilled: u64,
    /// Spilled messages sent since (by the background replay).
    pub replayed: u64,
    /// Messages the spill store holds now.
    pub spill_held: u64,
    /// Messages accepted and not yet ended (queued or in flight), plus
    /// [`OneWay::send`] calls waiting for room; what `flush` waits for.
    pub in_window: usize,
}

impl OneWayStats {
    /// Accepted messages that failed, whatever the kind.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(metaq::producer::OneWayStats::default().failed(), 0);
    /// ```
    pub fn failed(&self) -> u64 {
        self.failed_not_sent + self.failed_maybe_sent + self.failed_rejected + self.failed_other
    }
}

/// A fire-and-forget producer: [`send`](Self::send) and
/// [`try_send`](Self::try_send) queue a message and return; a background
/// task sends it through the [`Producer`] it was made from (partition
/// choice, retries and timeouts as for [`Producer::send`]). Failures are
/// counted ([`stats`](Self::stats)), logged with `tracing` (warn, at most
/// one line a second in a flood, telling how many were not logged) and
/// handed to [`OneWayConfig::on_failure`].
///
/// A cheap `Clone` handle: clones share one window, one queue and one set
/// of counters. Messages leave in the order accepted, as consecutive
/// `Producer::send` calls would.
///
/// # Ending
///
/// * [`flush`](Self::flush) waits until every accepted message has ended.
/// * [`close`](Self::close) stops accepting (for every clone), then waits
///   for what was accepted, at most the send timeout plus one second. The
///   [`Producer`] stays open: close it apart.
/// * Dropping the last handle without `close` also stops accepting; the
///   background task still sends what is queued (each send ends within the
///   send timeout) and reports failures as usual, then ends, and releases
///   its clone of the producer. This needs the runtime to keep running:
///   messages still queued when the runtime shuts down (the end of `main`)
///   are lost, so call `close` (or `flush`) before.
/// * Closing the [`Producer`] makes the sends of messages still queued
///   fail as *not sent* ([`Error::Closed`]): they are reported, not lost
///   silently.
///
/// Nothing is kept on disk: a message that failed is only reported (Java's
/// async producer spills to a local store, which this crate does not have
/// yet).
///
/// # Examples
///
/// ```no_run
/// # async fn example() -> Result<(), metaq::Error> {
/// use std::time::Duration;
/// use metaq::producer::{OneWayConfig, TrySendError};
/// use metaq::{Message, Producer};
/// let producer = Producer::builder("127.0.0.1:2181").build().await?;
/// producer.publish("clicks").await?;
/// let one_way = producer.one_way(OneWayConfig::default().on_failure(|message, error| {
///     eprintln!("{} lost: {error}", message.topic());
/// }));
/// for i in 0..100_000 {
///     match one_way.try_send(Message::new("clicks", format!("click {i}"))) {
///         Ok(()) => {}
///         // Full: wait for room instead of dropping it.
///         Err(TrySendError::Full(message)) => one_way.send(message).await.expect("open"),
///         Err(TrySendError::Closed(_)) => unreachable!("not closed yet"),
///     }
/// }
/// one_way.close().await?;
/// let stats = one_way.stats();
/// println!("{} sent, {} failed", stats.sent, stats.failed());
/// producer.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct OneWay {
    shared: Arc<Shared>,
    /// Dropped with the last handle, which closes the queue: the
    /// background task then ends after what is queued.
    queue: Arc<mpsc::UnboundedSender<Queued>>,
}

impl std::fmt::Debug for OneWay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneWay")
            .field("window", &self.shared.window)
            .field("in_window", &self.shared.pending.len())
            .finish()
    }
}

/// State shared by the handles and the background tasks.
struct Shared {
    window: usize,
    room: Arc<Semaphore>,
    pending: SendTracker,
    send_timeout: Duration,
    on_failure: Option<FailureCallback>,
    counts: Counts,
    log: Mutex<FailureLog>,
    spill: Option<Arc<Spill>>,
    /// Stops the spill's replay when the last handle goes.
    stop: CancellationToken,
}

#[derive(Default)]
struct Counts {
    accepted: AtomicU64,
    /// Counted as the producer's own counters count sends.
    outcomes: Outcomes,
    dropped_full: AtomicU64,
}

/// One accepted message, with its place in the window.
struct Queued {
    message: Message,
    permit: OwnedSemaphorePermit,
    token: SendToken,
}

/// Failures not logged yet, for rate-limited logging.
#[derive(Default)]
struct FailureLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl Producer {
    /// A fire-and-forget handle on this producer (see [`OneWay`]), with a
    /// background task that sends what it queues. Each call makes a new
    /// one, with its own window and counters.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (the background task is spawned on it).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(producer: metaq::Producer) -> Result<(), metaq::Error> {
    /// use std::time::Duration;
    /// use metaq::producer::OneWayConfig;
    /// use metaq::Message;
    /// let one_way = producer.one_way(OneWayConfig::default());
    /// one_way.send(Message::new("clicks", "home")).await.expect("open");
    /// one_way.flush(Duration::from_secs(10)).await?;
    /// assert_eq!(one_way.stats().sent, 1);
    /// # Ok(()) }
    /// ```
    pub fn one_way(&self, config: OneWayConfig) -> OneWay {
        let shared = Arc::new(Shared::new(config, self.inner.config.send_timeout));
        let (queue, receiver) = mpsc::unbounded_channel();
        tokio::spawn(drive(self.clone(), Arc::clone(&shared), receiver));
        if let Some(spill) = &shared.spill {
            let (room, stop) = (Arc::clone(&shared.room), shared.stop.clone());
            let failures = Arc::clone(&shared);
            let give_up: one_way_spill::GiveUp = Arc::new(move |message, error| {
                failures.ended(message, Err(error), "replayed from the spill store");
            });
            tokio::spawn(one_way_spill::replay(
                self.clone(),
                Arc::clone(spill),
                room,
                stop,
                give_up,
            ));
        }
        OneWay {
            shared,
            queue: Arc::new(queue),
        }
    }
}

impl OneWay {
    /// Queues `message` if the window has room, else gives it back at once
    /// with [`TrySendError::Full`] (counted in
    /// [`OneWayStats::dropped_full`]); [`TrySendError::Closed`] after
    /// [`close`](Self::close). Never waits.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(one_way: metaq::producer::OneWay) {
    /// use metaq::producer::TrySendError;
    /// use metaq::Message;
    /// if let Err(TrySendError::Full(message)) = one_way.try_send(Message::new("clicks", "x")) {
    ///     eprintln!("overloaded: dropped a message of {}", message.topic());
    /// }
    /// # }
    /// ```
    pub fn try_send(&self, message: Message) -> std::result::Result<(), TrySendError> {
        let token = self.shared.pending.token();
        match Arc::clone(&self.shared.room).try_acquire_owned() {
            Ok(permit) => {
                self.enqueue(message, permit, token);
                Ok(())
            }
            Err(TryAcquireError::NoPermits) => {
                let message = match &self.shared.spill {
                    Some(spill) => match spill.keep(message) {
                        Ok(()) => return Ok(()),
                        Err(refused) => {
                            let (message, error) = *refused;
                            self.shared
                                .log_failure(&message, &error, "window full; cannot spill");
                            message
                        }
                    },
                    None => message,
                };
                self.shared
                    .counts
                    .dropped_full
                    .fetch_add(1, Ordering::Relaxed);
                Err(TrySendError::Full(message))
            }
            Err(TryAcquireError::Closed) => Err(TrySendError::Closed(message)),
        }
    }

    /// Queues `message`, waiting for room in the window if it is full.
    /// Fails only with [`TrySendError::Closed`], after
    /// [`close`](Self::close) (also when `close` is called while waiting).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(one_way: metaq::producer::OneWay) {
    /// use metaq::Message;
    /// for i in 0..1_000_000 {
    ///     // Waits whenever the window is full: backpressure, nothing dropped.
    ///     one_way.send(Message::new("clicks", format!("{i}"))).await.expect("open");
    /// }
    /// # }
    /// ```
    pub async fn send(&self, message: Message) -> std::result::Result<(), TrySendError> {
        let token = self.shared.pending.token();
        match Arc::clone(&self.shared.room).acquire_owned().await {
            Ok(permit) => {
                self.enqueue(message, permit, token);
                Ok(())
            }
            Err(_closed) => Err(TrySendError::Closed(message)),
        }
    }

    fn enqueue(&self, message: Message, permit: OwnedSemaphorePermit, token: SendToken) {
        self.shared.counts.accepted.fetch_add(1, Ordering::Relaxed);
        let queued = Queued {
            message,
            permit,
            token,
        };
        if let Err(mpsc::error::SendError(queued)) = self.queue.send(queued) {
            // The background task is gone: only when the runtime shut down.
            self.shared
                .ended(queued.message, Err(Error::Closed), "one-way task ended");
        }
    }

    /// Waits until every message accepted so far (and any accepted
    /// meanwhile) has ended: stored or reported as failed. The producer
    /// stays open. Sends end by their own timeouts, so a `timeout` above
    /// the send timeout is only reached if messages keep coming.
    ///
    /// # Errors
    ///
    /// [`Error::FlushTimeout`] with the messages still pending when
    /// `timeout` passed; they go on.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(one_way: metaq::producer::OneWay) -> Result<(), metaq::Error> {
    /// use std::time::Duration;
    /// one_way.flush(Duration::from_secs(10)).await?;
    /// assert_eq!(one_way.stats().in_window, 0);
    /// # Ok(()) }
    /// ```
    pub async fn flush(&self, timeout: Duration) -> Result<()> {
        match tokio::time::timeout(timeout, self.shared.pending.idle()).await {
            Ok(()) => Ok(()),
            Err(_elapsed) => Err(Error::FlushTimeout {
                timeout,
                in_flight: self.shared.pending.len(),
            }),
        }
    }

    /// Stops accepting messages (for every clone: `send` and `try_send`
    /// then fail with [`TrySendError::Closed`]), then waits for what was
    /// accepted to end, at most the producer's send timeout plus one
    /// second. Idempotent. The [`Producer`] stays open.
    ///
    /// # Errors
    ///
    /// [`Error::FlushTimeout`] if messages were still pending at the
    /// bound: they go on in the background and are counted and reported
    /// when they end.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(one_way: metaq::producer::OneWay) -> Result<(), metaq::Error> {
    /// use metaq::producer::TrySendError;
    /// use metaq::Message;
    /// one_way.close().await?;
    /// let late = one_way.try_send(Message::new("clicks", "late"));
    /// assert!(matches!(late, Err(TrySendError::Closed(_))));
    /// # Ok(()) }
    /// ```
    pub async fn close(&self) -> Result<()> {
        self.shared.room.close();
        self.shared.stop.cancel();
        self.flush(self.shared.send_timeout + Duration::from_secs(1))
            .await
    }

    /// Whether [`close`](Self::close) was called (on any clone).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(one_way: metaq::producer::OneWay) {
    /// let _ = one_way.close().await;
    /// assert!(one_way.is_closed());
    /// # }
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared.room.is_closed()
    }

    /// The counts so far: accepted, sent, failed by kind, refused because
    /// the window was full, and pending.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(one_way: metaq::producer::OneWay) -> Result<(), metaq::Error> {
    /// use std::time::Duration;
    /// one_way.flush(Duration::from_secs(10)).await?;
    /// let stats = one_way.stats();
    /// assert_eq!(stats.accepted, stats.sent + stats.failed());
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> OneWayStats {
        let counts = &self.shared.counts;
        let outcomes = &counts.outcomes;
        OneWayStats {
            accepted: read(&counts.accepted),
            sent: read(&outcomes.sent),
            failed_not_sent: read(&outcomes.failed_not_sent),
            failed_maybe_sent: read(&outcomes.failed_maybe_sent),
            failed_rejected: read(&outcomes.failed_rejected),
            failed_other: read(&outcomes.failed_other),
            dropped_full: read(&counts.dropped_full),
            spilled: self.shared.spill.as_ref().map_or(0, |s| read(&s.spilled)),
            replayed: self.shared.spill.as_ref().map_or(0, |s| read(&s.replayed)),
            spill_held: self.shared.spill.as_ref().map_or(0, |s| s.held()),
            in_window: self.shared.pending.len(),
        }
    }
}

impl Shared {
    fn new(config: OneWayConfig, send_timeout: Duration) -> Shared {
        Shared {
            window: config.window,
            room: Arc::new(Semaphore::new(config.window)),
            pending: SendTracker::default(),
            send_timeout,
            on_failure: config.on_failure,
            counts: Counts::default(),
            log: Mutex::new(FailureLog::default()),
            spill: config
                .spill
                .map(|(store, every)| Arc::new(Spill::new(store, every))),
            stop: CancellationToken::new(),
        }
    }

    /// `message` ended with `result`: counted, and a failure logged and
    /// handed to the callback.
    fn ended(&self, message: Message, result: Result<()>, context: &str) {
        let error = match result {
            Ok(()) => return self.counts.outcomes.sent(),
            Err(error) => error,
        };
        // A spilled message has not failed: it waits on disk.
        let message = match &self.spill {
            Some(spill) if Spill::takes(&error) => match spill.keep(message) {
                Ok(()) => return,
                Err(refused) => refused.0,
            },
            _ => message,
        };
        self.counts.outcomes.failed(&error);
        self.log_failure(&message, &error, context);
        if let Some(callback) = &self.on_failure {
            // A panicking callback must not cost the reports of the rest of
            // its batch.
            let call = std::panic::AssertUnwindSafe(|| callback(message, error));
            if std::panic::catch_unwind(call).is_err() {
                tracing::error!("the one-way on_failure callback panicked");
            }
        }
    }

    /// Logs the first failure, then at most one line per [`LOG_EVERY`]
    /// telling how many failed since the last line.
    fn log_failure(&self, message: &Message, error: &Error, context: &str) {
        let now = Instant::now();
        let unlogged = {
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            if log.last.is_some_and(|last| now - last < LOG_EVERY) {
                log.unlogged += 1;
                return;
            }
            log.last = Some(now);
            std::mem::take(&mut log.unlogged)
        };
        tracing::warn!(
            topic = %message.topic(),
            error = %error,
            unlogged_failures = unlogged,
            "one-way send failed ({context}); {unlogged} failure(s) since the last such line not logged"
        );
    }
}

/// The background task: takes what is queued, in order, and sends it in
/// batches, each batch's outcomes handled by a task of its own so the next
/// batch is queued without waiting for answers. Ends when every handle is
/// gone and the queue is empty.
async fn drive(
    producer: Producer,
    shared: Arc<Shared>,
    mut queue: mpsc::UnboundedReceiver<Queued>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        let queued = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
        let sends = producer.send_all(queued.iter().map(|q| q.message.clone()));
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let results = sends.await;
            let spills = shared.spill.is_some();
            let report = move || {
                for (queued, result) in queued.into_iter().zip(results) {
                    let Queued {
                        message,
                        permit,
                        token,
                    } = queued;
                    shared.ended(message, result.map(drop), "after its retries");
                    // Its place in the window is given back only now.
                    drop((permit, token));
                }
            };
            if spills {
                // Spilling a failure writes (and may fsync) the store:
                // not on an async worker.
                let _ = tokio::task::spawn_blocking(report).await;
            } else {
                report();
            }
        });
    }
    shared.stop.cancel(); // every handle is gone: no more replay
    let left = shared.pending.len();
    if left > 0 {
        tracing::debug!(
            pending = left,
            "every one-way handle dropped; the sends still in flight end in the background"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_clamps_the_window() {
        assert_eq!(OneWayConfig::default().window(0).window_size(), 1);
        assert_eq!(
            OneWayConfig::default().window_size(),
            DEFAULT_ONE_WAY_WINDOW
        );
    }

    #[test]
    fn a_panicking_callback_costs_no_report() {
        let calls = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&calls);
        let config = OneWayConfig::default().on_failure(move |_, _| {
            if seen.fetch_add(1, Ordering::Relaxed) == 0 {
                panic!("the first call panics");
            }
        });
        let shared = Shared::new(config, Duration::from_secs(1));
        shared.ended(Message::new("t", "a"), Err(Error::Closed), "test");
        shared.ended(Message::new("t", "b"), Err(Error::Closed), "test");
        shared.ended(Message::new("t", "c"), Ok(()), "test");
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        assert_eq!(read(&shared.counts.outcomes.failed_not_sent), 2);
        assert_eq!(read(&shared.counts.outcomes.sent), 1);
    }

    #[test]
    fn try_send_error_gives_the_message_back() {
        let error = TrySendError::Full(Message::new("t", "m"));
        assert!(error.is_full());
        assert_eq!(error.to_string(), "the one-way window is full");
        assert_eq!(error.into_message(), Message::new("t", "m"));
    }
}
