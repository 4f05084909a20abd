//! One soak from start to verdict. Once the cluster is up, every path
//! (the end of the run, Ctrl-C or SIGTERM, a broker that does not come
//! back, an error) goes through stopping it: the chaos thread is joined,
//! the brokers get SIGTERM and ZooKeeper is stopped, each by its pid.

use std::sync::Arc;
use std::time::Duration;

use metaq::{Producer, ProducerStats};
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::chaos::{Chaos, FaultCounts};
use super::cluster::{Cluster, ClusterSpec};
use super::ledger::Ledger;
use super::load::{self, LoadSpec};
use super::report::{ProducerFigures, Report};
use super::verify::{self, Verdict};
use super::{note, Plan, TOPIC};

/// The MetaQ root in the private ZooKeeper.
const ROOT: &str = "/meta";
/// How long the sends in flight get to end once the load stops: more than
/// a transaction of five sends and a commit, each at its timeout.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// How often a progress line goes to stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// Mixed into the seed for the load's choices, so that they do not mirror
/// the fault schedule's.
const LOAD_SALT: u64 = 0x9e37_79b9_7f4a_7c15;

/// Runs one soak: starts the cluster, the producer and the faults, sends
/// for the planned time, stops everything and checks what was stored.
pub(crate) async fn soak(plan: Plan) -> Result<Report, String> {
    let soak = Soak::new(plan, on_signals()?);
    let cluster = soak.start_cluster().await?;
    let (producer, chaos) = soak.start_producer_and_chaos(cluster).await?;
    let ran = soak.run_load(&producer).await;
    let stats = producer.stats();
    producer.close().await;
    let (cluster, chaos_outcome) = blocking(move || chaos.join()).await?;
    let (verdict, shutdown_problems) = soak.stop_and_verify(cluster).await?;
    Ok(soak.report(ran, &stats, chaos_outcome, verdict, shutdown_problems))
}

/// What the steps of one soak share: its plan, the tokens that end it,
/// and what it counts.
struct Soak {
    plan: Plan,
    /// Cancelled by the first SIGINT or SIGTERM.
    interrupted: CancellationToken,
    /// Cancelled when the run is over: stops the load and the faults.
    ending: CancellationToken,
    /// Cancelled by the chaos thread when it fails.
    chaos_failed: CancellationToken,
    counts: Arc<FaultCounts>,
    ledger: Arc<Ledger>,
}

impl Soak {
    /// A soak of `plan`, interrupted by `interrupted`.
    fn new(plan: Plan, interrupted: CancellationToken) -> Soak {
        Soak {
            plan,
            interrupted,
            ending: CancellationToken::new(),
            chaos_failed: CancellationToken::new(),
            counts: Arc::new(FaultCounts::default()),
            ledger: Arc::new(Ledger::default()),
        }
    }

    /// Starts ZooKeeper and the brokers, and says where each runs.
    async fn start_cluster(&self) -> Result<Cluster, String> {
        let plan = &self.plan;
        note(&format!(
            "seed {seed} (--seed {seed} makes the same choices); starting ZooKeeper and {} brokers",
            plan.brokers,
            seed = plan.seed
        ));
        let spec = ClusterSpec {
            brokers: plan.brokers,
            partitions: plan.partitions,
            topic: TOPIC.to_owned(),
            root: ROOT.to_owned(),
        };
        let cluster = blocking(move || Cluster::start(spec)).await??;
        let (zk_pid, zk_connect, zk_dir) = cluster.zk();
        note(&format!("zookeeper: pid {zk_pid}, {zk_connect}, {zk_dir}"));
        for i in 0..cluster.brokers() {
            let (id, pid, port) = cluster.describe(i);
            let data_dir = cluster.data_dirs()[i].display().to_string();
            note(&format!(
                "broker {id}: pid {}, 127.0.0.1:{port}, {data_dir}",
                pid.unwrap_or(0)
            ));
        }
        Ok(cluster)
    }

    /// Starts the producer on `cluster`, then the chaos thread, which takes
    /// the cluster over; on a failure, stops what was started.
    async fn start_producer_and_chaos(
        &self,
        cluster: Cluster,
    ) -> Result<(Producer, Chaos), String> {
        let (_, zk_connect, _) = cluster.zk();
        let producer = match start_producer(&zk_connect).await {
            Ok(producer) => producer,
            Err(e) => {
                let _ = blocking(move || cluster.stop(|_| ())).await;
                return Err(e);
            }
        };
        let chaos = Chaos::spawn(
            cluster,
            self.plan.seed,
            Arc::clone(&self.counts),
            self.ending.clone(),
            self.chaos_failed.clone(),
        );
        match chaos {
            Ok(chaos) => Ok((producer, chaos)),
            Err(e) => {
                producer.close().await;
                Err(e)
            }
        }
    }

