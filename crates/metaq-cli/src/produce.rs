//! `metaq produce`: send messages, report each one and a summary.
//!
//! Arguments are checked before anything is contacted ([`checks`]); records
//! come from a counter or stream from standard input ([`input`]), paced by
//! `--rate`; they are sent in a window of `--concurrency` sends
//! ([`window`]), in transactions ([`transactional`]), fire-and-forget
//! with `--oneway` ([`one_way`]) or one at a time in key order with
//! `--ordered` ([`ordered`]); results and the summary are printed by
//! [`output`]. The first SIGINT stops the input ([`interrupt`]).

mod checks;
mod delimiter;
mod input;
mod interrupt;
mod one_way;
mod ordered;
mod ordered_settings;
mod output;
mod pace;
mod progress;
mod transactional;
mod window;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use metaq::discovery::{Discovery, TopicPresence, ZkSettings};
use metaq::producer::{KeyHash, Random, RoundRobin};
use metaq::{Error, Producer};

use self::checks::Plan;
use self::input::Input;
use self::output::{Ended, Output};
use self::progress::Progress;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SelectorName {
    RoundRobin,
    Random,
    KeyHash,
}

/// Where `produce` sends: a cluster found through ZooKeeper, or one broker.
#[derive(Args)]
pub(crate) struct ProduceTarget {
    /// ZooKeeper connect string, `host:port[,host:port...][/chroot]`
    /// [env: METAQ_ZK]; required unless --server is given.
    // Not clap's `env`: clap would count METAQ_ZK from the environment as
    // --zk given, and refuse it beside --server.
    #[arg(long, conflicts_with = "server")]
    zk: Option<String>,
    /// MetaQ root in ZooKeeper.
    #[arg(long, env = "METAQ_ROOT", default_value = "/meta")]
    root: String,
    /// One broker, `meta://host:port`, instead of ZooKeeper: every topic is
    /// sent there and the broker chooses each message's partition (Java's
    /// serverUrl). --selector and --key then choose nothing.
    #[arg(long, value_name = "URI")]
    server: Option<String>,
}

impl ProduceTarget {
    /// `--zk`, else `METAQ_ZK` (a flag wins over the environment, and
    /// `--server` over both).
    fn zk_connect(&self) -> Option<String> {
        self.zk
            .clone()
            .or_else(|| std::env::var("METAQ_ZK").ok().filter(|zk| !zk.is_empty()))
    }
}

/// Without `--zk`, `METAQ_ZK` or `--server`.
const NO_TARGET: &str =
    "the cluster is needed: --zk <ZK> (or METAQ_ZK), or --server meta://host:port";

