//! `metaq-broker`: the development MetaQ broker.
//!
//! ```text
//! metaq-broker --id 0 --listen 127.0.0.1:8123 --zk 127.0.0.1:2181 --data-dir /tmp/b0 --topic test:4
//! metaq-broker dump --data-dir /tmp/b0 [--topic test]
//! metaq-broker null --zk 127.0.0.1:2181 --listen 127.0.0.1:0 --topic bench:4
//! ```
//!
//! `null` runs the null server (`metaq_broker::null`), which answers every
//! put at once and stores nothing, for benchmarking producers.
//!
//! On start either server prints one line to stdout,
//! `ready id=<id> addr=<ip:port> uri=<meta://host:port>`, so scripts can learn
//! the port when `--listen` asked for port 0. Logs go to stderr (`RUST_LOG`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use metaq::protocol::split_body;
use metaq_broker::null::NullServer;
use metaq_broker::store::read_records;
use metaq_broker::{Broker, BrokerConfig, FlushPolicy, TopicConfig};

#[derive(Parser)]
#[command(
    name = "metaq-broker",
    version,
    about = "Development MetaQ 1.4 broker: speaks the wire protocol, stores in MetaQ's format, registers in ZooKeeper",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Print every stored record as one JSON line.
    Dump(DumpArgs),
    /// Run a null server: registered like a broker, answers every put with
    /// 200 at once, stores nothing (for benchmarking producers).
    Null(NullArgs),
}

#[derive(Args)]
struct NullArgs {
    /// Broker id to register under, 0 to 1023.
    #[arg(long, default_value_t = 0)]
    id: u32,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8123")]
    listen: SocketAddr,
    /// ZooKeeper connect string, `host:port[,host:port...][/chroot]`.
    #[arg(long)]
    zk: String,
    /// MetaQ root in ZooKeeper.
    #[arg(long, default_value = "/meta")]
    root: String,
    /// Topic to register as NAME:PARTITIONS; repeatable, at least one.
    #[arg(long = "topic", value_name = "NAME:PARTITIONS", required = true)]
    topics: Vec<TopicConfig>,
    /// Host written in the registered URI (default: the listen IP).
    #[arg(long)]
    host_name: Option<String>,
    /// ZooKeeper session timeout in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    zk_session_timeout_ms: u64,
    /// Runtime worker threads; 1 (the default) serves every connection
    /// from one thread, which keeps the server's CPU small.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    threads: u16,
}

#[derive(Args)]
struct RunArgs {
    /// Broker id, 0 to 1023.
    #[arg(long, required = true)]
    id: Option<u32>,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8123")]
    listen: SocketAddr,
    /// ZooKeeper connect string, `host:port[,host:port...][/chroot]`.
    #[arg(long, required = true)]
    zk: Option<String>,
    /// MetaQ root in ZooKeeper.
    #[arg(long, default_value = "/meta")]
    root: String,
    /// Directory for the message logs.
    #[arg(long, required = true)]
    data_dir: Option<PathBuf>,
    /// Accepted topic as NAME:PARTITIONS (NAME may contain * wildcards); repeatable.
    #[arg(long = "topic", value_name = "NAME:PARTITIONS")]
    topics: Vec<TopicConfig>,
    /// Host written in the registered URI (default: the listen IP).
    #[arg(long)]
    host_name: Option<String>,
    /// Largest message body accepted, in bytes.
    #[arg(long, default_value_t = metaq::protocol::DEFAULT_MAX_BODY)]
    max_message_size: usize,
    /// When to fsync: group (before answering), os (never), or MILLIS (periodically).
    #[arg(long, default_value = "group")]
    flush: FlushPolicy,
    /// Segment file size in bytes.
    #[arg(long, default_value_t = 1 << 30)]
    max_segment_size: u64,
    /// ZooKeeper session timeout in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    zk_session_timeout_ms: u64,
    /// Upper bound on opening a ZooKeeper session, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    zk_connect_timeout_ms: u64,
    /// Pause between leaving ZooKeeper and closing connections at shutdown, in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    shutdown_grace_ms: u64,
}

#[derive(Args)]
struct DumpArgs {
    /// The broker's data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// Only this topic.
    #[arg(long)]
    topic: Option<String>,
    /// Also print each record's attribute and payload (as lossy UTF-8).
    #[arg(long)]
    bodies: bool,
}

fn main() -> ExitCode {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Dump(args)) => dump(args),
        Some(Command::Null(args)) => null(args),
        None => run(cli.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("metaq-broker: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> Result<(), String> {
    let (Some(id), Some(zk), Some(data_dir)) = (args.id, args.zk, args.data_dir) else {
        return Err("--id, --zk and --data-dir are required".into());
    };
    let mut config = BrokerConfig::new(id, zk, data_dir)
        .with_listen(args.listen)
        .with_root(&args.root)
        .with_max_message_size(args.max_message_size)
        .with_flush(args.flush)
        .with_max_segment_size(args.max_segment_size)
        .with_zk_session_timeout(Duration::from_millis(args.zk_session_timeout_ms))
        .with_zk_connect_timeout(Duration::from_millis(args.zk_connect_timeout_ms))
        .with_shutdown_grace(Duration::from_millis(args.shutdown_grace_ms));
    config.topics = args.topics;
    if let Some(host) = args.host_name {
        config = config.with_host_name(host);
    }
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let broker = Broker::start(config).await.map_err(|e| e.to_string())?;
        println!(
            "ready id={id} addr={} uri={}",
            broker.local_addr(),
            broker.uri()
        );
        wait_for_signal().await;
        broker.shutdown().await;
        Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn null(args: NullArgs) -> Result<(), String> {
    let mut builder = NullServer::builder(args.zk)
        .id(args.id)
        .listen(args.listen)
        .root(&args.root)
        .zk_session_timeout(Duration::from_millis(args.zk_session_timeout_ms));
    for topic in args.topics {
        builder = builder.topic(topic);
    }
    if let Some(host) = args.host_name {
        builder = builder.host_name(host);
    }
    let runtime = match args.threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(n))
            .enable_all()
            .build(),
    }
    .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let server = builder.start().await.map_err(|e| e.to_string())?;
        println!(
            "ready id={} addr={} uri={}",
            args.id,
            server.local_addr(),
            server.uri()
        );
        wait_for_signal().await;
        let answered = server.puts_answered();
        server.stop().await;
        eprintln!("metaq-broker null: answered {answered} puts");
        Ok(())
    })
}

fn dump(args: DumpArgs) -> Result<(), String> {
    let records = read_records(&args.data_dir, args.topic.as_deref())
        .map_err(|e| format!("cannot read {}: {e}", args.data_dir.display()))?;
    let mut out = std::io::stdout().lock();
    for record in records {
        let mut line = serde_json::to_value(&record).map_err(|e| e.to_string())?;
        if args.bodies {
            let (attribute, payload) = match split_body(record.flag, &record.body) {
                Ok((attr, payload)) => (attr.map(String::from_utf8_lossy), payload),
                Err(_) => (None, &record.body[..]),
            };
            line["attribute"] = attribute.map(|a| a.into_owned()).into();
            line["payload"] = String::from_utf8_lossy(payload).into_owned().into();
        }
        use std::io::Write;
        match writeln!(out, "{line}") {
            Ok(()) => {}
            // The reader went away (`dump | head`): not an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}
