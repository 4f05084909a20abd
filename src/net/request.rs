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

use super::inflight::{Queued, Requests, Ticket};
use super::request_error::RequestError;
use crate::protocol::Response;

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
    /// The caller's side of what `requests` made of a request.
    pub(super) fn new(requests: &Arc<Requests>, queued: Queued) -> Self {
        let state = match queued {
            Queued::Waiting(ticket) => Pending::Queued {
                requests: Arc::clone(requests),
                ticket,
            },
            Queued::Refused(error) => Pending::Ready(Err(error)),
        };
        PendingReply { state }
    }

    /// Why it was refused before reaching the table (not written), if it was.
    pub(crate) fn refusal(&self) -> Option<&RequestError> {
        match &self.state {
            Pending::Ready(Err(error)) => Some(error),
            _ => None,
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

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use bytes::{BufMut, BytesMut};
    use tokio::time::Instant;

    use super::super::inflight::Requests;
    use super::*;
    use crate::protocol::{ProtocolError, StatusCode};

    fn frame(out: &mut BytesMut, opaque: i32) -> Result<(), ProtocolError> {
        out.put_slice(format!("version {opaque}\r\n").as_bytes());
        Ok(())
    }

    fn request(requests: &Arc<Requests>, epoch: Option<u64>) -> PendingReply {
        let deadline = Instant::now() + Duration::from_secs(60);
        let queued = requests
            .try_request(epoch, Instant::now(), deadline, frame)
            .unwrap();
        PendingReply::new(requests, queued)
    }

    fn poll(reply: &mut PendingReply) -> Poll<Result<Response, RequestError>> {
        let mut cx = Context::from_waker(Waker::noop());
        pin!(reply).poll(&mut cx)
    }

    /// A reply resolves to its answer; dropping one gives its room back.
    #[tokio::test]
    async fn a_reply_resolves_once_and_its_drop_frees_the_room() {
        let requests = Arc::new(Requests::new(1));
        requests.open_session(1);
        let mut reply = request(&requests, None);
        assert!(poll(&mut reply).is_pending());
        let mut out = BytesMut::new();
        requests.take_output(&mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        let opaque: i32 = text.trim_end().rsplit(' ').next().unwrap().parse().unwrap();
        let answer = Response::text(StatusCode(200), opaque, "ok");
        assert_eq!(
            requests.answer_all(&mut vec![answer], &mut Vec::new(), Instant::now()),
            None
        );
        assert!(matches!(poll(&mut reply), Poll::Ready(Ok(r)) if r.opaque == opaque));
        assert!(reply.answered_at().is_some());

        let waiting = request(&requests, None);
        assert_eq!(requests.waiting(), 1);
        drop(waiting);
        assert_eq!(requests.waiting(), 0);
    }

    /// A request refused by the table resolves at once, unwritten.
    #[tokio::test]
    async fn a_refused_request_resolves_at_once_as_not_written() {
        let requests = Arc::new(Requests::new(1));
        requests.open_session(1);
        let mut reply = request(&requests, Some(7));
        assert!(matches!(
            poll(&mut reply),
            Poll::Ready(Err(RequestError::NotWritten(_)))
        ));
        assert!(reply.answered_at().is_none());
    }
}
