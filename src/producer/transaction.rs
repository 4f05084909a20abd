//! Local transactions pinned to one broker connection (docs/protocol.md §2.6, 4.2).
//!
//! A [`Transaction`] sends nothing until its first message. That message's
//! partition is chosen by the producer's selector; BEGIN goes to its broker,
//! on the connection that will carry every later put and the commit, and the
//! transaction is pinned there: later messages may only go to that broker's
//! partitions. The broker keeps local transactions per connection, so if the
//! socket is re-established, the pinned broker leaves ZooKeeper, or it
//! answers an error, the transaction is broken: it never moves, never
//! retries elsewhere and never commits partially.
//!
//! Differences from the Java client (docs/protocol.md §8): the broker is
//! pinned at BEGIN, not after the first successful put (item 11); the key
//! counter stays a positive 32-bit int (item 8); session ids have no `:`
//! (item 9); an uncommitted guard rolls back when dropped.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tracing::{info, warn};

use super::pinned::{pinned_partition, NotPinnable::*};
use super::send::encode_put_into;
use super::topics::TopicState;
use super::tx_request::{put_answer, request, Command, RequestError};
use super::{Producer, ProducerInner};
use crate::cluster::{BrokerUri, Partition};
use crate::error::{Error, Result};
use crate::net::Connection;
use crate::protocol::{LocalTxId, TransactionKind, TransactionRequest, TxKey};
use crate::{Message, SendResult};

/// The broker and socket a transaction is bound to.
struct Pinned {
    broker_id: u32,
    connection: Connection,
    epoch: u64,
    /// The runtime BEGIN ran on, for the rollback of a guard dropped
    /// outside any runtime.
    runtime: Option<tokio::runtime::Handle>,
}

/// An open local transaction: `send` messages, then [`commit`](Self::commit)
/// or [`rollback`](Self::rollback). Dropping it uncommitted rolls it back in
/// the background.
///
/// ```no_run
/// # async fn demo(producer: metaq::Producer) -> metaq::Result<()> {
/// use metaq::Message;
/// let mut tx = producer.begin_transaction()?;
/// tx.send(Message::new("orders", "first")).await?;
/// tx.send(Message::new("orders", "second")).await?;
/// tx.commit().await?; // both become visible together
/// # Ok(()) }
/// ```
pub struct Transaction {
    inner: Arc<ProducerInner>,
    key: TxKey,
    key_text: String,
    timeout_secs: Option<i32>,
    pinned: Option<Pinned>,
    broken: Option<String>,
    finished: bool,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("key", &self.key_text)
            .field("broker", &self.broker())
            .field("broken", &self.broken)
            .finish()
    }
}

impl Producer {
    /// Opens a local transaction. Nothing is sent until its first message.
    /// Several may be open at once, each with its own key.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), metaq::Error> {
    /// # let producer = metaq::Producer::builder("127.0.0.1:2181").build().await?;
    /// let first = producer.begin_transaction()?;
    /// let second = producer.begin_transaction()?;
    /// assert_ne!(first.key(), second.key());
    /// // Nothing was sent yet, so these go nowhere.
    /// first.rollback().await?;
    /// second.rollback().await?;
    /// # Ok(()) }
    /// ```
    pub fn begin_transaction(&self) -> Result<Transaction> {
        let inner = &self.inner;
        inner.check_open()?;
        let counter = inner.next_transaction_number();
        let key = TxKey::Local(LocalTxId {
            session_id: inner.session_id.clone(),
            counter,
        });
        let timeout_secs = inner.config.transaction_timeout.and_then(whole_seconds);
        Ok(Transaction {
            inner: Arc::clone(inner),
            key_text: key.to_string(),
            key,
            timeout_secs,
            pinned: None,
            broken: None,
            finished: false,
        })
    }
}

/// Why a transaction is broken while a send awaits its answer; it stays so
/// if the send's future is dropped before the answer comes.
const CANCELLED_PUT: &str =
    "a send was cancelled before its answer came; the broker may hold that message";
const CANCELLED_BEGIN: &str =
    "a send was cancelled before BEGIN was answered; the broker may hold the transaction";

