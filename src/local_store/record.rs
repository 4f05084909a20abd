//! One record of a segment file, encoded and decoded without I/O.
//!
//! Layout, all integers little-endian:
//!
//! ```text
//! offset size  field
//!      0    4  magic 0x4D51_4C53 (b"SLQM" on disk)
//!      4    4  length: bytes after the CRC field (the body)
//!      8    4  CRC32 (IEEE) over the length field and the body
//!     12    8  sequence number
//!     20    1  flags: bit 0 attribute present, bit 1 key present
//!     21    2  topic length, then the topic (UTF-8)
//!           4  attribute length, then the attribute (UTF-8), if bit 0
//!           4  key length, then the key, if bit 1
//!           4  payload length, then the payload
//! ```
//!
//! The CRC covers the length field too, so a damaged length is caught even
//! when it still points inside the file. The body must be consumed exactly.

use bytes::Bytes;

use crate::Message;

/// Identifies a record's first byte.
pub(crate) const MAGIC: u32 = 0x4D51_4C53;
/// Magic, length and CRC.
pub(crate) const HEADER_LEN: usize = 12;
/// Sequence number, flags, topic length, payload length: the smallest body.
const MIN_BODY: usize = 8 + 1 + 2 + 4;
const FLAG_ATTRIBUTE: u8 = 1;
const FLAG_KEY: u8 = 2;

/// Why bytes are not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordError {
    /// Fewer bytes than the record needs: a torn tail (`have` of `need`).
    Short { have: usize, need: usize },
    /// The first four bytes are not [`MAGIC`].
    BadMagic(u32),
    /// The length field is below the smallest body or above the bound.
    BadLength(u32),
    /// The CRC does not match.
    BadCrc { stored: u32, computed: u32 },
    /// The CRC matched but the body does not parse.
    Malformed(&'static str),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Short { have, need } => write!(f, "cut short ({have} of {need} bytes)"),
            RecordError::BadMagic(m) => write!(f, "bad magic {m:#010x}"),
            RecordError::BadLength(n) => write!(f, "impossible length {n}"),
            RecordError::BadCrc { stored, computed } => {
                write!(
                    f,
                    "CRC mismatch (stored {stored:#010x}, computed {computed:#010x})"
                )
            }
            RecordError::Malformed(why) => write!(f, "malformed body: {why}"),
        }
    }
}

/// Bytes the record for `message` takes, header included.
pub(crate) fn encoded_len(message: &Message) -> usize {
    HEADER_LEN
        + MIN_BODY
        + message.topic().len()
        + message.attribute().map_or(0, |a| 4 + a.len())
        + message.key().map_or(0, |k| 4 + k.len())
        + message.payload().len()
}

/// Appends the record of `message` with sequence number `seq` to `out`.
///
/// The caller checks [`encoded_len`] against its bound first; lengths that
/// do not fit their fields (a topic over 64 KiB, a part over 4 GiB) are
/// refused by that bound long before.
pub(crate) fn encode(seq: u64, message: &Message, out: &mut Vec<u8>) {
    let start = out.len();
    let body_len = encoded_len(message) - HEADER_LEN;
    out.reserve(HEADER_LEN + body_len);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]); // the CRC, filled in below
    out.extend_from_slice(&seq.to_le_bytes());
    let flags = u8::from(message.attribute().is_some()) * FLAG_ATTRIBUTE
        + u8::from(message.key().is_some()) * FLAG_KEY;
    out.push(flags);
    out.extend_from_slice(&(message.topic().len() as u16).to_le_bytes());
    out.extend_from_slice(message.topic().as_bytes());
    if let Some(attribute) = message.attribute() {
        put_part(out, attribute.as_bytes());
    }
    if let Some(key) = message.key() {
        put_part(out, key);
    }
    put_part(out, message.payload());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&out[start + 4..start + 8]);
    hasher.update(&out[start + HEADER_LEN..]);
    let crc = hasher.finalize();
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

fn put_part(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&(part.len() as u32).to_le_bytes());
    out.extend_from_slice(part);
}

/// Checks a header; returns the body length that follows it.
///
/// `max_record` bounds header plus body, so a damaged length never makes the
/// reader allocate more than that.
pub(crate) fn decode_header(header: &[u8], max_record: usize) -> Result<usize, RecordError> {
    if header.len() < HEADER_LEN {
        return Err(RecordError::Short {
            have: header.len(),
            need: HEADER_LEN,
        });
    }
    let magic = u32_at(header, 0);
    if magic != MAGIC {
        return Err(RecordError::BadMagic(magic));
    }
    let length = u32_at(header, 4);
    let body = length as usize;
    if body < MIN_BODY || body > max_record.saturating_sub(HEADER_LEN) {
        return Err(RecordError::BadLength(length));
    }
    Ok(body)
}

/// Checks the CRC of `body` against `header` and parses it.
pub(crate) fn decode_body(header: &[u8], body: &[u8]) -> Result<(u64, Message), RecordError> {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[4..8]);
    hasher.update(body);
    let computed = hasher.finalize();
    let stored = u32_at(header, 8);
    if stored != computed {
        return Err(RecordError::BadCrc { stored, computed });
    }
    parse_body(body)
}

/// Decodes the record at the start of `bytes`; returns it with its length.
#[cfg(test)]
pub(crate) fn decode(
    bytes: &[u8],
    max_record: usize,
) -> Result<(u64, Message, usize), RecordError> {
    let body_len = decode_header(bytes, max_record)?;
    let need = HEADER_LEN + body_len;
    if bytes.len() < need {
        return Err(RecordError::Short {
            have: bytes.len(),
            need,
        });
    }
    let (seq, message) = decode_body(&bytes[..HEADER_LEN], &bytes[HEADER_LEN..need])?;
    Ok((seq, message, need))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

/// A cursor over a body whose every read is bounds-checked.
struct Body<'a>(&'a [u8]);

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Malformed("a part runs past the end"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn part(&mut self) -> Result<&'a [u8], RecordError> {
        let len = u32_at(self.take(4)?, 0) as usize;
        self.take(len)
    }
}

fn text(bytes: &[u8], what: &'static str) -> Result<String, RecordError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| RecordError::Malformed(what))
}

fn parse_body(body: &[u8]) -> Result<(u64, Message), RecordError> {
    let mut body = Body(body);
    let seq = u64::from_le_bytes(body.take(8)?.try_into().unwrap_or_default());
    let flags = body.take(1)?[0];
    if flags & !(FLAG_ATTRIBUTE | FLAG_KEY) != 0 {
        return Err(RecordError::Malformed("unknown flag bits"));
    }
    let topic_len = u16::from_le_bytes(body.take(2)?.try_into().unwrap_or_default());
    let topic = text(body.take(topic_len.into())?, "topic is not UTF-8")?;
    let attribute = match flags & FLAG_ATTRIBUTE {
        0 => None,
        _ => Some(text(body.part()?, "attribute is not UTF-8")?),
    };
    let key = match flags & FLAG_KEY {
        0 => None,
        _ => Some(Bytes::copy_from_slice(body.part()?)),
    };
    let payload = Bytes::copy_from_slice(body.part()?);
    if !body.0.is_empty() {
        return Err(RecordError::Malformed("bytes left after the payload"));
    }
    let mut message = Message::new(topic, payload);
    if let Some(attribute) = attribute {
        message = message.with_attribute(attribute);
    }
    if let Some(key) = key {
        message = message.with_key(key);
    }
    Ok((seq, message))
}

#[cfg(test)]
mod tests;
