//! `metaq bench`: measure the producer end to end, through ZooKeeper
//! discovery, against an existing cluster, local development brokers or the
//! null server, optionally beside a raw socket writer on the same servers.
//!
//! ```text
//! metaq bench --null --baseline raw --runs 3 --size 100 --threads 1
//! metaq bench --local 1 --mode latency --count 20000 --baseline raw
//! metaq bench --zk 127.0.0.1:2181 --topic bench --mode transaction --batch 20 --json
//! metaq bench --null --mode batch --batch 1000 --baseline raw
//! ```

mod child;
mod histogram;
mod measure;
mod producer_run;
mod raw;
mod report;
mod serve;
mod target;
mod workload;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use clap::{Args, ValueEnum};
use metaq_broker::{FlushPolicy, TopicConfig};
use serde_json::json;

use report::{Figures, Ratio};
use serve::{ServeRole, ServeSpec};
use target::{Target, TargetKind, TargetSpec};
use workload::{Mode, Workload};

/// What `metaq bench` says about its CPU figure, in the JSON and the header.
const CPU_ACCOUNTING: &str = "getrusage(RUSAGE_SELF) of the metaq process, user + system, over \
     the measured sends; servers started by the bench run in child processes and are not counted \
     there (their own CPU, from /proc/<pid>/task/*/schedstat, is server_cpu_us_per_msg)";

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Baseline {
    /// A plain socket writer of pre-encoded puts, same servers, same window.
    Raw,
}

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// Benchmark an existing cluster: its ZooKeeper connect string.
    #[arg(long)]
    zk: Option<String>,
    /// Start a private ZooKeeper and N development broker processes.
    #[arg(long, value_name = "N")]
    local: Option<u16>,
    /// Start a private ZooKeeper and a null server process, which answers
    /// every put at once: measures the producer alone.
    #[arg(long)]
    null: bool,
    /// MetaQ root in ZooKeeper.
    #[arg(long, default_value = "/meta")]
    root: String,
    /// The topic (with --local and --null, registered by the servers).
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Partitions per server started with --local or --null.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Flush policy of the --local brokers: group, os, or MILLIS.
    #[arg(long, default_value = "os")]
    flush: String,
    /// What to measure.
    #[arg(long, value_enum, default_value = "throughput")]
    mode: Mode,
    /// Messages per run [default: 1,000,000; latency 20,000; transaction 200,000].
    #[arg(long)]
    count: Option<u64>,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Most messages in flight at once (throughput and transaction modes).
    #[arg(long, default_value_t = 10_000)]
    window: usize,
    /// Messages per transaction (transaction mode) or per `send_all` call
    /// (batch mode) [default: 20; batch 1,000].
    #[arg(long)]
    batch: Option<usize>,
    /// Runtime threads: 1 is a current-thread runtime, N a multi-thread
    /// runtime with N workers.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Also drive the same servers with a raw socket writer, and print metaq/raw.
    #[arg(long, value_enum)]
    baseline: Option<Baseline>,
    /// Runs; the medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// One JSON object on stdout instead of lines for people.
    #[arg(long)]
    json: bool,
    /// Internal: run a server for a bench in another process.
    #[arg(long, value_enum, hide = true)]
    serve: Option<ServeRole>,
    /// Internal: the served broker id.
    #[arg(long, hide = true, default_value_t = 0)]
    serve_id: u32,
    /// Internal: the served broker's data directory.
    #[arg(long, hide = true)]
    serve_data_dir: Option<PathBuf>,
}

/// The checked arguments.
struct Plan {
    target: TargetSpec,
    work: Arc<Workload>,
    threads: usize,
    baseline: bool,
    runs: u32,
    json: bool,
}

