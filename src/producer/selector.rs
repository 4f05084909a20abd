//! Choosing a partition for a message (docs/protocol.md §2.3).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cluster::Partition;
use crate::Message;

/// What a selector sees for one message.
///
/// Only the producer makes these; a [`PartitionSelector`] reads them.
///
/// # Examples
///
/// A selector that keeps batches of 100 messages on one partition, using
/// the topic's counter:
///
/// ```
/// use std::sync::atomic::Ordering;
/// use metaq::producer::{PartitionSelector, Selection};
/// use metaq::Partition;
///
/// #[derive(Debug)]
/// struct Batches;
/// impl PartitionSelector for Batches {
///     fn select(&self, s: &Selection<'_>) -> Option<Partition> {
///         let batch = s.sequence.fetch_add(1, Ordering::Relaxed) / 100;
///         (!s.partitions.is_empty()).then(|| s.partitions[batch as usize % s.partitions.len()])
///     }
/// }
/// ```
pub struct Selection<'a> {
    /// The message's topic.
    pub topic: &'a str,
    /// Every partition of the topic, sorted by broker id then index.
    pub partitions: &'a [Partition],
    /// The message.
    pub message: &'a Message,
    /// A counter per topic that selectors may use (round-robin does).
    pub sequence: &'a AtomicU64,
    usable: &'a (dyn Fn(Partition) -> bool + Sync),
}

impl<'a> Selection<'a> {
    /// A selection over `partitions` (sorted, as the producer keeps them)
    /// for `message`, with every partition usable. The producer makes its
    /// own; this one is for testing a selector.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::AtomicU64;
    /// use metaq::producer::{PartitionSelector, RoundRobin, Selection};
    /// use metaq::{Message, Partition};
    ///
    /// let partitions = [Partition::new(0, 0), Partition::new(0, 1)];
    /// let message = Message::new("orders", "hello");
    /// let counter = AtomicU64::new(0);
    /// let selection = Selection::new(&partitions, &message, &counter);
    /// assert_eq!(selection.topic, "orders");
    /// // Round-robin starts at index 1, as MetaQ's does.
    /// assert_eq!(RoundRobin.select(&selection), Some(Partition::new(0, 1)));
    /// assert_eq!(RoundRobin.select(&selection), Some(Partition::new(0, 0)));
    /// ```
    pub fn new(partitions: &'a [Partition], message: &'a Message, sequence: &'a AtomicU64) -> Self {
        fn all(_: Partition) -> bool {
            true
        }
        Self {
            topic: message.topic(),
            partitions,
            message,
            sequence,
            usable: &all,
        }
    }

    /// The same selection with only the partitions for which `usable`
    /// holds counted as usable (see [`is_usable`](Self::is_usable)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::AtomicU64;
    /// use metaq::producer::{PartitionSelector, Random, Selection};
    /// use metaq::{Message, Partition};
    ///
    /// let partitions = [Partition::new(0, 0), Partition::new(1, 0)];
    /// let message = Message::new("orders", "hello");
    /// let counter = AtomicU64::new(0);
    /// let broker_1_only = |p: Partition| p.broker_id == 1;
    /// let selection = Selection::new(&partitions, &message, &counter).with_usable(&broker_1_only);
    /// assert!(!selection.is_usable(Partition::new(0, 0)));
    /// assert_eq!(Random.select(&selection), Some(Partition::new(1, 0)));
    /// ```
    pub fn with_usable(self, usable: &'a (dyn Fn(Partition) -> bool + Sync)) -> Self {
        Self { usable, ..self }
    }

    /// Whether the partition's broker is fit to take a message now: its
    /// connection is up, it has not just failed, and this send has not
    /// already tried it. Selectors that may move messages should skip
    /// partitions that are not usable.
    ///
    /// When the selector answers with a partition that is not usable (none
    /// was), it is asked again with looser standards, in turn: connected
    /// and not tried by this send; connected; not tried by this send. The
    /// last answer stands.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::producer::{PartitionSelector, Selection};
    /// use metaq::Partition;
    ///
    /// /// The first usable partition, else the first one.
    /// #[derive(Debug)]
    /// struct FirstUsable;
    /// impl PartitionSelector for FirstUsable {
    ///     fn select(&self, s: &Selection<'_>) -> Option<Partition> {
    ///         let usable = s.partitions.iter().find(|p| s.is_usable(**p));
    ///         usable.or(s.partitions.first()).copied()
    ///     }
    /// }
    /// ```
    pub fn is_usable(&self, partition: Partition) -> bool {
        (self.usable)(partition)
    }
}

impl fmt::Debug for Selection<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selection")
            .field("topic", &self.topic)
            .field("partitions", &self.partitions.len())
            .finish()
    }
}

