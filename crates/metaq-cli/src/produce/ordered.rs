//! `metaq produce --ordered`: every record sent through an ordered
//! producer (`Producer::ordered`), one at a time in input order, to the
//! partition its key hashes to; a record whose partition cannot take it is
//! kept in the local store of `--store-dir` and reported as stored. At the
//! end, `--flush-ms` waits for the store to drain; what it still holds then
//! stays on disk for the next run on the same directory.
//!
//! An interrupt stops reading input, never a send under way: an ordered
//! send ends by itself (sent or stored) within the send timeout.

use metaq::producer::OrderedProducer;
use metaq::{Error, Producer};
use tokio_util::sync::CancellationToken;

use super::checks::Messages;
use super::input::Input;
use super::ordered_settings::{config, Settings};
use super::output::{Ended, Output};

/// Sends every record in order, then waits up to `--flush-ms` for the
/// store to drain and hands the ordered producer's counters to `out`.
pub(super) async fn send(
    producer: &Producer,
    messages: &Messages,
    settings: &Settings,
    input: &mut Input,
    stop: &CancellationToken,
    out: &mut Output,
) -> Result<Ended, String> {
    let ordered = producer
        .ordered(config(settings, &messages.topic)?)
        .await
        .map_err(|e| format!("cannot open the ordered store: {e}"))?;
    let ended = loop {
        let record = match input.next_or_stop(stop).await {
            Ok(record) => record,
            Err(ended) => break ended,
        };
        let message = messages.message(record.key, record.payload);
        if message.key().is_none() {
            out.ordered_result(record.line, &Err(no_key(messages, settings)));
            continue;
        }
        // Not cancelled by an interrupt: it ends by itself, sent or stored.
        let outcome = ordered.send(message).await;
        out.ordered_result(record.line, &outcome);
    };
    let ended = flush(&ordered, settings, stop, ended).await;
    ordered.close();
    out.ordered(ordered.stats());
    Ok(ended)
}

/// Waits up to `--flush-ms` for the store to drain; an interrupt cuts the
/// wait short.
async fn flush(
    ordered: &OrderedProducer,
    settings: &Settings,
    stop: &CancellationToken,
    ended: Ended,
) -> Ended {
    if settings.flush.is_zero() || matches!(ended, Ended::Interrupted) {
        return ended;
    }
    tokio::select! {
        flushed = ordered.flush(settings.flush) => {
            if let Err(Error::FlushTimeout { in_flight, .. }) = flushed {
                eprintln!(
                    "metaq: {in_flight} message(s) still held in {} after waiting {:?}; the next `metaq produce --ordered` on this --store-dir replays them",
                    settings.store_dir.display(),
                    settings.flush
                );
            }
            ended
        }
        _ = stop.cancelled() => Ended::Interrupted,
    }
}

/// The error of a record without a key.
fn no_key(messages: &Messages, settings: &Settings) -> Error {
    let reason = match &settings.key_delimiter {
        Some(delimiter) => format!(
            "the record has no key (--key-delimiter {delimiter:?} is not in it); --ordered needs one, so it was not sent"
        ),
        None => "the record has no key; --ordered needs --key or --key-delimiter".into(),
    };
    Error::InvalidMessage {
        topic: messages.topic.clone(),
        reason,
    }
}
