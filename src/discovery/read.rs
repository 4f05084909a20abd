//! One listing of a topic: ZooKeeper nodes → [`TopicRoute`] (docs/protocol.md §1.4,
//! with the fixes of sections 2.2 and 8).
//!
//! The same code serves [`read_route`] (plain reads) and the watch tasks
//! (reads that arm watches through [`Watches`]).

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use tracing::{debug, warn};
use zookeeper_client::{Client, Error as ZkError};

use super::watches::{WatchKey, Watches};
use super::{RouteSource, TopicRoute, ZkPaths, ZkSettings};
use crate::cluster::{BrokerUri, Partition};

/// Reads one route of `topic` without setting any watch.
///
/// * Children of `<root>/brokers/topics-pub/<topic>` named `<id>-m` (`<id>`
///   a decimal broker id) are master entries; their data is
///   [`TopicBroker`](super::TopicBroker) JSON (key order free, unknown keys
///   ignored), giving partitions `<id>-0 .. <id>-(numParts-1)`. Other names
///   (slaves `<id>-s<N>`, anything else) are skipped.
/// * Each such broker's address is `<root>/brokers/ids/<id>/master`; a broker
///   without that node, or with blank data, is left out with its partitions.
/// * If `topics-pub/<topic>` does not exist, the legacy
///   `<root>/brokers/topics/<topic>` is read instead (data = plain decimal
///   partition count; [`RouteSource::Legacy`]). If neither exists the route
///   is empty.
/// * Malformed data (unparsable JSON or count, `numParts` ≤ 0 or above
///   [`ZkSettings::max_partitions_per_broker`], an unparsable address) never
///   fails the listing: a broker found in `previous` keeps its previous
///   partitions or address, any other broker is skipped. Both are logged
///   with `warn!` (a watch task warns once per bad value, then logs it at
///   debug level).
///
/// Nothing is written to ZooKeeper.
///
/// # Errors
///
/// The ZooKeeper error of the first read that failed (connection loss,
/// expired session, …); `NoNode` never surfaces (it means "absent").
///
/// # Example
///
/// ```no_run
/// use metaq::discovery::{read_route, ZkPaths, ZkSettings};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let settings = ZkSettings::new("127.0.0.1:2181");
/// let client = zookeeper_client::Client::connect(&settings.connect).await?;
/// let route = read_route(&client, &ZkPaths::new(&settings.root), "test", &settings, None).await?;
/// for partition in &route.partitions {
///     println!("{partition} on {:?}", route.broker_of(*partition));
/// }
/// # Ok(())
/// # }
/// ```
pub async fn read_route(
    client: &Client,
    paths: &ZkPaths,
    topic: &str,
    settings: &ZkSettings,
    previous: Option<&TopicRoute>,
) -> Result<TopicRoute, ZkError> {
    let mut reader = Reader {
        client,
        watches: None,
        reported: None,
    };
    list(&mut reader, paths, topic, settings, previous).await
}

/// How many times a node that keeps appearing and vanishing between two
/// reads is tried before the listing gives up (and is retried later).
const FLAP_ATTEMPTS: usize = 5;

/// ZooKeeper reads that, given [`Watches`], also arm one watch per node —
/// but only where no earlier watch of the same kind is still pending.
pub(super) struct Reader<'a> {
    pub(super) client: &'a Client,
    pub(super) watches: Option<&'a mut Watches>,
    /// Malformed values already logged (`None`: log every one).
    pub(super) reported: Option<&'a mut Reported>,
}

/// Malformed values a watch task has already warned about, so that a bad
/// node is reported once (then at debug level) rather than at every listing.
#[derive(Debug, Default)]
pub(super) struct Reported {
    before: HashSet<String>,
    now: HashSet<String>,
}

impl Reported {
    /// Records `key` for this listing; whether it is new.
    fn first(&mut self, key: String) -> bool {
        let first = !self.before.contains(&key);
        self.now.insert(key);
        first
    }

    /// Ends a listing: after a complete one, values no longer seen are
    /// forgotten (and warned about again should they come back).
    pub(super) fn finish_listing(&mut self, complete: bool) {
        let now = std::mem::take(&mut self.now);
        if complete {
            self.before = now;
        } else {
            self.before.extend(now);
        }
    }
}

