//! What every run sends, the same for metaq and for the raw writer.

use bytes::Bytes;
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// As many sends in flight as `--window` allows.
    Throughput,
    /// One send at a time.
    Latency,
    /// Local transactions of `--batch` messages, `--window / --batch` at once.
    Transaction,
    /// `send_all` calls of `--batch` messages, `--window / --batch` at once.
    Batch,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Throughput => "throughput",
            Mode::Latency => "latency",
            Mode::Transaction => "transaction",
            Mode::Batch => "batch",
        }
    }

    /// Messages sent when `--count` is not given: enough for a run of a few
    /// seconds at today's speeds.
    pub(crate) fn default_count(self) -> u64 {
        match self {
            Mode::Throughput | Mode::Batch => 1_000_000,
            Mode::Latency => 20_000,
            Mode::Transaction => 200_000,
        }
    }

    /// Messages per transaction or per `send_all` when `--batch` is not given.
    pub(crate) fn default_batch(self) -> usize {
        match self {
            Mode::Batch => 1_000,
            _ => 20,
        }
    }
}

pub(crate) struct Workload {
    pub(crate) mode: Mode,
    pub(crate) topic: String,
    /// `--size` bytes of `x`, shared by every message (no copy per send).
    pub(crate) payload: Bytes,
    pub(crate) count: u64,
    pub(crate) window: usize,
    pub(crate) batch: usize,
}

impl Workload {
    /// Transactions (or `send_all` calls) running at once in transaction
    /// (batch) mode: the window counts messages, and each transaction has up
    /// to `batch` of them in flight over its life.
    pub(crate) fn transactions_at_once(&self) -> usize {
        (self.window / self.batch).max(1)
    }
}

/// Completions between two progress bar updates: an update per message
/// would cost more than some sends.
pub(crate) const PROGRESS_STEP: u64 = 4096;

/// A bar on a terminal, nothing otherwise (or with `--json`).
pub(crate) fn progress_bar(show: bool, total: u64, label: String) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>14} {bar:40} {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(label);
    bar
}
