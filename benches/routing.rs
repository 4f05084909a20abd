//! Choosing a partition and finding its broker, through the public API:
//! the selectors a producer is built with, and a route's broker lookup.
//!
//! `cargo bench --bench routing`

use std::hint::black_box;
use std::sync::atomic::AtomicU64;

use criterion::{criterion_group, criterion_main, Criterion};
use metaq::discovery::{BrokerUri, Partition, RouteSource, TopicRoute};
use metaq::producer::{KeyHash, PartitionSelector, Random, RoundRobin, Selection};
use metaq::Message;

/// A route of 4 brokers with 8 partitions each: a mid-sized cluster.
fn route() -> TopicRoute {
    let brokers = (0..4u32)
        .map(|id| {
            let uri: BrokerUri = format!("meta://127.0.0.1:{}", 8123 + id)
                .parse()
                .expect("a valid URI");
            (id, uri)
        })
        .collect();
    let partitions = (0..4u32)
        .flat_map(|id| (0..8u32).map(move |index| Partition::new(id, index)))
        .collect();
    TopicRoute {
        topic: "bench".into(),
        brokers,
        partitions,
        source: RouteSource::TopicsPub,
    }
}

fn selectors(c: &mut Criterion) {
    let route = route();
    let keyless = Message::new("bench", "payload");
    let keyed = Message::new("bench", "payload").with_key("customer-42");
    let sequence = AtomicU64::new(0);
    let mut group = c.benchmark_group("select");
    let cases: [(&str, &dyn PartitionSelector, &Message); 3] = [
        ("round_robin", &RoundRobin, &keyless),
        ("random", &Random, &keyless),
        ("key_hash", &KeyHash, &keyed),
    ];
    for (name, selector, message) in cases {
        group.bench_function(name, |b| {
            b.iter(|| {
                let selection = Selection::new(&route.partitions, message, &sequence);
                black_box(selector.select(black_box(&selection)))
            })
        });
    }
    group.finish();
}

fn lookup(c: &mut Criterion) {
    let route = route();
    let partition = Partition::new(2, 5);
    c.bench_function("route_broker_of", |b| {
        b.iter(|| black_box(route.broker_of(black_box(partition))).is_some())
    });
}

criterion_group!(benches, selectors, lookup);
criterion_main!(benches);
