//! Incremental framing for `tokio_util::codec`.
//!
//! The decoder remembers how far it has scanned for CRLF, caps the header line
//! and the body, and hands a frame out only once its whole body has arrived.
//! A `put` body over the cap is skipped as it streams in (never buffered), and
//! surfaces as [`Request::PutTooLarge`] so the broker can answer it.

use std::io;

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::decode::{parse_line, BodyHead, Head};
use super::{
    ProtocolError, PutRequest, Request, Response, StatusCode, UnsupportedRequest, DEFAULT_MAX_BODY,
    DEFAULT_MAX_LINE,
};

/// Caps applied while decoding, so a peer cannot make the codec buffer
/// without bound.
///
/// # Examples
///
/// ```
/// use metaq::protocol::{DecodeLimits, ServerCodec, DEFAULT_MAX_BODY, DEFAULT_MAX_LINE};
/// let defaults = DecodeLimits::default();
/// assert_eq!((defaults.max_line, defaults.max_body), (DEFAULT_MAX_LINE, DEFAULT_MAX_BODY));
/// // A broker that takes smaller messages than the default:
/// let _codec = ServerCodec::new(DecodeLimits { max_body: 64 * 1024, ..defaults });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Longest header line in bytes, CRLF excluded. Default 64 KiB.
    pub max_line: usize,
    /// Longest body in bytes. Default 2 MiB.
    pub max_body: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_line: DEFAULT_MAX_LINE,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// Errors of the codecs: a protocol violation or the socket's I/O error.
///
/// After a protocol error the stream is out of step, so the connection
/// should be closed.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use tokio_util::codec::Decoder;
/// use metaq::protocol::{ClientCodec, CodecError, ProtocolError};
/// // A producer only expects `result` frames; a request is a protocol error.
/// let mut buf = BytesMut::from(&b"version 7\r\n"[..]);
/// let err = ClientCodec::default().decode(&mut buf).unwrap_err();
/// assert!(matches!(err, CodecError::Protocol(ProtocolError::UnexpectedCommand { .. })));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The peer sent bytes that break the protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Reading or writing the socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

enum Pending {
    /// Waiting for `len` body bytes.
    Body(PendingHead, usize),
    /// Discarding `remaining` bytes of an oversized body, then yielding `then`.
    Skip { remaining: usize, then: Request },
}

enum PendingHead {
    Request(BodyHead),
    Result { code: StatusCode, opaque: i32 },
}

enum Frame {
    Request(Request),
    Response(Response),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Server,
    Client,
}

struct FrameDecoder {
    side: Side,
    limits: DecodeLimits,
    /// Bytes of the current line already searched for CRLF.
    scanned: usize,
    pending: Option<Pending>,
}

