//! Writing frames. Every function validates first and writes second, so an
//! error leaves the destination buffer untouched.

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};

use super::validate::{
    validate_session_id, validate_topic, validate_unique_qualifier, MAX_NAME_LEN,
};
use super::{
    Checksum, ProtocolError, PutRequest, Request, Response, TransactionRequest, TxKey,
    FLAG_ATTRIBUTE,
};

const CRLF: &[u8] = b"\r\n";

fn put_int(dst: &mut BytesMut, value: impl itoa::Integer) {
    dst.put_slice(itoa::Buffer::new().format(value).as_bytes());
}

fn put_sp_int(dst: &mut BytesMut, value: impl itoa::Integer) {
    dst.put_u8(b' ');
    put_int(dst, value);
}

fn put_sp_key(dst: &mut BytesMut, key: &TxKey) {
    dst.put_u8(b' ');
    // Writing into a BytesMut cannot fail.
    let _ = write!(dst, "{key}");
}

fn body_len(len: usize) -> Result<i32, ProtocolError> {
    i32::try_from(len).map_err(|_| ProtocolError::BodyTooLarge {
        len: len as u64,
        max: i32::MAX as usize,
    })
}

/// The header fields of a message `put`, borrowed from the caller, so
/// [`encode_put`] can write a message without copying its topic or key.
///
/// # Examples
///
/// A put inside a local transaction carries the key before the opaque:
///
/// ```
/// use bytes::BytesMut;
/// use metaq::protocol::{encode_put, LocalTxId, PutHeader, TxKey};
/// let key = TxKey::Local(LocalTxId { session_id: "10.0.0.1-1-1".into(), counter: 2 });
/// let header = PutHeader { topic: "test", partition: -1, tx_key: Some(&key), opaque: 9 };
/// let mut buf = BytesMut::new();
/// encode_put(&mut buf, &header, None, b"hello").unwrap();
/// assert_eq!(&buf[..], b"put test -1 5 0 907060870 TX:10.0.0.1-1-1:2 9\r\nhello");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct PutHeader<'a> {
    /// Topic name (validated).
    pub topic: &'a str,
    /// Partition index on the broker, `-1` for "broker chooses".
    pub partition: i32,
    /// Transaction key, for a transactional put.
    pub tx_key: Option<&'a TxKey>,
    /// Request id.
    pub opaque: i32,
}

/// Writes a message `put` in the form the current Java client sends: with a
/// checksum (7 tokens), plus the key in a transaction (8 tokens). The body is
/// the attribute block (if any) followed by `payload`, written straight into
/// `dst`; the checksum is computed over both without joining them.
///
/// ```
/// use bytes::BytesMut;
/// use metaq::protocol::{encode_put, PutHeader};
/// let mut buf = BytesMut::new();
/// let header = PutHeader { topic: "test", partition: 0, tx_key: None, opaque: 1 };
/// encode_put(&mut buf, &header, None, b"hello").unwrap();
/// assert_eq!(&buf[..], b"put test 0 5 0 907060870 1\r\nhello");
/// ```
pub fn encode_put(
    dst: &mut BytesMut,
    header: &PutHeader<'_>,
    attribute: Option<&str>,
    payload: &[u8],
) -> Result<(), ProtocolError> {
    validate_topic(header.topic)?;
    if let Some(key) = header.tx_key {
        key.validate()?;
    }
    let attr_len = attribute.map_or(0, |a| 4 + a.len());
    let len = body_len(attr_len + payload.len())?;
    let mut crc = Checksum::new();
    let attr_prefix = attribute.map(|a| (a.len() as u32).to_be_bytes());
    if let (Some(prefix), Some(attr)) = (&attr_prefix, attribute) {
        crc.update(prefix);
        crc.update(attr.as_bytes());
    }
    crc.update(payload);

    // Header: "put", five numbers of at most 11 bytes, spaces, CRLF, and a
    // transaction key of at most MAX_NAME_LEN bytes; one allocation.
    let key_room = header.tx_key.map_or(0, |_| 1 + MAX_NAME_LEN);
    dst.reserve(header.topic.len() + 72 + key_room + attr_len + payload.len());
    dst.put_slice(b"put ");
    dst.put_slice(header.topic.as_bytes());
    put_sp_int(dst, header.partition);
    put_sp_int(dst, len);
    put_sp_int(
        dst,
        if attribute.is_some() {
            FLAG_ATTRIBUTE
        } else {
            0
        },
    );
    put_sp_int(dst, crc.finish());
    if let Some(key) = header.tx_key {
        put_sp_key(dst, key);
    }
    put_sp_int(dst, header.opaque);
    dst.put_slice(CRLF);
    if let (Some(prefix), Some(attr)) = (attr_prefix, attribute) {
        dst.put_slice(&prefix);
        dst.put_slice(attr.as_bytes());
    }
    dst.put_slice(payload);
    Ok(())
}

