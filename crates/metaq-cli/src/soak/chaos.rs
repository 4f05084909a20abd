//! The fault thread: at seeded random intervals it SIGKILLs a broker and
//! restarts it, SIGTERMs one and restarts it, or freezes ZooKeeper for a few
//! seconds. One fault at a time, each undone before the next, so with two
//! brokers or more some broker is always up.
//!
//! A thread, not a task: restarts and signals block for seconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::cluster::Cluster;
use super::note as say;

/// Quiet time before the first fault (ms): soon, so a short run sees one.
const FIRST_GAP_MS: (u64, u64) = (1_000, 5_000);
/// Quiet time between the end of a fault and the next (ms).
const GAP_MS: (u64, u64) = (2_000, 10_000);
/// How long a SIGTERMed broker stays down (ms). A SIGKILLed one is started
/// again at once: its restart waits out its old ZooKeeper session anyway.
const TERM_DOWN_MS: (u64, u64) = (0, 2_000);
/// How long ZooKeeper stays frozen (ms): under the brokers' session timeout.
const FREEZE_MS: (u64, u64) = (1_000, 4_000);

/// Faults injected so far, read by the progress line and the report.
#[derive(Default)]
pub(crate) struct FaultCounts {
    pub(crate) broker_kills: AtomicU64,
    pub(crate) broker_terms: AtomicU64,
    pub(crate) zk_freezes: AtomicU64,
    /// SIGTERMed brokers that did not exit with status 0.
    pub(crate) unclean_exits: AtomicU64,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct FaultTotals {
    pub(crate) broker_kills: u64,
    pub(crate) broker_terms: u64,
    pub(crate) zk_freezes: u64,
    pub(crate) total: u64,
    pub(crate) unclean_exits: u64,
}

impl FaultCounts {
    pub(crate) fn totals(&self) -> FaultTotals {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (kills, terms, freezes) = (
            read(&self.broker_kills),
            read(&self.broker_terms),
            read(&self.zk_freezes),
        );
        FaultTotals {
            broker_kills: kills,
            broker_terms: terms,
            zk_freezes: freezes,
            total: kills + terms + freezes,
            unclean_exits: read(&self.unclean_exits),
        }
    }
}

/// The running fault thread; [`join`](Self::join) hands the cluster back.
pub(crate) struct Chaos {
    thread: JoinHandle<(Cluster, Result<(), String>)>,
}

impl Chaos {
    /// Starts injecting faults into `cluster` until `stop` is cancelled.
    /// On an error (a broker that does not come back) the thread cancels
    /// `failed` and ends. If the thread cannot start, the cluster is
    /// dropped with it, which kills its processes by pid.
    pub(crate) fn spawn(
        cluster: Cluster,
        seed: u64,
        counts: Arc<FaultCounts>,
        stop: CancellationToken,
        failed: CancellationToken,
    ) -> Result<Chaos, String> {
        let mut cluster = cluster;
        std::thread::Builder::new()
            .name("soak-chaos".into())
            .spawn(move || {
                let outcome = run(&mut cluster, seed, &counts, &stop);
                if outcome.is_err() {
                    failed.cancel();
                }
                (cluster, outcome)
            })
            .map(|thread| Chaos { thread })
            .map_err(|e| format!("cannot start the fault thread: {e}"))
    }

    /// Waits for the thread (its `stop` must be cancelled): the cluster,
    /// every broker back up unless the last fault was cut short, and what
    /// went wrong, if anything. Blocks.
    pub(crate) fn join(self) -> (Cluster, Result<(), String>) {
        match self.thread.join() {
            Ok(ended) => ended,
            // Its panic already killed the cluster's processes while
            // unwinding (their drops); nothing is left to hand back.
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

fn run(
    cluster: &mut Cluster,
    seed: u64,
    counts: &FaultCounts,
    stop: &CancellationToken,
) -> Result<(), String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut gap = between(&mut rng, FIRST_GAP_MS);
    loop {
        if !pause(stop, gap) {
            return Ok(());
        }
        let broker = rng.usize(..cluster.brokers());
        match rng.u32(0..100) {
            0..40 => kill_and_restart(cluster, broker, counts, stop)?,
            40..75 => {
                let down = between(&mut rng, TERM_DOWN_MS);
                term_and_restart(cluster, broker, down, counts, stop)?
            }
            _ => freeze(cluster, between(&mut rng, FREEZE_MS), counts, stop)?,
        }
        gap = between(&mut rng, GAP_MS);
    }
}

fn kill_and_restart(
    cluster: &mut Cluster,
    i: usize,
    counts: &FaultCounts,
    stop: &CancellationToken,
) -> Result<(), String> {
    let (id, pid, _) = cluster.describe(i);
    cluster.kill(i);
    counts.broker_kills.fetch_add(1, Ordering::Relaxed);
    say(&format!(
        "fault: SIGKILL broker {id} (pid {})",
        pid.unwrap_or(0)
    ));
    restart(cluster, i, stop)
}

fn term_and_restart(
    cluster: &mut Cluster,
    i: usize,
    down: Duration,
    counts: &FaultCounts,
    stop: &CancellationToken,
) -> Result<(), String> {
    let (id, pid, _) = cluster.describe(i);
    let status = cluster.terminate(i)?;
    counts.broker_terms.fetch_add(1, Ordering::Relaxed);
    let exited = match status {
        Some(status) if !status.success() => {
            counts.unclean_exits.fetch_add(1, Ordering::Relaxed);
            format!(", exited with {status}")
        }
        _ => String::new(),
    };
    say(&format!(
        "fault: SIGTERM broker {id} (pid {}){exited}",
        pid.unwrap_or(0)
    ));
    if !pause(stop, down) {
        return Ok(());
    }
    restart(cluster, i, stop)
}

/// Starts broker `i` again, unless the soak is ending: a broker left down
/// then is simply stopped already, and its data dir is read all the same.
fn restart(cluster: &mut Cluster, i: usize, stop: &CancellationToken) -> Result<(), String> {
    if stop.is_cancelled() {
        return Ok(());
    }
    let started = Instant::now();
    cluster.restart(i)?;
    let (id, pid, port) = cluster.describe(i);
    say(&format!(
        "restarted broker {id} on port {port} (pid {}) after {:.1} s",
        pid.unwrap_or(0),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn freeze(
    cluster: &Cluster,
    frozen: Duration,
    counts: &FaultCounts,
    stop: &CancellationToken,
) -> Result<(), String> {
    cluster.freeze_zk()?;
    counts.zk_freezes.fetch_add(1, Ordering::Relaxed);
    say(&format!(
        "fault: SIGSTOP ZooKeeper for {:.1} s",
        frozen.as_secs_f64()
    ));
    // Thawed early if the soak ends: nothing may stay frozen.
    pause(stop, frozen);
    cluster.thaw_zk()?;
    say("thawed ZooKeeper");
    Ok(())
}

/// Sleeps for `wait` unless `stop` comes first; false if it did.
fn pause(stop: &CancellationToken, wait: Duration) -> bool {
    let until = Instant::now() + wait;
    while !stop.is_cancelled() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
    false
}

fn between(rng: &mut fastrand::Rng, (low, high): (u64, u64)) -> Duration {
    Duration::from_millis(rng.u64(low..=high))
}