#[derive(Args)]
pub(crate) struct ProduceArgs {
    #[command(flatten)]
    cluster: ProduceTarget,
    /// The topic.
    #[arg(long)]
    topic: String,
    /// Number of messages (ignored with --stdin).
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Payload of this many bytes ('x' repeated).
    #[arg(long, conflicts_with_all = ["payload", "stdin"])]
    size: Option<usize>,
    /// Payload text.
    #[arg(long, conflicts_with = "stdin")]
    payload: Option<String>,
    /// Send one message per record of standard input, as records arrive.
    #[arg(long)]
    stdin: bool,
    /// With --stdin: the byte ending each record (escapes \n \t \r \0 \\ \xNN).
    #[arg(long, requires = "stdin", default_value = "\\n")]
    delimiter: String,
    /// With --stdin: bytes before the first occurrence of this in a record
    /// are its key (not sent); records without it have no key (with
    /// --ordered, they fail). Needs --selector key-hash or --ordered.
    #[arg(long, requires = "stdin", conflicts_with = "key")]
    key_delimiter: Option<String>,
    /// Attribute sent with every message.
    #[arg(long)]
    attribute: Option<String>,
    /// Partition selector.
    #[arg(long, value_enum, default_value = "round-robin")]
    selector: SelectorName,
    /// Key of every message, for the key-hash selector or --ordered (never
    /// sent).
    #[arg(long)]
    key: Option<String>,
    /// Sends in flight at once (not with --ordered, which sends one at a
    /// time, nor --oneway).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Upper bound on messages per second.
    #[arg(long, allow_negative_numbers = true)]
    rate: Option<f64>,
    /// One JSON line per message and a JSON summary.
    #[arg(long)]
    json: bool,
    /// Send timeout in milliseconds.
    #[arg(long, default_value_t = 3000)]
    timeout_ms: u64,
    /// How long to wait for the topic's brokers at start, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    wait_ms: u64,
    /// Retries of a keyless send on another broker.
    #[arg(long, default_value_t = 2)]
    retries: u32,
    /// Send in local transactions of this many messages, committing each.
    #[arg(long, value_name = "BATCH")]
    transaction: Option<usize>,
    /// Fire and forget: queue every message on a one-way producer (a
    /// window of 10,000 messages, not --concurrency) without awaiting each
    /// answer; prints no line per message, only the summary from the
    /// one-way producer's counters (sent, failed by kind, pending).
    #[arg(long, conflicts_with = "transaction")]
    oneway: bool,
    /// With --oneway: spill messages whose send failed to a local store in
    /// this directory instead of losing them, and replay it every second
    /// while running (the summary adds spilled, replayed, spill held).
    /// What it still holds at exit stays there for the next
    /// `metaq produce --oneway --spill-dir` on the same directory.
    #[arg(long, value_name = "DIR", requires = "oneway")]
    spill_dir: Option<std::path::PathBuf>,
    /// Ordered sends: each message goes to the partition its key hashes to
    /// in the topic's layout, one at a time in input order (--concurrency
    /// does not apply), and is kept in the local store of --store-dir while
    /// that partition cannot take it, reported as stored. Every message
    /// needs a key: --key, or --stdin with --key-delimiter. Needs ZooKeeper
    /// (not --server). Messages still held at exit stay on disk: the next
    /// `metaq produce --ordered` on the same --store-dir replays them in the
    /// background before its own (and waits for that with --flush-ms).
    #[arg(long, requires = "store_dir", conflicts_with_all = ["transaction", "oneway", "server"])]
    ordered: bool,
    /// With --ordered: the local store's directory (created if missing).
    #[arg(long, value_name = "DIR", requires = "ordered")]
    store_dir: Option<std::path::PathBuf>,
    /// With --ordered: the topic's partitions, `<brokerId>:<count>;...`
    /// (Java's `topic.num.<topic>`), e.g. "0:2;1:2". Without it, the
    /// partitions ZooKeeper lists at the first send (a broker that is down
    /// then is missing from the layout: give it where that matters).
    #[arg(long, requires = "ordered")]
    layout: Option<String>,
    /// With --ordered: at the end, wait up to this many milliseconds for
    /// the store to drain (every held message sent) before exiting; 0 does
    /// not wait.
    #[arg(long, default_value_t = 0, requires = "ordered")]
    flush_ms: u64,
    /// With --transaction: roll each transaction back instead of committing.
    #[arg(long, requires = "transaction")]
    rollback: bool,
    /// Print the producer's counters at the end (sent, failed by kind,
    /// retries, possible duplicates); with --json, as the summary's "stats".
    #[arg(long)]
    stats: bool,
    /// When stderr is not a terminal, print a one-line progress summary
    /// (sent, rate, failed, in flight, p99) every this many milliseconds;
    /// 0 turns it off.
    #[arg(long, default_value_t = 1000)]
    progress_ms: u64,
}