/// `warn!` the first time a malformed value is seen by a task, `debug!` after.
macro_rules! malformed {
    ($reader:expr, $key:expr, $($args:tt)+) => {
        if $reader.first_report($key) {
            warn!($($args)+)
        } else {
            debug!($($args)+)
        }
    };
}

impl Reader<'_> {
    fn first_report(&mut self, key: String) -> bool {
        match self.reported.as_deref_mut() {
            Some(reported) => reported.first(key),
            None => true,
        }
    }

    /// Children of `path`, `None` if it does not exist. Watches the
    /// children, or the node's creation when it is absent.
    async fn children(&mut self, path: &str) -> Result<Option<Vec<String>>, ZkError> {
        let Some(watches) = self.watches.as_deref_mut() else {
            return absent_as_none(self.client.list_children(path).await);
        };
        for _ in 0..FLAP_ATTEMPTS {
            let key = WatchKey::Children(path.to_owned());
            let listed = if watches.is_armed(&key) {
                self.client.list_children(path).await
            } else {
                match self.client.get_and_watch_children(path).await {
                    Ok((children, _, watcher)) => {
                        watches.arm(key.clone(), watcher);
                        Ok(children)
                    }
                    Err(e) => Err(e),
                }
            };
            match listed {
                Ok(children) => {
                    watches.touch(key);
                    return Ok(Some(children));
                }
                Err(ZkError::NoNode) => {}
                Err(e) => return Err(e),
            }
            // Absent: wait for it to be created.
            let key = WatchKey::Exists(path.to_owned());
            let stat = if watches.is_armed(&key) {
                self.client.check_stat(path).await?
            } else {
                let (stat, watcher) = self.client.check_and_watch_stat(path).await?;
                watches.arm(key.clone(), watcher);
                stat
            };
            watches.touch(key);
            if stat.is_none() {
                return Ok(None);
            }
            // Created meanwhile: list it.
        }
        Err(flapping(path))
    }

    /// Data of a topic entry, `None` if it vanished. Watches its data (a
    /// vanished entry needs no watch: the parent's child watch covers it).
    async fn entry(&mut self, path: &str) -> Result<Option<Vec<u8>>, ZkError> {
        let Some(watches) = self.watches.as_deref_mut() else {
            return absent_as_none(self.client.get_data(path).await.map(|(data, _)| data));
        };
        let key = WatchKey::Data(path.to_owned());
        let read = if watches.is_armed(&key) {
            self.client.get_data(path).await.map(|(data, _)| data)
        } else {
            match self.client.get_and_watch_data(path).await {
                Ok((data, _, watcher)) => {
                    watches.arm(key.clone(), watcher);
                    Ok(data)
                }
                Err(e) => Err(e),
            }
        };
        let read = absent_as_none(read)?;
        if read.is_some() {
            watches.touch(key);
        }
        Ok(read)
    }

    /// Data of a broker's `master` node, `None` if absent. Watches its
    /// creation, data changes and deletion (one exists-watch does all).
    async fn master(&mut self, path: &str) -> Result<Option<Vec<u8>>, ZkError> {
        let Some(watches) = self.watches.as_deref_mut() else {
            return absent_as_none(self.client.get_data(path).await.map(|(data, _)| data));
        };
        let key = WatchKey::Exists(path.to_owned());
        if !watches.is_armed(&key) {
            let (stat, watcher) = self.client.check_and_watch_stat(path).await?;
            watches.arm(key.clone(), watcher);
            if stat.is_none() {
                watches.touch(key);
                return Ok(None);
            }
        }
        watches.touch(key);
        // If it goes away (or changes) after this read, the watch fires.
        absent_as_none(self.client.get_data(path).await.map(|(data, _)| data))
    }
}

fn absent_as_none<T>(result: Result<T, ZkError>) -> Result<Option<T>, ZkError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(ZkError::NoNode) => Ok(None),
        Err(e) => Err(e),
    }
}

fn flapping(path: &str) -> ZkError {
    ZkError::UnexpectedError(format!(
        "{path} kept appearing and disappearing while being listed"
    ))
}

