//! The one public error type.

use std::fmt;
use std::time::Duration;

use crate::cluster::{BrokerUri, Partition};
use crate::protocol::ProtocolError;

/// What a failed send means for the message.
///
/// Tells whether sending the same message again risks a duplicate.
///
/// # Examples
///
/// ```
/// use metaq::{Delivery, Error};
/// let delivery = Error::Closed.delivery();
/// assert_eq!(delivery, Some(Delivery::NotSent));
/// assert_eq!(delivery.unwrap().to_string(), "not_sent");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Delivery {
    /// Nothing reached a broker: safe to send again.
    NotSent,
    /// The request was written but no answer came (timeout, connection lost):
    /// the broker may have stored the message.
    MaybeSent,
    /// The broker answered with an error code: it did not store the message.
    Rejected,
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Delivery::NotSent => "not_sent",
            Delivery::MaybeSent => "maybe_sent",
            Delivery::Rejected => "rejected",
        })
    }
}

/// One try of a send, as listed in the final error.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use metaq::{Attempt, Delivery};
/// let attempt = Attempt {
///     broker: "meta://10.0.0.5:8123".parse().unwrap(),
///     partition: "0-1".parse().unwrap(),
///     elapsed: Duration::from_millis(40),
///     delivery: Delivery::NotSent,
///     cause: "connection refused".into(),
/// };
/// assert_eq!(attempt.broker.socket_addr_text(), "10.0.0.5:8123");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The broker tried.
    pub broker: BrokerUri,
    /// The partition tried.
    pub partition: Partition,
    /// Time from the start of the send to the end of this try.
    pub elapsed: Duration,
    /// What happened to the message on this try.
    pub delivery: Delivery,
    /// Why it failed.
    pub cause: String,
}

/// The tries of a send, oldest first.
///
/// `Display` lists each try on one line, for logs.
///
/// # Examples
///
/// ```
/// # use std::time::Duration;
/// use metaq::{Attempt, Attempts, Delivery};
/// # let attempt = Attempt {
/// #     broker: "meta://10.0.0.5:8123".parse().unwrap(),
/// #     partition: "0-1".parse().unwrap(),
/// #     elapsed: Duration::from_millis(40),
/// #     delivery: Delivery::NotSent,
/// #     cause: "connection refused".into(),
/// # };
/// let attempts = Attempts(vec![attempt]);
/// assert_eq!(
///     attempts.to_string(),
///     "1 attempt(s): #1 meta://10.0.0.5:8123 partition 0-1 after 40ms: connection refused (not_sent)"
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attempts(pub Vec<Attempt>);

impl fmt::Display for Attempts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} attempt(s)", self.0.len())?;
        for (i, a) in self.0.iter().enumerate() {
            let sep = if i == 0 { ": " } else { "; " };
            write!(
                f,
                "{sep}#{} {} partition {} after {:?}: {} ({})",
                i + 1,
                a.broker,
                a.partition,
                a.elapsed,
                a.cause,
                a.delivery
            )?;
        }
        Ok(())
    }
}