impl PutRequest {
    /// Writes this put exactly as its fields say: the checksum token only when
    /// `checksum` is `Some`, the key only when `tx_key` is `Some`.
    ///
    /// ```
    /// use bytes::{Bytes, BytesMut};
    /// use metaq::protocol::PutRequest;
    /// let put = PutRequest { topic: "test".into(), partition: 0, flag: 0, checksum: None,
    ///     tx_key: None, opaque: 1, body: Bytes::from_static(b"hello") };
    /// let mut buf = BytesMut::new();
    /// put.encode(&mut buf).unwrap();
    /// assert_eq!(&buf[..], b"put test 0 5 0 1\r\nhello");
    /// ```
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        validate_topic(&self.topic)?;
        if let Some(key) = &self.tx_key {
            key.validate()?;
        }
        let len = body_len(self.body.len())?;
        dst.reserve(self.topic.len() + 64 + self.body.len());
        dst.put_slice(b"put ");
        dst.put_slice(self.topic.as_bytes());
        put_sp_int(dst, self.partition);
        put_sp_int(dst, len);
        put_sp_int(dst, self.flag);
        if let Some(checksum) = self.checksum {
            put_sp_int(dst, checksum);
        }
        if let Some(key) = &self.tx_key {
            put_sp_key(dst, key);
        }
        put_sp_int(dst, self.opaque);
        dst.put_slice(CRLF);
        dst.put_slice(&self.body);
        Ok(())
    }
}

impl TransactionRequest {
    /// Writes `transaction <key> <sessionId> <type> [<timeout>] [<qualifier>] <opaque>`.
    /// The timeout is written only when greater than zero.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use metaq::protocol::{LocalTxId, TransactionKind, TransactionRequest, TxKey};
    /// let session_id = "192.168.1.10-1367290000000-1".to_string();
    /// let tx = TransactionRequest {
    ///     key: TxKey::Local(LocalTxId { session_id: session_id.clone(), counter: 1 }),
    ///     session_id, kind: TransactionKind::Begin, timeout_secs: Some(10),
    ///     unique_qualifier: None, opaque: 3,
    /// };
    /// let mut buf = BytesMut::new();
    /// tx.encode(&mut buf).unwrap();
    /// assert_eq!(&buf[..], &b"transaction TX:192.168.1.10-1367290000000-1:1 192.168.1.10-1367290000000-1 BEGIN 10 3\r\n"[..]);
    /// ```
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        self.key.validate()?;
        validate_session_id(&self.session_id)?;
        if let Some(q) = &self.unique_qualifier {
            validate_unique_qualifier(q)?;
        }
        dst.put_slice(b"transaction");
        put_sp_key(dst, &self.key);
        dst.put_u8(b' ');
        dst.put_slice(self.session_id.as_bytes());
        dst.put_u8(b' ');
        dst.put_slice(self.kind.as_str().as_bytes());
        if let Some(timeout) = self.timeout_secs.filter(|t| *t > 0) {
            put_sp_int(dst, timeout);
        }
        if let Some(q) = &self.unique_qualifier {
            dst.put_u8(b' ');
            dst.put_slice(q.as_bytes());
        }
        put_sp_int(dst, self.opaque);
        dst.put_slice(CRLF);
        Ok(())
    }
}

impl Request {
    /// Writes any request. `PutTooLarge` and `Unsupported` exist only on the
    /// decoding side and are refused here.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use metaq::protocol::Request;
    /// let mut buf = BytesMut::new();
    /// Request::Version { opaque: 7 }.encode(&mut buf).unwrap();
    /// assert_eq!(&buf[..], b"version 7\r\n");
    /// ```
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        match self {
            Request::Put(put) => put.encode(dst),
            Request::Transaction(tx) => tx.encode(dst),
            Request::Version { opaque } => {
                dst.put_slice(b"version");
                put_sp_int(dst, *opaque);
                dst.put_slice(CRLF);
                Ok(())
            }
            Request::Stats { item, opaque } => {
                if !item.is_empty() {
                    validate_topic(item)?;
                }
                // With no item the Java encoder writes two spaces; keep that.
                dst.put_slice(b"stats ");
                dst.put_slice(item.as_bytes());
                put_sp_int(dst, *opaque);
                dst.put_slice(CRLF);
                Ok(())
            }
            Request::Quit => {
                dst.put_slice(b"quit\r\n");
                Ok(())
            }
            Request::PutTooLarge { .. } | Request::Unsupported(_) => {
                Err(ProtocolError::UnexpectedCommand {
                    line: format!("{self:?}").chars().take(120).collect(),
                })
            }
        }
    }
}

impl Response {
    /// Writes `result <code> <len> <opaque>\r\n<body>`.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use metaq::protocol::{Response, StatusCode};
    /// let mut buf = BytesMut::new();
    /// Response::text(StatusCode::SUCCESS, 7, "1.4.6.2").encode(&mut buf).unwrap();
    /// assert_eq!(&buf[..], b"result 200 7 7\r\n1.4.6.2");
    /// ```
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        let len = body_len(self.body.len())?;
        dst.reserve(32 + self.body.len());
        dst.put_slice(b"result");
        put_sp_int(dst, self.code.0);
        put_sp_int(dst, len);
        put_sp_int(dst, self.opaque);
        dst.put_slice(CRLF);
        dst.put_slice(&self.body);
        Ok(())
    }
}
