//! How a [`LocalStore`](super::LocalStore) bounds itself and when it syncs.

use std::num::NonZeroU32;

/// When the store calls `fsync` on what it wrote.
///
/// Every append is one `write` of the whole record straight to the file (no
/// user-space buffer), so once [`append`](super::LocalStore::append) returns
/// the record is in the operating system and survives a crash *of the
/// process* under every policy. The policies differ only in what survives a
/// crash *of the machine* (power loss, kernel panic).
///
/// Acknowledgements ([`ack_front`](super::LocalStore::ack_front)) follow the
/// same policy for the cursor file; a lost acknowledgement only means the
/// message is given out again (a duplicate), never that one is lost.
///
/// # Examples
///
/// ```
/// use std::num::NonZeroU32;
/// use metaq::local_store::FsyncPolicy;
/// assert_eq!(FsyncPolicy::default(), FsyncPolicy::EveryAppend);
/// let relaxed = FsyncPolicy::EveryN(NonZeroU32::new(100).unwrap());
/// assert_ne!(relaxed, FsyncPolicy::Never);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// `fsync` the segment after every append, the cursor after every
    /// acknowledgement, and the directory whenever a file is created: a
    /// message the store accepted survives power loss. The slowest choice:
    /// one disk flush per message and per acknowledgement (on an ext4
    /// virtual disk, about 0.2 ms an append and 0.15 ms an
    /// acknowledgement, against a few µs with `Never`).
    #[default]
    EveryAppend,
    /// `fsync` a queue's segment after every `n`th append to that queue,
    /// when a segment is rolled, and on [`sync`](super::LocalStore::sync)
    /// and drop; its cursor after every `n`th acknowledgement. Power loss
    /// can lose the last `n - 1` messages appended to each queue since its
    /// last sync (and give up to `n - 1` acknowledged ones again).
    EveryN(NonZeroU32),
    /// Never `fsync`; the operating system writes back when it likes
    /// (typically within 30 s on Linux), and [`sync`](super::LocalStore::sync)
    /// does nothing. Power loss can lose anything not yet written back, and
    /// recovery then drops the damaged tail.
    Never,
}

/// Bounds and durability of a [`LocalStore`](super::LocalStore).
///
/// Built from [`Default`] with the builder methods.
///
/// | setting | default |
/// |---|---|
/// | [`segment_bytes`](Self::segment_bytes) | 16 MiB |
/// | [`max_bytes`](Self::max_bytes) | 1 GiB over all queues |
/// | [`max_messages_per_queue`](Self::max_messages_per_queue) | no bound (Java's one-way store: 500000) |
/// | [`max_record_bytes`](Self::max_record_bytes) | 16 MiB + 64 KiB |
/// | [`fsync`](Self::fsync) | [`FsyncPolicy::EveryAppend`] |
///
/// # Examples
///
/// ```
/// use metaq::local_store::{FsyncPolicy, LocalStoreConfig};
/// let config = LocalStoreConfig::default()
///     .max_bytes(64 << 20)
///     .max_messages_per_queue(Some(500_000))
///     .fsync(FsyncPolicy::Never);
/// assert_eq!(config.get_max_bytes(), 64 << 20);
/// assert_eq!(config.get_segment_bytes(), 16 << 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalStoreConfig {
    pub(crate) segment_bytes: u64,
    pub(crate) max_bytes: u64,
    pub(crate) max_messages_per_queue: Option<u64>,
    pub(crate) max_record_bytes: usize,
    pub(crate) fsync: FsyncPolicy,
}

impl Default for LocalStoreConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 16 << 20,
            max_bytes: 1 << 30,
            max_messages_per_queue: None,
            max_record_bytes: (16 << 20) + (64 << 10),
            fsync: FsyncPolicy::EveryAppend,
        }
    }
}

