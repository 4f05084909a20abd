//! Errors of the wire layer.

/// Why bytes could not be encoded or decoded.
///
/// Encoding errors are raised before anything is written to the buffer, so a
/// refused frame never leaves half a command behind. Values copied into an
/// error are cut to 120 characters.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use metaq::protocol::{encode_put, ProtocolError, PutHeader};
/// let mut buf = BytesMut::new();
/// let header = PutHeader { topic: "my topic", partition: 0, tx_key: None, opaque: 1 };
/// let err = encode_put(&mut buf, &header, None, b"hello").unwrap_err();
/// assert!(matches!(err, ProtocolError::InvalidName { field: "topic", .. }));
/// assert_eq!(err.to_string(), r#"invalid topic "my topic": contains a space"#);
/// assert!(buf.is_empty()); // nothing was written
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A name that would break the line protocol (topic, session id, key, qualifier).
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidName {
        /// Which field: `"topic"`, `"session id"`, `"transaction key"`, `"unique qualifier"`.
        field: &'static str,
        /// The offending value, shortened.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A body longer than the protocol or the configured cap allows.
    #[error("body of {len} bytes is over the {max}-byte limit")]
    BodyTooLarge {
        /// Announced or actual length.
        len: u64,
        /// The cap in force.
        max: usize,
    },
    /// No CRLF within the allowed header length.
    #[error("header line is longer than {max} bytes")]
    LineTooLong {
        /// The cap in force.
        max: usize,
    },
    /// A header line that does not follow the grammar of its command.
    #[error("malformed {command} line {line:?}: {reason}")]
    Malformed {
        /// The command word, or `"header"` when it could not be told.
        command: &'static str,
        /// The line, shortened.
        line: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A command word this side of the connection does not accept.
    #[error("unexpected command in line {line:?}")]
    UnexpectedCommand {
        /// The line, shortened.
        line: String,
    },
    /// A body whose attribute flag is set but which holds no valid attribute block.
    #[error("attribute block does not fit in a {body_len}-byte body")]
    BadAttribute {
        /// Length of the body.
        body_len: usize,
    },
}

/// Shortens a value for an error message, on a character boundary.
pub(crate) fn excerpt(value: &str) -> String {
    const MAX: usize = 120;
    match value.char_indices().nth(MAX) {
        None => value.to_owned(),
        Some((cut, _)) => format!("{}…", &value[..cut]),
    }
}