/// Seconds for BEGIN: none for zero (MetaQ's `setTransactionTimeout(0)`,
/// no timeout token), else at least 1 (a 0 on the wire would mean none).
pub(crate) fn whole_seconds(timeout: Duration) -> Option<i32> {
    (!timeout.is_zero()).then(|| timeout.as_secs().clamp(1, i32::MAX as u64) as i32)
}

impl Transaction {
    /// The key, `TX:<sessionId>:<n>`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), metaq::Error> {
    /// # let producer = metaq::Producer::builder("127.0.0.1:2181").build().await?;
    /// let tx = producer.begin_transaction()?;
    /// assert!(tx.key().starts_with("TX:"));
    /// println!("opened {}", tx.key()); // the broker logs this key too
    /// # Ok(()) }
    /// ```
    pub fn key(&self) -> &str {
        &self.key_text
    }

    /// The broker the transaction is pinned to, once a message was sent.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), metaq::Error> {
    /// # let producer = metaq::Producer::builder("127.0.0.1:2181").build().await?;
    /// use metaq::Message;
    /// let mut tx = producer.begin_transaction()?;
    /// assert!(tx.broker().is_none()); // nothing sent yet
    /// let sent = tx.send(Message::new("orders", "first")).await?;
    /// assert_eq!(tx.broker(), Some(&sent.broker));
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub fn broker(&self) -> Option<&BrokerUri> {
        self.pinned.as_ref().map(|p| p.connection.uri())
    }

