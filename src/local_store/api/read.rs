//! Reading, acknowledging and reporting: the rest of [`LocalStore`]'s API.

use std::sync::atomic::Ordering;

use super::{lock, LocalStore, QueueHoldings, StoredMessage};
use crate::error::Result;

impl LocalStore {
    /// The oldest message of the queue (`topic`, `partition`) not yet
    /// acknowledged, or `None` when it holds none. It stays in the store
    /// until [`ack_front`](Self::ack_front).
    ///
    /// A record found damaged here is dropped with the rest of its segment
    /// (logged), as on [`open`](Self::open), and the next one is given.
    ///
    /// # Examples
    ///
    /// ```
    /// # use metaq::local_store::{LocalStore, LocalStoreConfig};
    /// # let dir = std::env::temp_dir().join(format!("metaq-doc-{}-peek", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let store = LocalStore::open(&dir, LocalStoreConfig::default())?;
    /// assert!(store.peek_front("orders", "0-1")?.is_none());
    /// store.append("0-1", &metaq::Message::new("orders", "a").with_attribute("tag"))?;
    /// let front = store.peek_front("orders", "0-1")?.unwrap();
    /// assert_eq!(front.message.attribute(), Some("tag"));
    /// assert_eq!(store.peek_front("orders", "0-1")?.unwrap(), front); // still there
    /// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), metaq::Error>(())
    /// ```
    pub fn peek_front(&self, topic: &str, partition: &str) -> Result<Option<StoredMessage>> {
        match self.queue(topic, partition) {
            Some(queue) => lock(&queue).peek(&self.inner.held),
            None => Ok(None),
        }
    }

    /// Removes the oldest message of the queue if its sequence number is
    /// `seq`; returns whether it did (`false` if the queue is empty or its
    /// front is another message, e.g. one acknowledged twice).
    ///
    /// The new position is written to the queue's cursor file before this
    /// returns; if that fails the message stays, and if the process dies
    /// first the message is given out again after reopening.
    ///
    /// # Examples
    ///
    /// ```
    /// # use metaq::local_store::{LocalStore, LocalStoreConfig};
    /// # let dir = std::env::temp_dir().join(format!("metaq-doc-{}-ack", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let store = LocalStore::open(&dir, LocalStoreConfig::default())?;
    /// let seq = store.append("0-1", &metaq::Message::new("orders", "a"))?;
    /// assert!(store.ack_front("orders", "0-1", seq)?);
    /// assert!(!store.ack_front("orders", "0-1", seq)?); // already gone
    /// assert_eq!(store.len("orders", "0-1"), 0);
    /// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), metaq::Error>(())
    /// ```
    pub fn ack_front(&self, topic: &str, partition: &str, seq: u64) -> Result<bool> {
        match self.queue(topic, partition) {
            Some(queue) => lock(&queue).ack(seq, &self.inner.held),
            None => Ok(false),
        }
    }

    /// Takes the oldest message out of the queue: [`peek_front`] and
    /// [`ack_front`] in one step, under one lock. At most once: if sending
    /// it fails afterwards it is not in the store any more.
    ///
    /// [`peek_front`]: Self::peek_front
    /// [`ack_front`]: Self::ack_front
    ///
    /// # Examples
    ///
    /// ```
    /// # use metaq::local_store::{LocalStore, LocalStoreConfig};
    /// # let dir = std::env::temp_dir().join(format!("metaq-doc-{}-pop", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let store = LocalStore::open(&dir, LocalStoreConfig::default())?;
    /// store.append("0-1", &metaq::Message::new("orders", "a"))?;
    /// store.append("0-1", &metaq::Message::new("orders", "b"))?;
    /// assert_eq!(store.pop_front("orders", "0-1")?.unwrap().message.payload().as_ref(), b"a");
    /// assert_eq!(store.pop_front("orders", "0-1")?.unwrap().message.payload().as_ref(), b"b");
    /// assert!(store.pop_front("orders", "0-1")?.is_none());
    /// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), metaq::Error>(())
    /// ```
    pub fn pop_front(&self, topic: &str, partition: &str) -> Result<Option<StoredMessage>> {
        let Some(queue) = self.queue(topic, partition) else {
            return Ok(None);
        };
        let mut queue = lock(&queue);
        let Some(front) = queue.peek(&self.inner.held)? else {
            return Ok(None);
        };
        queue.ack(front.seq, &self.inner.held)?;
        Ok(Some(front))
    }

    /// Messages the queue (`topic`, `partition`) holds; 0 for a queue the
    /// store does not know.
    ///
    /// # Examples
    ///
    /// ```
    /// # use metaq::local_store::{LocalStore, LocalStoreConfig};
    /// # let dir = std::env::temp_dir().join(format!("metaq-doc-{}-len", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let store = LocalStore::open(&dir, LocalStoreConfig::default())?;
    /// store.append("0-1", &metaq::Message::new("orders", "a"))?;
    /// assert_eq!(store.len("orders", "0-1"), 1);
    /// assert_eq!(store.len("orders", "0-2"), 0);
    /// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), metaq::Error>(())
    /// ```
    pub fn len(&self, topic: &str, partition: &str) -> u64 {
        self.queue(topic, partition)
            .map_or(0, |queue| lock(&queue).messages)
    }

