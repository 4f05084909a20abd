//! The check at the end: every broker's records read back from its data
//! directory and held against the ledger.
//!
//! Must hold: every acknowledged plain message is stored (at least once);
//! every committed transaction is stored whole; no message of a transaction
//! that was not committed is stored; a transaction whose commit is in doubt
//! is stored whole or not at all; every record is one the soak wrote, with
//! a good checksum. Duplicates are counted, not refused: delivery is at
//! least once.

use std::collections::HashMap;
use std::path::PathBuf;

use metaq::protocol::split_body;
use metaq_broker::store::read_records;
use serde::Serialize;

use super::ledger::{FailKind, PlainOutcome, TxEntry, TxOutcome};
use super::payload::{self, Parsed};

/// Violations listed in the report; the rest are only counted.
const LISTED: usize = 20;

/// Copies of each message found on disk.
pub(crate) struct Stored {
    records: u64,
    bad_checksums: u64,
    /// Records the soak did not write, or whose payload disagrees with
    /// the ledger (a transaction's plan or size).
    foreign: u64,
    /// By plain message number.
    plain: Vec<u32>,
    /// By transaction number, then message index - 1.
    tx: HashMap<u64, Vec<u32>>,
}

/// Reads `topic`'s records from every data directory (the brokers are stopped).
pub(crate) fn scan(
    dirs: &[PathBuf],
    topic: &str,
    plain_sent: usize,
    txs: &[TxEntry],
) -> Result<Stored, String> {
    let mut stored = Stored {
        records: 0,
        bad_checksums: 0,
        foreign: 0,
        plain: vec![0; plain_sent],
        tx: HashMap::new(),
    };
    for dir in dirs {
        let records = read_records(dir, Some(topic))
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for record in records {
            stored.records += 1;
            if !record.checksum_valid {
                stored.bad_checksums += 1;
            }
            let parsed = split_body(record.flag, &record.body)
                .ok()
                .and_then(|(_, payload)| payload::parse(payload));
            if !stored.count(parsed, txs) {
                stored.foreign += 1;
            }
        }
    }
    Ok(stored)
}

impl Stored {
    /// Counts one copy; false if the record is not one the soak sent.
    fn count(&mut self, parsed: Option<Parsed>, txs: &[TxEntry]) -> bool {
        match parsed {
            Some(Parsed::Plain(number)) => match self.plain.get_mut(number as usize) {
                Some(copies) => {
                    *copies += 1;
                    true
                }
                None => false,
            },
            Some(Parsed::Tx {
                number,
                fate,
                index,
                messages,
            }) => match txs.get(number as usize) {
                Some(entry) if entry.fate == fate && entry.messages == messages => {
                    let copies = self
                        .tx
                        .entry(number)
                        .or_insert_with(|| vec![0; messages as usize]);
                    copies[index as usize - 1] += 1;
                    true
                }
                _ => false,
            },
            None => false,
        }
    }
}

#[derive(Default, Serialize)]
pub(crate) struct FailedCounts {
    pub(crate) not_sent: u64,
    pub(crate) maybe_sent: u64,
    pub(crate) rejected: u64,
    pub(crate) other: u64,
}

#[derive(Default, Serialize)]
pub(crate) struct TxCounts {
    pub(crate) begun: u64,
    pub(crate) committed: u64,
    pub(crate) messages_committed: u64,
    /// Committed but not every message stored.
    pub(crate) committed_incomplete: u64,
    pub(crate) rolled_back: u64,
    /// A send failed; rolled back.
    pub(crate) aborted: u64,
    /// COMMIT not written, or refused.
    pub(crate) commit_failed: u64,
    pub(crate) in_doubt: u64,
    pub(crate) in_doubt_complete: u64,
    pub(crate) in_doubt_absent: u64,
    pub(crate) in_doubt_partial: u64,
    /// Not committed, yet some message stored.
    pub(crate) visible_not_committed: u64,
    /// Never ended (the load did not drain).
    pub(crate) unfinished: u64,
}

#[derive(Default, Serialize)]
pub(crate) struct StoredCounts {
    pub(crate) records: u64,
    pub(crate) bad_checksums: u64,
    pub(crate) foreign: u64,
}