impl FrameDecoder {
    fn new(side: Side, limits: DecodeLimits) -> Self {
        Self {
            side,
            limits,
            scanned: 0,
            pending: None,
        }
    }

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        loop {
            match self.pending.take() {
                Some(Pending::Skip { remaining, then }) => {
                    let n = remaining.min(src.len());
                    src.advance(n);
                    if n < remaining {
                        self.pending = Some(Pending::Skip {
                            remaining: remaining - n,
                            then,
                        });
                        return Ok(None);
                    }
                    return Ok(Some(Frame::Request(then)));
                }
                Some(Pending::Body(head, len)) => {
                    if src.len() < len {
                        src.reserve(len - src.len());
                        self.pending = Some(Pending::Body(head, len));
                        return Ok(None);
                    }
                    let body = src.split_to(len).freeze();
                    return Ok(Some(complete(head, body)));
                }
                None => {}
            }
            let Some(line_len) = self.find_line_end(src)? else {
                return Ok(None);
            };
            let line = src.split_to(line_len + 2);
            self.scanned = 0;
            let head = parse_line(&line[..line_len])?;
            if let Some(frame) = self.start_body(head)? {
                return Ok(Some(frame));
            }
        }
    }

    /// Length of the header line if its CRLF has arrived.
    fn find_line_end(&mut self, src: &BytesMut) -> Result<Option<usize>, ProtocolError> {
        // A buffer shorter than what was scanned was emptied by the caller
        // (after an error, say): scan it from the start.
        if self.scanned > src.len() {
            self.scanned = 0;
        }
        // Step back one byte: a CR may have been the last byte seen before.
        let from = self.scanned.saturating_sub(1);
        let found = src[from..].windows(2).position(|w| w == b"\r\n");
        let max = self.limits.max_line;
        match found {
            Some(i) if from + i > max => Err(ProtocolError::LineTooLong { max }),
            Some(i) => Ok(Some(from + i)),
            None if src.len() > max + 1 => Err(ProtocolError::LineTooLong { max }),
            None => {
                self.scanned = src.len();
                Ok(None)
            }
        }
    }

    /// Sets up the body phase; returns a frame that needs no body.
    fn start_body(&mut self, head: Head) -> Result<Option<Frame>, ProtocolError> {
        let max = self.limits.max_body;
        match (self.side, head) {
            (Side::Server, Head::Request(request)) => return Ok(Some(Frame::Request(request))),
            (Side::Server, Head::WithBody(head, len)) if len > max => {
                let then = match head {
                    BodyHead::Put {
                        topic,
                        partition,
                        opaque,
                        ..
                    } => Request::PutTooLarge {
                        topic,
                        partition,
                        len: len as u64,
                        opaque,
                    },
                    BodyHead::Sync { opaque } => sync_unsupported(opaque),
                };
                self.pending = Some(Pending::Skip {
                    remaining: len,
                    then,
                });
            }
            (Side::Server, Head::WithBody(head, len)) => {
                self.pending = Some(Pending::Body(PendingHead::Request(head), len));
            }
            (Side::Client, Head::Result { len, .. }) if len > max => {
                return Err(ProtocolError::BodyTooLarge {
                    len: len as u64,
                    max,
                })
            }
            (Side::Client, Head::Result { code, opaque, len }) => {
                self.pending = Some(Pending::Body(PendingHead::Result { code, opaque }, len));
            }
            (Side::Server, Head::Result { opaque, .. }) => {
                return Err(ProtocolError::UnexpectedCommand {
                    line: format!("result … {opaque} (a response sent to a broker)"),
                })
            }
            (Side::Client, _) => {
                return Err(ProtocolError::UnexpectedCommand {
                    line: "a request sent to a client".to_owned(),
                })
            }
        }
        Ok(None)
    }
}

fn sync_unsupported(opaque: i32) -> Request {
    Request::Unsupported(UnsupportedRequest {
        command: "sync",
        opaque,
    })
}

fn complete(head: PendingHead, body: bytes::Bytes) -> Frame {
    match head {
        PendingHead::Request(BodyHead::Put {
            topic,
            partition,
            flag,
            checksum,
            tx_key,
            opaque,
        }) => Frame::Request(Request::Put(PutRequest {
            topic,
            partition,
            flag,
            checksum,
            tx_key,
            opaque,
            body,
        })),
        PendingHead::Request(BodyHead::Sync { opaque }) => Frame::Request(sync_unsupported(opaque)),
        PendingHead::Result { code, opaque } => Frame::Response(Response { code, opaque, body }),
    }
}

/// The broker's side: decodes [`Request`]s, encodes [`Response`]s.
///
/// ```
/// use bytes::BytesMut;
/// use tokio_util::codec::Decoder;
/// use metaq::protocol::{Request, ServerCodec};
/// let mut codec = ServerCodec::default();
/// let mut buf = BytesMut::from(&b"version 7\r\nput test 0 5 0 9070"[..]);
/// assert_eq!(codec.decode(&mut buf).unwrap(), Some(Request::Version { opaque: 7 }));
/// assert_eq!(codec.decode(&mut buf).unwrap(), None); // the put is not complete yet
/// ```
pub struct ServerCodec(FrameDecoder);

