//! `metaq produce --oneway`: every record queued on a one-way producer
//! (`Producer::one_way`, a window of 10,000 messages) and not awaited one
//! by one; at the end the one-way producer is closed (waiting at most the
//! send timeout plus a second) and its counters make the summary.

use metaq::producer::{OneWayConfig, OneWayStats};
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

/// The summary's `one_way` object.
pub(super) fn stats_json(stats: &OneWayStats) -> serde_json::Value {
    serde_json::json!({
        "accepted": stats.accepted,
        "sent": stats.sent,
        "failed_not_sent": stats.failed_not_sent,
        "failed_maybe_sent": stats.failed_maybe_sent,
        "failed_rejected": stats.failed_rejected,
        "failed_other": stats.failed_other,
        "pending": stats.in_window,
    })
}

/// The summary's one-way line.
pub(super) fn stats_line(stats: &OneWayStats) -> String {
    format!(
        "one-way: accepted {}, sent {}, failed {} (not sent {}, maybe sent {}, rejected {}, other {}), pending {}",
        stats.accepted,
        stats.sent,
        stats.failed(),
        stats.failed_not_sent,
        stats.failed_maybe_sent,
        stats.failed_rejected,
        stats.failed_other,
        stats.in_window
    )
}