#[derive(Default, Serialize)]
pub(crate) struct Verdict {
    /// Plain sends answered 200.
    pub(crate) acked: u64,
    /// Of those, not stored.
    pub(crate) lost: u64,
    /// Copies beyond the first, of every message.
    pub(crate) duplicates: u64,
    pub(crate) failed: FailedCounts,
    /// Failed plain sends that were stored all the same (maybe sent).
    pub(crate) failed_but_stored: u64,
    /// Plain sends that never ended (the load did not drain).
    pub(crate) unfinished: u64,
    pub(crate) transactions: TxCounts,
    pub(crate) stored: StoredCounts,
    pub(crate) violation_count: u64,
    /// The first violations, in words.
    pub(crate) violations: Vec<String>,
}

impl Verdict {
    pub(crate) fn ok(&self) -> bool {
        self.violation_count == 0
    }

    fn violation(&mut self, what: String) {
        self.violation_count += 1;
        if self.violations.len() < LISTED {
            self.violations.push(what);
        }
    }
}

pub(crate) fn check(plain: &[Option<PlainOutcome>], txs: &[TxEntry], stored: &Stored) -> Verdict {
    let mut verdict = Verdict {
        stored: StoredCounts {
            records: stored.records,
            bad_checksums: stored.bad_checksums,
            foreign: stored.foreign,
        },
        ..Verdict::default()
    };
    for (number, outcome) in plain.iter().enumerate() {
        let copies = stored.plain.get(number).copied().unwrap_or(0);
        verdict.duplicates += u64::from(copies.saturating_sub(1));
        match outcome {
            Some(PlainOutcome::Acked) => {
                verdict.acked += 1;
                if copies == 0 {
                    verdict.lost += 1;
                    verdict.violation(format!("plain {number}: acknowledged, not stored"));
                }
            }
            Some(PlainOutcome::Failed(kind)) => {
                let failed = &mut verdict.failed;
                *match kind {
                    FailKind::NotSent => &mut failed.not_sent,
                    FailKind::MaybeSent => &mut failed.maybe_sent,
                    FailKind::Rejected => &mut failed.rejected,
                    FailKind::Other => &mut failed.other,
                } += 1;
                if copies > 0 {
                    verdict.failed_but_stored += 1;
                }
            }
            None => {
                verdict.unfinished += 1;
                verdict.violation(format!("plain {number}: the send never ended"));
            }
        }
    }
    for (number, entry) in txs.iter().enumerate() {
        check_tx(&mut verdict, number as u64, entry, stored);
    }
    if stored.bad_checksums > 0 {
        let n = stored.bad_checksums;
        verdict.violation(format!("{n} stored record(s) with a bad checksum"));
    }
    if stored.foreign > 0 {
        let n = stored.foreign;
        verdict.violation(format!("{n} stored record(s) the soak did not send"));
    }
    verdict
}

fn check_tx(verdict: &mut Verdict, number: u64, entry: &TxEntry, stored: &Stored) {
    let copies = stored.tx.get(&number);
    let present = copies.map_or(0, |c| c.iter().filter(|n| **n > 0).count() as u32);
    verdict.duplicates += copies.map_or(0, |c| {
        c.iter().map(|n| u64::from(n.saturating_sub(1))).sum()
    });
    let all = entry.messages;
    let counts = &mut verdict.transactions;
    counts.begun += 1;
    let what = format!("tx {number} ({}, {all} messages)", entry.fate.word());
    let problem = match entry.outcome {
        Some(TxOutcome::Committed) => {
            counts.committed += 1;
            counts.messages_committed += u64::from(all);
            (present < all).then(|| {
                counts.committed_incomplete += 1;
                format!("{what}: committed, {present} of {all} stored")
            })
        }
        Some(TxOutcome::InDoubt) => {
            counts.in_doubt += 1;
            match present {
                0 => counts.in_doubt_absent += 1,
                p if p == all => counts.in_doubt_complete += 1,
                _ => counts.in_doubt_partial += 1,
            }
            (present > 0 && present < all)
                .then(|| format!("{what}: commit in doubt, partly stored ({present} of {all})"))
        }
        Some(outcome) => {
            let said = match outcome {
                TxOutcome::RolledBack => {
                    counts.rolled_back += 1;
                    "rolled back"
                }
                TxOutcome::Aborted(_) => {
                    counts.aborted += 1;
                    "a send failed, rolled back"
                }
                _ => {
                    counts.commit_failed += 1;
                    "commit failed"
                }
            };
            (present > 0).then(|| {
                counts.visible_not_committed += 1;
                format!("{what}: {said}, yet {present} of {all} stored")
            })
        }
        None => {
            counts.unfinished += 1;
            Some(format!("{what}: never ended"))
        }
    };
    if let Some(problem) = problem {
        verdict.violation(problem);
    }
}

