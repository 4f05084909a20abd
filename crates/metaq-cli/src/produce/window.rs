//! Sending without transactions: up to `--concurrency` sends in flight,
//! each record sent as soon as it is read and there is room.

use std::future::Future;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use metaq::{Error, Producer, SendResult};
use tokio_util::sync::CancellationToken;

use super::checks::Messages;
use super::input::Input;
use super::output::{Ended, Output};

pub(super) struct Window {
    /// Sends in flight at most.
    pub(super) size: usize,
    /// After an interrupt, how long the sends in flight are waited for.
    pub(super) interrupted_wait: Duration,
}

pub(super) async fn send(
    producer: &Producer,
    messages: &Messages,
    window: Window,
    input: &mut Input,
    stop: &CancellationToken,
    out: &mut Output,
) -> Ended {
    let mut in_flight = FuturesUnordered::new();
    let ended = loop {
        // Results are printed as they come, also while input is quiet.
        tokio::select! {
            biased;
            _ = stop.cancelled() => break Ended::Interrupted,
            Some((line, outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                out.result(line, &outcome);
            }
            next = input.next(), if in_flight.len() < window.size => match next {
                None => break Ended::Complete,
                Some(Err(reason)) => break Ended::InputFailed(reason),
                Some(Ok(record)) => {
                    let line = record.line;
                    let message = messages.message(record.key, record.payload);
                    in_flight.push(producer.send(message).map(move |outcome| (line, outcome)));
                }
            },
        }
    };
    let ended = match ended {
        Ended::Interrupted => ended,
        // An interrupt while the last sends are awaited cuts that wait short.
        _ => tokio::select! {
            () = drain(&mut in_flight, out) => return ended,
            _ = stop.cancelled() => Ended::Interrupted,
        },
    };
    let _ = tokio::time::timeout(window.interrupted_wait, drain(&mut in_flight, out)).await;
    out.unanswered(in_flight.len() as u64);
    ended
}

/// Reports every send in flight as it ends.
async fn drain<F>(in_flight: &mut FuturesUnordered<F>, out: &mut Output)
where
    F: Future<Output = (u64, Result<SendResult, Error>)>,
{
    while let Some((line, outcome)) = in_flight.next().await {
        out.result(line, &outcome);
    }
}
