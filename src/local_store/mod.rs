//! A crash-safe local message store: messages wait on disk, in order, per
//! (topic, partition), until they can be sent.
//!
//! This replaces the Java client's `LocalMessageStorageManager` and the
//! one-way producer's disk store (docs/protocol.md, 2.8 and 2.9). It is
//! synchronous (`std::fs`); async callers wrap calls in
//! `tokio::task::spawn_blocking`.
//!
//! # Layout
//!
//! ```text
//! <dir>/<topic>@<partition>/00000000000000000000.seg   records, oldest first
//!                          /00000000000000001234.seg   named by their first sequence number
//!                          /cursor                     first sequence number not acknowledged
//! <dir>/LOCK                                          held (flock) while a store has the directory open
//! ```
//!
//! Queue directories are named like Java's stores (`test@0-1`, `test@-1--1`
//! for "any partition"), with every byte outside `[A-Za-z0-9_.-]` written
//! as `%XX`. Each record is `magic, length, CRC32, sequence number, topic,
//! attribute, key, payload`, little-endian, the CRC over everything after
//! it and the length field too. A segment is rolled when the next record
//! would take it past [`LocalStoreConfig::segment_bytes`].
//!
//! # Consuming: at least once
//!
//! [`peek_front`](LocalStore::peek_front) gives the oldest message of a
//! queue and [`ack_front`](LocalStore::ack_front) removes it, so a caller
//! acknowledges only after it sent the message. The acknowledged position is
//! kept in the `cursor` file; segments wholly acknowledged are deleted. A
//! crash (or a failed cursor write) between a send and its acknowledgement
//! gives that message again after reopening: a duplicate, never a loss.
//!
//! The cursor file is not replaced by "write a temporary file, fsync,
//! rename" on every acknowledgement: that cost about 180 µs an
//! acknowledgement on ext4 without any fsync and several milliseconds with
//! them, so replaying a full queue (Java kept up to 500000 messages) took
//! minutes. Instead it holds two checksummed slots, written in turn, the
//! older one overwritten: a write torn by a crash spoils only the slot being
//! written, and reading takes the newer valid slot. That is as atomic as the
//! rename, at one small write per acknowledgement.
//!
//! # Recovery
//!
//! [`LocalStore::open`] scans every segment. At the first record that is
//! cut short (a torn write) or fails its magic, length bound or CRC, the
//! rest of that file is cut off with a `tracing` warning naming the file,
//! the offset and the bytes dropped, and the scan continues with the next
//! segment. No file content makes it panic, and a damaged length field
//! never makes it allocate more than
//! [`max_record_bytes`](LocalStoreConfig::max_record_bytes). Damage found
//! later, when a record is read back, is handled the same way.
//!
//! # Bounds
//!
//! An append fails, storing nothing, with
//! [`Error::LocalStoreFull`](crate::Error::LocalStoreFull) when it would take
//! the bytes held over all queues past
//! [`max_bytes`](LocalStoreConfig::max_bytes) (1 GiB by default) or the
//! queue past [`max_messages_per_queue`](LocalStoreConfig::max_messages_per_queue)
//! (no bound by default; Java's one-way store kept 500000). The bytes held
//! are the records not yet acknowledged; disk use can exceed them by the
//! acknowledged part of each queue's oldest segment. A queue whose escaped
//! directory name would be longer than 255 bytes (a topic of about 250
//! bytes) is refused with [`Error::InvalidMessage`](crate::Error::InvalidMessage).
//!
//! # Durability
//!
//! See [`FsyncPolicy`]: with the default, `EveryAppend`, a message for which
//! [`append`](LocalStore::append) returned `Ok` survives power loss.
//!
//! # Sharing
//!
//! `LocalStore` is `Send + Sync` and a clone is another handle on the same
//! store (an `Arc` inside). Each queue has its own mutex, so queues do not
//! wait for each other's disk writes. Only one `LocalStore` may use a
//! directory at a time: a second `open`, in the same process or another
//! one, fails (an advisory `flock` on the directory's `LOCK` file, released
//! by the kernel when the process ends, even by a crash).
//!
//! # Example
//!
//! ```
//! use metaq::local_store::{LocalStore, LocalStoreConfig};
//! use metaq::Message;
//! # let dir = std::env::temp_dir().join(format!("metaq-doc-{}-mod", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! let store = LocalStore::open(&dir, LocalStoreConfig::default())?;
//! store.append("0-1", &Message::new("orders", "first"))?;
//! store.append("0-1", &Message::new("orders", "second"))?;
//! drop(store);
//!
//! let store = LocalStore::open(&dir, LocalStoreConfig::default())?; // after a restart
//! while let Some(stored) = store.peek_front("orders", "0-1")? {
//!     // send stored.message; acknowledge only once it was sent
//!     store.ack_front("orders", "0-1", stored.seq)?;
//! }
//! assert!(store.is_empty());
//! # drop(store); std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), metaq::Error>(())
//! ```

mod api;
mod config;
mod cursor;
mod dir_lock;
mod fsio;
mod name;
mod queue;
mod record;
mod recovery;
mod segment;

pub use api::{LocalStore, QueueHoldings, StoredMessage};
pub use config::{FsyncPolicy, LocalStoreConfig};