#[cfg(test)]
mod tests {
    use super::super::ledger::Fate;
    use super::*;

    fn tx(messages: u32, fate: Fate, outcome: TxOutcome) -> TxEntry {
        TxEntry {
            messages,
            fate,
            outcome: Some(outcome),
        }
    }

    fn stored(plain: Vec<u32>, tx: &[(u64, Vec<u32>)]) -> Stored {
        Stored {
            records: 0,
            bad_checksums: 0,
            foreign: 0,
            plain,
            tx: tx.iter().cloned().collect(),
        }
    }

    #[test]
    fn a_lost_acknowledged_message_is_a_violation_a_duplicate_is_not() {
        let plain = [
            Some(PlainOutcome::Acked),
            Some(PlainOutcome::Acked),
            Some(PlainOutcome::Failed(FailKind::MaybeSent)),
        ];
        let verdict = check(&plain, &[], &stored(vec![0, 2, 1], &[]));
        assert_eq!((verdict.acked, verdict.lost, verdict.duplicates), (2, 1, 1));
        assert_eq!(verdict.failed.maybe_sent, 1);
        assert_eq!(verdict.failed_but_stored, 1);
        assert_eq!(verdict.violations, ["plain 0: acknowledged, not stored"]);
        assert!(!verdict.ok());
    }

    #[test]
    fn transactions_are_whole_or_absent_as_their_end_says() {
        let txs = [
            tx(2, Fate::Commit, TxOutcome::Committed),
            tx(2, Fate::Commit, TxOutcome::Committed),
            tx(3, Fate::Rollback, TxOutcome::RolledBack),
            tx(2, Fate::Commit, TxOutcome::InDoubt),
            tx(2, Fate::Commit, TxOutcome::InDoubt),
            tx(3, Fate::Commit, TxOutcome::InDoubt),
            tx(2, Fate::Commit, TxOutcome::Aborted(FailKind::MaybeSent)),
        ];
        let on_disk = [
            (0, vec![1, 1]),
            (1, vec![1, 0]),
            (2, vec![0, 1, 0]),
            (3, vec![1, 1]),
            (5, vec![1, 0, 1]),
        ];
        let verdict = check(&[], &txs, &stored(Vec::new(), &on_disk));
        let counts = &verdict.transactions;
        assert_eq!((counts.committed, counts.committed_incomplete), (2, 1));
        assert_eq!(counts.in_doubt, 3);
        assert_eq!(
            (
                counts.in_doubt_complete,
                counts.in_doubt_absent,
                counts.in_doubt_partial
            ),
            (1, 1, 1)
        );
        assert_eq!((counts.rolled_back, counts.aborted), (1, 1));
        assert_eq!(counts.visible_not_committed, 1);
        assert_eq!(
            verdict.violations,
            [
                "tx 1 (commit, 2 messages): committed, 1 of 2 stored",
                "tx 2 (rollback, 3 messages): rolled back, yet 1 of 3 stored",
                "tx 5 (commit, 3 messages): commit in doubt, partly stored (2 of 3)",
            ]
        );
    }

    #[test]
    fn records_the_soak_did_not_send_are_counted_apart() {
        let txs = [tx(2, Fate::Commit, TxOutcome::Committed)];
        let mut on_disk = stored(vec![0], &[]);
        assert!(on_disk.count(Some(Parsed::Plain(0)), &txs));
        assert!(!on_disk.count(Some(Parsed::Plain(1)), &txs));
        let wrong_fate = Parsed::Tx {
            number: 0,
            fate: Fate::Rollback,
            index: 1,
            messages: 2,
        };
        assert!(!on_disk.count(Some(wrong_fate), &txs));
        assert!(!on_disk.count(None, &txs));
        assert_eq!(on_disk.plain, [1]);
    }
}
