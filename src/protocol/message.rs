//! Message bodies: the optional attribute block in front of the payload (docs/protocol.md §3.11).

use bytes::{BufMut, Bytes, BytesMut};

use super::ProtocolError;

/// Bit 0 of the `flag` field: the body starts with an attribute block.
///
/// # Examples
///
/// ```
/// use metaq::protocol::{attribute_body, split_body, FLAG_ATTRIBUTE};
/// let body = attribute_body(Some("tag1"), b"hello");
/// let (attribute, payload) = split_body(FLAG_ATTRIBUTE, &body).unwrap();
/// assert_eq!(attribute, Some(&b"tag1"[..]));
/// assert_eq!(payload, b"hello");
/// ```
pub const FLAG_ATTRIBUTE: i32 = 1;

/// Builds a body: with an attribute, a 4-byte big-endian length, the UTF-8
/// attribute, then the payload; without one, the payload alone.
///
/// ```
/// let body = metaq::protocol::attribute_body(Some("tag1"), b"hello");
/// assert_eq!(&body[..], b"\x00\x00\x00\x04tag1hello");
/// ```
pub fn attribute_body(attribute: Option<&str>, payload: &[u8]) -> Bytes {
    match attribute {
        None => Bytes::copy_from_slice(payload),
        Some(attr) => {
            let mut body = BytesMut::with_capacity(4 + attr.len() + payload.len());
            body.put_u32(attr.len() as u32);
            body.put_slice(attr.as_bytes());
            body.put_slice(payload);
            body.freeze()
        }
    }
}

/// Splits a stored or received body into `(attribute, payload)` according to `flag`.
///
/// ```
/// let (attr, payload) = metaq::protocol::split_body(1, b"\x00\x00\x00\x04tag1hello").unwrap();
/// assert_eq!(attr, Some(&b"tag1"[..]));
/// assert_eq!(payload, b"hello");
/// ```
pub fn split_body(flag: i32, body: &[u8]) -> Result<(Option<&[u8]>, &[u8]), ProtocolError> {
    if flag & FLAG_ATTRIBUTE == 0 {
        return Ok((None, body));
    }
    let bad = || ProtocolError::BadAttribute {
        body_len: body.len(),
    };
    let len_bytes: [u8; 4] = body
        .get(..4)
        .ok_or_else(bad)?
        .try_into()
        .map_err(|_| bad())?;
    let len = u32::from_be_bytes(len_bytes) as usize;
    let rest = &body[4..];
    if len > rest.len() {
        return Err(bad());
    }
    Ok((Some(&rest[..len]), &rest[len..]))
}
