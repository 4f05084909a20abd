//! `metaq soak`: a chaos soak. Starts a private ZooKeeper and N
//! `metaq-broker` processes, sends a paced mix of plain messages and local
//! transactions while brokers are SIGKILLed, SIGTERMed and restarted and
//! ZooKeeper is frozen, then stops everything and checks every broker's
//! data directory against what the producer was told.
//!
//! ```text
//! metaq soak                       # 10 minutes, 3 brokers, 2,000 msgs/s
//! metaq soak --seconds 20 --json   # a short run, one JSON document
//! metaq soak --minutes 60 --seed 42 --brokers 4 --rate 500
//! ```
//!
//! Exit status: 0 passed; 1 a message was lost, a transaction is partly
//! stored or one not committed is visible, or the soak could not run; 130
//! after Ctrl-C (which stops the load and still checks what was stored).

mod chaos;
mod cluster;
mod ledger;
mod load;
mod payload;
mod report;
mod run;
mod verify;

use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clap::Args;

#[derive(Args)]
pub(crate) struct SoakArgs {
    /// How long to run the load, in minutes.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// How long to run the load, in seconds (for short runs; replaces --minutes).
    #[arg(long, conflicts_with = "minutes")]
    seconds: Option<f64>,
    /// Development broker processes to start (at least 2: one is always up).
    #[arg(long, default_value_t = 3)]
    brokers: u32,
    /// Partitions of the topic on each broker.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Messages per second, plain and transactional together (a ceiling).
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Seed of the fault schedule and of the load's choices [default: random, printed].
    #[arg(long)]
    seed: Option<u64>,
    /// One JSON object on stdout instead of lines for people.
    #[arg(long)]
    json: bool,
}

/// The checked arguments.
pub(crate) struct Plan {
    pub(crate) duration: Duration,
    pub(crate) brokers: u32,
    pub(crate) partitions: u32,
    pub(crate) rate: f64,
    pub(crate) seed: u64,
    pub(crate) json: bool,
}

/// The topic the soak's brokers serve.
pub(crate) const TOPIC: &str = "soak";

fn plan(args: SoakArgs) -> Result<Plan, String> {
    let seconds = args.seconds.unwrap_or(args.minutes * 60.0);
    let duration = Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or("--minutes and --seconds must be positive numbers")?;
    if !(2..=16).contains(&args.brokers) {
        return Err("--brokers must be 2 to 16 (one broker must always be up)".into());
    }
    if !(1..=64).contains(&args.partitions) {
        return Err("--partitions must be 1 to 64".into());
    }
    if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= 100_000.0) {
        return Err(
            "--rate must be a number of messages per second, above 0, at most 100000".into(),
        );
    }
    Ok(Plan {
        duration,
        brokers: args.brokers,
        partitions: args.partitions,
        rate: args.rate,
        seed: args.seed.unwrap_or_else(|| fastrand::u64(..)),
        json: args.json,
    })
}

pub(crate) fn main(args: SoakArgs) -> ExitCode {
    let plan = match plan(args) {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("metaq soak: {message}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("metaq soak: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = plan.json;
    let report = match runtime.block_on(run::soak(plan)) {
        Ok(report) => report,
        Err(message) => {
            eprintln!("metaq soak: {message}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        let document = serde_json::to_string(&report).expect("the report serializes");
        say!("{document}");
    } else {
        for line in report.lines() {
            say!("{line}");
        }
    }
    if !report.passed() {
        ExitCode::FAILURE
    } else if report.interrupted {
        ExitCode::from(crate::EXIT_INTERRUPTED)
    } else {
        ExitCode::SUCCESS
    }
}

/// A line on stderr with the time since the soak began, for what happens
/// along the way (faults, restarts, progress), so a failed soak can be
/// read back.
pub(crate) fn note(line: &str) {
    use std::io::Write;
    static START: OnceLock<Instant> = OnceLock::new();
    let elapsed = START.get_or_init(Instant::now).elapsed();
    // One write: the brokers log to the same stderr, and `eprintln!`
    // writes a formatted line in pieces that their lines can split.
    let text = format!("metaq soak [{:7.1} s] {line}\n", elapsed.as_secs_f64());
    let _ = std::io::stderr().write_all(text.as_bytes());
}
