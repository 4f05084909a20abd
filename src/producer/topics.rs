//! Each published topic: its current route (partitions plus a connection
//! per broker), swapped atomically so the send path never locks, and the
//! task that follows discovery and keeps the connections in step.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::future::join_all;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};

use super::route_events::RouteEvent;
use super::send_metrics::PerBroker;
use crate::cluster::{BrokerUri, Partition};
use crate::discovery::TopicRoute;
use crate::net::{Connection, ConnectionPool};

/// What a send reads: partitions and the connection of each broker.
#[derive(Debug, Default)]
pub(crate) struct Route {
    pub(crate) partitions: Vec<Partition>,
    pub(crate) connections: BTreeMap<u32, Connection>,
    /// Whether every partition's broker has a connection here.
    covered: bool,
    /// The `metrics` handles of each broker for this topic (empty without
    /// the feature).
    pub(crate) metrics: PerBroker,
}

impl Route {
    pub(crate) fn new(
        topic: &str,
        partitions: Vec<Partition>,
        connections: BTreeMap<u32, Connection>,
    ) -> Self {
        let covered = partitions
            .iter()
            .all(|p| connections.contains_key(&p.broker_id));
        Route {
            metrics: PerBroker::new(topic, &connections),
            partitions,
            connections,
            covered,
        }
    }

    /// Each broker's address, by id.
    pub(crate) fn brokers(&self) -> BTreeMap<u32, BrokerUri> {
        self.connections
            .iter()
            .map(|(&id, connection)| (id, connection.uri().clone()))
            .collect()
    }

    pub(crate) fn connection(&self, partition: Partition) -> Option<&Connection> {
        self.connections.get(&partition.broker_id)
    }

    /// Whether every partition can take a send right now: one check per
    /// broker, instead of one per partition in every send's selection.
    pub(crate) fn all_usable(&self) -> bool {
        self.covered && self.connections.values().all(Connection::is_usable)
    }
}

/// One topic of the producer.
#[derive(Debug)]
pub(crate) struct TopicState {
    pub(crate) name: Arc<str>,
    pub(crate) route: ArcSwap<Route>,
    /// The selectors' per-topic counter.
    pub(crate) sequence: AtomicU64,
    /// Counts applied routes; 0 until discovery's first listing is in.
    pub(crate) applied: watch::Sender<u64>,
    /// Whether any applied route had a partition. A topic that was served
    /// and whose route is empty now is most likely between a broker leaving
    /// ZooKeeper and coming back (a restart, a session renewal).
    served: AtomicBool,
    /// Routes applied that differed from the one before (the first listing
    /// is not a change).
    pub(crate) changes: AtomicU64,
}

