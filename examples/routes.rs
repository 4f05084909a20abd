//! Prints a topic's route (its brokers and their partitions, as producers
//! find them in ZooKeeper), then every change as brokers come and go.
//!
//! Watches for 5 s; `--seconds S` watches longer, `--changes N` stops after
//! N changes (and fails if fewer came in time), `--forever` until Ctrl-C.
//!
//! ```text
//! METAQ_ZK=127.0.0.1:2181 METAQ_ROOT=/meta METAQ_TOPIC=demo cargo run --example routes -- --seconds 60
//! ```

use std::time::Duration;

use metaq::discovery::{Discovery, TopicRoute, ZkSettings};
use tokio::time::{timeout_at, Instant};

const USAGE: &str = "usage: routes [--seconds S] [--changes N] [--forever]";

/// When to stop watching.
struct Stop {
    /// After this many changes.
    changes: Option<usize>,
    /// After this long; `None` with `--forever`.
    after: Option<Duration>,
}

fn stop_from_args() -> Result<Stop, String> {
    let mut stop = Stop {
        changes: None,
        after: Some(Duration::from_secs(5)),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut number = || -> Result<u64, String> {
            let value = args.next().ok_or(USAGE)?;
            value.parse().map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--seconds" => stop.after = Some(Duration::from_secs(number()?)),
            "--changes" => stop.changes = Some(number()? as usize),
            "--forever" => stop.after = None,
            _ => return Err(USAGE.into()),
        }
    }
    Ok(stop)
}

/// An environment variable, or `default` when it is not set.
fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let stop = stop_from_args()?;
    let zk = setting("METAQ_ZK", "127.0.0.1:2181");
    let root = setting("METAQ_ROOT", "/meta");
    let topic = setting("METAQ_TOPIC", "demo");
    // Discovery would only log a name ZooKeeper cannot hold; say it here.
    metaq::protocol::validate_topic(&topic).map_err(|e| format!("topic {topic:?}: {e}"))?;

    let discovery = Discovery::connect(ZkSettings::new(&zk).with_root(&root)).await?;
    let mut routes = discovery.watch(&topic);
    // The receiver holds `None` until discovery's first listing.
    let first = tokio::time::timeout(Duration::from_secs(10), routes.wait_for(Option::is_some))
        .await
        .map_err(|_| format!("no listing of {topic} from ZooKeeper within 10 s"))??
        .clone()
        .expect("listed");
    println!("route of {topic}:");
    print_route(&first);

    let deadline = stop.after.map(|after| Instant::now() + after);
    let mut previous = first;
    let mut seen = 0;
    while stop.changes != Some(seen) {
        let changed = match deadline {
            Some(deadline) => match timeout_at(deadline, routes.changed()).await {
                Ok(changed) => changed,
                Err(_time_is_up) => break,
            },
            None => routes.changed().await,
        };
        changed.map_err(|_| "discovery stopped")?;
        // A new value is only sent when the route changed.
        let Some(route) = routes.borrow_and_update().clone() else {
            continue;
        };
        seen += 1;
        print_change(seen, &previous, &route);
        previous = route;
    }
    discovery.close().await;

    match stop.changes {
        Some(wanted) if seen < wanted => {
            Err(format!("saw {seen} of {wanted} changes of {topic} in time").into())
        }
        _ => {
            println!("saw {seen} changes of {topic}");
            Ok(())
        }
    }
}

/// Which brokers joined, left or moved, then the whole new route.
fn print_change(n: usize, before: &TopicRoute, after: &TopicRoute) {
    for (id, uri) in &after.brokers {
        match before.brokers.get(id) {
            None => println!("change {n}: broker {id} joined at {uri}"),
            Some(old) if old != uri => {
                println!("change {n}: broker {id} moved from {old} to {uri}")
            }
            Some(_) => {}
        }
    }
    for (id, uri) in &before.brokers {
        if !after.brokers.contains_key(id) {
            println!("change {n}: broker {id} at {uri} left");
        }
    }
    print_route(after);
}

fn print_route(route: &TopicRoute) {
    if route.brokers.is_empty() {
        println!("  no broker serves {}", route.topic);
    }
    for (id, uri) in &route.brokers {
        let partitions: Vec<String> = route
            .partitions
            .iter()
            .filter(|p| p.broker_id == *id)
            .map(ToString::to_string)
            .collect();
        println!("  broker {id} {uri}: partitions {}", partitions.join(" "));
    }
}
