//! `metaq routes`: one topic's brokers and partitions.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use metaq::discovery::{Discovery, TopicPresence, TopicRoute};
use metaq::protocol::validate_topic;
use serde_json::json;

#[derive(Args)]
pub(crate) struct RoutesArgs {
    #[command(flatten)]
    cluster: crate::ClusterArgs,
    /// The topic.
    #[arg(long)]
    topic: String,
    /// One JSON object per snapshot.
    #[arg(long)]
    json: bool,
    /// Keep printing a new snapshot at every change until interrupted.
    #[arg(long)]
    watch: bool,
    /// How long to wait for the first listing from ZooKeeper, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    wait_ms: u64,
}

pub(crate) async fn run(args: RoutesArgs) -> Result<ExitCode, String> {
    // Refused here, with the reason: discovery would only log it.
    validate_topic(&args.topic).map_err(|e| format!("invalid topic {:?}: {e}", args.topic))?;
    if args.wait_ms == 0 {
        return Err("--wait-ms must be at least 1".into());
    }
    let discovery = Discovery::connect(args.cluster.zk_settings())
        .await
        .map_err(|e| e.to_string())?;
    let result = show(&discovery, &args).await;
    discovery.close().await;
    result
}

async fn show(discovery: &Discovery, args: &RoutesArgs) -> Result<ExitCode, String> {
    let mut routes = discovery.watch(&args.topic);
    let wait = Duration::from_millis(args.wait_ms);
    let first = match tokio::time::timeout(wait, routes.wait_for(Option::is_some)).await {
        Ok(Ok(route)) => route.as_ref().map(Arc::clone),
        Ok(Err(_)) => None,
        Err(_) => {
            return Err(format!(
                "no listing of topic {:?} from ZooKeeper within {wait:?}",
                args.topic
            ));
        }
    };
    let Some(first) = first else {
        return Err("discovery stopped before listing the topic".into());
    };
    if !args.watch {
        if first.partitions.is_empty() {
            return unserved(discovery, args).await;
        }
        print(&first, args.json);
        return Ok(ExitCode::SUCCESS);
    }
    let mut route = first;
    loop {
        print(&route, args.json);
        if route.partitions.is_empty() {
            // Watching goes on (a broker may come); the reason goes to stderr.
            if let Ok(presence) = discovery.describe_topic(&args.topic).await {
                eprintln!("metaq: {presence}");
            }
        }
        let changed = tokio::select! {
            changed = routes.changed() => changed,
            _ = tokio::signal::ctrl_c() => break,
        };
        if changed.is_err() {
            break;
        }
        match routes.borrow_and_update().clone() {
            Some(next) => route = next,
            None => break,
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The route is empty: says why on one line and exits 2, unless a broker
/// came meanwhile.
async fn unserved(discovery: &Discovery, args: &RoutesArgs) -> Result<ExitCode, String> {
    match discovery.describe_topic(&args.topic).await {
        Ok(TopicPresence::Served(route)) => {
            print(&route, args.json);
            Ok(ExitCode::SUCCESS)
        }
        Ok(presence) => {
            eprintln!("metaq: {presence}");
            Ok(ExitCode::from(crate::EXIT_UNSERVED))
        }
        Err(e) => Err(format!(
            "no broker serves topic {:?}, and ZooKeeper could not say why: {e}",
            args.topic
        )),
    }
}

fn print(route: &TopicRoute, as_json: bool) {
    if as_json {
        let brokers: serde_json::Map<_, _> = route
            .brokers
            .iter()
            .map(|(id, uri)| (id.to_string(), json!(uri.to_string())))
            .collect();
        let partitions: Vec<_> = route.partitions.iter().map(|p| p.to_string()).collect();
        say!(
            "{}",
            json!({ "topic": route.topic, "brokers": brokers, "partitions": partitions })
        );
        return;
    }
    say!("topic {}", route.topic);
    if route.brokers.is_empty() {
        say!("  no broker serves it");
    }
    for (id, uri) in &route.brokers {
        let parts: Vec<_> = route
            .partitions
            .iter()
            .filter(|p| p.broker_id == *id)
            .map(|p| p.to_string())
            .collect();
        say!("  broker {id} {uri}: {}", parts.join(" "));
    }
}
