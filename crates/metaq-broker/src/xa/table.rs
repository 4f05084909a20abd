//! The broker-wide table of XA branches and their journal: what a branch
//! holds and which phase it is in (docs/protocol.md §4.3). Knows nothing of
//! requests; `xa` and `finish` answer them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use tokio::task::AbortHandle;
use tracing::{info, warn};

use super::journal::{HeldPut, Journal};
use crate::counters::Stats;
use metaq::protocol::{TxKey, XaTxId};

pub(super) enum Phase {
    /// START or IN_USE: puts accepted, the timeout armed (if any).
    Active,
    /// PREPARE is writing the journal file; the branch takes no command.
    Preparing,
    /// On disk in this file; never expires.
    Prepared(PathBuf),
}

pub(super) struct Branch {
    pub(super) puts: Vec<HeldPut>,
    /// Body bytes held in `puts`.
    pub(super) bytes: usize,
    pub(super) phase: Phase,
    pub(super) timer: Option<AbortHandle>,
    /// Tells a timer of an earlier branch with the same key from this one's.
    pub(super) generation: u64,
    /// Read back from the journal at start: its commit may have been
    /// appended already, just before a crash that kept the file.
    pub(super) replayed: bool,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) branches: HashMap<XaTxId, Branch>,
    /// Body bytes held by every branch.
    pub(super) held: usize,
    pub(super) generations: u64,
}

impl State {
    /// Takes a branch out (it is finished), releasing what it held.
    /// Puts a prepared branch whose commit could not append every block
    /// back, as read from its journal file: a commit again skips what was
    /// appended (by message id).
    pub(super) fn put_back(&mut self, xid: XaTxId, file: PathBuf, puts: Vec<HeldPut>) {
        let bytes = puts.iter().map(|p| p.record.body.len()).sum();
        self.generations += 1;
        self.held += bytes;
        let branch = Branch {
            puts,
            bytes,
            phase: Phase::Prepared(file),
            timer: None,
            generation: self.generations,
            replayed: true,
        };
        self.branches.insert(xid, branch);
    }

    pub(super) fn remove(&mut self, key: &XaTxId) -> Option<Branch> {
        let branch = self.branches.remove(key)?;
        self.held -= branch.bytes;
        if let Some(timer) = &branch.timer {
            timer.abort();
        }
        Some(branch)
    }
}

/// Every XA branch of the broker and their journal.
pub(crate) struct XaTable {
    pub(super) state: Mutex<State>,
    pub(super) journal: Journal,
}

impl XaTable {
    /// Opens the journal under `data_dir` and takes back every prepared
    /// branch in it. Blocking.
    pub(crate) fn open(data_dir: &std::path::Path) -> std::io::Result<XaTable> {
        let (journal, loaded) = Journal::open(data_dir)?;
        let mut state = State::default();
        for branch in loaded {
            let bytes = branch.puts.iter().map(|p| p.record.body.len()).sum();
            let key = TxKey::Xa(branch.key.clone());
            info!(%key, messages = branch.puts.len(), "prepared XA transaction recovered from the journal");
            state.generations += 1;
            let replaced = state.branches.insert(
                branch.key,
                Branch {
                    puts: branch.puts,
                    bytes,
                    phase: Phase::Prepared(branch.file),
                    timer: None,
                    generation: state.generations,
                    replayed: true,
                },
            );
            // Only after a crash between a commit's appends and the removal of
            // its file while the key was prepared again: the newer file wins.
            if let Some(Branch {
                phase: Phase::Prepared(old),
                bytes,
                ..
            }) = replaced
            {
                warn!(%key, file = %old.display(), "older journal file of the same XA key ignored");
                state.held -= bytes;
            }
            state.held += bytes;
        }
        Ok(XaTable {
            state: Mutex::new(state),
            journal,
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rolls back a branch whose timeout passed, unless it was prepared,
    /// finished, or begun again since.
    pub(super) fn expire(&self, key: &XaTxId, generation: u64, stats: &Stats) {
        let mut state = self.lock();
        let due = state
            .branches
            .get(key)
            .is_some_and(|b| b.generation == generation && matches!(b.phase, Phase::Active));
        if due {
            if let Some(branch) = state.remove(key) {
                Stats::bump(&stats.tx_rollback);
                let key = TxKey::Xa(key.clone());
                info!(%key, messages = branch.puts.len(), "XA transaction timed out; rolled back");
            }
        }
    }
}
