//! Transaction identifiers as written on the wire (docs/protocol.md §4.1).

use std::fmt::{self, Write as _};
use std::str::FromStr;

use super::error::{excerpt, ProtocolError};
use super::validate::{
    validate_key_text, validate_session_id, validate_unique_qualifier, MAX_NAME_LEN,
};

/// A local transaction: `TX:<sessionId>:<n>`.
///
/// # Examples
///
/// ```
/// use metaq::protocol::{LocalTxId, TxKey};
/// let local = LocalTxId { session_id: "10.0.0.1-1367290000000-1".into(), counter: 7 };
/// let key = TxKey::Local(local.clone());
/// assert_eq!(key.to_string(), "TX:10.0.0.1-1367290000000-1:7");
/// assert_eq!("TX:10.0.0.1-1367290000000-1:7".parse(), Ok(TxKey::Local(local)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LocalTxId {
    /// The producer's session id (no `:` or space).
    pub session_id: String,
    /// The per-producer counter. The broker parses it as a 32-bit int.
    pub counter: i32,
}

/// An XA transaction: `XID:<formatId>:<gtridHex>:<bqualHex>:<uniqueQualifier>`.
///
/// # Examples
///
/// ```
/// use metaq::protocol::{TxKey, XaTxId};
/// let xa = XaTxId { format_id: 1, global_id: vec![0xab, 0xcd], branch_qualifier: vec![1],
///     unique_qualifier: "rm-1".into() };
/// let key = TxKey::Xa(xa);
/// assert_eq!(key.to_string(), "XID:1:abcd:01:rm-1");
/// assert_eq!(key.to_string().parse::<TxKey>().unwrap(), key);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct XaTxId {
    /// The XA format id (may be negative).
    pub format_id: i32,
    /// Global transaction id bytes.
    pub global_id: Vec<u8>,
    /// Branch qualifier bytes.
    pub branch_qualifier: Vec<u8>,
    /// Identifies the resource manager instance.
    pub unique_qualifier: String,
}

/// The key token of `put` and `transaction` commands.
///
/// `Display` writes the exact wire text and [`FromStr`] parses it with the
/// Java broker's rules.
///
/// ```
/// use metaq::protocol::{LocalTxId, TxKey};
/// let key = TxKey::Local(LocalTxId { session_id: "10.0.0.1-1367290000000-1".into(), counter: 1 });
/// assert_eq!(key.to_string(), "TX:10.0.0.1-1367290000000-1:1");
/// assert_eq!("TX:10.0.0.1-1367290000000-1:1".parse::<TxKey>().unwrap(), key);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TxKey {
    /// A local transaction.
    Local(LocalTxId),
    /// An XA transaction.
    Xa(XaTxId),
    /// The literal `null`, used by `RECOVER`.
    Null,
}

impl TxKey {
    /// Checks that every part can be written without breaking the protocol
    /// and that the whole key is at most [`MAX_NAME_LEN`] bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::protocol::{LocalTxId, TxKey};
    /// let ok = TxKey::Local(LocalTxId { session_id: "10.0.0.1-1-1".into(), counter: 1 });
    /// assert!(ok.validate().is_ok());
    /// let bad = TxKey::Local(LocalTxId { session_id: "has space".into(), counter: 1 });
    /// assert!(bad.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), ProtocolError> {
        let len = match self {
            TxKey::Local(local) => {
                validate_session_id(&local.session_id)?;
                "TX::".len()
                    + local.session_id.len()
                    + itoa::Buffer::new().format(local.counter).len()
            }
            TxKey::Xa(xa) => {
                validate_unique_qualifier(&xa.unique_qualifier)?;
                self.to_string().len()
            }
            TxKey::Null => return Ok(()),
        };
        if len > MAX_NAME_LEN {
            return Err(ProtocolError::InvalidName {
                field: "transaction key",
                value: excerpt(&self.to_string()),
                reason: "longer than 255 bytes",
            });
        }
        Ok(())
    }
}

impl fmt::Display for TxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxKey::Local(l) => write!(f, "TX:{}:{}", l.session_id, l.counter),
            TxKey::Xa(x) => x.fmt(f),
            TxKey::Null => f.write_str("null"),
        }
    }
}

/// The wire key, `XID:<formatId>:<gtridHex>:<bqualHex>:<uniqueQualifier>`.
impl fmt::Display for XaTxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "XID:{}:", self.format_id)?;
        write_hex(f, &self.global_id)?;
        f.write_char(':')?;
        write_hex(f, &self.branch_qualifier)?;
        write!(f, ":{}", self.unique_qualifier)
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

impl FromStr for TxKey {
    type Err = ProtocolError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason| ProtocolError::InvalidName {
            field: "transaction key",
            value: excerpt(text),
            reason,
        };
        validate_key_text(text)?;
        if text == "null" {
            return Ok(TxKey::Null);
        }
        let parts: Vec<&str> = text.split(':').collect();
        match parts[0] {
            "TX" => {
                let [_, session_id, counter] = parts[..] else {
                    return Err(bad("a TX key has exactly 3 ':'-separated parts"));
                };
                let counter = counter
                    .parse()
                    .map_err(|_| bad("the counter is not a 32-bit integer"))?;
                Ok(TxKey::Local(LocalTxId {
                    session_id: session_id.to_owned(),
                    counter,
                }))
            }
            "XID" => {
                let [_, format_id, gtrid, bqual, qualifier] = parts[..] else {
                    return Err(bad("an XID key has exactly 5 ':'-separated parts"));
                };
                Ok(TxKey::Xa(XaTxId {
                    format_id: format_id
                        .parse()
                        .map_err(|_| bad("the format id is not a 32-bit integer"))?,
                    global_id: parse_hex(gtrid).ok_or_else(|| bad("bad hex in global id"))?,
                    branch_qualifier: parse_hex(bqual)
                        .ok_or_else(|| bad("bad hex in branch qualifier"))?,
                    unique_qualifier: qualifier.to_owned(),
                }))
            }
            _ => Err(bad("must start with TX: or XID:, or be null")),
        }
    }
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
