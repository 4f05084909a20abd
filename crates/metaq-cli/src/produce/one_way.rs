//! `metaq produce --oneway`: every record queued on a one-way producer
//! (`Producer::one_way`, a window of 10,000 messages) and not awaited one
//! by one; at the end the one-way producer is closed (waiting at most the
//! send timeout plus a second) and its counters make the summary.

use metaq::producer::OneWayConfig;
use metaq::Producer;
use tokio_util::sync::CancellationToken;

use super::checks::Messages;
use super::input::Input;
use super::output::{Ended, Output};

/// Queues every record, then closes the one-way producer and hands its
/// counters to `out`.
pub(super) async fn send(
    producer: &Producer,
    messages: &Messages,
    input: &mut Input,
    stop: &CancellationToken,
    out: &mut Output,
) -> Ended {
    let one_way = producer.one_way(OneWayConfig::default());
    let ended = loop {
        let record = tokio::select! {
            biased;
            _ = stop.cancelled() => break Ended::Interrupted,
            next = input.next() => match next {
                None => break Ended::Complete,
                Some(Err(reason)) => break Ended::InputFailed(reason),
                Some(Ok(record)) => record,
            },
        };
        let message = messages.message(record.key, record.payload);
        // Waits while the window is full; an interrupt stops the wait.
        tokio::select! {
            biased;
            _ = stop.cancelled() => break Ended::Interrupted,
            queued = one_way.send(message) => {
                if queued.is_err() {
                    unreachable!("the one-way producer is closed only below");
                }
            }
        }
    };
    // Bounded by the send timeout: what is still pending then is reported
    // as unanswered.
    let _ = one_way.close().await;
    out.one_way(one_way.stats());
    ended
}
