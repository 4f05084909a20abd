//! [`MessageStore`]: the handle the broker appends through.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::oneshot;

use super::config::StoreConfig;
use super::partition::Partition;
use super::record::{Record, MAX_BODY_LEN};
use super::segment::{check_topic, list_partitions};
use super::writer::{self, Request, WriterHandle, DROP_WAIT};

/// The broker's message store: one append-only log per partition, in MetaQ's
/// on-disk layout (see the [module docs](super)).
///
/// Cheap to clone (an `Arc` inside) and thread-safe. Each partition has its
/// own writer thread, so appends never block a tokio worker on disk I/O.
/// Dropping the last handle stops the writers after they wrote and forced
/// everything queued, waiting at most 5 seconds for them; call
/// [`close`](MessageStore::close) to wait as long as it takes.
///
/// ```
/// use metaq_broker::store::{read_records, MessageStore, Record, StoreConfig};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let dir = tempfile::tempdir()?;
/// let store = MessageStore::open(StoreConfig::new(dir.path()))?;
/// let offsets = store
///     .append("orders", 0, vec![Record::new(1, 0, "a"), Record::new(2, 0, "bc")])
///     .await?;
/// assert_eq!(offsets, [0, 21]);
/// assert_eq!(store.next_offset("orders", 0), Some(43));
/// store.close().await;
///
/// let records = read_records(dir.path(), None)?;
/// assert_eq!(records.len(), 2);
/// assert!(dir.path().join("orders-0/00000000000000000000.meta").is_file());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MessageStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: StoreConfig,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    closed: bool,
    /// topic → partition → writer. Nested so that lookups take a `&str`.
    partitions: HashMap<String, BTreeMap<u32, WriterHandle>>,
}

fn closed_error() -> io::Error {
    io::Error::other("message store is closed")
}

