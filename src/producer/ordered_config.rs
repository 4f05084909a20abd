//! Settings of an [`OrderedProducer`](super::OrderedProducer): where its
//! local store lives, how big it may grow, how often it replays, and the
//! partition layout of each topic (Java's `topic.num.<topic>`,
//! docs/protocol.md §2.9).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::cluster::Partition;
use crate::error::{Error, Result};
use crate::local_store::LocalStoreConfig;

/// The default [`OrderedConfig::replay_interval`]: how often stored
/// messages are tried again when nothing else triggers a replay.
pub const DEFAULT_REPLAY_INTERVAL: Duration = Duration::from_secs(1);

/// Settings of an [`OrderedProducer`](super::OrderedProducer), for
/// [`Producer::ordered`](super::Producer::ordered).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use metaq::local_store::LocalStoreConfig;
/// use metaq::producer::OrderedConfig;
/// let config = OrderedConfig::new("/var/lib/billing/metaq-ordered")
///     .store(LocalStoreConfig::default().max_bytes(256 << 20))
///     .layout("payments", "0:4;1:4")? // brokers 0 and 1, four partitions each
///     .replay_interval(Duration::from_millis(500));
/// assert_eq!(config.partitions_of("payments").unwrap().len(), 8);
/// # Ok::<(), metaq::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct OrderedConfig {
    pub(crate) dir: PathBuf,
    pub(crate) store: LocalStoreConfig,
    pub(crate) layouts: HashMap<String, Vec<Partition>>,
    pub(crate) replay_interval: Duration,
}

impl OrderedConfig {
    /// Settings whose local store is the directory `dir` (created if
    /// missing; Java's default is `~/.meta_localmessage`). Everything else
    /// at its default: [`LocalStoreConfig::default`], no configured
    /// layouts, replay every [`DEFAULT_REPLAY_INTERVAL`].
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::producer::OrderedConfig;
    /// let config = OrderedConfig::new("/tmp/metaq-ordered");
    /// assert!(config.partitions_of("orders").is_none());
    /// ```
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        OrderedConfig {
            dir: dir.into(),
            store: LocalStoreConfig::default(),
            layouts: HashMap::new(),
            replay_interval: DEFAULT_REPLAY_INTERVAL,
        }
    }

    /// The local store's settings: its size bound, segment size and fsync
    /// policy (see [`LocalStoreConfig`] for each default).
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::local_store::{FsyncPolicy, LocalStoreConfig};
    /// use metaq::producer::OrderedConfig;
    /// let config = OrderedConfig::new("/tmp/metaq-ordered")
    ///     .store(LocalStoreConfig::default().fsync(FsyncPolicy::Never));
    /// ```
    pub fn store(mut self, store: LocalStoreConfig) -> Self {
        self.store = store;
        self
    }

    /// How often stored messages are tried again when no route change or
    /// send triggers it. Default [`DEFAULT_REPLAY_INTERVAL`] (Java: 5 min).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use metaq::producer::OrderedConfig;
    /// let config = OrderedConfig::new("/tmp/metaq-ordered").replay_interval(Duration::from_secs(5));
    /// ```
    pub fn replay_interval(mut self, interval: Duration) -> Self {
        self.replay_interval = interval;
        self
    }

    /// The partitions of `topic`, as Java's `topic.num.<topic>` value
    /// `<brokerId>:<count>;<brokerId>:<count>;...`: broker `b` with `n`
    /// partitions gives `b-0 .. b-(n-1)`, and the whole list is sorted.
    /// A key always maps to the same partition of this list, whether or not
    /// the partition is available now.
    ///
    /// Without a layout, a topic's layout is the partitions ZooKeeper lists
    /// at its first ordered send, kept for the producer's life (a broker
    /// that is down at that moment is then missing from it: configure the
    /// layout where that matters).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for text that is not such a list, or an empty one.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::producer::OrderedConfig;
    /// let config = OrderedConfig::new("/tmp/o").layout("orders", "1:2;0:1")?;
    /// let names: Vec<String> = config.partitions_of("orders").unwrap().iter().map(|p| p.to_string()).collect();
    /// assert_eq!(names, ["0-0", "1-0", "1-1"]);
    /// assert!(OrderedConfig::new("/tmp/o").layout("orders", "0:x").is_err());
    /// # Ok::<(), metaq::Error>(())
    /// ```
    pub fn layout(mut self, topic: &str, layout: &str) -> Result<Self> {
        let partitions = parse_layout(layout).map_err(|reason| Error::Config {
            reason: format!("layout of topic {topic:?} ({layout:?}): {reason}"),
        })?;
        self.layouts.insert(topic.to_owned(), partitions);
        Ok(self)
    }

    /// Every `topic.num.<topic>=<layout>` line of a Java client properties
    /// text (other lines, blank lines and `#` comments are skipped).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a `topic.num.` line whose value is not a layout.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::producer::OrderedConfig;
    /// let properties = "# ordered topics\ntopic.num.orders=0:2;1:2\nzk.zkConnect=zk1:2181\n";
    /// let config = OrderedConfig::new("/tmp/o").layouts_from_properties(properties)?;
    /// assert_eq!(config.partitions_of("orders").unwrap().len(), 4);
    /// # Ok::<(), metaq::Error>(())
    /// ```
    pub fn layouts_from_properties(mut self, text: &str) -> Result<Self> {
        for line in text.lines().map(str::trim) {
            let Some(rest) = line.strip_prefix("topic.num.") else {
                continue;
            };
            let Some((topic, layout)) = rest.split_once(['=', ':']).filter(|(t, _)| !t.is_empty())
            else {
                return Err(Error::Config {
                    reason: format!("{line:?} is not topic.num.<topic>=<layout>"),
                });
            };
            self = self.layout(topic.trim(), layout.trim())?;
        }
        Ok(self)
    }

    /// The configured partitions of `topic`, if a layout was given.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::producer::OrderedConfig;
    /// let config = OrderedConfig::new("/tmp/o").layout("orders", "3:1")?;
    /// assert_eq!(config.partitions_of("orders").unwrap()[0].to_string(), "3-0");
    /// # Ok::<(), metaq::Error>(())
    /// ```
    pub fn partitions_of(&self, topic: &str) -> Option<&[Partition]> {
        self.layouts.get(topic).map(Vec::as_slice)
    }
}

