//! The on-disk record (docs/protocol.md §5.4), and a reader that tells a clean end of
//! file from a torn tail without trusting the length field.

use std::fmt;
use std::io::{self, Read};

use bytes::{BufMut, Bytes};

use metaq::protocol::{checksum, Checksum};

/// Bytes before the body: length, checksum, message id, flag.
///
/// # Examples
///
/// ```
/// use metaq_broker::store::{Record, HEADER_LEN};
/// assert_eq!(Record::new(1, 0, "abc").encoded_len(), HEADER_LEN + 3);
/// ```
pub const HEADER_LEN: usize = 20;

/// Largest body the store appends or reads back: 256 MiB.
///
/// Recovery treats a larger (or negative) length field as garbage, so the store
/// refuses to write such a record: once acknowledged it would be cut on the
/// next open. MetaQ itself has no limit, but its consumers take 2 MiB at most.
///
/// # Examples
///
/// ```
/// use metaq_broker::store::{MessageStore, Record, StoreConfig, MAX_BODY_LEN};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let dir = tempfile::tempdir()?;
/// let store = MessageStore::open(StoreConfig::new(dir.path()))?;
/// let too_big = Record::new(1, 0, vec![0u8; MAX_BODY_LEN + 1]);
/// let err = store.append("orders", 0, vec![too_big]).await.unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
/// # Ok(())
/// # }
/// ```
pub const MAX_BODY_LEN: usize = 256 * 1024 * 1024;

/// One record to append; the id is assigned by the broker before appending.
///
/// ```
/// use metaq_broker::store::Record;
/// let record = Record::new(42, 0, &b"hello"[..]);
/// assert_eq!(record.encoded_len(), 25);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Message id (docs/protocol.md §5.3), opaque to the store.
    pub id: i64,
    /// Message flag; bit 0 says the body starts with an attribute block.
    pub flag: i32,
    /// Message body, attribute block included.
    pub body: Bytes,
}

impl Record {
    /// A record from its parts. The body may be anything that converts into
    /// [`Bytes`] (a `&'static str`, a `Vec<u8>`, ...), without a copy where
    /// `Bytes` allows it.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq_broker::store::Record;
    /// use metaq::protocol::{attribute_body, FLAG_ATTRIBUTE};
    /// let record = Record::new(7, FLAG_ATTRIBUTE, attribute_body(Some("tag1"), b"hello"));
    /// assert_eq!(record.body.len(), 4 + 4 + 5);
    /// ```
    pub fn new(id: i64, flag: i32, body: impl Into<Bytes>) -> Self {
        Record {
            id,
            flag,
            body: body.into(),
        }
    }

    /// Bytes the record takes in the log: `20 + body.len()`. This is also the
    /// distance between its offset and the next record's.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq_broker::store::{MessageStore, Record, StoreConfig};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = MessageStore::open(StoreConfig::new(dir.path()))?;
    /// let first = Record::new(1, 0, "hello");
    /// let offsets = store.append("orders", 0, vec![first.clone(), Record::new(2, 0, "x")]).await?;
    /// assert_eq!(offsets[1] - offsets[0], first.encoded_len() as i64);
    /// # Ok(())
    /// # }
    /// ```
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }

    /// Appends the record's bytes. The caller has checked the body against
    /// [`MAX_BODY_LEN`], so the length fits the `int` field.
    pub(crate) fn encode_into(&self, buf: &mut Vec<u8>) {
        debug_assert!(self.body.len() <= MAX_BODY_LEN);
        buf.reserve(self.encoded_len());
        buf.put_i32(self.body.len() as i32);
        buf.put_i32(checksum(&self.body));
        buf.put_i64(self.id);
        buf.put_i32(self.flag);
        buf.put_slice(&self.body);
    }
}

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Body length N (already checked to be within `0..=MAX_BODY_LEN`).
    pub length: u32,
    /// Stored checksum, not yet verified.
    pub checksum: i32,
    /// Message id.
    pub id: i64,
    /// Message flag.
    pub flag: i32,
}

/// Why the bytes at some position are not a whole record: what a crash in the
/// middle of a write (or garbage after it) leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Torn {
    /// Fewer than 20 bytes left.
    PartialHeader { have: u64 },
    /// A length field that is negative or over [`MAX_BODY_LEN`].
    BadLength { length: i32 },
    /// The header announces more body than the file holds.
    PartialBody { length: u32, have: u64 },
}

impl fmt::Display for Torn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Torn::PartialHeader { have } => {
                write!(f, "incomplete header ({have} of {HEADER_LEN} bytes)")
            }
            Torn::BadLength { length } => write!(f, "invalid body length {length}"),
            Torn::PartialBody { length, have } => {
                write!(f, "incomplete body ({have} of {length} bytes)")
            }
        }
    }
}

/// What [`RecordReader::next_header`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// A header whose body is wholly in the file; read or skip it next.
    Record(Header),
    /// The end of the file, exactly at a record boundary.
    End,
    /// An incomplete or impossible record; nothing after it can be trusted.
    Torn(Torn),
}

/// Reads records one by one from a segment of known length.
///
/// Every length is checked against the bytes left before anything is read or
/// allocated, so a garbage length costs nothing and memory stays bounded by
/// the largest real record, never by the file size.
pub(crate) struct RecordReader<R> {
    inner: R,
    pos: u64,
    len: u64,
}

