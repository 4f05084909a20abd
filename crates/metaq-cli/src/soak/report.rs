//! The soak's result: one JSON document (`--json`) or lines for people.

use serde::Serialize;

use super::chaos::FaultTotals;
use super::ledger::ErrorSamples;
use super::verify::Verdict;

#[derive(Serialize)]
pub(crate) struct ProducerFigures {
    /// Attempts made again after a failed one.
    pub(crate) retries: u64,
    /// Retries after a maybe-sent attempt: at most this many duplicates
    /// of plain messages.
    pub(crate) retries_after_maybe_sent: u64,
}

#[derive(Serialize)]
pub(crate) struct Report {
    /// Passed with `--seed`, makes the same choices of faults and load.
    pub(crate) seed: u64,
    pub(crate) brokers: u32,
    pub(crate) partitions: u32,
    pub(crate) topic: String,
    pub(crate) rate: f64,
    pub(crate) planned_secs: f64,
    pub(crate) ran_secs: f64,
    pub(crate) interrupted: bool,
    /// Why the soak ended early (a broker that did not come back, ...).
    pub(crate) error: Option<String>,
    #[serde(flatten)]
    pub(crate) verdict: Verdict,
    pub(crate) faults: FaultTotals,
    pub(crate) producer: ProducerFigures,
    /// The first error texts of each kind.
    pub(crate) errors: ErrorSamples,
    /// Trouble while stopping the cluster (a broker that exited non-zero
    /// after SIGTERM, ...).
    pub(crate) shutdown_problems: Vec<String>,
    pub(crate) ok: bool,
}

impl Report {
    /// Whether the soak passed: nothing lost, no partial or visible
    /// transaction the ledger forbids, no error.
    pub(crate) fn passed(&self) -> bool {
        self.verdict.ok() && self.error.is_none()
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        let v = &self.verdict;
        let f = &v.failed;
        let t = &v.transactions;
        let faults = &self.faults;
        let mut lines = vec![
            format!(
                "metaq soak: seed {}, {} brokers × {} partitions, {} msgs/s for {:.0} s (ran {:.1} s{})",
                self.seed,
                self.brokers,
                self.partitions,
                self.rate,
                self.planned_secs,
                self.ran_secs,
                if self.interrupted { ", interrupted" } else { "" }
            ),
            format!(
                "acked        {} plain messages; lost {}, duplicates {} (retries after a maybe-sent attempt: {})",
                v.acked, v.lost, v.duplicates, self.producer.retries_after_maybe_sent
            ),
            format!(
                "failed       not_sent {}, maybe_sent {}, rejected {}, other {} (stored all the same: {}); unfinished {}",
                f.not_sent, f.maybe_sent, f.rejected, f.other, v.failed_but_stored, v.unfinished
            ),
            format!(
                "transactions {} begun: committed {} ({} messages, incomplete {}), rolled back {}, aborted {}, commit failed {}, visible though not committed {}",
                t.begun,
                t.committed,
                t.messages_committed,
                t.committed_incomplete,
                t.rolled_back,
                t.aborted,
                t.commit_failed,
                t.visible_not_committed
            ),
            format!(
                "in doubt     {} (complete {}, absent {}, partial {})",
                t.in_doubt, t.in_doubt_complete, t.in_doubt_absent, t.in_doubt_partial
            ),
            format!(
                "faults       {}: {} broker SIGKILLs, {} broker SIGTERMs ({} unclean exits), {} ZooKeeper freezes",
                faults.total, faults.broker_kills, faults.broker_terms, faults.unclean_exits, faults.zk_freezes
            ),
            format!(
                "stored       {} records, {} bad checksums, {} not sent by the soak",
                v.stored.records, v.stored.bad_checksums, v.stored.foreign
            ),
        ];
        for problem in &self.shutdown_problems {
            lines.push(format!("shutdown     {problem}"));
        }
        if let Some(error) = &self.error {
            lines.push(format!("error        {error}"));
        }
        for violation in &v.violations {
            lines.push(format!("violation    {violation}"));
        }
        lines.push(if self.passed() {
            "result       OK".to_owned()
        } else {
            format!("result       FAILED ({} violation(s))", v.violation_count)
        });
        lines
    }
}