/// Everything that can go wrong, with its context in fields.
///
/// Every failed send is one of three cases, told by [`Error::delivery`]:
/// [`Delivery::NotSent`] (safe to retry), [`Delivery::MaybeSent`] (the broker
/// may have stored it), [`Delivery::Rejected`] (the broker answered an error).
/// The send variants carry every attempt made, oldest first.
///
/// ```
/// use metaq::{Delivery, Error};
/// let e = Error::InvalidMessage { topic: "a b".into(), reason: "contains a space".into() };
/// assert_eq!(e.delivery(), Some(Delivery::NotSent));
/// assert!(!e.is_retriable());
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The message cannot be written (bad topic, attribute, …). Not sent.
    #[error("invalid message for topic {topic:?}: {reason}")]
    InvalidMessage {
        /// The message's topic.
        topic: String,
        /// What is wrong.
        reason: String,
    },
    /// The body is over the producer's maximum message size. Not sent.
    #[error("message for topic {topic:?} is {size} bytes, over the {max}-byte limit")]
    MessageTooLarge {
        /// The message's topic.
        topic: String,
        /// Body size (attribute block included).
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// No partition could take the message (no broker serves the topic yet,
    /// or none of its partitions is usable). Not sent.
    #[error("no partition available for topic {topic:?}: {reason}")]
    NoPartition {
        /// The message's topic.
        topic: String,
        /// Why.
        reason: String,
    },
    /// The broker's connection was not usable; nothing was written. Not sent.
    #[error("not sent to {broker} (topic {topic:?}, partition {partition}): {cause}; {attempts}")]
    NotSent {
        /// The message's topic.
        topic: String,
        /// The partition of the last attempt.
        partition: Partition,
        /// The broker of the last attempt.
        broker: BrokerUri,
        /// Why.
        cause: String,
        /// Every attempt.
        attempts: Attempts,
    },
    /// No answer within the send timeout after the request was written.
    /// The broker may have stored the message.
    #[error("no answer from {broker} within {timeout:?} (topic {topic:?}, partition {partition}); the message may have been stored; {attempts}")]
    Timeout {
        /// The message's topic.
        topic: String,
        /// The partition of the last attempt.
        partition: Partition,
        /// The broker of the last attempt.
        broker: BrokerUri,
        /// The send timeout.
        timeout: Duration,
        /// Every attempt.
        attempts: Attempts,
    },
    /// The connection broke after the request was written. The broker may
    /// have stored the message.
    #[error("connection to {broker} lost after writing (topic {topic:?}, partition {partition}): {cause}; the message may have been stored; {attempts}")]
    ConnectionLost {
        /// The message's topic.
        topic: String,
        /// The partition of the last attempt.
        partition: Partition,
        /// The broker of the last attempt.
        broker: BrokerUri,
        /// Why.
        cause: String,
        /// Every attempt.
        attempts: Attempts,
    },
    /// The broker answered with an error code; it did not store the message.
    #[error("{broker} rejected the message (topic {topic:?}, partition {partition}) with {code}: {message}; {attempts}")]
    Rejected {
        /// The message's topic.
        topic: String,
        /// The partition of the last attempt.
        partition: Partition,
        /// The broker of the last attempt.
        broker: BrokerUri,
        /// The status code (403, 500, …).
        code: u16,
        /// The answer's body.
        message: String,
        /// Every attempt.
        attempts: Attempts,
    },
    /// A ZooKeeper operation failed.
    #[error("zookeeper {operation} {path:?} failed: {source}")]
    ZooKeeper {
        /// What was being done.
        operation: &'static str,
        /// The node, or the connect string.
        path: String,
        /// The client's error.
        source: zookeeper_client::Error,
    },
    /// No ZooKeeper session could be opened within the connect timeout.
    /// `cause` says what each host of the ensemble did (connection refused,
    /// name not resolved, not ZooKeeper, ...), as far as a probe could tell.
    #[error("cannot reach ZooKeeper {connect:?} within {waited:?}: {cause}")]
    ZooKeeperUnreachable {
        /// The connect string.
        connect: String,
        /// How long it tried.
        waited: Duration,
        /// What the hosts did.
        cause: String,
    },
    /// A topic's brokers could not be reached within the bound.
    #[error("topic {topic:?} is not available after {waited:?}: {reason}")]
    TopicUnavailable {
        /// The topic.
        topic: String,
        /// How long it waited.
        waited: Duration,
        /// Why.
        reason: String,
    },
    /// A transaction failed: nothing of it will become visible. Sends
    /// inside it fail with this once it is broken (pinned broker gone,
    /// connection re-established, an error answer); commit refuses and rolls
    /// back instead.
    #[error("transaction {key} failed on {broker}: {reason}")]
    TransactionFailed {
        /// The transaction key, `TX:<sessionId>:<n>`.
        key: String,
        /// The broker it is pinned to (`-` if none was chosen yet).
        broker: String,
        /// What went wrong.
        reason: String,
    },
    /// The commit was written but its answer never came: the transaction
    /// may or may not have been committed (distinct from rolled back).
    #[error("transaction {key} on {broker}: commit outcome unknown ({reason})")]
    TransactionOutcomeUnknown {
        /// The transaction key.
        key: String,
        /// The broker it is pinned to.
        broker: String,
        /// Why the answer is missing.
        reason: String,
    },
    /// An XA branch operation failed with an XA error code (docs/protocol.md
    /// §2.7, 4.4): the broker's `XAException:code=<int>` answer, or the code
    /// the Java client gives a local failure — XAER_RMERR (-3) for any other
    /// error answer, XA_RBTIMEOUT (106) for no answer in time, XAER_RMFAIL
    /// (-7) for no connection. The codes are the constants of
    /// [`producer::xa_code`](crate::producer::xa_code).
    #[error("XA {operation} of {xid} on {broker} failed with code {code}: {reason}")]
    Xa {
        /// The command: `start`, `end`, `prepare`, `commit`, `rollback`,
        /// `forget`, `recover` or `send`; `open` when no resource could be
        /// made (no broker serves every published topic).
        operation: &'static str,
        /// The branch key, `XID:<formatId>:<gtrid>:<bqual>:<qualifier>`
        /// (`null` for `recover`).
        xid: String,
        /// The broker asked.
        broker: String,
        /// The XA error code.
        code: i32,
        /// The broker's text, or what happened locally.
        reason: String,
    },
    /// The local message store could not be read or written.
    #[error("local store {path:?}: {operation} failed: {cause}")]
    LocalStore {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What was being done.
        operation: &'static str,
        /// The I/O error or the damage found.
        cause: String,
    },
    /// The local message store is at its size bound: the message was
    /// neither sent nor stored.
    #[error("local store is full: {held_bytes} of {limit_bytes} bytes held; cannot keep a message for {topic:?} partition {partition}")]
    LocalStoreFull {
        /// The message's topic.
        topic: String,
        /// The partition it waits for (`-1--1` for "any").
        partition: String,
        /// Bytes the store holds.
        held_bytes: u64,
        /// The store's bound.
        limit_bytes: u64,
    },
    /// The configuration is unusable.
    #[error("invalid configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The producer was closed. Not sent.
    #[error("the producer is closed")]
    Closed,
    /// A `flush` waited `timeout` and messages were still unacknowledged:
    /// sends in flight (`Producer`, `OneWayProducer`), which go on, each
    /// ending with its own result, or messages held in the local store
    /// (`OrderedProducer`), which stay there to be replayed.
    #[error("{in_flight} message(s) not yet acknowledged after waiting {timeout:?}")]
    FlushTimeout {
        /// How long `flush` waited.
        timeout: Duration,
        /// Messages not yet acknowledged when it stopped waiting (for an
        /// ordered producer: held in its store).
        in_flight: usize,
    },
}

