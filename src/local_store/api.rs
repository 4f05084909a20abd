//! [`LocalStore`]: the queues of one directory behind one handle.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use super::config::{FsyncPolicy, LocalStoreConfig};
use super::dir_lock::{lock_dir, LOCK_FILE};
use super::fsio::{io_error, sync_dir};
use super::name::{dir_name, parse_dir_name};
use super::queue::Queue;
use super::recovery;
use crate::error::{Error, Result};
use crate::Message;

/// A message given back by the store, with its sequence number in its queue.
///
/// # Examples
///
/// ```
/// # use metaq::local_store::{LocalStore, LocalStoreConfig};
/// # let dir = std::env::temp_dir().join(format!("metaq-doc-{}-stored", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let store = LocalStore::open(&dir, LocalStoreConfig::default())?;
/// let seq = store.append("0-1", &metaq::Message::new("orders", "x"))?;
/// let stored = store.peek_front("orders", "0-1")?.unwrap();
/// assert_eq!((stored.seq, stored.message.payload().as_ref()), (seq, &b"x"[..]));
/// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), metaq::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredMessage {
    /// Its sequence number: increasing within the queue, never reused.
    pub seq: u64,
    /// The message as appended.
    pub message: Message,
}

/// What one queue holds; see [`LocalStore::holdings`].
///
/// # Examples
///
/// ```
/// # use metaq::local_store::{LocalStore, LocalStoreConfig};
/// # let dir = std::env::temp_dir().join(format!("metaq-doc-{}-holdings", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let store = LocalStore::open(&dir, LocalStoreConfig::default())?;
/// store.append("-1--1", &metaq::Message::new("orders", "x"))?;
/// let held = &store.holdings()[0];
/// assert_eq!((held.topic.as_str(), held.partition.as_str(), held.messages), ("orders", "-1--1", 1));
/// assert_eq!(held.bytes, store.total_bytes());
/// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), metaq::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueHoldings {
    /// The topic.
    pub topic: String,
    /// The partition text (`brokerId-index`, or `-1--1` for "any").
    pub partition: String,
    /// Messages not yet acknowledged.
    pub messages: u64,
    /// Their bytes on disk, record headers included.
    pub bytes: u64,
}

type QueueKey = (String, String);

struct Inner {
    dir: PathBuf,
    config: LocalStoreConfig,
    /// Bytes held over all queues.
    held: AtomicU64,
    queues: Mutex<BTreeMap<QueueKey, Arc<Mutex<Queue>>>>,
    /// Holds the directory's lock against other processes.
    _lock: fs::File,
}

/// Directories open in this process, so that two stores never share one.
fn open_dirs() -> &'static Mutex<HashSet<PathBuf>> {
    static OPEN: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    OPEN.get_or_init(Default::default)
}

/// A poisoned lock still guards consistent data: nothing here panics
/// half-way through an update.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The queues sync as they are dropped: before the directory is free.
        drop(std::mem::take(&mut *lock(&self.queues)));
        lock(open_dirs()).remove(&self.dir);
    }
}

/// A directory of per-(topic, partition) message queues on local disk; see
/// the [module documentation](crate::local_store) for the format and guarantees.
///
/// # Examples
///
/// ```
/// use metaq::local_store::{LocalStore, LocalStoreConfig};
/// # let dir = std::env::temp_dir().join(format!("metaq-doc-{}-store", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let store = LocalStore::open(&dir, LocalStoreConfig::default())?;
/// let shared = store.clone(); // the same store
/// std::thread::spawn(move || shared.append("0-0", &metaq::Message::new("t", "x")))
///     .join()
///     .unwrap()?;
/// assert_eq!(store.len("t", "0-0"), 1);
/// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), metaq::Error>(())
/// ```
#[derive(Clone)]
pub struct LocalStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore")
            .field("dir", &self.inner.dir)
            .field("held_bytes", &self.total_bytes())
            .field("config", &self.inner.config)
            .finish()
    }
}

