//! The frames of the protocol, as owned values.

use bytes::Bytes;

use super::TxKey;

/// A `put`: one message for one partition (reference 3.4).
///
/// `checksum: None` is the legacy form without a checksum token (6 or 7
/// tokens); `Some(-1)` is an explicit "not supplied".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutRequest {
    /// Topic name.
    pub topic: String,
    /// Partition index on the broker; `-1` lets the broker choose.
    pub partition: i32,
    /// Flag bits; bit 0 marks an attribute block at the start of the body.
    pub flag: i32,
    /// Masked CRC32 of the body, or `None` for the legacy form.
    pub checksum: Option<i32>,
    /// Transaction key for a transactional put.
    pub tx_key: Option<TxKey>,
    /// Request id echoed in the response.
    pub opaque: i32,
    /// Attribute block (if any) followed by the payload.
    pub body: Bytes,
}

/// The type word of a `transaction` command (reference 3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransactionKind {
    /// `BEGIN`
    Begin,
    /// `PREPARE`
    Prepare,
    /// `COMMIT_ONE_PHASE`
    CommitOnePhase,
    /// `COMMIT_TWO_PHASE`
    CommitTwoPhase,
    /// `ROLLBACK`
    Rollback,
    /// `RECOVER`
    Recover,
    /// `FORGET`
    Forget,
    /// `END` (never answered by the broker)
    End,
}

impl TransactionKind {
    /// Every kind, in the order of the reference's enum.
    pub const ALL: [TransactionKind; 8] = [
        Self::Begin,
        Self::Prepare,
        Self::CommitOnePhase,
        Self::CommitTwoPhase,
        Self::Rollback,
        Self::Recover,
        Self::Forget,
        Self::End,
    ];

    /// The exact wire word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Begin => "BEGIN",
            Self::Prepare => "PREPARE",
            Self::CommitOnePhase => "COMMIT_ONE_PHASE",
            Self::CommitTwoPhase => "COMMIT_TWO_PHASE",
            Self::Rollback => "ROLLBACK",
            Self::Recover => "RECOVER",
            Self::Forget => "FORGET",
            Self::End => "END",
        }
    }

    /// Parses the exact wire word.
    pub fn from_word(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == word)
    }
}

/// A `transaction` command (reference 3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionRequest {
    /// The transaction key (`TX:…`, `XID:…` or `null`).
    pub key: TxKey,
    /// The producer's session id.
    pub session_id: String,
    /// What to do.
    pub kind: TransactionKind,
    /// Timeout in seconds; written only when greater than zero.
    pub timeout_secs: Option<i32>,
    /// XA unique qualifier; written only when present.
    pub unique_qualifier: Option<String>,
    /// Request id echoed in the response.
    pub opaque: i32,
}

/// A request the development broker decodes but has no handler for (`get`,
/// `offset`, `sync`); it answers 503 like a reference broker without the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedRequest {
    /// The command word.
    pub command: &'static str,
    /// Request id echoed in the response.
    pub opaque: i32,
}

/// Any request a broker can receive.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// `put`
    Put(PutRequest),
    /// A `put` whose body was over the decoder's cap: the body was skipped
    /// without being buffered, so the broker can still answer it.
    PutTooLarge {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// Announced body length.
        len: u64,
        /// Request id echoed in the response.
        opaque: i32,
    },
    /// `transaction`
    Transaction(TransactionRequest),
    /// `version` (heartbeat)
    Version {
        /// Request id; [`DEFAULT_OPAQUE`](super::DEFAULT_OPAQUE) when absent.
        opaque: i32,
    },
    /// `stats`
    Stats {
        /// The item asked for; empty for the summary.
        item: String,
        /// Request id; [`DEFAULT_OPAQUE`](super::DEFAULT_OPAQUE) when absent.
        opaque: i32,
    },
    /// `quit`: the peer closes the connection, no answer.
    Quit,
    /// `get`, `offset` or `sync`.
    Unsupported(UnsupportedRequest),
}

impl Request {
    /// The request id the answer must carry, if the request gets one.
    pub fn opaque(&self) -> Option<i32> {
        match self {
            Request::Put(p) => Some(p.opaque),
            Request::PutTooLarge { opaque, .. } => Some(*opaque),
            Request::Transaction(t) => Some(t.opaque),
            Request::Version { opaque } | Request::Stats { opaque, .. } => Some(*opaque),
            Request::Unsupported(u) => Some(u.opaque),
            Request::Quit => None,
        }
    }
}

/// HTTP-like status codes of `result` frames (reference 3.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusCode(pub u16);

impl StatusCode {
    /// 200: the request succeeded.
    pub const SUCCESS: Self = Self(200);
    /// 301: `get` should use the offset in the body.
    pub const MOVED: Self = Self(301);
    /// 400: bad `get` size.
    pub const BAD_REQUEST: Self = Self(400);
    /// 403: the partition is closed.
    pub const FORBIDDEN: Self = Self(403);
    /// 404: no such topic, partition or message.
    pub const NOT_FOUND: Self = Self(404);
    /// 500: the request failed on the broker.
    pub const INTERNAL_SERVER_ERROR: Self = Self(500);
    /// 503: no handler, or the broker is overloaded.
    pub const SERVICE_UNAVAILABLE: Self = Self(503);
    /// 504: generated locally for timeouts, never sent by a broker.
    pub const GATEWAY_TIMEOUT: Self = Self(504);

    /// Whether this is 200.
    pub fn is_success(self) -> bool {
        self == Self::SUCCESS
    }
}

/// A `result` frame: the answer to every request but `get` (reference 3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub code: StatusCode,
    /// The request's opaque.
    pub opaque: i32,
    /// Body bytes (UTF-8 text for every answer a producer sees).
    pub body: Bytes,
}

impl Response {
    /// A response with a text body.
    ///
    /// ```
    /// use metaq::protocol::{Response, StatusCode};
    /// let r = Response::text(StatusCode::SUCCESS, 7, "1.4.6.2");
    /// assert_eq!(&r.body[..], b"1.4.6.2");
    /// ```
    pub fn text(code: StatusCode, opaque: i32, body: impl Into<String>) -> Self {
        Self {
            code,
            opaque,
            body: Bytes::from(body.into()),
        }
    }

    /// Parses a successful put answer, `<msgId> <partition> <offset>`.
    ///
    /// ```
    /// use metaq::protocol::{Response, StatusCode};
    /// let r = Response::text(StatusCode::SUCCESS, 1, "-5468572396564774912 0 0");
    /// assert_eq!(r.put_result(), Some((-5468572396564774912, 0, 0)));
    /// ```
    pub fn put_result(&self) -> Option<(i64, i32, i64)> {
        let text = std::str::from_utf8(&self.body).ok()?;
        let mut parts = text.split(' ');
        let id = parts.next()?.parse().ok()?;
        let partition = parts.next()?.parse().ok()?;
        let offset = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some((id, partition, offset))
    }
}