/// Partitions no layout may exceed (a typo such as `0:100000000` would
/// otherwise allocate a list of that size).
const MAX_LAYOUT_PARTITIONS: u32 = 65_536;

/// `<brokerId>:<count>;...` as a sorted partition list.
fn parse_layout(layout: &str) -> std::result::Result<Vec<Partition>, String> {
    let mut partitions = Vec::new();
    for part in layout.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (broker, count) = part
            .split_once(':')
            .ok_or_else(|| format!("{part:?} is not <brokerId>:<count>"))?;
        let broker: u32 = broker
            .trim()
            .parse()
            .map_err(|_| format!("broker id {broker:?} is not a number"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("count {count:?} is not a number"))?;
        if partitions.len() as u64 + u64::from(count) > u64::from(MAX_LAYOUT_PARTITIONS) {
            return Err(format!("more than {MAX_LAYOUT_PARTITIONS} partitions"));
        }
        partitions.extend((0..count).map(|index| Partition::new(broker, index)));
    }
    if partitions.is_empty() {
        return Err("no partitions".into());
    }
    partitions.sort();
    partitions.dedup();
    Ok(partitions)
}

#[cfg(test)]
mod tests {
    use super::parse_layout;

    #[test]
    fn layouts_parse_as_java_expands_them() {
        let names = |text| {
            parse_layout(text).map(|ps| ps.iter().map(|p| p.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(names("0:2;1:1").unwrap(), ["0-0", "0-1", "1-0"]);
        assert_eq!(names(" 1:1 ; 0:1 ;").unwrap(), ["0-0", "1-0"]);
        for bad in ["", "0", "0:", "x:1", "0:-1", "0:0", "0:70000"] {
            assert!(names(bad).is_err(), "{bad:?}");
        }
    }
}