/// Chooses the partition of each message. Implement it for custom routing.
///
/// ```
/// use metaq::producer::{PartitionSelector, Selection};
/// use metaq::Partition;
///
/// /// Everything to the first partition.
/// #[derive(Debug)]
/// struct First;
/// impl PartitionSelector for First {
///     fn select(&self, s: &Selection<'_>) -> Option<Partition> {
///         s.partitions.first().copied()
///     }
/// }
/// ```
pub trait PartitionSelector: Send + Sync + fmt::Debug + 'static {
    /// One of `selection.partitions`, or `None` if none fits.
    ///
    /// Called for every message (and again for each retry), so it should be
    /// quick; it must not block.
    ///
    /// # Examples
    ///
    /// Audit messages on broker 0, the rest round-robin:
    ///
    /// ```
    /// use metaq::producer::{PartitionSelector, RoundRobin, Selection};
    /// use metaq::Partition;
    ///
    /// #[derive(Debug)]
    /// struct AuditOnZero;
    /// impl PartitionSelector for AuditOnZero {
    ///     fn select(&self, s: &Selection<'_>) -> Option<Partition> {
    ///         match s.message.attribute() {
    ///             Some("audit") => s.partitions.iter().copied().find(|p| p.broker_id == 0),
    ///             _ => RoundRobin.select(s),
    ///         }
    ///     }
    /// }
    /// let builder = metaq::Producer::builder("127.0.0.1:2181").selector(AuditOnZero);
    /// ```
    fn select(&self, selection: &Selection<'_>) -> Option<Partition>;
}

/// The default: each topic's counter walks the sorted partition list, so
/// after `N × partitions` sends every partition has had exactly `N` (while
/// all are usable). As in MetaQ the counter is incremented before use, so the
/// first message goes to index `1 % len`. While some partitions are not
/// usable the counter walks the usable ones alone, so they share the load
/// evenly (each within one of the others).
///
/// # Examples
///
/// ```
/// use metaq::producer::RoundRobin;
/// // The default; setting it is only needed to undo another selector.
/// let builder = metaq::Producer::builder("127.0.0.1:2181").selector(RoundRobin);
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct RoundRobin;

impl PartitionSelector for RoundRobin {
    fn select(&self, s: &Selection<'_>) -> Option<Partition> {
        let n = s.partitions.len();
        if n == 0 {
            return None;
        }
        let usable = s.partitions.iter().filter(|p| s.is_usable(**p)).count();
        if usable == 0 {
            // Nothing usable: answer without using up a turn, so that the
            // looser tier asked next sees the turns in order.
            let turn = s.sequence.load(Ordering::Relaxed).wrapping_add(1);
            return Some(s.partitions[(turn % n as u64) as usize]);
        }
        let turn = s.sequence.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        if usable == n {
            return Some(s.partitions[(turn % n as u64) as usize]);
        }
        // Some are down: count turns over the usable ones alone. Handing a
        // down partition's turn to the next usable one instead would pile
        // all of a dead broker's turns onto the partition that follows it.
        let k = (turn % usable as u64) as usize;
        s.partitions
            .iter()
            .copied()
            .filter(|p| s.is_usable(*p))
            .nth(k)
    }
}

/// A uniformly random usable partition.
///
/// # Examples
///
/// ```
/// use metaq::producer::Random;
/// let builder = metaq::Producer::builder("127.0.0.1:2181").selector(Random);
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct Random;

impl PartitionSelector for Random {
    fn select(&self, s: &Selection<'_>) -> Option<Partition> {
        let usable: Vec<Partition> = s
            .partitions
            .iter()
            .copied()
            .filter(|p| s.is_usable(*p))
            .collect();
        let pool = if usable.is_empty() {
            s.partitions
        } else {
            &usable
        };
        (!pool.is_empty()).then(|| pool[fastrand::usize(..pool.len())])
    }
}

/// Same key, same partition, while the topic's partition set is unchanged:
/// `partitions[fnv1a_32(key) % len]` over the sorted list, so every producer
/// (in any language using the same hash) maps a key the same way. The hash
/// is 32-bit FNV-1a of the key bytes. Never skips a partition: ordering per
/// key matters more than availability. Messages without a key go round-robin.
///
/// ```
/// use metaq::producer::KeyHash;
/// assert_eq!(KeyHash::hash(b"a"), 0xe40c292c);
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHash;

impl KeyHash {
    /// 32-bit FNV-1a.
    ///
    /// Public so that other code can tell which partition a key goes to.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::producer::KeyHash;
    /// assert_eq!(KeyHash::hash(b""), 0x811c_9dc5); // the FNV offset basis
    /// assert_eq!(KeyHash::hash(b"foobar"), 0xbf9c_f968); // a published test vector
    /// // The partition of a key among 6 (sorted) partitions:
    /// let index = KeyHash::hash(b"customer-42") as usize % 6;
    /// assert_eq!(index, 0xfe68_adbe % 6);
    /// ```
    pub fn hash(key: &[u8]) -> u32 {
        key.iter().fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
        })
    }
}

