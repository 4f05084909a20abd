//! The soak's load: keyless plain sends and local transactions, mixed at
//! random (seeded) and paced to a rate, each recorded in the [`Ledger`].
//!
//! The rate is a ceiling: at most `window` messages are in flight, and
//! when an outage held the load back it does not make up for more than a
//! second of lost time, so a fault never turns into a burst.

use std::sync::Arc;
use std::time::Duration;

use metaq::{Error, Message, Producer};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ledger::{FailKind, Fate, Ledger, TxOutcome};
use super::payload;

/// One transaction begins in this many units (the others are plain sends).
const TX_PERCENT: u32 = 5;
/// Messages per transaction.
const TX_MESSAGES: std::ops::RangeInclusive<u32> = 2..=5;
/// Transactions meant to commit; the others are rolled back.
const COMMIT_PERCENT: u32 = 70;
/// How far behind its schedule the load may fall before it stops catching up.
const MAX_CATCH_UP: Duration = Duration::from_secs(1);

pub(crate) struct LoadSpec {
    pub(crate) topic: String,
    /// Messages per second.
    pub(crate) rate: f64,
    /// Messages in flight at most.
    pub(crate) window: usize,
    pub(crate) seed: u64,
}

/// Sends until `stop` is cancelled, then waits for every send it started.
pub(crate) async fn run(
    producer: Producer,
    spec: LoadSpec,
    ledger: Arc<Ledger>,
    stop: CancellationToken,
) {
    let sends = TaskTracker::new();
    let room = Arc::new(Semaphore::new(spec.window));
    let mut rng = fastrand::Rng::with_seed(spec.seed);
    let per_message = Duration::from_secs_f64(1.0 / spec.rate);
    let mut due = Instant::now();
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(due) => {}
        }
        let transaction = rng.u32(0..100) < TX_PERCENT;
        let messages = if transaction { rng.u32(TX_MESSAGES) } else { 1 };
        let permit = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            permit = Arc::clone(&room).acquire_many_owned(messages) => {
                permit.expect("the semaphore is never closed")
            }
        };
        let producer = producer.clone();
        let ledger = Arc::clone(&ledger);
        let topic = spec.topic.clone();
        if transaction {
            let fate = if rng.u32(0..100) < COMMIT_PERCENT {
                Fate::Commit
            } else {
                Fate::Rollback
            };
            let number = ledger.new_tx(messages, fate);
            sends.spawn(async move {
                transaction_send(&producer, &topic, number, messages, fate, &ledger).await;
                drop(permit);
            });
        } else {
            let number = ledger.new_plain();
            sends.spawn(async move {
                let sent = producer
                    .send(Message::new(topic, payload::plain(number)))
                    .await;
                ledger.plain_done(number, sent.as_ref().map(drop));
                drop(permit);
            });
        }
        due += per_message * messages;
        if let Some(floor) = Instant::now().checked_sub(MAX_CATCH_UP) {
            due = due.max(floor);
        }
    }
    sends.close();
    sends.wait().await;
}

/// One transaction of `messages` messages, committed or rolled back as
/// its `fate` says, unless a send fails first.
async fn transaction_send(
    producer: &Producer,
    topic: &str,
    number: u64,
    messages: u32,
    fate: Fate,
    ledger: &Ledger,
) {
    let mut tx = match producer.begin_transaction() {
        Ok(tx) => tx,
        Err(error) => {
            let outcome = TxOutcome::Aborted(FailKind::of(&error));
            return ledger.tx_done(number, outcome, Some(&error));
        }
    };
    for index in 1..=messages {
        let message = Message::new(topic, payload::tx(number, fate, index, messages));
        if let Err(error) = tx.send(message).await {
            // Rolled back explicitly rather than by the drop, so that the
            // rollback is written before this transaction counts as ended.
            let _ = tx.rollback().await;
            let outcome = TxOutcome::Aborted(FailKind::of(&error));
            return ledger.tx_done(number, outcome, Some(&error));
        }
    }
    let (outcome, error): (TxOutcome, Option<Error>) = match fate {
        // Whether the rollback was answered or not, nothing of it may
        // show: the broker drops what it holds when the connection goes.
        Fate::Rollback => (TxOutcome::RolledBack, tx.rollback().await.err()),
        Fate::Commit => match tx.commit().await {
            Ok(()) => (TxOutcome::Committed, None),
            Err(error) if FailKind::of(&error) == FailKind::MaybeSent => {
                (TxOutcome::InDoubt, Some(error))
            }
            Err(error) => (TxOutcome::CommitFailed, Some(error)),
        },
    };
    ledger.tx_done(number, outcome, error.as_ref());
}
