//! The frames of the protocol, as owned values.

use bytes::Bytes;

use super::TxKey;

/// A `put`: one message for one partition (docs/protocol.md §3.4).
///
/// `checksum: None` is the legacy form without a checksum token (6 or 7
/// tokens); `Some(-1)` is an explicit "not supplied".
///
/// # Examples
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use tokio_util::codec::Decoder;
/// use metaq::protocol::{checksum, PutRequest, Request, ServerCodec};
/// let put = PutRequest { topic: "test".into(), partition: 0, flag: 0,
///     checksum: Some(checksum(b"hello")), tx_key: None, opaque: 1,
///     body: Bytes::from_static(b"hello") };
/// let mut wire = BytesMut::new();
/// put.encode(&mut wire).unwrap();
/// assert_eq!(ServerCodec::default().decode(&mut wire).unwrap(), Some(Request::Put(put)));
/// ```
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

/// The type word of a `transaction` command (docs/protocol.md §3.5).
///
/// # Examples
///
/// ```
/// use metaq::protocol::TransactionKind;
/// let kind = TransactionKind::from_word("COMMIT_ONE_PHASE").unwrap();
/// assert_eq!(kind, TransactionKind::CommitOnePhase);
/// assert_eq!(kind.as_str(), "COMMIT_ONE_PHASE");
/// ```
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
    /// Every kind, in the order of Java's enum.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::protocol::TransactionKind;
    /// for kind in TransactionKind::ALL {
    ///     assert_eq!(TransactionKind::from_word(kind.as_str()), Some(kind));
    /// }
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::protocol::TransactionKind;
    /// assert_eq!(TransactionKind::Rollback.as_str(), "ROLLBACK");
    /// ```
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

    /// Parses the exact wire word. Case matters, as in the Java broker.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::protocol::TransactionKind;
    /// assert_eq!(TransactionKind::from_word("BEGIN"), Some(TransactionKind::Begin));
    /// assert_eq!(TransactionKind::from_word("begin"), None);
    /// ```
    pub fn from_word(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == word)
    }
}

/// A `transaction` command (docs/protocol.md §3.5).
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use tokio_util::codec::Decoder;
/// use metaq::protocol::{Request, ServerCodec, TransactionKind};
/// let mut buf = BytesMut::from(&b"transaction TX:s-1-1:4 s-1-1 COMMIT_ONE_PHASE 8\r\n"[..]);
/// let Some(Request::Transaction(tx)) = ServerCodec::default().decode(&mut buf).unwrap() else {
///     panic!("expected a transaction command");
/// };
/// assert_eq!(tx.kind, TransactionKind::CommitOnePhase);
/// assert_eq!((tx.key.to_string(), tx.timeout_secs, tx.opaque), ("TX:s-1-1:4".into(), None, 8));
/// ```
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
/// `offset`, `sync`); it answers 503 like a Java broker without the plugin.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use tokio_util::codec::Decoder;
/// use metaq::protocol::{Request, ServerCodec, UnsupportedRequest};
/// let mut buf = BytesMut::from(&b"get test group 0 0 1024 5\r\n"[..]);
/// let request = ServerCodec::default().decode(&mut buf).unwrap();
/// let get = UnsupportedRequest { command: "get", opaque: 5 };
/// assert_eq!(request, Some(Request::Unsupported(get)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedRequest {
    /// The command word.
    pub command: &'static str,
    /// Request id echoed in the response.
    pub opaque: i32,
}

/// Any request a broker can receive.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use tokio_util::codec::Decoder;
/// use metaq::protocol::{Request, ServerCodec};
/// let mut codec = ServerCodec::default();
/// let mut buf = BytesMut::from(&b"stats  3\r\nput test 0 5 0 907060870 4\r\nhello"[..]);
/// while let Some(request) = codec.decode(&mut buf).unwrap() {
///     match request {
///         Request::Stats { item, opaque } => assert_eq!((item.as_str(), opaque), ("", 3)),
///         Request::Put(put) => assert_eq!(&put.body[..], b"hello"),
///         other => panic!("unexpected {other:?}"),
///     }
/// }
/// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::protocol::Request;
    /// assert_eq!(Request::Version { opaque: 7 }.opaque(), Some(7));
    /// assert_eq!(Request::Quit.opaque(), None); // `quit` is never answered
    /// ```
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

/// HTTP-like status codes of `result` frames (docs/protocol.md §3.13).
///
/// # Examples
///
/// ```
/// use metaq::protocol::{Response, StatusCode};
/// let answer = Response::text(StatusCode(503), 1, "no handler for get");
/// assert_eq!(answer.code, StatusCode::SERVICE_UNAVAILABLE);
/// assert!(!answer.code.is_success());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusCode(pub u16);

impl StatusCode {
    /// 200: the request succeeded.
    ///
    /// # Examples
    ///
    /// ```
    /// # use bytes::BytesMut;
    /// # use tokio_util::codec::Decoder;
    /// use metaq::protocol::{ClientCodec, StatusCode};
    /// let mut buf = BytesMut::from(&b"result 200 7 1\r\n1.4.6.2"[..]);
    /// let answer = ClientCodec::default().decode(&mut buf).unwrap().unwrap();
    /// assert_eq!(answer.code, StatusCode::SUCCESS);
    /// ```
    pub const SUCCESS: Self = Self(200);