/// The listing itself; see [`read_route`].
pub(super) async fn list(
    reader: &mut Reader<'_>,
    paths: &ZkPaths,
    topic: &str,
    settings: &ZkSettings,
    previous: Option<&TopicRoute>,
) -> Result<TopicRoute, ZkError> {
    let mut listing = Listing {
        reader,
        paths,
        topic,
        settings,
        previous,
    };
    let Some((source, dir, mut children)) = listing.topic_node().await? else {
        return Ok(TopicRoute {
            topic: topic.to_owned(),
            ..TopicRoute::default()
        });
    };
    children.sort();

    // Broker id → its partitions, from the topic entries.
    let mut listed: BTreeMap<u32, Vec<Partition>> = BTreeMap::new();
    for name in &children {
        if let Some((id, parts)) = listing.entry(source, &dir, name).await? {
            listed.insert(id, parts);
        }
    }

    // Addresses from ids/<id>/master.
    let mut brokers = BTreeMap::new();
    for &id in listed.keys() {
        if let Some(uri) = listing.address(id).await? {
            brokers.insert(id, uri);
        }
    }

    let partitions = listed
        .into_iter()
        .filter(|(id, _)| brokers.contains_key(id))
        .flat_map(|(_, parts)| parts)
        .collect();
    Ok(TopicRoute {
        topic: topic.to_owned(),
        brokers,
        partitions,
        source,
    })
}

/// What one listing of a topic reads with and falls back on.
struct Listing<'l, 'r> {
    reader: &'l mut Reader<'r>,
    paths: &'l ZkPaths,
    topic: &'l str,
    settings: &'l ZkSettings,
    previous: Option<&'l TopicRoute>,
}

impl Listing<'_, '_> {
    /// The topic's node — `topics-pub`, else the legacy one — with its
    /// source and children; `None` if neither exists.
    async fn topic_node(&mut self) -> Result<Option<(RouteSource, String, Vec<String>)>, ZkError> {
        let topic = self.topic;
        let pub_path = self.paths.topic_pub(topic);
        let legacy_path = self.paths.topic_legacy(topic);
        Ok(match self.reader.children(&pub_path).await? {
            Some(children) => Some((RouteSource::TopicsPub, pub_path, children)),
            None => match self.reader.children(&legacy_path).await? {
                Some(children) => Some((RouteSource::Legacy, legacy_path, children)),
                None => {
                    debug!(topic, "neither topics-pub nor the legacy topic node exists");
                    None
                }
            },
        })
    }

    /// The broker id and partitions of the child `name` of `dir`; `None`
    /// if it is skipped (not a master entry, vanished, or malformed with no
    /// previous partitions to keep).
    async fn entry(
        &mut self,
        source: RouteSource,
        dir: &str,
        name: &str,
    ) -> Result<Option<(u32, Vec<Partition>)>, ZkError> {
        let topic = self.topic;
        let Some(id) = master_entry_id(name) else {
            if is_slave_entry(name) {
                debug!(topic, entry = %name, "slave entry ignored");
            } else {
                malformed!(self.reader, format!("name {dir}/{name}"), topic, entry = %name, path = %dir, "ignoring a child that is not <brokerId>-m");
            }
            return Ok(None);
        };
        let path = format!("{dir}/{name}");
        let Some(data) = self.reader.entry(&path).await? else {
            debug!(topic, %path, "entry vanished while listing");
            return Ok(None);
        };
        let max = self.settings.max_partitions_per_broker;
        let parts = match parse_partition_count(source, &data, max) {
            Ok(count) => (0..count).map(|index| Partition::new(id, index)).collect(),
            Err(reason) => {
                let kept = previous_partitions(self.previous, id);
                let key = format!("entry {path} {} {}", kept.len(), excerpt(&data));
                if kept.is_empty() {
                    malformed!(self.reader, key, topic, %path, data = %excerpt(&data), %reason, "malformed entry of a new broker; skipping it");
                    return Ok(None);
                }
                malformed!(self.reader, key, topic, %path, data = %excerpt(&data), %reason, partitions = kept.len(), "malformed entry; keeping the broker's previous partitions");
                kept
            }
        };
        Ok(Some((id, parts)))
    }

