//! What the load sent and what it was told: one entry per plain message
//! and per transaction, filled in as each ends. The check compares it with
//! what the brokers stored.

use std::sync::{Mutex, MutexGuard, PoisonError};

use metaq::{Delivery, Error};
use serde::Serialize;

/// How a failed send failed, as [`Error::delivery`] tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FailKind {
    NotSent,
    MaybeSent,
    Rejected,
    /// No delivery kind (ZooKeeper, configuration).
    Other,
}

impl FailKind {
    pub(crate) fn of(error: &Error) -> FailKind {
        match error.delivery() {
            Some(Delivery::NotSent) => FailKind::NotSent,
            Some(Delivery::MaybeSent) => FailKind::MaybeSent,
            Some(Delivery::Rejected) => FailKind::Rejected,
            _ => FailKind::Other,
        }
    }
}

/// The end of one plain send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PlainOutcome {
    Acked,
    Failed(FailKind),
}

/// What a transaction was meant to do, decided before it began and
/// written in each of its payloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    Commit,
    Rollback,
}

impl Fate {
    pub(crate) fn word(self) -> &'static str {
        match self {
            Fate::Commit => "commit",
            Fate::Rollback => "rollback",
        }
    }
}

/// How a transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TxOutcome {
    /// COMMIT answered 200: every message must be stored.
    Committed,
    /// Rolled back as planned (answered or not): none may be stored.
    RolledBack,
    /// A send inside it failed, so it was rolled back: none may be stored.
    Aborted(FailKind),
    /// COMMIT failed without being maybe-sent (not written, or refused):
    /// none may be stored.
    CommitFailed,
    /// COMMIT was written and its answer never came: all or none.
    InDoubt,
}

/// One transaction: its size and plan, and its end once known.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TxEntry {
    pub(crate) messages: u32,
    pub(crate) fate: Fate,
    pub(crate) outcome: Option<TxOutcome>,
}

/// The first few error texts of each kind, for the report.
const SAMPLE_ERRORS: usize = 3;

#[derive(Default, Serialize, Clone)]
pub(crate) struct ErrorSamples {
    pub(crate) not_sent: Vec<String>,
    pub(crate) maybe_sent: Vec<String>,
    pub(crate) rejected: Vec<String>,
    pub(crate) other: Vec<String>,
    pub(crate) transactions: Vec<String>,
}

#[derive(Default)]
pub(crate) struct Ledger {
    /// Indexed by the plain message's number; `None` while in flight.
    plain: Mutex<Vec<Option<PlainOutcome>>>,
    /// Indexed by the transaction's number.
    txs: Mutex<Vec<TxEntry>>,
    samples: Mutex<ErrorSamples>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Ledger {
    /// A new plain message's number.
    pub(crate) fn new_plain(&self) -> u64 {
        let mut plain = lock(&self.plain);
        plain.push(None);
        plain.len() as u64 - 1
    }

    pub(crate) fn plain_done(&self, number: u64, result: Result<(), &Error>) {
        let outcome = match result {
            Ok(()) => PlainOutcome::Acked,
            Err(error) => {
                let kind = FailKind::of(error);
                self.sample(kind, error);
                PlainOutcome::Failed(kind)
            }
        };
        lock(&self.plain)[number as usize] = Some(outcome);
    }

    /// A new transaction's number.
    pub(crate) fn new_tx(&self, messages: u32, fate: Fate) -> u64 {
        let mut txs = lock(&self.txs);
        txs.push(TxEntry {
            messages,
            fate,
            outcome: None,
        });
        txs.len() as u64 - 1
    }

    pub(crate) fn tx_done(&self, number: u64, outcome: TxOutcome, error: Option<&Error>) {
        if let Some(error) = error {
            let mut samples = lock(&self.samples);
            if samples.transactions.len() < SAMPLE_ERRORS * 3 {
                samples.transactions.push(error.to_string());
            }
        }
        lock(&self.txs)[number as usize].outcome = Some(outcome);
    }

    fn sample(&self, kind: FailKind, error: &Error) {
        let mut samples = lock(&self.samples);
        let list = match kind {
            FailKind::NotSent => &mut samples.not_sent,
            FailKind::MaybeSent => &mut samples.maybe_sent,
            FailKind::Rejected => &mut samples.rejected,
            FailKind::Other => &mut samples.other,
        };
        if list.len() < SAMPLE_ERRORS {
            list.push(error.to_string());
        }
    }

    /// Every plain outcome so far (a copy).
    pub(crate) fn plain(&self) -> Vec<Option<PlainOutcome>> {
        lock(&self.plain).clone()
    }

    /// Every transaction so far (a copy).
    pub(crate) fn txs(&self) -> Vec<TxEntry> {
        lock(&self.txs).clone()
    }

    pub(crate) fn samples(&self) -> ErrorSamples {
        lock(&self.samples).clone()
    }

    /// Plain messages acknowledged and failed so far, and transactions
    /// committed, for the progress line.
    pub(crate) fn progress(&self) -> (u64, u64, u64) {
        let (mut acked, mut failed) = (0, 0);
        for outcome in lock(&self.plain).iter().flatten() {
            match outcome {
                PlainOutcome::Acked => acked += 1,
                PlainOutcome::Failed(_) => failed += 1,
            }
        }
        let committed = lock(&self.txs)
            .iter()
            .filter(|t| t.outcome == Some(TxOutcome::Committed))
            .count() as u64;
        (acked, failed, committed)
    }
}