/// Runs `metaq bench` to the end; the exit status says whether every
/// message of every run was answered 200.
pub(crate) fn main(args: BenchArgs) -> ExitCode {
    let outcome = match args.serve {
        Some(role) => serve_spec(role, &args).and_then(serve::run).map(|()| true),
        None => plan(args).and_then(bench),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("metaq bench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve_spec(role: ServeRole, args: &BenchArgs) -> Result<ServeSpec, String> {
    Ok(ServeSpec {
        role,
        id: args.serve_id,
        zk: args.zk.clone().ok_or("--serve needs --zk")?,
        root: args.root.clone(),
        topic: TopicConfig::new(args.topic.clone(), args.partitions),
        data_dir: args.serve_data_dir.clone(),
        flush: parse_flush(&args.flush)?,
    })
}

fn parse_flush(text: &str) -> Result<FlushPolicy, String> {
    text.parse()
        .map_err(|e| format!("--flush {text:?}: {e} (group, os, or a number of milliseconds)"))
}

/// Checks every argument before anything starts.
fn plan(args: BenchArgs) -> Result<Plan, String> {
    let kind = target_kind(args.zk, args.local, args.null)?;
    metaq::protocol::validate_topic(&args.topic).map_err(|e| format!("--topic: {e}"))?;
    if !(1..=1024).contains(&args.partitions) {
        return Err("--partitions must be 1 to 1024".into());
    }
    parse_flush(&args.flush)?;
    let count = args.count.unwrap_or(args.mode.default_count());
    if count == 0 {
        return Err("--count must be at least 1".into());
    }
    if args.size > metaq::protocol::DEFAULT_MAX_BODY {
        return Err(format!(
            "--size must be at most {} bytes (the largest message a broker takes)",
            metaq::protocol::DEFAULT_MAX_BODY
        ));
    }
    if args.window == 0 || args.window > 1_000_000 {
        return Err("--window must be 1 to 1,000,000".into());
    }
    let batch = args.batch.unwrap_or(args.mode.default_batch());
    if batch == 0 {
        return Err("--batch must be at least 1".into());
    }
    if args.threads == 0 || args.threads > 256 {
        return Err("--threads must be 1 to 256".into());
    }
    if args.runs == 0 || args.runs > 100 {
        return Err("--runs must be 1 to 100".into());
    }
    let baseline = args.baseline == Some(Baseline::Raw);
    if baseline && args.mode == Mode::Transaction {
        return Err(
            "--baseline raw drives plain puts; it has no transaction mode (use throughput or latency)"
                .into(),
        );
    }
    Ok(Plan {
        target: TargetSpec {
            kind,
            root: args.root,
            topic: args.topic.clone(),
            partitions: args.partitions,
            flush: args.flush,
        },
        work: Arc::new(Workload {
            mode: args.mode,
            topic: args.topic,
            payload: Bytes::from(vec![b'x'; args.size]),
            count,
            window: args.window,
            batch,
        }),
        threads: args.threads,
        baseline,
        runs: args.runs,
        json: args.json,
    })
}

/// The target of `--zk`, `--local` and `--null`: exactly one of them.
fn target_kind(zk: Option<String>, local: Option<u16>, null: bool) -> Result<TargetKind, String> {
    Ok(match (zk, local, null) {
        (Some(zk), None, false) => TargetKind::Zk(zk),
        (None, Some(0), false) => return Err("--local needs at least 1 broker".into()),
        (None, Some(n), false) if n > 64 => return Err("--local takes at most 64 brokers".into()),
        (None, Some(n), false) => TargetKind::Local(n),
        (None, None, true) => TargetKind::Null,
        (None, None, false) => {
            return Err("say what to send to: --zk CONNECT, --local N or --null".into());
        }
        _ => return Err("--zk, --local and --null exclude each other; give one".into()),
    })
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, String> {
    match threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Starts the target, runs, stops the target, prints; whether nothing failed.
fn bench(plan: Plan) -> Result<bool, String> {
    let target = Target::start(&plan.target)?;
    let servers = target.servers();
    let outcome = runtime(plan.threads).and_then(|runtime| {
        let runs = all_runs(
            Arc::clone(&plan.work),
            target.zk_connect.clone(),
            target.root.clone(),
            servers.iter().map(|(pid, _)| *pid).collect(),
            plan.runs,
            plan.baseline,
            !plan.json && std::io::stderr().is_terminal(),
        );
        // Spawned, not run on this thread: with N workers the loop that
        // drives the sends is on one of them, as in an application.
        runtime
            .block_on(runtime.spawn(runs))
            .map_err(|e| format!("the bench task failed: {e}"))?
    });
    let stopped = target.stop();
    let results = outcome?;
    stopped?;
    Ok(print(&plan, &servers, &results))
}

/// The figures of one run: metaq's and, with `--baseline raw`, raw's.
struct RunResult {
    metaq: Figures,
    raw: Option<Figures>,
}

async fn all_runs(
    work: Arc<Workload>,
    zk: String,
    root: String,
    servers: Vec<u32>,
    runs: u32,
    baseline: bool,
    show_progress: bool,
) -> Result<Vec<RunResult>, String> {
    let size = work.payload.len();
    let mut results = Vec::with_capacity(runs as usize);
    for run in 1..=runs {
        // Raw first, then metaq, on the same servers one after the other.
        let raw = if baseline {
            let bar = workload::progress_bar(show_progress, work.count, format!("run {run} raw"));
            let measured = raw::run(&zk, &root, &work, &servers, &bar).await?;
            bar.finish_and_clear();
            Some(Figures::new(&measured, size))
        } else {
            None
        };
        let bar = workload::progress_bar(show_progress, work.count, format!("run {run} metaq"));
        let measured = producer_run::run(&zk, &root, &work, &servers, &bar).await?;
        bar.finish_and_clear();
        let metaq = Figures::new(&measured, size);
        if show_progress {
            // Lines for people as each run ends; the summary comes after.
            if let Some(raw) = &raw {
                eprintln!("{}", report::line(&format!("run {run} raw"), raw));
            }
            eprintln!("{}", report::line(&format!("run {run} metaq"), &metaq));
        }
        results.push(RunResult { metaq, raw });
    }
    Ok(results)
}

/// Prints the runs and their medians; whether no message failed.
fn print(plan: &Plan, servers: &[(u32, SocketAddr)], results: &[RunResult]) -> bool {
    let summary = Summary::new(results);
    if plan.json {
        say!("{}", json_document(plan, servers, results, &summary));
    } else {
        print_lines(plan, results, &summary);
    }
    summary.failed == 0
}

/// What the runs add up to: medians, the metaq/raw ratio, totals.
struct Summary {
    metaq_median: Figures,
    raw_median: Option<Figures>,
    ratio: Option<Ratio>,
    /// Messages metaq sent over every run.
    sent: u64,
    /// Messages that failed over every run, metaq's and raw's.
    failed: u64,
}

impl Summary {
    /// Sums up `results`.
    fn new(results: &[RunResult]) -> Summary {
        let metaq: Vec<Figures> = results.iter().map(|r| r.metaq.clone()).collect();
        let raw: Vec<Figures> = results.iter().filter_map(|r| r.raw.clone()).collect();
        let metaq_median = Figures::median(&metaq);
        let raw_median = (!raw.is_empty()).then(|| Figures::median(&raw));
        let ratio = raw_median
            .as_ref()
            .map(|raw| Ratio::new(&metaq_median, raw));
        Summary {
            sent: metaq.iter().map(|f| f.sent).sum(),
            failed: metaq.iter().chain(&raw).map(|f| f.failed).sum(),
            metaq_median,
            raw_median,
            ratio,
        }
    }
}

/// The `--json` document: the settings, every run, the medians and totals.
fn json_document(
    plan: &Plan,
    servers: &[(u32, SocketAddr)],
    results: &[RunResult],
    summary: &Summary,
) -> serde_json::Value {
    let work = &plan.work;
    let runs: Vec<_> = results
        .iter()
        .enumerate()
        .map(|(i, r)| json!({ "run": i + 1, "metaq": r.metaq, "raw": r.raw }))
        .collect();
    json!({
        "mode": work.mode.name(),
        "target": plan.target.kind.name(),
        // Only the servers this bench started (none with --zk).
        "servers": servers
            .iter()
            .map(|(pid, addr)| json!({ "pid": pid, "addr": addr.to_string() }))
            .collect::<Vec<_>>(),
        "topic": work.topic,
        "threads": plan.threads,
        "size": work.payload.len(),
        "count": work.count,
        "window": work.window,
        "batch": matches!(work.mode, Mode::Transaction | Mode::Batch).then_some(work.batch),
        "baseline": plan.baseline.then_some("raw"),
        "latency_of": if work.mode == Mode::Transaction { "transaction" } else { "message" },
        "cpu_accounting": CPU_ACCOUNTING,
        "runs": runs,
        "median": { "metaq": summary.metaq_median, "raw": summary.raw_median },
        "ratio": summary.ratio,
        "sent": summary.sent,
        "failed": summary.failed,
    })
}

/// Prints the lines for people: a header, one line per run, the medians
/// and the ratio.
fn print_lines(plan: &Plan, results: &[RunResult], summary: &Summary) {
    say!("{}", header(plan));
    say!("cpu: {CPU_ACCOUNTING}");
    for (i, result) in results.iter().enumerate() {
        if let Some(raw) = &result.raw {
            say!("{}", report::line(&format!("run {} raw", i + 1), raw));
        }
        say!(
            "{}",
            report::line(&format!("run {} metaq", i + 1), &result.metaq)
        );
    }
    if let Some(raw) = &summary.raw_median {
        say!("{}", report::line("median raw", raw));
    }
    say!("{}", report::line("median metaq", &summary.metaq_median));
    if let Some(ratio) = &summary.ratio {
        say!("{}", report::ratio_line(ratio));
    }
}

/// The header line: what is measured, against which servers, with what
/// settings.
fn header(plan: &Plan) -> String {
    let work = &plan.work;
    let servers = match &plan.target.kind {
        TargetKind::Zk(connect) => format!("the cluster at {connect}"),
        TargetKind::Local(n) => format!(
            "{n} local development broker(s), --flush {}",
            plan.target.flush
        ),
        TargetKind::Null => "the null server".to_owned(),
    };
    let mut header = format!(
        "metaq bench: {} of {} × {} B messages to {servers}, {} run(s), {} runtime thread(s)",
        work.mode.name(),
        work.count,
        work.payload.len(),
        plan.runs,
        plan.threads,
    );
    match work.mode {
        Mode::Throughput => header.push_str(&format!(", window {}", work.window)),
        Mode::Latency => {}
        Mode::Transaction => header.push_str(&format!(
            ", transactions of {} ({} at once; latency is per transaction)",
            work.batch,
            work.transactions_at_once()
        )),
        Mode::Batch => header.push_str(&format!(
            ", window {} in send_all calls of {} ({} at once)",
            work.window,
            work.batch,
            work.transactions_at_once()
        )),
    }
    header
}
