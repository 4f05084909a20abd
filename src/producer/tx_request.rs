//! One transaction command or transactional put on a chosen socket, and
//! what became of it: shared by local transactions and XA branches, which
//! both stay on one broker and never retry elsewhere.

use std::time::Duration;

use bytes::BytesMut;

use crate::cluster::{BrokerUri, Partition};
use crate::net::{Connection, NotQueued, RequestError as Unanswered};
use crate::protocol::{ProtocolError, Response, TransactionRequest};
use crate::SendResult;

/// Why a transaction request got no answer.
#[derive(Debug)]
pub(crate) enum RequestError {
    NotWritten(String),
    Lost(String),
    Timeout(Duration),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::NotWritten(cause) => write!(f, "not written: {cause}"),
            RequestError::Lost(cause) => write!(f, "connection lost after writing: {cause}"),
            RequestError::Timeout(wait) => write!(f, "no answer within {wait:?}"),
        }
    }
}

/// A transaction command waiting for its opaque.
pub(crate) struct Command(pub(crate) TransactionRequest);

impl Command {
    pub(crate) fn frame(
        &self,
    ) -> impl Fn(&mut BytesMut, i32) -> std::result::Result<(), ProtocolError> + '_ {
        |out, opaque| {
            TransactionRequest {
                opaque,
                ..self.0.clone()
            }
            .encode(out)
        }
    }
}

/// Writes one frame (on socket generation `epoch`, if given) and waits for its answer.
pub(crate) async fn request(
    connection: &Connection,
    epoch: Option<u64>,
    frame: impl Fn(&mut BytesMut, i32) -> std::result::Result<(), ProtocolError>,
    wait: Duration,
) -> std::result::Result<Response, RequestError> {
    let room_until = tokio::time::Instant::now() + wait;
    let reply = match connection.request(epoch, room_until, wait, frame).await {
        Ok(reply) => reply,
        Err(NotQueued::Full) => {
            return Err(RequestError::NotWritten("no room on the connection".into()))
        }
        Err(NotQueued::Invalid(e)) => {
            return Err(RequestError::NotWritten(format!("cannot be encoded: {e}")))
        }
    };
    reply.await.map_err(|e| match e {
        Unanswered::NotWritten(cause) => RequestError::NotWritten(cause),
        Unanswered::Lost(cause) => RequestError::Lost(cause),
        Unanswered::TimedOut => RequestError::Timeout(wait),
    })
}

/// The result a 200 answer to a put sent to `partition` of `broker`
/// carries (`<id> <index> <offset>`), or `None` if its body cannot be read.
pub(crate) fn put_answer(
    response: &Response,
    partition: Partition,
    broker: &BrokerUri,
) -> Option<SendResult> {
    let (message_id, index, offset) = response.put_result()?;
    Some(SendResult {
        partition: Partition::new(partition.broker_id, index.max(0) as u32),
        offset,
        message_id,
        broker: broker.clone(),
        attempts: 1,
    })
}