impl LocalStoreConfig {
    /// A segment file is closed and a new one begun when the next record
    /// would take it past this many bytes (a bigger record gets a segment of
    /// its own). Consumed space is given back a whole segment at a time.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = metaq::local_store::LocalStoreConfig::default().segment_bytes(1 << 20);
    /// assert_eq!(c.get_segment_bytes(), 1 << 20);
    /// ```
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes.max(1);
        self
    }

    /// Bound on the bytes held over all queues (records not yet
    /// acknowledged, headers included). An append past it fails with
    /// [`Error::LocalStoreFull`](crate::Error::LocalStoreFull). Disk use can
    /// exceed it by the acknowledged part of each queue's oldest segment.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = metaq::local_store::LocalStoreConfig::default().max_bytes(1 << 20);
    /// assert_eq!(c.get_max_bytes(), 1 << 20);
    /// ```
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Bound on the messages held by one (topic, partition) queue; `None`
    /// for no bound. Java's one-way store kept at most 500000.
    ///
    /// An append past it fails with
    /// [`Error::LocalStoreFull`](crate::Error::LocalStoreFull) too; its
    /// `held_bytes` and `limit_bytes` are then still the store's byte
    /// totals, which may be under the byte bound.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = metaq::local_store::LocalStoreConfig::default().max_messages_per_queue(Some(10));
    /// assert_eq!(c.get_max_messages_per_queue(), Some(10));
    /// ```
    pub fn max_messages_per_queue(mut self, messages: Option<u64>) -> Self {
        self.max_messages_per_queue = messages;
        self
    }

    /// Largest record, header included. Appending a bigger message fails
    /// with [`Error::MessageTooLarge`](crate::Error::MessageTooLarge), and
    /// recovery treats a length field above it as damage, so a corrupt
    /// length never makes the store allocate more than this.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = metaq::local_store::LocalStoreConfig::default().max_record_bytes(4 << 20);
    /// assert_eq!(c.get_max_record_bytes(), 4 << 20);
    /// ```
    pub fn max_record_bytes(mut self, bytes: usize) -> Self {
        self.max_record_bytes = bytes.min(u32::MAX as usize);
        self
    }

    /// When written data is flushed to disk; see [`FsyncPolicy`].
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::local_store::{FsyncPolicy, LocalStoreConfig};
    /// let c = LocalStoreConfig::default().fsync(FsyncPolicy::Never);
    /// assert_eq!(c.get_fsync(), FsyncPolicy::Never);
    /// ```
    pub fn fsync(mut self, policy: FsyncPolicy) -> Self {
        self.fsync = policy;
        self
    }

    /// See [`segment_bytes`](Self::segment_bytes).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(metaq::local_store::LocalStoreConfig::default().get_segment_bytes(), 16 << 20);
    /// ```
    pub fn get_segment_bytes(&self) -> u64 {
        self.segment_bytes
    }

    /// See [`max_bytes`](Self::max_bytes).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(metaq::local_store::LocalStoreConfig::default().get_max_bytes(), 1 << 30);
    /// ```
    pub fn get_max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// See [`max_messages_per_queue`](Self::max_messages_per_queue).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(metaq::local_store::LocalStoreConfig::default().get_max_messages_per_queue(), None);
    /// ```
    pub fn get_max_messages_per_queue(&self) -> Option<u64> {
        self.max_messages_per_queue
    }

    /// See [`max_record_bytes`](Self::max_record_bytes).
    ///
    /// # Examples
    ///
    /// ```
    /// let c = metaq::local_store::LocalStoreConfig::default();
    /// assert_eq!(c.get_max_record_bytes(), (16 << 20) + (64 << 10));
    /// ```
    pub fn get_max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }

    /// See [`fsync`](Self::fsync).
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::local_store::{FsyncPolicy, LocalStoreConfig};
    /// assert_eq!(LocalStoreConfig::default().get_fsync(), FsyncPolicy::EveryAppend);
    /// ```
    pub fn get_fsync(&self) -> FsyncPolicy {
        self.fsync
    }
}