impl TopicState {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            route: ArcSwap::from_pointee(Route::default()),
            sequence: AtomicU64::new(0),
            applied: watch::channel(0).0,
            served: AtomicBool::new(false),
            changes: AtomicU64::new(0),
        }
    }

    /// Whether a broker has ever served this topic since it was published.
    pub(crate) fn was_served(&self) -> bool {
        self.served.load(Ordering::Relaxed)
    }

    /// Waits until at least one route has been applied, at most `wait`.
    pub(crate) async fn wait_first_route(&self, wait: Duration) -> bool {
        let mut applied = self.applied.subscribe();
        tokio::time::timeout(wait, applied.wait_for(|n| *n > 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits until the route has a partition, at most `wait`.
    pub(crate) async fn wait_non_empty(&self, wait: Duration) -> bool {
        let mut applied = self.applied.subscribe();
        let route = &self.route;
        tokio::time::timeout(
            wait,
            applied.wait_for(|n| *n > 0 && !route.load().partitions.is_empty()),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }
}

/// Settings the route task needs.
#[derive(Debug, Clone)]
pub(crate) struct RouteTaskSettings {
    /// How long to wait for a new broker's first connection attempt before
    /// using the route anyway (a refused connection ends the wait at once).
    pub(crate) connect_wait: Duration,
    /// How long a removed broker's connection stays open for answers in flight.
    pub(crate) close_delay: Duration,
    /// Where route changes are told (see `Producer::route_events`).
    pub(crate) events: broadcast::Sender<RouteEvent>,
}

/// Follows discovery for one topic until `stop`.
pub(crate) fn spawn_route_task(
    state: Arc<TopicState>,
    mut routes: watch::Receiver<Option<Arc<TopicRoute>>>,
    pool: Arc<ConnectionPool>,
    settings: RouteTaskSettings,
    stop: CancellationToken,
) {
    let span = info_span!("topology", topic = %state.name);
    tokio::spawn(
        async move {
            let mut current: BTreeMap<u32, Connection> = BTreeMap::new();
            loop {
                let route = routes.borrow_and_update().clone();
                if let Some(route) = route {
                    current = apply(&state, &route, current, &pool, &settings, &stop).await;
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    changed = routes.changed() => if changed.is_err() { break },
                }
            }
            for connection in current.values() {
                pool.release(connection.uri());
            }
        }
        .instrument(span),
    );
}

/// Logs and broadcasts a route change, the topic's `changes`th.
fn tell_change(event: RouteEvent, changes: u64, events: &broadcast::Sender<RouteEvent>) {
    info!(
        changes,
        old_partitions = %list(&event.old_partitions),
        new_partitions = %list(&event.new_partitions),
        joined = %list(event.joined().map(|(id, uri)| format!("{id}={uri}"))),
        left = %list(event.left().map(|(id, uri)| format!("{id}={uri}"))),
        "route changed"
    );
    // No receiver is fine: nobody follows routes.
    let _ = events.send(event);
}

/// `[a, b, c]` for a log field.
fn list<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    format!("[{}]", items.join(", "))
}

/// Diffs the connections against the new route: keeps unchanged brokers'
/// connections, opens new ones (waiting, bounded, for their first connection
/// attempt to end), then swaps the route in, then lets go of removed or moved
/// brokers after a delay.
async fn apply(
    state: &TopicState,
    route: &TopicRoute,
    mut current: BTreeMap<u32, Connection>,
    pool: &Arc<ConnectionPool>,
    settings: &RouteTaskSettings,
    stop: &CancellationToken,
) -> BTreeMap<u32, Connection> {
    let mut next = BTreeMap::new();
    let mut opened = Vec::new();
    for (id, uri) in &route.brokers {
        match current.remove(id) {
            Some(connection) if connection.uri() == uri => {
                next.insert(*id, connection);
            }
            previous => {
                if let Some(old) = previous {
                    info!(broker = id, from = %old.uri(), to = %uri, "broker moved");
                    current.insert(*id, old);
                } else {
                    info!(broker = id, address = %uri, "broker joined");
                }
                let connection = pool.acquire(uri);
                opened.push(connection.clone());
                next.insert(*id, connection);
            }
        }
    }
    let ready = join_all(
        opened
            .iter()
            .map(|c| c.wait_first_attempt(settings.connect_wait)),
    )
    .await;
    for (connection, ready) in opened.iter().zip(ready) {
        if !ready {
            warn!(broker = %connection.uri(), "not connected yet; its partitions are avoided until it is");
        }
    }
    for (&id, connection) in &next {
        connection.tally().named(id);
    }
    if !route.partitions.is_empty() {
        state.served.store(true, Ordering::Relaxed);
    }
    // A topic's first listing is no change. A change is counted before the
    // route is swapped in: whoever sees the new route sees it counted.
    let change = if *state.applied.borrow() == 0 {
        None
    } else {
        let old = state.route.load();
        RouteEvent::between(
            &state.name,
            (&old.partitions, old.brokers()),
            (&route.partitions, &route.brokers),
        )
    };
    let changes = match change {
        Some(_) => state.changes.fetch_add(1, Ordering::Relaxed) + 1,
        None => state.changes.load(Ordering::Relaxed),
    };
    let new_route = Route::new(&state.name, route.partitions.clone(), next.clone());
    state.route.store(Arc::new(new_route));
    state.applied.send_modify(|n| *n += 1);
    if let Some(event) = change {
        tell_change(event, changes, &settings.events);
    }
    info!(
        brokers = route.brokers.len(),
        partitions = route.partitions.len(),
        "route applied"
    );
    let removed: Vec<BrokerUri> = current
        .into_iter()
        .map(|(id, connection)| {
            if !route.brokers.contains_key(&id) {
                info!(broker = id, address = %connection.uri(), "broker left");
            }
            connection.uri().clone()
        })
        .collect();
    if !removed.is_empty() {
        let pool = Arc::clone(pool);
        let delay = settings.close_delay;
        let stop = stop.clone();
        // Answers to requests already sent there may still come. On stop
        // the producer closes every connection itself: do not linger.
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.cancelled() => {}
            }
            for uri in &removed {
                pool.release(uri);
            }
        });
    }
    next
}
