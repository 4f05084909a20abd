//! `metaq`: produce to a MetaQ cluster and look at its routes from a shell.
//!
//! ```text
//! metaq produce --zk 127.0.0.1:2181 --topic test --count 1000 --size 100 --json
//! metaq produce --server meta://127.0.0.1:8123 --topic test   # one broker, no ZooKeeper
//! metaq routes  --zk 127.0.0.1:2181 --topic test [--json] [--watch]
//! metaq bench   --null --baseline raw [--threads 2] [--json]
//! metaq soak    --minutes 10 [--brokers 3] [--rate 2000] [--seed N] [--json]
//! metaq xa recover --server meta://127.0.0.1:8123 [--qualifier Q] [--json]
//! metaq xa commit  --server meta://127.0.0.1:8123 --xid KEY [--one-phase]
//! ```
//!
//! Exit status: 0 done, 1 failed or refused, [`EXIT_UNSERVED`],
//! [`EXIT_INTERRUPTED`].

/// `println!` that ends the process quietly when stdout's reader went away
/// (`metaq produce --json | head -1`), as a shell tool killed by SIGPIPE
/// does, instead of panicking. Declared before the modules that use it.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::say_line(format_args!($($arg)*))
    };
}

mod bench;
mod produce;
mod routes;
mod soak;
mod xa;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use metaq::discovery::ZkSettings;

/// Exit status when the topic is not served (README, "Exit status").
pub(crate) const EXIT_UNSERVED: u8 = 2;
/// Exit status after an interrupt (SIGINT), as shells report one.
pub(crate) const EXIT_INTERRUPTED: u8 = 130;

/// Where the cluster is: the arguments every command shares.
#[derive(Args)]
pub(crate) struct ClusterArgs {
    /// ZooKeeper connect string, `host:port[,host:port...][/chroot]`.
    #[arg(long, env = "METAQ_ZK")]
    pub(crate) zk: String,
    /// MetaQ root in ZooKeeper.
    #[arg(long, env = "METAQ_ROOT", default_value = "/meta")]
    pub(crate) root: String,
}

impl ClusterArgs {
    /// Discovery settings for this cluster.
    pub(crate) fn zk_settings(&self) -> ZkSettings {
        ZkSettings::new(&self.zk).with_root(&self.root)
    }
}

#[derive(Parser)]
#[command(
    name = "metaq",
    version,
    about = "Produce to a MetaQ 1.4 cluster found through ZooKeeper"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send messages and report where each went.
    Produce(produce::ProduceArgs),
    /// Print a topic's brokers and partitions as discovered in ZooKeeper.
    Routes(routes::RoutesArgs),
    /// Measure the producer: throughput, latency or transactions, against a
    /// cluster, local brokers or a null server, beside a raw socket writer.
    Bench(bench::BenchArgs),
    /// Chaos soak: a private ZooKeeper and broker processes, a paced mix of
    /// sends and transactions while brokers are killed and restarted and
    /// ZooKeeper is frozen, then every acknowledged message checked on disk.
    Soak(soak::SoakArgs),
    /// List and finish the XA branches one broker holds (recover, commit,
    /// rollback, forget), for operators resolving prepared transactions.
    ///
    /// Branches live on one broker, so each subcommand names it by address
    /// with --server meta://host:port (as `metaq routes` prints it); no
    /// ZooKeeper is needed, which also works for a broker whose
    /// registration is gone. Exit status 1 for an XA error (its code named,
    /// e.g. XAER_NOTA) or a malformed --xid.
    Xa(xa::XaArgs),
}

fn main() -> ExitCode {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    // Usage errors exit 1 as every other refusal does: 2 means "not served".
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // The bench builds the runtime it measures (`--threads`).
    let command = match cli.command {
        Command::Bench(args) => return bench::main(args),
        // The soak builds its runtime and prints its own report.
        Command::Soak(args) => return soak::main(args),
        command => command,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("metaq: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Produce(args) => produce::run(args).await,
            Command::Routes(args) => routes::run(args).await,
            Command::Xa(args) => xa::run(args).await,
            Command::Bench(_) | Command::Soak(_) => unreachable!("handled before the runtime"),
        }
    });
    match result {
        Ok(status) => status,
        Err(message) => {
            eprintln!("metaq: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Writes one line to stdout; see [`say!`].
pub(crate) fn say_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(line).and_then(|()| out.write_all(b"\n"));
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // 128 + SIGPIPE, the status of a tool the signal ended.
            std::process::exit(141);
        }
        eprintln!("metaq: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}