impl LocalStore {
    /// Opens the store in `dir` (created if missing) and recovers every
    /// queue in it; see [Recovery](crate::local_store#recovery).
    ///
    /// Fails with [`Error::LocalStore`] on an I/O error, or if this process
    /// or another one already has a store open on `dir` (the directory's
    /// `LOCK` file is held with an advisory lock while it is open; a held
    /// lock is retried for up to a second, since a child process being
    /// started holds it for a moment).
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::local_store::{LocalStore, LocalStoreConfig};
    /// # let dir = std::env::temp_dir().join(format!("metaq-doc-{}-open", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let store = LocalStore::open(&dir, LocalStoreConfig::default())?;
    /// assert!(store.is_empty());
    /// assert!(LocalStore::open(&dir, LocalStoreConfig::default()).is_err()); // already open
    /// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), metaq::Error>(())
    /// ```
    pub fn open(dir: impl Into<PathBuf>, config: LocalStoreConfig) -> Result<LocalStore> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_error(&dir, "create store directory"))?;
        let dir = dir
            .canonicalize()
            .map_err(io_error(&dir, "resolve store directory"))?;
        if !lock(open_dirs()).insert(dir.clone()) {
            return Err(Error::LocalStore {
                path: dir,
                operation: "open",
                cause: "already open in this process".into(),
            });
        }
        let locked = match lock_dir(&dir) {
            Ok(file) => file,
            Err(e) => {
                lock(open_dirs()).remove(&dir);
                return Err(e);
            }
        };
        let inner = Inner {
            _lock: locked,
            dir,
            config,
            held: AtomicU64::new(0),
            queues: Mutex::new(BTreeMap::new()),
        };
        // From here on, dropping `inner` releases the directory.
        let mut queues = BTreeMap::new();
        let mut held = 0;
        for entry in
            fs::read_dir(&inner.dir).map_err(io_error(&inner.dir, "list store directory"))?
        {
            let entry = entry.map_err(io_error(&inner.dir, "list store directory"))?;
            let name = entry.file_name();
            if name == LOCK_FILE {
                continue;
            }
            let parsed = name.to_str().and_then(parse_dir_name);
            let Some((topic, partition)) = parsed.filter(|_| entry.path().is_dir()) else {
                tracing::warn!(path = %entry.path().display(), "local store: not a queue directory; left alone");
                continue;
            };
            let queue = recovery::recover(
                entry.path(),
                topic.clone(),
                partition.clone(),
                &inner.config,
            )?;
            held += queue.bytes;
            queues.insert((topic, partition), Arc::new(Mutex::new(queue)));
        }
        inner.held.store(held, Ordering::SeqCst);
        *lock(&inner.queues) = queues;
        Ok(LocalStore {
            inner: Arc::new(inner),
        })
    }

    /// The store's directory (absolute).
    ///
    /// # Examples
    ///
    /// ```
    /// # use metaq::local_store::{LocalStore, LocalStoreConfig};
    /// # let dir = std::env::temp_dir().join(format!("metaq-doc-{}-dir", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let store = LocalStore::open(&dir, LocalStoreConfig::default())?;
    /// assert!(store.dir().is_absolute());
    /// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), metaq::Error>(())
    /// ```
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The configuration it was opened with.
    ///
    /// # Examples
    ///
    /// ```
    /// # use metaq::local_store::{LocalStore, LocalStoreConfig};
    /// # let dir = std::env::temp_dir().join(format!("metaq-doc-{}-config", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let store = LocalStore::open(&dir, LocalStoreConfig::default().max_bytes(1 << 20))?;
    /// assert_eq!(store.config().get_max_bytes(), 1 << 20);
    /// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), metaq::Error>(())
    /// ```
    pub fn config(&self) -> &LocalStoreConfig {
        &self.inner.config
    }

    fn queue(&self, topic: &str, partition: &str) -> Option<Arc<Mutex<Queue>>> {
        let key = (topic.to_owned(), partition.to_owned());
        lock(&self.inner.queues).get(&key).cloned()
    }

    fn all_queues(&self) -> Vec<Arc<Mutex<Queue>>> {
        lock(&self.inner.queues).values().cloned().collect()
    }

    /// Adds `message` at the back of the queue (`message.topic()`,
    /// `partition`) and returns its sequence number. When this returns `Ok`
    /// the message is stored as durably as the [`FsyncPolicy`] promises.
    ///
    /// Fails, storing nothing, with [`Error::LocalStoreFull`] at the
    /// [`max_bytes`](LocalStoreConfig::max_bytes) or
    /// [`max_messages_per_queue`](LocalStoreConfig::max_messages_per_queue)
    /// bound, [`Error::MessageTooLarge`] over
    /// [`max_record_bytes`](LocalStoreConfig::max_record_bytes),
    /// [`Error::InvalidMessage`] for an invalid topic or a partition text
    /// that is not 1 to 64 bytes of printable ASCII, and
    /// [`Error::LocalStore`] on an I/O error.
    ///
    /// # Examples
    ///
    /// ```
    /// # use metaq::local_store::{LocalStore, LocalStoreConfig};
    /// # let dir = std::env::temp_dir().join(format!("metaq-doc-{}-append", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let store = LocalStore::open(&dir, LocalStoreConfig::default())?;
    /// let first = store.append("0-1", &metaq::Message::new("orders", "a"))?;
    /// let second = store.append("0-1", &metaq::Message::new("orders", "b"))?;
    /// assert!(second > first);
    /// assert!(store.append("0-1", &metaq::Message::new("a b", "bad topic")).is_err());
    /// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), metaq::Error>(())
    /// ```
    pub fn append(&self, partition: &str, message: &Message) -> Result<u64> {
        let topic = message.topic();
        let queue = match self.queue(topic, partition) {
            Some(queue) => queue,
            None => self.create_queue(topic, partition)?,
        };
        let mut queue = lock(&queue);
        queue.append(message, &self.inner.config, &self.inner.held)
    }

    fn create_queue(&self, topic: &str, partition: &str) -> Result<Arc<Mutex<Queue>>> {
        let name = dir_name(topic, partition)?;
        let mut queues = lock(&self.inner.queues);
        let key = (topic.to_owned(), partition.to_owned());
        if let Some(queue) = queues.get(&key) {
            return Ok(queue.clone()); // created meanwhile
        }
        let dir = self.inner.dir.join(name);
        let queue = recovery::create(dir, key.0.clone(), key.1.clone(), &self.inner.config)?;
        if self.inner.config.fsync != FsyncPolicy::Never {
            sync_dir(&self.inner.dir)?;
        }
        let queue = Arc::new(Mutex::new(queue));
        queues.insert(key, queue.clone());
        Ok(queue)
    }
}

mod read;
