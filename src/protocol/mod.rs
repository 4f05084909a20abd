//! The MetaQ 1.4 text protocol, sans-IO.
//!
//! Everything here works on byte buffers and knows nothing of sockets, tasks or
//! ZooKeeper, so it can be unit-, property- and fuzz-tested in isolation.
//!
//! * [`Request`] / [`Response`]: the frames, with `encode` methods that validate
//!   every field that could break the line protocol before writing a byte.
//! * [`encode_put`]: the allocation-free path the producer uses for messages.
//! * [`ServerCodec`] / [`ClientCodec`]: incremental `tokio_util` codecs with
//!   bounded line and body sizes.
//! * [`TxKey`]: transaction identifiers as they appear on the wire.
//!
//! The facts behind this module are in docs/protocol.md, section 3 (§3.1–3.14).

mod ascii;
mod checksum;
mod codec;
mod decode;
mod encode;
mod error;
mod frame;
mod message;
mod txkey;
mod validate;

pub use checksum::{checksum, Checksum};
pub use codec::{ClientCodec, CodecError, DecodeLimits, ServerCodec};
pub use encode::{encode_put, PutHeader};
pub use error::ProtocolError;
pub use frame::{
    PutRequest, Request, Response, StatusCode, TransactionKind, TransactionRequest,
    UnsupportedRequest,
};
pub use message::{attribute_body, split_body, FLAG_ATTRIBUTE};
pub use txkey::{LocalTxId, TxKey, XaTxId};
pub use validate::{validate_session_id, validate_topic, validate_unique_qualifier, MAX_NAME_LEN};

/// The opaque value a broker uses when a `version` or `stats` request carried none.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use tokio_util::codec::Decoder;
/// use metaq::protocol::{Request, ServerCodec, DEFAULT_OPAQUE};
/// let mut buf = BytesMut::from(&b"version\r\n"[..]);
/// let request = ServerCodec::default().decode(&mut buf).unwrap();
/// assert_eq!(request, Some(Request::Version { opaque: DEFAULT_OPAQUE }));
/// ```
pub const DEFAULT_OPAQUE: i32 = i32::MAX;

/// Default cap on a frame body (2 MiB), the Java consumer's record limit.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use tokio_util::codec::Decoder;
/// use metaq::protocol::{ClientCodec, CodecError, ProtocolError, DEFAULT_MAX_BODY};
/// let header = format!("result 200 {} 1\r\n", DEFAULT_MAX_BODY + 1);
/// let mut buf = BytesMut::from(header.as_bytes());
/// let err = ClientCodec::default().decode(&mut buf).unwrap_err();
/// assert!(matches!(
///     err,
///     CodecError::Protocol(ProtocolError::BodyTooLarge { max, .. }) if max == DEFAULT_MAX_BODY
/// ));
/// ```
pub const DEFAULT_MAX_BODY: usize = 2 * 1024 * 1024;

/// Default cap on a header line (64 KiB). The Java broker has none.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use tokio_util::codec::Decoder;
/// use metaq::protocol::{CodecError, ProtocolError, ServerCodec, DEFAULT_MAX_LINE};
/// // No CRLF in sight after more than the cap: the decoder gives up.
/// let mut buf = BytesMut::from(&vec![b'x'; DEFAULT_MAX_LINE + 2][..]);
/// let err = ServerCodec::default().decode(&mut buf).unwrap_err();
/// assert!(matches!(
///     err,
///     CodecError::Protocol(ProtocolError::LineTooLong { max }) if max == DEFAULT_MAX_LINE
/// ));
/// ```
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;