pub(crate) async fn run(args: ProduceArgs) -> Result<ExitCode, String> {
    let plan = checks::check(&args)?;
    let producer = match connect(&args, &plan).await? {
        Connected::Ready(producer) => producer,
        Connected::Unserved(reason) => {
            eprintln!("metaq: {reason}");
            return Ok(ExitCode::from(crate::EXIT_UNSERVED));
        }
    };
    let stop = interrupt::first_interrupt()?;
    let mut input = Input::new(&args, &plan);
    let mut out = Output::new(args.json, input.total());
    let progress = Progress::start(&producer, Duration::from_millis(args.progress_ms));
    // Ok(how the input ended), or why the mode could not start (its store
    // could not be opened).
    let sent: Result<Ended, String> = match args.transaction {
        Some(batch) => {
            let batch = transactional::Batch {
                size: batch,
                rollback: args.rollback,
            };
            let messages = &plan.messages;
            Ok(transactional::send(&producer, messages, batch, &mut input, &stop, &mut out).await)
        }
        None if args.oneway => {
            let spill = args.spill_dir.as_deref();
            one_way::send(
                &producer,
                &plan.messages,
                spill,
                &mut input,
                &stop,
                &mut out,
            )
            .await
        }
        None => match &plan.ordered {
            Some(settings) => {
                let messages = &plan.messages;
                ordered::send(&producer, messages, settings, &mut input, &stop, &mut out).await
            }
            None => {
                let window = window::Window {
                    size: args.concurrency,
                    interrupted_wait: plan.send_timeout,
                };
                let messages = &plan.messages;
                Ok(window::send(&producer, messages, window, &mut input, &stop, &mut out).await)
            }
        },
    };
    let ended = match sent {
        Ok(ended) => ended,
        Err(reason) => {
            producer.close().await;
            return Err(reason);
        }
    };
    drop(progress);
    producer.close().await;
    let stats = args.stats.then(|| producer.stats());
    let failed = out.summary(&ended, stats.as_ref());
    Ok(match ended {
        Ended::Interrupted => ExitCode::from(crate::EXIT_INTERRUPTED),
        Ended::InputFailed(reason) => {
            eprintln!("metaq: {reason}");
            ExitCode::FAILURE
        }
        Ended::Complete if failed => ExitCode::FAILURE,
        Ended::Complete => ExitCode::SUCCESS,
    })
}

enum Connected {
    Ready(Producer),
    /// No broker serves the topic; why, on one line.
    Unserved(String),
}

/// A producer with the topic published, or why the topic is not served.
async fn connect(args: &ProduceArgs, plan: &Plan) -> Result<Connected, String> {
    let cluster = &args.cluster;
    let builder = match (&cluster.server, cluster.zk_connect()) {
        (Some(server), _) => Producer::builder_for_server(server),
        (None, Some(zk)) => Producer::builder(zk).root(&cluster.root),
        (None, None) => return Err(NO_TARGET.into()),
    };
    let mut builder = builder
        .send_timeout(plan.send_timeout)
        .publish_timeout(Duration::from_millis(args.wait_ms))
        .max_message_size(plan.max_message_size)
        .retries(args.retries);
    builder = match args.selector {
        SelectorName::RoundRobin => builder.selector(RoundRobin),
        SelectorName::Random => builder.selector(Random),
        SelectorName::KeyHash => builder.selector(KeyHash),
    };
    let producer = builder.build().await.map_err(|e| e.to_string())?;
    match producer.publish(&args.topic).await {
        Ok(()) => Ok(Connected::Ready(producer)),
        Err(Error::TopicUnavailable { waited, .. }) => {
            producer.close().await;
            let reason = why_unserved(args, waited).await;
            Ok(Connected::Unserved(reason))
        }
        Err(e) => {
            producer.close().await;
            Err(e.to_string())
        }
    }
}

/// One line saying why no broker of the topic came within `waited`:
/// unserved under an existing root, or a root that does not exist.
async fn why_unserved(args: &ProduceArgs, waited: Duration) -> String {
    let topic = &args.topic;
    let Some(zk) = args.cluster.zk_connect() else {
        let server = args.cluster.server.as_deref().unwrap_or_default();
        return format!("no connection to {server} for topic {topic:?} within {waited:?}");
    };
    let settings = ZkSettings::new(zk).with_root(&args.cluster.root);
    let presence = match Discovery::connect(settings).await {
        Ok(discovery) => {
            let presence = discovery.describe_topic(topic).await;
            discovery.close().await;
            presence
        }
        Err(e) => Err(e),
    };
    match presence {
        Ok(TopicPresence::Served(_)) => {
            format!("no broker of topic {topic:?} within {waited:?} (one has come since)")
        }
        Ok(presence) => format!("after waiting {waited:?}: {presence}"),
        Err(e) => format!("no broker of topic {topic:?} within {waited:?}; cannot tell why: {e}"),
    }
}