    /// Sets this transaction's broker-side timeout (default: the builder's),
    /// in whole seconds, at least 1; zero means none. Only effective before
    /// the first message.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), metaq::Error> {
    /// # let producer = metaq::Producer::builder("127.0.0.1:2181").build().await?;
    /// use std::time::Duration;
    /// use metaq::Message;
    /// // The broker rolls it back if it is still open after 30 s.
    /// let mut tx = producer.begin_transaction()?.with_timeout(Duration::from_secs(30));
    /// tx.send(Message::new("orders", "first")).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout_secs = whole_seconds(timeout);
        self
    }

    fn failed(&self, reason: impl Into<String>) -> Error {
        Error::TransactionFailed {
            key: self.key_text.clone(),
            broker: self.broker().map_or("-".into(), ToString::to_string),
            reason: reason.into(),
        }
    }

    fn break_with(&mut self, reason: String) -> Error {
        warn!(key = %self.key_text, broker = ?self.broker().map(ToString::to_string), %reason, "transaction broken");
        let error = self.failed(reason.clone());
        self.broken = Some(reason);
        error
    }

    /// Sends a message inside the transaction. It is stored by the broker but
    /// invisible until commit; the result's offset is `-1`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), metaq::Error> {
    /// # let producer = metaq::Producer::builder("127.0.0.1:2181").build().await?;
    /// use metaq::Message;
    /// let mut tx = producer.begin_transaction()?;
    /// let sent = tx.send(Message::new("orders", "first")).await?;
    /// assert_eq!(sent.offset, -1); // not in the log until commit
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "transaction_send", skip_all, fields(key = %self.key_text, topic = %message.topic()))]
    pub async fn send(&mut self, message: Message) -> Result<SendResult> {
        let inner = Arc::clone(&self.inner);
        inner.check_open()?;
        message.validate(inner.config.max_message_size)?;
        if let Some(reason) = &self.broken {
            return Err(self.failed(format!("already broken: {reason}")));
        }
        let topic = inner
            .ensure_topic(message.topic(), inner.config.send_timeout)
            .await?;
        let (partition, connection, epoch) = match &self.pinned {
            None => {
                let (partition, connection) =
                    inner.choose(&topic, &message, &[], tokio::time::Instant::now())?;
                let epoch = self.begin(&connection, partition.broker_id).await?;
                (partition, connection, epoch)
            }
            Some(pinned) => {
                let (broker_id, connection, epoch) =
                    (pinned.broker_id, pinned.connection.clone(), pinned.epoch);
                // As outside transactions (docs/protocol.md §2.6): a topic no broker
                // lists uses the default topic's partitions.
                let state = match inner.default_topic_state() {
                    Some(default) if topic.route.load().partitions.is_empty() => default,
                    _ => topic,
                };
                let partition = self.choose_pinned(&state, &message, broker_id, &connection)?;
                (partition, connection, epoch)
            }
        };
        let key = &self.key;
        let frame = |out: &mut BytesMut, opaque| {
            encode_put_into(out, opaque, &message, partition, Some(key))
        };
        // If this future is dropped before the answer, the put may be held
        // by the broker although the caller never saw it succeed: until the
        // answer is in, the transaction counts as broken.
        self.broken = Some(CANCELLED_PUT.into());
        let answer = request(&connection, Some(epoch), frame, inner.config.send_timeout).await;
        self.broken = None;
        match answer {
            Ok(response) if response.code.is_success() => {
                match put_answer(&response, partition, connection.uri()) {
                    Some(sent) => Ok(sent),
                    None => Err(self.break_with(format!(
                        "unreadable answer to a put: {:?}",
                        String::from_utf8_lossy(&response.body)
                    ))),
                }
            }
            Ok(response) => Err(self.break_with(format!(
                "put answered {}: {}",
                response.code.0,
                String::from_utf8_lossy(&response.body)
            ))),
            Err(cause) => Err(self.break_with(format!("put failed: {cause}"))),
        }
    }

    /// Sends BEGIN on `connection` and pins the transaction to it. Returns
    /// the socket generation the transaction lives on.
    async fn begin(&mut self, connection: &Connection, broker_id: u32) -> Result<u64> {
        if !connection.is_ready() {
            return Err(self.failed(format!("{} is not connected", connection.uri())));
        }
        let epoch = connection.epoch();
        let command = self.command(TransactionKind::Begin, self.timeout_secs);
        let wait = self.inner.config.transaction_request_timeout;
        // Even without an answer the broker may hold the transaction: stay
        // on it so that a rollback reaches it. Pinned (and broken, in case
        // this future is dropped before the answer) until the answer is in.
        self.pinned = Some(Pinned {
            broker_id,
            connection: connection.clone(),
            epoch,
            runtime: tokio::runtime::Handle::try_current().ok(),
        });
        self.broken = Some(CANCELLED_BEGIN.into());
        let answer = request(connection, Some(epoch), command.frame(), wait).await;
        self.broken = None;
        if matches!(answer, Err(RequestError::NotWritten(_))) {
            // Never reached the broker: free to choose again.
            self.pinned = None;
        }
        match answer {
            Ok(response) if response.code.is_success() => {
                info!(key = %self.key_text, broker = %connection.uri(), "transaction begun");
                Ok(epoch)
            }
            Ok(response) => Err(self.break_with(format!(
                "BEGIN answered {}: {}",
                response.code.0,
                String::from_utf8_lossy(&response.body)
            ))),
            Err(RequestError::NotWritten(cause)) => {
                Err(self.failed(format!("BEGIN not sent: {cause}")))
            }
            Err(cause) => Err(self.break_with(format!("BEGIN failed: {cause}"))),
        }
    }

    /// A partition of the pinned broker for `message`'s topic.
    fn choose_pinned(
        &mut self,
        state: &TopicState,
        message: &Message,
        broker_id: u32,
        pinned: &Connection,
    ) -> Result<Partition> {
        match pinned_partition(&self.inner, state, message, broker_id, pinned) {
            Ok(partition) => Ok(partition),
            Err(PinnedGone(reason)) => Err(self.break_with(reason)),
            Err(NoPartition(reason)) => Err(self.failed(reason)),
        }
    }

    /// A transaction command; the connection gives it its opaque.
    fn command(&self, kind: TransactionKind, timeout_secs: Option<i32>) -> Command {
        Command(TransactionRequest {
            key: self.key.clone(),
            session_id: self.inner.session_id.clone(),
            kind,
            timeout_secs,
            unique_qualifier: None,
            opaque: 0,
        })
    }

    /// Commits: every message sent becomes visible at once. With no message
    /// sent, nothing goes on the wire. A broken transaction is rolled back
    /// instead and reported as [`Error::TransactionFailed`]; a commit whose
    /// answer never comes is [`Error::TransactionOutcomeUnknown`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), metaq::Error> {
    /// # let producer = metaq::Producer::builder("127.0.0.1:2181").build().await?;
    /// use metaq::{Error, Message};
    /// let mut tx = producer.begin_transaction()?;
    /// tx.send(Message::new("orders", "debit")).await?;
    /// tx.send(Message::new("orders", "credit")).await?;
    /// match tx.commit().await {
    ///     Ok(()) => println!("both visible"),
    ///     Err(Error::TransactionOutcomeUnknown { key, .. }) => eprintln!("{key}: check later"),
    ///     Err(e) => return Err(e), // not committed: neither is visible
    /// }
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "transaction_commit", skip_all, fields(key = %self.key_text))]
    pub async fn commit(mut self) -> Result<()> {
        self.finished = true;
        let Some(pinned) = self.pinned.take() else {
            return Ok(());
        };
        if let Some(reason) = self.broken.clone() {
            self.send_rollback(&pinned).await;
            self.pinned = Some(pinned);
            return Err(self.failed(format!("not committed ({reason}); rolled back")));
        }
        let answer = self
            .on_pinned(&pinned, TransactionKind::CommitOnePhase)
            .await;
        self.pinned = Some(pinned);
        match answer {
            Ok(response) if response.code.is_success() => {
                info!(key = %self.key_text, "transaction committed");
                Ok(())
            }
            Ok(response) => Err(self.failed(format!(
                "COMMIT answered {}: {}",
                response.code.0,
                String::from_utf8_lossy(&response.body)
            ))),
            Err(RequestError::NotWritten(cause)) => Err(self.failed(format!(
                "COMMIT not sent ({cause}); the broker rolls the transaction back"
            ))),
            Err(cause) => Err(Error::TransactionOutcomeUnknown {
                key: self.key_text.clone(),
                broker: self.broker().map_or("-".into(), ToString::to_string),
                reason: cause.to_string(),
            }),
        }
    }

    /// Rolls back: nothing sent in the transaction becomes visible. With no
    /// message sent, nothing goes on the wire.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), metaq::Error> {
    /// # let producer = metaq::Producer::builder("127.0.0.1:2181").build().await?;
    /// use metaq::Message;
    /// let mut tx = producer.begin_transaction()?;
    /// tx.send(Message::new("orders", "draft")).await?;
    /// tx.rollback().await?; // "draft" never becomes visible
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "transaction_rollback", skip_all, fields(key = %self.key_text))]
    pub async fn rollback(mut self) -> Result<()> {
        self.finished = true;
        let Some(pinned) = self.pinned.take() else {
            return Ok(());
        };
        let answer = self.on_pinned(&pinned, TransactionKind::Rollback).await;
        self.pinned = Some(pinned);
        match answer {
            Ok(response) if response.code.is_success() => Ok(()),
            Ok(response) => Err(self.failed(format!(
                "ROLLBACK answered {}: {}",
                response.code.0,
                String::from_utf8_lossy(&response.body)
            ))),
            // Not written or no answer: the broker drops the transaction
            // when the connection closes or the timeout passes; nothing of
            // it was committed.
            Err(cause) => Err(self.failed(format!("ROLLBACK not confirmed: {cause}"))),
        }
    }

    async fn send_rollback(&self, pinned: &Pinned) {
        let _ = self.on_pinned(pinned, TransactionKind::Rollback).await;
    }

    /// Sends a `kind` command for this transaction on its socket and waits
    /// (the transaction request timeout) for the answer.
    async fn on_pinned(
        &self,
        pinned: &Pinned,
        kind: TransactionKind,
    ) -> std::result::Result<crate::protocol::Response, RequestError> {
        let command = self.command(kind, None);
        let wait = self.inner.config.transaction_request_timeout;
        request(
            &pinned.connection,
            Some(pinned.epoch),
            command.frame(),
            wait,
        )
        .await
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let Some(pinned) = self.pinned.take() else {
            return;
        };
        warn!(key = %self.key_text, "transaction dropped without commit; rolling back");
        let command = self.command(TransactionKind::Rollback, None);
        let wait = self.inner.config.transaction_request_timeout;
        // Dropped on a thread outside the runtime: use the one it began on.
        let runtime = tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| pinned.runtime.clone());
        if let Some(runtime) = runtime {
            runtime.spawn(async move {
                let _ = request(
                    &pinned.connection,
                    Some(pinned.epoch),
                    command.frame(),
                    wait,
                )
                .await;
            });
        }
    }
}