    /// 301: `get` should use the offset in the body.
    ///
    /// # Examples
    ///
    /// ```
    /// # use bytes::BytesMut;
    /// # use tokio_util::codec::Decoder;
    /// use metaq::protocol::{ClientCodec, StatusCode};
    /// let mut buf = BytesMut::from(&b"result 301 4 1\r\n1024"[..]);
    /// let answer = ClientCodec::default().decode(&mut buf).unwrap().unwrap();
    /// assert_eq!(answer.code, StatusCode::MOVED);
    /// ```
    pub const MOVED: Self = Self(301);

    /// 400: bad `get` size.
    ///
    /// # Examples
    ///
    /// ```
    /// # use bytes::BytesMut;
    /// # use tokio_util::codec::Decoder;
    /// use metaq::protocol::{ClientCodec, StatusCode};
    /// let mut buf = BytesMut::from(&b"result 400 8 1\r\nbad size"[..]);
    /// let answer = ClientCodec::default().decode(&mut buf).unwrap().unwrap();
    /// assert_eq!(answer.code, StatusCode::BAD_REQUEST);
    /// ```
    pub const BAD_REQUEST: Self = Self(400);

    /// 403: the partition is closed.
    ///
    /// # Examples
    ///
    /// ```
    /// # use bytes::BytesMut;
    /// # use tokio_util::codec::Decoder;
    /// use metaq::protocol::{ClientCodec, StatusCode};
    /// let mut buf = BytesMut::from(&b"result 403 16 1\r\npartition closed"[..]);
    /// let answer = ClientCodec::default().decode(&mut buf).unwrap().unwrap();
    /// assert_eq!(answer.code, StatusCode::FORBIDDEN);
    /// ```
    pub const FORBIDDEN: Self = Self(403);

    /// 404: no such topic, partition or message.
    ///
    /// # Examples
    ///
    /// ```
    /// # use bytes::BytesMut;
    /// # use tokio_util::codec::Decoder;
    /// use metaq::protocol::{ClientCodec, StatusCode};
    /// let mut buf = BytesMut::from(&b"result 404 13 1\r\nno such topic"[..]);
    /// let answer = ClientCodec::default().decode(&mut buf).unwrap().unwrap();
    /// assert_eq!(answer.code, StatusCode::NOT_FOUND);
    /// ```
    pub const NOT_FOUND: Self = Self(404);

    /// 500: the request failed on the broker.
    ///
    /// # Examples
    ///
    /// ```
    /// # use bytes::BytesMut;
    /// # use tokio_util::codec::Decoder;
    /// use metaq::protocol::{ClientCodec, StatusCode};
    /// let mut buf = BytesMut::from(&b"result 500 10 1\r\nput failed"[..]);
    /// let answer = ClientCodec::default().decode(&mut buf).unwrap().unwrap();
    /// assert_eq!(answer.code, StatusCode::INTERNAL_SERVER_ERROR);
    /// ```
    pub const INTERNAL_SERVER_ERROR: Self = Self(500);

    /// 503: no handler, or the broker is overloaded.
    ///
    /// # Examples
    ///
    /// ```
    /// # use bytes::BytesMut;
    /// # use tokio_util::codec::Decoder;
    /// use metaq::protocol::{ClientCodec, StatusCode};
    /// let mut buf = BytesMut::from(&b"result 503 10 1\r\nno handler"[..]);
    /// let answer = ClientCodec::default().decode(&mut buf).unwrap().unwrap();
    /// assert_eq!(answer.code, StatusCode::SERVICE_UNAVAILABLE);
    /// ```
    pub const SERVICE_UNAVAILABLE: Self = Self(503);

    /// 504: generated locally for timeouts, never sent by a broker.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::protocol::{Response, StatusCode};
    /// // What a client makes up when the broker did not answer in time:
    /// let timed_out = Response::text(StatusCode::GATEWAY_TIMEOUT, 1, "no answer within 3s");
    /// assert_eq!(timed_out.code.0, 504);
    /// ```
    pub const GATEWAY_TIMEOUT: Self = Self(504);

    /// Whether this is 200.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::protocol::StatusCode;
    /// assert!(StatusCode(200).is_success());
    /// assert!(!StatusCode::INTERNAL_SERVER_ERROR.is_success());
    /// ```
    pub fn is_success(self) -> bool {
        self == Self::SUCCESS
    }
}

/// A `result` frame: the answer to every request but `get` (docs/protocol.md §3.2).
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use tokio_util::codec::Decoder;
/// use metaq::protocol::{ClientCodec, Response, StatusCode};
/// let mut buf = BytesMut::new();
/// Response::text(StatusCode::NOT_FOUND, 9, "topic not found").encode(&mut buf).unwrap();
/// let answer = ClientCodec::default().decode(&mut buf).unwrap().unwrap();
/// assert_eq!((answer.code, answer.opaque), (StatusCode::NOT_FOUND, 9));
/// assert_eq!(&answer.body[..], b"topic not found");
/// ```
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
        if let Some([id, partition, offset]) = super::ascii::ints::<3>(&self.body) {
            return Some((id, i32::try_from(partition).ok()?, offset));
        }
        let text = std::str::from_utf8(&self.body).ok()?;
        let mut parts = text.split(' ');
        let id = parts.next()?.parse().ok()?;
        let partition = parts.next()?.parse().ok()?;
        let offset = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some((id, partition, offset))
    }
}