impl Error {
    /// For errors of a send: what became of the message. `None` for errors
    /// that are not about one message (ZooKeeper, configuration).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// use metaq::{Delivery, Error};
    /// let timeout = Error::Timeout {
    ///     topic: "orders".into(),
    ///     partition: "0-1".parse().unwrap(),
    ///     broker: "meta://10.0.0.5:8123".parse().unwrap(),
    ///     timeout: Duration::from_secs(3),
    ///     attempts: Default::default(),
    /// };
    /// // The request was written: the broker may have stored the message.
    /// assert_eq!(timeout.delivery(), Some(Delivery::MaybeSent));
    /// let config = Error::Config { reason: "bad root".into() };
    /// assert_eq!(config.delivery(), None);
    /// ```
    pub fn delivery(&self) -> Option<Delivery> {
        match self {
            Error::InvalidMessage { .. }
            | Error::MessageTooLarge { .. }
            | Error::NoPartition { .. }
            | Error::NotSent { .. }
            | Error::TopicUnavailable { .. }
            | Error::TransactionFailed { .. }
            | Error::LocalStore { .. }
            | Error::LocalStoreFull { .. }
            | Error::Closed => Some(Delivery::NotSent),
            Error::Timeout { .. }
            | Error::ConnectionLost { .. }
            | Error::TransactionOutcomeUnknown { .. } => Some(Delivery::MaybeSent),
            Error::Rejected { .. } => Some(Delivery::Rejected),
            Error::ZooKeeper { .. }
            | Error::ZooKeeperUnreachable { .. }
            | Error::Config { .. }
            | Error::Xa { .. }
            | Error::FlushTimeout { .. } => None,
        }
    }

