//! `metaq`: produce to a MetaQ cluster and look at its routes from a shell.
//!
//! ```text
//! metaq produce --zk 127.0.0.1:2181 --topic test --count 1000 --size 100 --json
//! metaq routes  --zk 127.0.0.1:2181 --topic test [--json] [--watch]
//! metaq bench   --null --baseline raw [--threads 2] [--json]
//! ```

mod bench;
mod produce;
mod routes;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Where the cluster is: the arguments every command shares.
#[derive(Args)]
pub(crate) struct ClusterArgs {
    /// ZooKeeper connect string, `host:port[,host:port...][/chroot]`.
    #[arg(long)]
    pub(crate) zk: String,
    /// MetaQ root in ZooKeeper.
    #[arg(long, default_value = "/meta")]
    pub(crate) root: String,
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
    let cli = Cli::parse();
    // The bench builds the runtime it measures (`--threads`).
    let command = match cli.command {
        Command::Bench(args) => return bench::main(args),
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
            Command::Bench(_) => unreachable!("handled before the runtime"),
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("metaq: {message}");
            ExitCode::FAILURE
        }
    }
}