    /// Sends through `producer` until the run is over, then stops the load
    /// and waits for the sends in flight; how long the load ran.
    async fn run_load(&self, producer: &Producer) -> Duration {
        let plan = &self.plan;
        let spec = LoadSpec {
            topic: TOPIC.to_owned(),
            rate: plan.rate,
            window: ((plan.rate * 2.0).ceil() as usize).clamp(64, 20_000),
            seed: plan.seed ^ LOAD_SALT,
        };
        let mut sending = tokio::spawn(load::run(
            producer.clone(),
            spec,
            Arc::clone(&self.ledger),
            self.ending.clone(),
        ));
        note(&format!(
            "sending {} msgs/s for {:.0} s",
            plan.rate,
            plan.duration.as_secs_f64()
        ));
        let started = Instant::now();
        wait_for_the_end(
            plan.duration,
            &self.interrupted,
            &self.chaos_failed,
            &self.ledger,
            &self.counts,
        )
        .await;
        let ran = started.elapsed();
        self.ending.cancel();
        note("stopping the load; waiting for the sends in flight");
        if tokio::time::timeout(DRAIN_LIMIT, &mut sending)
            .await
            .is_err()
        {
            sending.abort();
            note("the sends in flight did not end in time; they count as unfinished");
        }
        ran
    }

    /// Stops the brokers and ZooKeeper, reads every data directory and
    /// checks it against the ledger; the verdict and any trouble stopping.
    async fn stop_and_verify(&self, cluster: Cluster) -> Result<(Verdict, Vec<String>), String> {
        note("stopping the brokers (SIGTERM) and ZooKeeper, then reading every data directory");
        let (plain, txs) = (self.ledger.plain(), self.ledger.txs());
        let (sent_plain, scanned_txs) = (plain.len(), txs.clone());
        let (stored, shutdown_problems) = blocking(move || {
            cluster.stop(|dirs| verify::scan(dirs, TOPIC, sent_plain, &scanned_txs))
        })
        .await?;
        Ok((verify::check(&plain, &txs, &stored?), shutdown_problems))
    }

    /// The soak's report, passed or not.
    fn report(
        &self,
        ran: Duration,
        stats: &ProducerStats,
        chaos_outcome: Result<(), String>,
        verdict: Verdict,
        shutdown_problems: Vec<String>,
    ) -> Report {
        let plan = &self.plan;
        let mut report = Report {
            seed: plan.seed,
            brokers: plan.brokers,
            partitions: plan.partitions,
            topic: TOPIC.to_owned(),
            rate: plan.rate,
            planned_secs: plan.duration.as_secs_f64(),
            ran_secs: ran.as_secs_f64(),
            interrupted: self.interrupted.is_cancelled(),
            error: chaos_outcome.err(),
            verdict,
            faults: self.counts.totals(),
            producer: ProducerFigures {
                retries: stats.retries,
                retries_after_maybe_sent: stats.retries_after_maybe_sent,
            },
            errors: self.ledger.samples(),
            shutdown_problems,
            ok: false,
        };
        report.ok = report.passed();
        report
    }
}

async fn start_producer(zk: &str) -> Result<Producer, String> {
    let producer = Producer::builder(zk)
        .root(ROOT)
        // Transactions a broker still holds when their client is cut off
        // go after this, whatever else happens.
        .transaction_timeout(Duration::from_secs(30))
        .build()
        .await
        .map_err(|e| format!("cannot start the producer: {e}"))?;
    if let Err(e) = producer.publish(TOPIC).await {
        producer.close().await;
        return Err(format!("topic {TOPIC} is not served: {e}"));
    }
    Ok(producer)
}

/// Returns when the run's time is up, on an interrupt, or when the chaos
/// thread failed; prints a progress line now and then.
async fn wait_for_the_end(
    duration: Duration,
    interrupted: &CancellationToken,
    chaos_failed: &CancellationToken,
    ledger: &Ledger,
    counts: &FaultCounts,
) {
    let end = Instant::now() + duration;
    let mut progress = Instant::now() + PROGRESS_EVERY;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(end.min(progress)) => {}
            _ = interrupted.cancelled() => return,
            _ = chaos_failed.cancelled() => return,
        }
        if Instant::now() >= end {
            return;
        }
        if Instant::now() >= progress {
            let (acked, failed, committed) = ledger.progress();
            let faults = counts.totals().total;
            note(&format!(
                "{acked} acked, {failed} failed, {committed} transactions committed, {faults} faults"
            ));
            progress += PROGRESS_EVERY;
        }
    }
}

/// A token cancelled by the first SIGINT or SIGTERM: the soak then stops
/// its load and cluster and still checks what was stored. Later signals
/// only say that this is under way; the default (dying at once) would
/// leave the brokers running.
fn on_signals() -> Result<CancellationToken, String> {
    let mut interrupts =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot catch SIGINT: {e}"))?;
    let mut terms =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot catch SIGTERM: {e}"))?;
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        loop {
            let received = tokio::select! {
                s = interrupts.recv() => s,
                s = terms.recv() => s,
            };
            if received.is_none() {
                return;
            }
            if cancel.is_cancelled() {
                note("already stopping: the brokers and ZooKeeper are being stopped");
            } else {
                note(
                    "interrupted: stopping the load and the cluster, then checking what was stored",
                );
                cancel.cancel();
            }
        }
    });
    Ok(token)
}

/// Runs blocking work (process starts and stops, file reads) off the
/// runtime's threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("a blocking step failed: {e}"))
}