    /// Whether sending again may succeed: true for connection trouble,
    /// timeouts, missing partitions and broker-side failures (5xx); false for
    /// invalid messages, a closed producer and configuration errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::Error;
    /// let rejected = |code| Error::Rejected {
    ///     topic: "orders".into(),
    ///     partition: "0-1".parse().unwrap(),
    ///     broker: "meta://10.0.0.5:8123".parse().unwrap(),
    ///     code,
    ///     message: "refused".into(),
    ///     attempts: Default::default(),
    /// };
    /// assert!(rejected(503).is_retriable()); // the broker's trouble: try again
    /// assert!(!rejected(403).is_retriable()); // the message's trouble
    /// assert!(!Error::Closed.is_retriable());
    /// ```
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::NotSent { .. }
            | Error::Timeout { .. }
            | Error::ConnectionLost { .. }
            | Error::NoPartition { .. }
            | Error::TopicUnavailable { .. }
            | Error::ZooKeeper { .. }
            | Error::ZooKeeperUnreachable { .. } => true,
            Error::Rejected { code, .. } => *code >= 500,
            _ => false,
        }
    }

    /// The attempts of a failed send (empty for other errors).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// use metaq::{Attempt, Attempts, Delivery, Error};
    /// # let attempt = Attempt {
    /// #     broker: "meta://10.0.0.5:8123".parse().unwrap(),
    /// #     partition: "0-1".parse().unwrap(),
    /// #     elapsed: Duration::from_millis(40),
    /// #     delivery: Delivery::NotSent,
    /// #     cause: "connection refused".into(),
    /// # };
    /// let error = Error::NotSent {
    ///     topic: "orders".into(),
    ///     partition: attempt.partition,
    ///     broker: attempt.broker.clone(),
    ///     cause: attempt.cause.clone(),
    ///     attempts: Attempts(vec![attempt]),
    /// };
    /// assert_eq!(error.attempts().len(), 1);
    /// assert_eq!(error.attempts()[0].delivery, Delivery::NotSent);
    /// assert!(Error::Closed.attempts().is_empty());
    /// ```
    pub fn attempts(&self) -> &[Attempt] {
        match self {
            Error::NotSent { attempts, .. }
            | Error::Timeout { attempts, .. }
            | Error::ConnectionLost { attempts, .. }
            | Error::Rejected { attempts, .. } => &attempts.0,
            _ => &[],
        }
    }

    pub(crate) fn invalid(topic: &str, error: ProtocolError) -> Self {
        Error::InvalidMessage {
            topic: topic.to_owned(),
            reason: error.to_string(),
        }
    }
}

/// `Result` with [`Error`].
///
/// # Examples
///
/// ```
/// fn topic_of(text: &str) -> metaq::Result<String> {
///     match text.split_once('/') {
///         Some((topic, _)) => Ok(topic.to_owned()),
///         None => Err(metaq::Error::Config { reason: format!("no topic in {text:?}") }),
///     }
/// }
/// assert_eq!(topic_of("orders/1").unwrap(), "orders");
/// assert!(topic_of("orders").is_err());
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;