impl PartitionSelector for KeyHash {
    fn select(&self, s: &Selection<'_>) -> Option<Partition> {
        match s.message.key() {
            Some(key) if !s.partitions.is_empty() => {
                Some(s.partitions[Self::hash(key) as usize % s.partitions.len()])
            }
            _ => RoundRobin.select(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> Vec<Partition> {
        (0..2)
            .flat_map(|b| (0..3).map(move |i| Partition::new(b, i)))
            .collect()
    }

    #[test]
    fn round_robin_is_exact() {
        let parts = parts();
        let seq = AtomicU64::new(0);
        let msg = Message::new("t", "x");
        let mut counts = std::collections::HashMap::new();
        for _ in 0..600 {
            let s = Selection::new(&parts, &msg, &seq);
            *counts.entry(RoundRobin.select(&s).unwrap()).or_insert(0) += 1;
        }
        assert!(counts.values().all(|c| *c == 100));
        // MetaQ's first pick is index 1.
        let seq = AtomicU64::new(0);
        assert_eq!(
            RoundRobin.select(&Selection::new(&parts, &msg, &seq)),
            Some(Partition::new(0, 1))
        );
    }

    #[test]
    fn round_robin_skips_unusable_brokers() {
        let parts = parts();
        let seq = AtomicU64::new(0);
        let msg = Message::new("t", "x");
        let not_zero = |p: Partition| p.broker_id != 0;
        for _ in 0..20 {
            let s = Selection::new(&parts, &msg, &seq).with_usable(&not_zero);
            assert_eq!(RoundRobin.select(&s).unwrap().broker_id, 1);
        }
        // Nothing usable: still answers (the send will report the failure).
        let none = |_| false;
        assert!(RoundRobin
            .select(&Selection::new(&parts, &msg, &seq).with_usable(&none))
            .is_some());
    }

    /// Counts of `sends` round-robin choices over `parts` with `usable`.
    fn spread(
        parts: &[Partition],
        usable: &(dyn Fn(Partition) -> bool + Sync),
        sends: usize,
    ) -> std::collections::BTreeMap<Partition, usize> {
        let seq = AtomicU64::new(0);
        let msg = Message::new("t", "x");
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..sends {
            let s = Selection::new(parts, &msg, &seq).with_usable(usable);
            *counts.entry(RoundRobin.select(&s).unwrap()).or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn round_robin_spreads_a_down_brokers_turns_evenly() {
        // The issue's case: broker 1 of two (3 partitions each) down.
        let not_one = |p: Partition| p.broker_id != 1;
        let counts = spread(&parts(), &not_one, 1000 * 3);
        assert_eq!(counts.len(), 3, "{counts:?}");
        assert!(counts.values().all(|c| *c == 1000), "{counts:?}");
        // Layouts where the down partitions are not a whole cycle's tail:
        // within one of each other after every prefix of N × usable sends.
        let five: Vec<Partition> = (0..5).map(|i| Partition::new(i, 0)).collect();
        for down in 0..5u32 {
            let up = move |p: Partition| p.broker_id != down;
            for sends in [4, 8, 12, 40, 4000] {
                let counts = spread(&five, &up, sends);
                assert_eq!(counts.len(), 4, "down {down}: {counts:?}");
                let (min, max) = (counts.values().min(), counts.values().max());
                assert!(
                    max.unwrap() - min.unwrap() <= 1,
                    "down {down}, {sends} sends: {counts:?}"
                );
            }
        }
    }

    #[test]
    fn round_robin_with_nothing_usable_keeps_its_turn() {
        // The producer asks again with a looser tier when nothing was usable;
        // the failed ask must not use a turn, or every second turn is lost.
        let parts = parts();
        let seq = AtomicU64::new(0);
        let msg = Message::new("t", "x");
        let none = |_: Partition| false;
        let all = |_: Partition| true;
        let mut counts = std::collections::HashMap::new();
        for _ in 0..600 {
            let strict = Selection::new(&parts, &msg, &seq).with_usable(&none);
            assert!(RoundRobin.select(&strict).is_some());
            let loose = Selection::new(&parts, &msg, &seq).with_usable(&all);
            *counts
                .entry(RoundRobin.select(&loose).unwrap())
                .or_insert(0) += 1;
        }
        assert!(counts.values().all(|c| *c == 100), "{counts:?}");
    }

    #[test]
    fn key_hash_is_stable_and_ignores_usability() {
        let parts = parts();
        let seq = AtomicU64::new(0);
        let msg = Message::new("t", "x").with_key("customer-42");
        let none = |_| false;
        let first = KeyHash.select(&Selection::new(&parts, &msg, &seq).with_usable(&none));
        for _ in 0..10 {
            assert_eq!(
                KeyHash.select(&Selection::new(&parts, &msg, &seq).with_usable(&none)),
                first
            );
        }
        assert_eq!(
            first,
            Some(parts[KeyHash::hash(b"customer-42") as usize % 6])
        );
    }

    #[test]
    fn random_prefers_usable() {
        let parts = parts();
        let seq = AtomicU64::new(0);
        let msg = Message::new("t", "x");
        let only = |p: Partition| p == Partition::new(1, 2);
        for _ in 0..50 {
            let s = Selection::new(&parts, &msg, &seq).with_usable(&only);
            assert_eq!(Random.select(&s), Some(Partition::new(1, 2)));
        }
    }
}