impl ServerCodec {
    /// A codec with the given caps. A `put` whose body is over `max_body` is
    /// skipped as it arrives and comes out as [`Request::PutTooLarge`], so
    /// the broker can still answer it.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use tokio_util::codec::Decoder;
    /// use metaq::protocol::{DecodeLimits, Request, ServerCodec};
    /// let mut codec = ServerCodec::new(DecodeLimits { max_body: 4, ..DecodeLimits::default() });
    /// let mut buf = BytesMut::from(&b"put test 0 5 0 907060870 1\r\nhello"[..]);
    /// let request = codec.decode(&mut buf).unwrap();
    /// let too_large = Request::PutTooLarge {
    ///     topic: "test".into(), partition: 0, len: 5, opaque: 1,
    /// };
    /// assert_eq!(request, Some(too_large));
    /// ```
    pub fn new(limits: DecodeLimits) -> Self {
        Self(FrameDecoder::new(Side::Server, limits))
    }
}

impl Default for ServerCodec {
    fn default() -> Self {
        Self::new(DecodeLimits::default())
    }
}

impl Decoder for ServerCodec {
    type Item = Request;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Request>, CodecError> {
        match self.0.decode(src)? {
            Some(Frame::Request(request)) => Ok(Some(request)),
            Some(Frame::Response(_)) => unreachable!("the server side never yields responses"),
            None => Ok(None),
        }
    }
}

impl Encoder<Response> for ServerCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Response, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(item.encode(dst)?)
    }
}

/// The producer's side: decodes [`Response`]s, encodes [`Request`]s.
///
/// ```
/// use bytes::BytesMut;
/// use tokio_util::codec::Decoder;
/// use metaq::protocol::{ClientCodec, StatusCode};
/// let mut codec = ClientCodec::default();
/// let mut buf = BytesMut::from(&b"result 200 24 1\r\n-5468572396564774912 0 0"[..]);
/// let response = codec.decode(&mut buf).unwrap().unwrap();
/// assert_eq!(response.code, StatusCode::SUCCESS);
/// assert_eq!(response.put_result(), Some((-5468572396564774912, 0, 0)));
/// ```
pub struct ClientCodec(FrameDecoder);

impl ClientCodec {
    /// A codec with the given caps. A `result` whose body is over `max_body`
    /// is an error. Frames may arrive in any number of pieces: `decode`
    /// returns `None` until one is complete.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use tokio_util::codec::Decoder;
    /// use metaq::protocol::{ClientCodec, DecodeLimits, StatusCode};
    /// let mut codec = ClientCodec::new(DecodeLimits::default());
    /// let mut buf = BytesMut::from(&b"result 200 24 1\r\n-54685723965"[..]);
    /// assert_eq!(codec.decode(&mut buf).unwrap(), None); // body still arriving
    /// buf.extend_from_slice(b"64774912 0 0");
    /// let response = codec.decode(&mut buf).unwrap().unwrap();
    /// assert_eq!(response.code, StatusCode::SUCCESS);
    /// assert_eq!(response.put_result(), Some((-5468572396564774912, 0, 0)));
    /// ```
    pub fn new(limits: DecodeLimits) -> Self {
        Self(FrameDecoder::new(Side::Client, limits))
    }
}

impl Default for ClientCodec {
    fn default() -> Self {
        Self::new(DecodeLimits::default())
    }
}

impl Decoder for ClientCodec {
    type Item = Response;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Response>, CodecError> {
        match self.0.decode(src)? {
            Some(Frame::Response(response)) => Ok(Some(response)),
            Some(Frame::Request(_)) => unreachable!("the client side never yields requests"),
            None => Ok(None),
        }
    }
}

impl Encoder<Request> for ClientCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Request, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(item.encode(dst)?)
    }
}