impl<R: Read> RecordReader<R> {
    /// Reads `inner` from its current position, which is position 0 of a
    /// segment holding `len` bytes (later growth is not read).
    pub fn new(inner: R, len: u64) -> Self {
        RecordReader { inner, pos: 0, len }
    }

    /// Position in the segment of the next unread byte: after a
    /// [`Next::Record`] and its body, the start of the following record.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Reads the next header. Call it at a record boundary.
    pub fn next_header(&mut self) -> io::Result<Next> {
        let left = self.len - self.pos;
        if left == 0 {
            return Ok(Next::End);
        }
        if left < HEADER_LEN as u64 {
            return Ok(Next::Torn(Torn::PartialHeader { have: left }));
        }
        let mut raw = [0u8; HEADER_LEN];
        self.inner.read_exact(&mut raw)?;
        let field = |at: usize| i32::from_be_bytes(raw[at..at + 4].try_into().expect("4 bytes"));
        let length = field(0);
        if length < 0 || length as usize > MAX_BODY_LEN {
            return Ok(Next::Torn(Torn::BadLength { length }));
        }
        let length = length as u32;
        let have = left - HEADER_LEN as u64;
        if have < u64::from(length) {
            return Ok(Next::Torn(Torn::PartialBody { length, have }));
        }
        self.pos += HEADER_LEN as u64;
        Ok(Next::Record(Header {
            length,
            checksum: field(4),
            id: i64::from_be_bytes(raw[8..16].try_into().expect("8 bytes")),
            flag: field(16),
        }))
    }

    /// Reads the body announced by `header`.
    pub fn read_body(&mut self, header: &Header) -> io::Result<Bytes> {
        let mut body = vec![0u8; header.length as usize];
        self.inner.read_exact(&mut body)?;
        self.pos += u64::from(header.length);
        Ok(Bytes::from(body))
    }

    /// Reads the body announced by `header` through `scratch` and returns its
    /// checksum, without holding the whole body in memory.
    pub fn checksum_body(&mut self, header: &Header, scratch: &mut [u8]) -> io::Result<i32> {
        let mut crc = Checksum::new();
        let mut left = header.length as usize;
        while left > 0 {
            let n = left.min(scratch.len());
            self.inner.read_exact(&mut scratch[..n])?;
            crc.update(&scratch[..n]);
            left -= n;
        }
        self.pos += u64::from(header.length);
        Ok(crc.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: [u8; 25] = [
        0x00, 0x00, 0x00, 0x05, // length
        0x36, 0x10, 0xa6, 0x86, // checksum
        0xb4, 0x1b, 0xba, 0x61, 0x0a, 0x40, 0x00, 0x00, // id
        0x00, 0x00, 0x00, 0x00, // flag
        0x68, 0x65, 0x6c, 0x6c, 0x6f, // "hello"
    ];

    fn hello() -> Record {
        Record::new(-5468572396564774912, 0, &b"hello"[..])
    }

    #[test]
    fn encodes_the_reference_example() {
        let mut buf = Vec::new();
        hello().encode_into(&mut buf);
        assert_eq!(buf, HELLO);
        assert_eq!(hello().encoded_len(), HELLO.len());
    }

    #[test]
    fn reads_the_reference_example_back() {
        let mut two = HELLO.to_vec();
        two.extend_from_slice(&HELLO);
        let mut reader = RecordReader::new(&two[..], two.len() as u64);
        for expected_pos in [0, 25] {
            assert_eq!(reader.position(), expected_pos);
            let Next::Record(header) = reader.next_header().unwrap() else {
                panic!("expected a record");
            };
            assert_eq!(header.length, 5);
            assert_eq!(header.checksum, 0x3610_a686);
            assert_eq!(header.id, -5468572396564774912);
            assert_eq!(header.flag, 0);
            assert_eq!(&reader.read_body(&header).unwrap()[..], b"hello");
        }
        assert_eq!(reader.next_header().unwrap(), Next::End);
    }

    #[test]
    fn checksums_a_body_in_pieces() {
        let record = Record::new(1, 1, vec![7u8; 10_000]);
        let mut buf = Vec::new();
        record.encode_into(&mut buf);
        let mut reader = RecordReader::new(&buf[..], buf.len() as u64);
        let Next::Record(header) = reader.next_header().unwrap() else {
            panic!("expected a record");
        };
        let mut scratch = [0u8; 64];
        assert_eq!(
            reader.checksum_body(&header, &mut scratch).unwrap(),
            header.checksum
        );
        assert_eq!(reader.position(), buf.len() as u64);
    }

    #[test]
    fn tells_torn_tails_apart() {
        let torn = |bytes: &[u8]| {
            RecordReader::new(bytes, bytes.len() as u64)
                .next_header()
                .unwrap()
        };
        assert_eq!(
            torn(&HELLO[..7]),
            Next::Torn(Torn::PartialHeader { have: 7 })
        );
        assert_eq!(
            torn(&HELLO[..22]),
            Next::Torn(Torn::PartialBody { length: 5, have: 2 })
        );
        let mut negative = HELLO;
        negative[0] = 0xff;
        assert!(matches!(
            torn(&negative),
            Next::Torn(Torn::BadLength { length }) if length < 0
        ));
        let mut huge = HELLO;
        huge[0] = 0x7f;
        assert!(matches!(torn(&huge), Next::Torn(Torn::BadLength { .. })));
        assert_eq!(torn(&[]), Next::End);
    }
}
