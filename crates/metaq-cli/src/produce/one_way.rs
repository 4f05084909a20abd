//! `metaq produce --oneway`: every record queued on a one-way producer
//! (`Producer::one_way`, a window of 10,000 messages) and not awaited one
//! by one; at the end the one-way producer is closed (waiting at most the
//! send timeout plus a second) and its counters make the summary.
//!
//! With `--spill-dir`, a message whose send failed is appended to a local
//! store there instead of being lost, and replayed every second while the
//! command runs; what the store holds at exit stays on disk for the next
//! run on the same directory.

use std::path::Path;
use std::time::Duration;

use metaq::local_store::{LocalStore, LocalStoreConfig};
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
    spill_dir: Option<&Path>,
    input: &mut Input,
    stop: &CancellationToken,
    out: &mut Output,
) -> Result<Ended, String> {
    let mut config = OneWayConfig::default();
    if let Some(dir) = spill_dir {
        // Recovery reads the whole store: off the async threads.
        let path = dir.to_path_buf();
        let store = tokio::task::spawn_blocking(move || {
            LocalStore::open(path, LocalStoreConfig::default())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|opened| opened.map_err(|e| e.to_string()))
        .map_err(|e| format!("cannot open the spill store {}: {e}", dir.display()))?;
        config = config.spill_to(store, SPILL_REPLAY);
    }
    let one_way = producer.one_way(config);
    let ended = loop {
        let record = match input.next_or_stop(stop).await {
            Ok(record) => record,
            Err(ended) => break ended,
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
    Ok(ended)
}

/// How often `--spill-dir`'s store is replayed.
const SPILL_REPLAY: Duration = Duration::from_secs(1);
