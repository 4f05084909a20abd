//! What sends came to on one broker address, counted by the producer as
//! they end. Kept by the pool for the producer's lifetime, beyond the
//! connection: a broker whose connection closed (it left every route, or
//! moved) keeps its counts, so the per-broker figures still add up to the
//! producer's.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// A broker id no route has named yet.
const UNKNOWN_ID: u32 = u32::MAX;

/// Per-broker-address counts; see the module documentation.
#[derive(Debug)]
pub(crate) struct Tally {
    /// The id the last route naming this address gave it.
    broker_id: AtomicU32,
    sent: AtomicU64,
    failed: AtomicU64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            broker_id: AtomicU32::new(UNKNOWN_ID),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }
}

impl Tally {
    /// A send succeeded here.
    pub(crate) fn sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// An attempt failed here (whether the send was retried elsewhere or not).
    pub(crate) fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// A route names this address broker `id`.
    pub(crate) fn named(&self, id: u32) {
        self.broker_id.store(id, Ordering::Relaxed);
    }

    /// The broker id routes gave this address, if any did.
    pub(crate) fn broker_id(&self) -> Option<u32> {
        Some(self.broker_id.load(Ordering::Relaxed)).filter(|&id| id != UNKNOWN_ID)
    }

    /// Sends that succeeded here, attempts that failed here.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}
