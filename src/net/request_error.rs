//! How a request can fail: below the in-flight table that decides it and
//! the [`PendingReply`](super::PendingReply) that reports it.

use crate::protocol::ProtocolError;

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestError {
    /// Nothing of the request reached the socket: the broker never saw it.
    NotWritten(String),
    /// The request was written, then the connection died before its answer.
    Lost(String),
    /// No answer came before the request's deadline.
    TimedOut,
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::NotWritten(cause) => write!(f, "not written: {cause}"),
            RequestError::Lost(cause) => write!(f, "connection lost after writing: {cause}"),
            RequestError::TimedOut => f.write_str("no answer before the deadline"),
        }
    }
}

/// Why a request could not be queued at all.
#[derive(Debug)]
pub(crate) enum NotQueued {
    /// `max_in_flight` requests are waiting for answers on this connection.
    Full,
    /// The frame could not be encoded; nothing was queued.
    Invalid(ProtocolError),
}