    /// Bytes held over all queues (records not yet acknowledged, headers
    /// included): what [`max_bytes`](crate::local_store::LocalStoreConfig::max_bytes) bounds.
    ///
    /// # Examples
    ///
    /// ```
    /// # use metaq::local_store::{LocalStore, LocalStoreConfig};
    /// # let dir = std::env::temp_dir().join(format!("metaq-doc-{}-total", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let store = LocalStore::open(&dir, LocalStoreConfig::default())?;
    /// assert_eq!(store.total_bytes(), 0);
    /// store.append("0-1", &metaq::Message::new("orders", "a"))?;
    /// assert!(store.total_bytes() > 1);
    /// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), metaq::Error>(())
    /// ```
    pub fn total_bytes(&self) -> u64 {
        self.inner.held.load(Ordering::SeqCst)
    }

    /// Whether no queue holds a message.
    ///
    /// # Examples
    ///
    /// ```
    /// # use metaq::local_store::{LocalStore, LocalStoreConfig};
    /// # let dir = std::env::temp_dir().join(format!("metaq-doc-{}-empty", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let store = LocalStore::open(&dir, LocalStoreConfig::default())?;
    /// assert!(store.is_empty());
    /// store.append("0-1", &metaq::Message::new("orders", "a"))?;
    /// assert!(!store.is_empty());
    /// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), metaq::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.all_queues()
            .iter()
            .all(|queue| lock(queue).messages == 0)
    }

    /// What each queue holding at least one message holds, sorted by topic
    /// and partition text. Queues emptied are left out.
    ///
    /// # Examples
    ///
    /// ```
    /// # use metaq::local_store::{LocalStore, LocalStoreConfig};
    /// # let dir = std::env::temp_dir().join(format!("metaq-doc-{}-holdings2", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let store = LocalStore::open(&dir, LocalStoreConfig::default())?;
    /// store.append("0-1", &metaq::Message::new("b", "x"))?;
    /// store.append("0-0", &metaq::Message::new("a", "x"))?;
    /// store.append("0-0", &metaq::Message::new("a", "y"))?;
    /// let held: Vec<_> = store.holdings().into_iter().map(|h| (h.topic, h.messages)).collect();
    /// assert_eq!(held, [("a".to_string(), 2), ("b".to_string(), 1)]);
    /// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), metaq::Error>(())
    /// ```
    pub fn holdings(&self) -> Vec<QueueHoldings> {
        self.all_queues()
            .iter()
            .filter_map(|queue| {
                let queue = lock(queue);
                (queue.messages > 0).then(|| QueueHoldings {
                    topic: queue.topic.clone(),
                    partition: queue.partition.clone(),
                    messages: queue.messages,
                    bytes: queue.bytes,
                })
            })
            .collect()
    }

    /// The (topic, partition) of each queue holding at least one message,
    /// sorted.
    ///
    /// # Examples
    ///
    /// ```
    /// # use metaq::local_store::{LocalStore, LocalStoreConfig};
    /// # let dir = std::env::temp_dir().join(format!("metaq-doc-{}-queues", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let store = LocalStore::open(&dir, LocalStoreConfig::default())?;
    /// store.append("-1--1", &metaq::Message::new("orders", "x"))?;
    /// assert_eq!(store.queues(), [("orders".to_string(), "-1--1".to_string())]);
    /// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), metaq::Error>(())
    /// ```
    pub fn queues(&self) -> Vec<(String, String)> {
        self.holdings()
            .into_iter()
            .map(|h| (h.topic, h.partition))
            .collect()
    }

    /// Flushes to disk what the [`FsyncPolicy`](crate::local_store::FsyncPolicy)
    /// left unsynced (appends and acknowledgements); does nothing under
    /// `Never`. Dropping the last handle does this too.
    ///
    /// # Examples
    ///
    /// ```
    /// # use metaq::local_store::{FsyncPolicy, LocalStore, LocalStoreConfig};
    /// # let dir = std::env::temp_dir().join(format!("metaq-doc-{}-sync", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let every_100 = FsyncPolicy::EveryN(std::num::NonZeroU32::new(100).unwrap());
    /// let store = LocalStore::open(&dir, LocalStoreConfig::default().fsync(every_100))?;
    /// store.append("0-1", &metaq::Message::new("orders", "a"))?;
    /// store.sync()?; // now it survives power loss
    /// # drop(store); std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), metaq::Error>(())
    /// ```
    pub fn sync(&self) -> Result<()> {
        for queue in self.all_queues() {
            lock(&queue).sync()?;
        }
        Ok(())
    }
}
