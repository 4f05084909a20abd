//! One put to one named partition, with no retry elsewhere: what the
//! ordered producer needs, since a key's messages must never move to
//! another partition (docs/protocol.md §2.9).

use bytes::BytesMut;
use tokio::time::Instant;

use super::send::encode_put_into;
use super::topics::TopicState;
use super::tx_request::{put_answer, request, RequestError};
use super::ProducerInner;
use crate::cluster::Partition;
use crate::error::{Attempt, Attempts, Delivery, Error, Result};
use crate::{Message, SendResult};

/// Whether `partition` can take a put now: listed in the topic's route and
/// its broker connected.
pub(crate) fn writable(state: &TopicState, partition: Partition) -> bool {
    let route = state.route.load();
    route.partitions.contains(&partition)
        && route
            .connections
            .get(&partition.broker_id)
            .is_some_and(|c| c.is_ready())
}

/// Sends `message` to `partition` once, within the producer's send timeout.
pub(crate) async fn send_to_partition(
    inner: &ProducerInner,
    state: &TopicState,
    partition: Partition,
    message: &Message,
) -> Result<SendResult> {
    let start = Instant::now();
    let topic = || message.topic().to_owned();
    let connection = state
        .route
        .load()
        .connections
        .get(&partition.broker_id)
        .cloned();
    let Some(connection) = connection else {
        return Err(Error::NoPartition {
            topic: topic(),
            reason: format!("no broker serves partition {partition} now"),
        });
    };
    let frame = |out: &mut BytesMut, opaque| encode_put_into(out, opaque, message, partition, None);
    let answer = request(&connection, None, frame, inner.config.send_timeout).await;
    let broker = connection.uri().clone();
    let attempts = |delivery, cause: &str| {
        Attempts(vec![Attempt {
            broker: broker.clone(),
            partition,
            elapsed: start.elapsed(),
            delivery,
            cause: cause.to_owned(),
        }])
    };
    match answer {
        Ok(response) if response.code.is_success() => {
            match put_answer(&response, partition, &broker) {
                Some(sent) => Ok(sent),
                None => {
                    let cause = format!(
                        "unreadable success answer {:?}",
                        String::from_utf8_lossy(&response.body)
                    );
                    Err(Error::ConnectionLost {
                        topic: topic(),
                        partition,
                        attempts: attempts(Delivery::MaybeSent, &cause),
                        broker,
                        cause,
                    })
                }
            }
        }
        Ok(response) => {
            let text = String::from_utf8_lossy(&response.body).into_owned();
            Err(Error::Rejected {
                topic: topic(),
                partition,
                attempts: attempts(Delivery::Rejected, &text),
                broker,
                code: response.code.0,
                message: text,
            })
        }
        Err(RequestError::NotWritten(cause)) => Err(Error::NotSent {
            topic: topic(),
            partition,
            attempts: attempts(Delivery::NotSent, &cause),
            broker,
            cause,
        }),
        Err(RequestError::Lost(cause)) => Err(Error::ConnectionLost {
            topic: topic(),
            partition,
            attempts: attempts(Delivery::MaybeSent, &cause),
            broker,
            cause,
        }),
        Err(RequestError::Timeout(timeout)) => Err(Error::Timeout {
            topic: topic(),
            partition,
            attempts: attempts(
                Delivery::MaybeSent,
                &format!("no answer within {timeout:?}"),
            ),
            broker,
            timeout,
        }),
    }
}
