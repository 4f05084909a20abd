//! One request's life as its caller sees it: [`PendingReply`] owns the
//! request's room on the connection, its entry in the in-flight table and
//! its deadline, and resolves to the answer or one [`RequestError`].
//!
//! Dropping a `PendingReply` gives all three back at once (the clean-up on
//! cancel that rskafka does), so a caller that gives up never leaves
//! anything behind.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;

use super::inflight::{Requests, Ticket};
use crate::protocol::{ProtocolError, Response};

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

/// The answer to one queued request, or why there is none.
///
/// Polling it after it resolved panics, as for any future.
#[must_use = "dropping a PendingReply gives up on the answer"]
pub(crate) struct PendingReply {
    state: Pending,
}

enum Pending {
    /// Waiting in the table of `requests`, in the slot `ticket` names.
    Queued {
        requests: Arc<Requests>,
        ticket: Ticket,
    },
    /// Resolved without reaching the table (e.g. the connection was down).
    Ready(Result<Response, RequestError>),
    /// Resolved, and when its answer was read, if one came.
    Finished(Option<Instant>),
}

impl PendingReply {
    pub(super) fn queued(requests: Arc<Requests>, ticket: Ticket) -> Self {
        PendingReply {
            state: Pending::Queued { requests, ticket },
        }
    }

    /// A request that failed before it was queued.
    pub(super) fn failed(error: RequestError) -> Self {
        PendingReply {
            state: Pending::Ready(Err(error)),
        }
    }

    /// When the answer was read from the socket, once resolved with one
    /// (the session's reading for the whole batch of answers, so timing a
    /// send costs no clock read).
    pub(crate) fn answered_at(&self) -> Option<Instant> {
        match self.state {
            Pending::Finished(answered_at) => answered_at,
            _ => None,
        }
    }
}

impl Future for PendingReply {
    type Output = Result<Response, RequestError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &this.state {
            Pending::Queued { requests, ticket } => {
                let (outcome, answered_at) = std::task::ready!(requests.poll_answer(*ticket, cx));
                this.state = Pending::Finished(answered_at);
                Poll::Ready(outcome)
            }
            Pending::Ready(_) => {
                match std::mem::replace(&mut this.state, Pending::Finished(None)) {
                    Pending::Ready(outcome) => Poll::Ready(outcome),
                    _ => unreachable!("matched Ready above"),
                }
            }
            Pending::Finished(_) => panic!("PendingReply polled after it resolved"),
        }
    }
}

impl Drop for PendingReply {
    fn drop(&mut self) {
        if let Pending::Queued { requests, ticket } = &self.state {
            requests.abandon(*ticket);
        }
    }
}