    /// Broker `id`'s address from its master node; `None` if the broker is
    /// left out (no node, blank, or malformed with no previous address).
    async fn address(&mut self, id: u32) -> Result<Option<BrokerUri>, ZkError> {
        let topic = self.topic;
        let path = self.paths.broker_master(id);
        let Some(data) = self.reader.master(&path).await? else {
            debug!(topic, broker = id, "no master node; broker left out");
            return Ok(None);
        };
        Ok(match parse_master(&data) {
            Ok(Some(uri)) => Some(uri),
            Ok(None) => {
                debug!(topic, broker = id, "blank master node; broker left out");
                None
            }
            Err(reason) => match self.previous.and_then(|p| p.brokers.get(&id)) {
                Some(uri) => {
                    let key = format!("master {path} {uri} {}", excerpt(&data));
                    malformed!(self.reader, key, topic, %path, data = %excerpt(&data), %reason, previous = %uri, "malformed master node; keeping the broker's previous address");
                    Some(uri.clone())
                }
                None => {
                    let key = format!("master {path} {}", excerpt(&data));
                    malformed!(self.reader, key, topic, %path, data = %excerpt(&data), %reason, "malformed master node of a new broker; skipping it");
                    None
                }
            },
        })
    }
}

/// The broker id of a master entry `<id>-m` (decimal digits only).
pub(super) fn master_entry_id(name: &str) -> Option<u32> {
    let mut pieces = name.split('-');
    let (id, role) = (pieces.next()?, pieces.next()?);
    if pieces.next().is_some() || role != "m" || id.is_empty() {
        return None;
    }
    if !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// Whether `name` is a slave entry `<id>-s<N>`.
fn is_slave_entry(name: &str) -> bool {
    match name.split_once('-') {
        Some((id, slave)) => {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_digit())
                && slave
                    .strip_prefix('s')
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        }
        None => false,
    }
}

/// The two keys MetaQ writes; unknown keys are ignored, order is free.
#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "numParts")]
    num_parts: i64,
}

/// The partition count of an entry: `TopicBroker` JSON (`topics-pub`) or
/// plain decimal text (legacy), within `1..=max`.
pub(super) fn parse_partition_count(
    source: RouteSource,
    data: &[u8],
    max: u32,
) -> Result<u32, String> {
    let count = match source {
        RouteSource::Legacy => {
            let text = std::str::from_utf8(data).map_err(|_| "not UTF-8 text".to_owned())?;
            text.trim()
                .parse::<i64>()
                .map_err(|_| "not a decimal partition count".to_owned())?
        }
        _ => {
            serde_json::from_slice::<Entry>(data)
                .map_err(|e| format!("not TopicBroker JSON: {e}"))?
                .num_parts
        }
    };
    if count <= 0 {
        return Err(format!("numParts {count} is not positive"));
    }
    if count > i64::from(max) {
        return Err(format!("numParts {count} is above the limit of {max}"));
    }
    Ok(count as u32)
}

/// A master node's address: `Ok(None)` when blank.
pub(super) fn parse_master(data: &[u8]) -> Result<Option<BrokerUri>, String> {
    let text = std::str::from_utf8(data).map_err(|_| "not UTF-8 text".to_owned())?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|e| format!("{e}"))
}

fn previous_partitions(previous: Option<&TopicRoute>, id: u32) -> Vec<Partition> {
    previous
        .map(|p| {
            p.partitions
                .iter()
                .filter(|part| part.broker_id == id)
                .copied()
                .collect()
        })
        .unwrap_or_default()
}

/// At most 80 characters of node data, for logs.
fn excerpt(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    let mut out: String = text.chars().take(80).collect();
    if text.chars().count() > 80 {
        out.push('…');
    }
    out
}

