//! The CRC carried by `put` and stored in every on-disk record (docs/protocol.md §3.12).

/// CRC-32 (IEEE) of `body`, masked with `0x7FFF_FFFF` as MetaQ does, so the value
/// is always non-negative and `-1` stays free to mean "not supplied".
///
/// ```
/// assert_eq!(metaq::protocol::checksum(b"hello"), 907_060_870);
/// ```
pub fn checksum(body: &[u8]) -> i32 {
    mask(crc32fast::hash(body))
}

fn mask(crc: u32) -> i32 {
    (crc & 0x7FFF_FFFF) as i32
}

/// Incremental form of [`checksum`], for a body written in several pieces
/// (attribute block, then payload) without joining them first.
///
/// ```
/// use metaq::protocol::{checksum, Checksum};
/// let mut c = Checksum::new();
/// c.update(b"hel");
/// c.update(b"lo");
/// assert_eq!(c.finish(), checksum(b"hello"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Checksum(crc32fast::Hasher);

impl Checksum {
    /// An empty checksum; feed it with [`update`](Self::update).
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::protocol::{checksum, Checksum};
    /// assert_eq!(Checksum::new().finish(), checksum(b""));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next piece of the body. Pieces are hashed in order, as if
    /// joined, so the attribute block and the payload can stay apart.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::protocol::{attribute_body, checksum, Checksum};
    /// let mut c = Checksum::new();
    /// c.update(b"\x00\x00\x00\x04tag1"); // attribute block
    /// c.update(b"hello"); // payload
    /// assert_eq!(c.finish(), checksum(&attribute_body(Some("tag1"), b"hello")));
    /// ```
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The masked CRC of everything fed so far: never negative, so it cannot
    /// be mistaken for the "not supplied" value `-1`.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::protocol::Checksum;
    /// let mut c = Checksum::new();
    /// c.update(b"hello");
    /// assert_eq!(c.finish(), 907_060_870);
    /// ```
    pub fn finish(self) -> i32 {
        mask(self.0.finalize())
    }
}