impl MessageStore {
    /// Opens (creating) `data_dir`, finds every existing partition directory
    /// and recovers it: scans the last segment, truncates at the first
    /// incomplete or checksum-invalid record (a torn write), logs with
    /// `tracing::warn` what it cut. Next offsets continue after the last good
    /// record.
    ///
    /// Directories whose names are not `<topic>-<partition>` with a valid
    /// topic are left alone. Only the last segment is scanned: earlier ones
    /// were forced to disk before the next was started.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// use metaq_broker::store::{MessageStore, Record, StoreConfig};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let dir = tempfile::tempdir()?;
    /// let store = MessageStore::open(StoreConfig::new(dir.path()))?;
    /// store.append("orders", 0, vec![Record::new(1, 0, "a")]).await?;
    /// store.close().await;
    /// // A crash in the middle of a write leaves half a record behind.
    /// let segment = dir.path().join("orders-0/00000000000000000000.meta");
    /// std::fs::OpenOptions::new().append(true).open(&segment)?.write_all(&[0, 0, 0, 9, 1])?;
    /// let store = MessageStore::open(StoreConfig::new(dir.path()))?;
    /// assert_eq!(store.next_offset("orders", 0), Some(21)); // the torn tail is cut
    /// # Ok(())
    /// # }
    /// ```
    pub fn open(config: StoreConfig) -> io::Result<MessageStore> {
        std::fs::create_dir_all(&config.data_dir)?;
        let mut state = State::default();
        for found in list_partitions(&config.data_dir)? {
            let fsyncs = Arc::new(AtomicU64::new(0));
            let partition =
                Partition::open(found.path, config.max_segment_size, Arc::clone(&fsyncs))?;
            tracing::debug!(
                topic = %found.topic,
                partition = found.partition,
                next_offset = partition.next_offset(),
                "recovered partition"
            );
            let handle = writer::spawn(
                config.data_dir.clone(),
                &found.topic,
                found.partition,
                config.max_segment_size,
                config.flush,
                Some((partition, fsyncs)),
            )?;
            state
                .partitions
                .entry(found.topic)
                .or_default()
                .insert(found.partition, handle);
        }
        Ok(MessageStore {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(state),
            }),
        })
    }

    /// The configuration the store was opened with.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq_broker::store::{MessageStore, StoreConfig};
    /// # fn main() -> std::io::Result<()> {
    /// let dir = tempfile::tempdir()?;
    /// let store = MessageStore::open(StoreConfig::new(dir.path()))?;
    /// assert_eq!(store.config().data_dir, dir.path());
    /// # Ok(())
    /// # }
    /// ```
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// Appends `records` contiguously, in order, to `<topic>-<partition>`
    /// (created on first use), and returns each record's offset.
    ///
    /// The records are queued when `append` is called, not when the future is
    /// first polled, so appends to one partition land in call order; dropping
    /// the future does not withdraw them. With [`FlushPolicy::Group`] the
    /// future resolves only after an fsync covering these records; with the
    /// other policies, once they are written.
    ///
    /// An empty `records` resolves to an empty `Vec` without touching disk.
    ///
    /// # Errors
    ///
    /// * `InvalidInput` for a topic that is not a safe directory name (see
    ///   [`validate_topic`](metaq::protocol::validate_topic)) or a body over
    ///   [`MAX_BODY_LEN`]; nothing is written.
    /// * Any I/O error of the write or the fsync. A failed append leaves no
    ///   record behind. After a failed fsync the partition refuses all later
    ///   appends, since what reached the disk is then unknown.
    /// * An error once the store is closed.
    ///
    /// [`FlushPolicy::Group`]: super::FlushPolicy::Group
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq_broker::store::{MessageStore, Record, StoreConfig};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = MessageStore::open(StoreConfig::new(dir.path()))?;
    /// let offsets = store.append("orders", 0, vec![Record::new(1, 0, "hello")]).await?;
    /// assert_eq!(offsets, [0]);
    /// let offsets = store.append("orders", 0, vec![Record::new(2, 0, "again")]).await?;
    /// assert_eq!(offsets, [25]); // 20-byte header + 5-byte body before it
    /// // A topic that is not a safe directory name is refused.
    /// let err = store.append("a/b", 0, vec![Record::new(3, 0, "x")]).await.unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    /// # Ok(())
    /// # }
    /// ```
    pub fn append(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
    ) -> impl Future<Output = io::Result<Vec<i64>>> + Send + 'static + use<> {
        let queued = self.enqueue(topic, partition, records);
        async move {
            match queued? {
                None => Ok(Vec::new()),
                Some(reply) => reply.await.unwrap_or_else(|_| {
                    Err(io::Error::other(
                        "the partition writer stopped before answering",
                    ))
                }),
            }
        }
    }

    /// Checks and queues an append; `None` when there is nothing to write.
    fn enqueue(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
    ) -> io::Result<Option<oneshot::Receiver<io::Result<Vec<i64>>>>> {
        if records.is_empty() {
            return Ok(None);
        }
        check_topic(topic)?;
        if let Some(big) = records.iter().find(|r| r.body.len() > MAX_BODY_LEN) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "body of {} bytes is over the store's {MAX_BODY_LEN}-byte limit",
                    big.body.len()
                ),
            ));
        }
        let (reply, answer) = oneshot::channel();
        let mut state = self.inner.lock();
        if state.closed {
            return Err(closed_error());
        }
        let config = &self.inner.config;
        // Allocate the topic's name only the first time it is seen.
        if !state.partitions.contains_key(topic) {
            state
                .partitions
                .insert(topic.to_owned(), Default::default());
        }
        let writers = state
            .partitions
            .get_mut(topic)
            .expect("inserted just above");
        let handle = match writers.entry(partition) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(writer::spawn(
                config.data_dir.clone(),
                topic,
                partition,
                config.max_segment_size,
                config.flush,
                None,
            )?),
        };
        // Sent under the lock, so `close` cannot slip in between the check
        // above and the send: every accepted append is ahead of the close.
        let sender = handle.requests.as_ref().ok_or_else(closed_error)?;
        sender
            .send(Request { records, reply })
            .map_err(|_| io::Error::other("the partition writer has stopped"))?;
        Ok(Some(answer))
    }

    /// Number of bytes in the partition log, which is the offset the next
    /// record will get; `None` if the partition was never created (not found
    /// on disk at open, and no append to it attempted since). Appends in
    /// flight are counted once written.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq_broker::store::{MessageStore, Record, StoreConfig};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = MessageStore::open(StoreConfig::new(dir.path()))?;
    /// assert_eq!(store.next_offset("orders", 0), None);
    /// store.append("orders", 0, vec![Record::new(1, 0, "hello")]).await?;
    /// assert_eq!(store.next_offset("orders", 0), Some(25));
    /// # Ok(())
    /// # }
    /// ```
    pub fn next_offset(&self, topic: &str, partition: u32) -> Option<i64> {
        let state = self.inner.lock();
        let handle = state.partitions.get(topic)?.get(&partition)?;
        Some(handle.next_offset.load(Ordering::Acquire))
    }

    /// Every partition the store knows, sorted by (topic, partition). At
    /// start-up the broker registers in ZooKeeper those of these topics its
    /// configuration accepts.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq_broker::store::{MessageStore, Record, StoreConfig};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = MessageStore::open(StoreConfig::new(dir.path()))?;
    /// store.append("payments", 1, vec![Record::new(1, 0, "a")]).await?;
    /// store.append("orders", 0, vec![Record::new(2, 0, "b")]).await?;
    /// assert_eq!(store.partitions(), [("orders".to_string(), 0), ("payments".to_string(), 1)]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn partitions(&self) -> Vec<(String, u32)> {
        let state = self.inner.lock();
        let mut all: Vec<_> = state
            .partitions
            .iter()
            .flat_map(|(topic, writers)| writers.keys().map(|&p| (topic.clone(), p)))
            .collect();
        all.sort();
        all
    }

    /// Successful fsyncs of a partition's files so far, for tests of the
    /// flush policies. Not part of the stable API.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq_broker::store::{MessageStore, Record, StoreConfig};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = MessageStore::open(StoreConfig::new(dir.path()))?;
    /// // Group commit (the default) forces the file before answering.
    /// store.append("orders", 0, vec![Record::new(1, 0, "a")]).await?;
    /// assert!(store.fsync_count("orders", 0).unwrap() >= 1);
    /// # Ok(())
    /// # }
    /// ```
    #[doc(hidden)]
    pub fn fsync_count(&self, topic: &str, partition: u32) -> Option<u64> {
        let state = self.inner.lock();
        let handle = state.partitions.get(topic)?.get(&partition)?;
        Some(handle.fsyncs.load(Ordering::Relaxed))
    }

    /// Stops accepting appends, writes and fsyncs everything queued, and
    /// waits for the writer threads to stop. Idempotent; a second call waits
    /// for the same writers. Appends after close fail with an `io::Error`.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq_broker::store::{MessageStore, Record, StoreConfig};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = MessageStore::open(StoreConfig::new(dir.path()))?;
    /// store.append("orders", 0, vec![Record::new(1, 0, "a")]).await?;
    /// store.close().await;
    /// assert!(store.append("orders", 0, vec![Record::new(2, 0, "b")]).await.is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn close(&self) {
        let exits: Vec<_> = {
            let mut state = self.inner.lock();
            state.closed = true;
            state
                .partitions
                .values_mut()
                .flat_map(BTreeMap::values_mut)
                .map(|handle| {
                    // Dropping the only sender lets the writer drain and stop.
                    handle.requests = None;
                    handle.exited.clone()
                })
                .collect()
        };
        for exited in exits {
            // Err means the writer is gone, which is what we wait for.
            let _ = exited.await;
        }
    }
}

impl Inner {
    /// The state lock. Nothing panics while holding it, but if something ever
    /// did, the map itself is still consistent, so carry on.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Inner {
    /// Lets every writer drain, force and stop, waiting a bounded time so a
    /// hung disk cannot hang the process; a writer still busy then finishes
    /// on its own.
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let mut waiting = Vec::new();
        for handle in state.partitions.values_mut().flat_map(BTreeMap::values_mut) {
            handle.requests = None;
            waiting.push(&handle.exited_blocking);
        }
        let deadline = Instant::now() + DROP_WAIT;
        for exited in waiting {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = exited.recv_timeout(left) {
                tracing::warn!(
                    data_dir = %self.config.data_dir.display(),
                    "message store dropped while a writer was still flushing; not waiting longer"
                );
                break;
            }
        }
    }
}

impl fmt::Debug for MessageStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.lock();
        f.debug_struct("MessageStore")
            .field("config", &self.inner.config)
            .field("closed", &state.closed)
            .field(
                "partitions",
                &state.partitions.values().map(BTreeMap::len).sum::<usize>(),
            )
            .finish()
    }
}