/// What changed between two routes, for the `info!` line of an update.
pub(super) fn describe_change(old: Option<&TopicRoute>, new: &TopicRoute) -> String {
    let counts = |route: &TopicRoute| {
        let mut counts = BTreeMap::<u32, usize>::new();
        for p in &route.partitions {
            *counts.entry(p.broker_id).or_default() += 1;
        }
        counts
    };
    let new_counts = counts(new);
    let mut out = String::new();
    let mut say = |text: String| {
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(&text);
    };
    let Some(old) = old else {
        if new.is_empty() {
            say("no broker serves the topic".into());
        }
        for (id, uri) in &new.brokers {
            say(format!(
                "broker {id} at {uri} with {} partition(s)",
                new_counts.get(id).copied().unwrap_or(0)
            ));
        }
        return out;
    };
    let old_counts = counts(old);
    if old.source != new.source {
        say(format!("layout {:?} -> {:?}", old.source, new.source));
    }
    for (id, uri) in &new.brokers {
        let parts = new_counts.get(id).copied().unwrap_or(0);
        match old.brokers.get(id) {
            None => say(format!(
                "broker {id} added at {uri} with {parts} partition(s)"
            )),
            Some(before) => {
                if before != uri {
                    say(format!("broker {id} address changed {before} -> {uri}"));
                }
                let was = old_counts.get(id).copied().unwrap_or(0);
                if was != parts {
                    say(format!("broker {id} partitions {was} -> {parts}"));
                }
            }
        }
    }
    for (id, uri) in &old.brokers {
        if !new.brokers.contains_key(id) {
            say(format!("broker {id} at {uri} removed"));
        }
    }
    if out.is_empty() {
        out.push_str("partitions changed");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_entry_names() {
        assert_eq!(master_entry_id("0-m"), Some(0));
        assert_eq!(master_entry_id("17-m"), Some(17));
        for bad in [
            "0-s0",
            "a-m",
            "-m",
            "0-m-x",
            "0",
            "0-",
            "+1-m",
            "1-M",
            "-1-m",
            "0--m",
            "99999999999-m",
        ] {
            assert_eq!(master_entry_id(bad), None, "{bad}");
        }
        assert!(is_slave_entry("3-s0"));
        assert!(!is_slave_entry("3-s"));
        assert!(!is_slave_entry("3-m"));
    }

    #[test]
    fn partition_counts() {
        let pubs = RouteSource::TopicsPub;
        assert_eq!(
            parse_partition_count(pubs, br#"{"numParts":4,"broker":"0-m"}"#, 1024),
            Ok(4)
        );
        assert_eq!(
            parse_partition_count(
                pubs,
                br#"{ "broker":"0-m", "numParts":2, "extra":[1] }"#,
                1024
            ),
            Ok(2)
        );
        for bad in [
            &br#"{"numParts":0,"broker":"0-m"}"#[..],
            br#"{"numParts":-3,"broker":"0-m"}"#,
            br#"{"numParts":100000,"broker":"0-m"}"#,
            br#"{"numParts":"4","broker":"0-m"}"#,
            br#"{"numParts":4.5}"#,
            br#"{"broker":"0-m"}"#,
            b"{not json",
            b"4",
            b"",
        ] {
            assert!(
                parse_partition_count(pubs, bad, 1024).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let legacy = RouteSource::Legacy;
        assert_eq!(parse_partition_count(legacy, b"4", 1024), Ok(4));
        assert_eq!(parse_partition_count(legacy, b" 8\n", 1024), Ok(8));
        for bad in [&b"0"[..], b"-1", b"x", b"", b"2000", b"\xff"] {
            assert!(parse_partition_count(legacy, bad, 1024).is_err());
        }
    }

    #[test]
    fn master_addresses() {
        assert_eq!(
            parse_master(b"meta://10.0.0.5:8123"),
            Ok(Some(BrokerUri {
                host: "10.0.0.5".into(),
                port: 8123
            }))
        );
        assert_eq!(parse_master(b"  "), Ok(None));
        assert_eq!(parse_master(b""), Ok(None));
        assert!(parse_master(b"http://x:1").is_err());
        assert!(parse_master(b"meta://x").is_err());
        assert!(parse_master(b"\xff").is_err());
    }

    fn route(brokers: &[(u32, &str, u32)]) -> TopicRoute {
        TopicRoute {
            topic: "t".into(),
            brokers: brokers
                .iter()
                .map(|(id, uri, _)| (*id, uri.parse().unwrap()))
                .collect(),
            partitions: brokers
                .iter()
                .flat_map(|(id, _, n)| (0..*n).map(|i| Partition::new(*id, i)))
                .collect(),
            source: RouteSource::TopicsPub,
        }
    }

    #[test]
    fn change_descriptions() {
        let a = route(&[(0, "meta://a:1", 4), (1, "meta://b:1", 2)]);
        assert_eq!(
            describe_change(None, &a),
            "broker 0 at meta://a:1 with 4 partition(s); broker 1 at meta://b:1 with 2 partition(s)"
        );
        assert_eq!(
            describe_change(None, &route(&[])),
            "no broker serves the topic"
        );
        let b = route(&[(0, "meta://a:2", 3), (2, "meta://c:1", 1)]);
        assert_eq!(
            describe_change(Some(&a), &b),
            "broker 0 address changed meta://a:1 -> meta://a:2; broker 0 partitions 4 -> 3; \
             broker 2 added at meta://c:1 with 1 partition(s); broker 1 at meta://b:1 removed"
        );
    }
}
