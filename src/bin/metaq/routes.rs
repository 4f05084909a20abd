//! `metaq routes`: one topic's brokers and partitions.

use clap::Args;
use metaq::discovery::{Discovery, TopicRoute, ZkSettings};
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
}

pub(crate) async fn run(args: RoutesArgs) -> Result<bool, String> {
    let mut settings = ZkSettings::new(&args.cluster.zk);
    settings.root = metaq::discovery::normalize_root(&args.cluster.root);
    let discovery = Discovery::connect(settings)
        .await
        .map_err(|e| e.to_string())?;
    let mut routes = discovery.watch(&args.topic);
    loop {
        let route = routes.borrow_and_update().clone();
        if let Some(route) = route {
            print(&route, args.json);
            if !args.watch {
                break;
            }
        }
        let changed = tokio::select! {
            changed = routes.changed() => changed,
            _ = tokio::signal::ctrl_c() => break,
        };
        if changed.is_err() {
            break;
        }
    }
    discovery.close().await;
    Ok(true)
}

fn print(route: &TopicRoute, as_json: bool) {
    if as_json {
        let brokers: serde_json::Map<_, _> = route
            .brokers
            .iter()
            .map(|(id, uri)| (id.to_string(), json!(uri.to_string())))
            .collect();
        let partitions: Vec<_> = route.partitions.iter().map(|p| p.to_string()).collect();
        println!(
            "{}",
            json!({ "topic": route.topic, "brokers": brokers, "partitions": partitions })
        );
        return;
    }
    println!("topic {}", route.topic);
    if route.brokers.is_empty() {
        println!("  no broker serves it");
    }
    for (id, uri) in &route.brokers {
        let parts: Vec<_> = route
            .partitions
            .iter()
            .filter(|p| p.broker_id == *id)
            .map(|p| p.to_string())
            .collect();
        println!("  broker {id} {uri}: {}", parts.join(" "));
    }
}
