//! The one-way producer's spill to a [`LocalStore`] (docs/protocol.md
//! §2.8): a message that finds the window full, or whose send failed, is
//! appended to the store's "any partition" queue of its topic (`-1--1`,
//! as Java names it) instead of being dropped, and a background task sends
//! what the store holds through the producer's ordinary send path
//! (partition choice, retries) whenever there is room in the window.
//!
//! Replay is at least once: a message whose put was written but never
//! answered, then spilled, may be stored twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::store_task::on_store;
use super::Producer;
use crate::error::{Delivery, Error, Result};
use crate::local_store::LocalStore;
use crate::Message;

/// The partition text of the queues a one-way producer spills to.
pub(crate) const ANY_PARTITION: &str = "-1--1";

/// A store to spill to, and its counters.
pub(crate) struct Spill {
    pub(crate) store: LocalStore,
    pub(crate) replay_every: Duration,
    pub(crate) spilled: AtomicU64,
    pub(crate) replayed: AtomicU64,
}

impl Spill {
    pub(crate) fn new(store: LocalStore, replay_every: Duration) -> Self {
        Spill {
            store,
            replay_every,
            spilled: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
        }
    }

    /// Whether a send that ended with `error` is worth keeping: not for a
    /// message the broker refused for good (4xx) or one that cannot be
    /// written at all.
    pub(crate) fn takes(error: &Error) -> bool {
        match error {
            Error::InvalidMessage { .. } | Error::MessageTooLarge { .. } => false,
            Error::Rejected { code, .. } => *code >= 500,
            other => other.delivery() != Some(Delivery::Rejected),
        }
    }

    /// Appends `message`; gives it back if the store cannot take it.
    pub(crate) fn keep(&self, message: Message) -> std::result::Result<(), Box<(Message, Error)>> {
        match self.store.append(ANY_PARTITION, &message) {
            Ok(_) => {
                self.spilled.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => Err(Box::new((message, error))),
        }
    }

    /// Messages the spill holds now.
    pub(crate) fn held(&self) -> u64 {
        self.store
            .holdings()
            .iter()
            .filter(|h| h.partition == ANY_PARTITION)
            .map(|h| h.messages)
            .sum()
    }
}

/// What becomes of a spilled message the broker refuses for good (the
/// one-way producer's failure handling).
pub(crate) type GiveUp = Arc<dyn Fn(Message, Error) + Send + Sync>;

/// Sends what the spill holds, oldest first per topic, each time the
/// interval passes, while the window (`room`) has a free place; a failure
/// ends the round (the message stays).
pub(crate) async fn replay(
    producer: Producer,
    spill: Arc<Spill>,
    room: Arc<Semaphore>,
    stop: CancellationToken,
    give_up: GiveUp,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(spill.replay_every) => {}
        }
        if producer.inner.check_open().is_err() {
            return;
        }
        if let Err(e) = replay_round(&producer, &spill, &room, &stop, &give_up).await {
            warn!(error = %e, "one-way spill: replay stopped");
        }
    }
}

async fn replay_round(
    producer: &Producer,
    spill: &Arc<Spill>,
    room: &Arc<Semaphore>,
    stop: &CancellationToken,
    give_up: &GiveUp,
) -> Result<()> {
    for (topic, partition) in spill.store.queues() {
        if partition != ANY_PARTITION {
            continue;
        }
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            // Only with room: replay must not crowd out new messages.
            let Ok(_place) = room.try_acquire() else {
                return Ok(());
            };
            let t = topic.clone();
            let front = on_store(&spill.store, move |s| s.peek_front(&t, ANY_PARTITION)).await?;
            let Some(front) = front else { break };
            match producer.send(front.message.clone()).await {
                Ok(_) => {
                    spill.replayed.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if !Spill::takes(&e) => {
                    // Refused for good: leaves the store, and is counted,
                    // logged and handed to `on_failure` like any failure.
                    give_up(front.message, e);
                }
                Err(e) => {
                    debug!(%topic, error = %e, "one-way spill: replay waits for the next round");
                    return Ok(());
                }
            }
            let (t, seq) = (topic.clone(), front.seq);
            on_store(&spill.store, move |s| s.ack_front(&t, ANY_PARTITION, seq)).await?;
        }
    }
    Ok(())
}
