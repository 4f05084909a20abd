//! Checks that keep user-supplied names from breaking the line protocol.
//!
//! Header lines are split on single spaces and end at CRLF, topics become
//! ZooKeeper path segments, and the Java encoder sizes buffers by characters,
//! so names are limited to printable ASCII without space (and without `/` for
//! topics, `:` for the parts of a transaction key).

use super::error::{excerpt, ProtocolError};

/// Longest topic, session id, transaction key or qualifier accepted, in bytes.
///
/// # Examples
///
/// ```
/// use metaq::protocol::{validate_topic, MAX_NAME_LEN};
/// assert!(validate_topic(&"t".repeat(MAX_NAME_LEN)).is_ok());
/// assert!(validate_topic(&"t".repeat(MAX_NAME_LEN + 1)).is_err());
/// ```
pub const MAX_NAME_LEN: usize = 255;

fn check(field: &'static str, value: &str, forbidden: &[u8]) -> Result<(), ProtocolError> {
    let fail = |reason| {
        Err(ProtocolError::InvalidName {
            field,
            value: excerpt(value),
            reason,
        })
    };
    if value.is_empty() {
        return fail("must not be empty");
    }
    if value.len() > MAX_NAME_LEN {
        return fail("longer than 255 bytes");
    }
    for &b in value.as_bytes() {
        if b == b' ' {
            return fail("contains a space");
        }
        if !b.is_ascii_graphic() {
            return fail("contains a control or non-ASCII byte");
        }
        if forbidden.contains(&b) {
            return fail(match b {
                b'/' => "contains '/'",
                b':' => "contains ':'",
                _ => "contains a reserved character",
            });
        }
    }
    Ok(())
}

/// A topic: 1 to 255 bytes of printable ASCII, no space, no `/`.
///
/// ```
/// use metaq::protocol::validate_topic;
/// assert!(validate_topic("orders.created").is_ok());
/// assert!(validate_topic("a b").is_err());
/// assert!(validate_topic("a/b").is_err());
/// assert!(validate_topic("").is_err());
/// assert!(validate_topic("..").is_err());
/// ```
pub fn validate_topic(topic: &str) -> Result<(), ProtocolError> {
    check("topic", topic, b"/")?;
    if topic == "." || topic == ".." {
        // A ZooKeeper path segment cannot be `.` or `..`, and the broker
        // would store the partition in a directory `.-0`.
        return Err(ProtocolError::InvalidName {
            field: "topic",
            value: excerpt(topic),
            reason: "'.' and '..' cannot name a ZooKeeper node",
        });
    }
    Ok(())
}

/// A session id: 1 to 255 bytes of printable ASCII, no space, no `:`
/// (it is the middle part of a `TX:` key).
///
/// ```
/// use metaq::protocol::validate_session_id;
/// assert!(validate_session_id("10.0.0.1-1367290000000-1").is_ok());
/// assert!(validate_session_id("fe80::1-1-1").is_err());
/// ```
pub fn validate_session_id(session_id: &str) -> Result<(), ProtocolError> {
    check("session id", session_id, b":")
}

/// An XA unique qualifier: like a session id, and not all digits (a numeric
/// qualifier is misread as a timeout by the Java decoder).
///
/// ```
/// use metaq::protocol::validate_unique_qualifier;
/// assert!(validate_unique_qualifier("XAMessageProducer-host1").is_ok());
/// assert!(validate_unique_qualifier("42").is_err());
/// ```
pub fn validate_unique_qualifier(qualifier: &str) -> Result<(), ProtocolError> {
    check("unique qualifier", qualifier, b":")?;
    if qualifier.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProtocolError::InvalidName {
            field: "unique qualifier",
            value: excerpt(qualifier),
            reason: "all digits (would be read as a timeout)",
        });
    }
    Ok(())
}

/// A whole transaction key as text (used when decoding).
pub(crate) fn validate_key_text(key: &str) -> Result<(), ProtocolError> {
    check("transaction key", key, b"")
}
