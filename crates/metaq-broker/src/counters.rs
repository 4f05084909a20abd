//! The counters the broker reports in `stats` (docs/protocol.md §3.7). A
//! leaf, so that every part of the broker can count without depending on
//! the state they share.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters reported by `stats`.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) connections: AtomicU64,
    pub(crate) cmd_put: AtomicU64,
    pub(crate) put_failed: AtomicU64,
    pub(crate) tx_begin: AtomicU64,
    pub(crate) tx_xa_begin: AtomicU64,
    pub(crate) tx_commit: AtomicU64,
    pub(crate) tx_rollback: AtomicU64,
    pub(crate) total_messages: AtomicU64,
}

impl Stats {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
