//! The broker's on-disk message store, in MetaQ's exact layout (docs/protocol.md §5.4, 5.5).
//!
//! ```text
//! <data_dir>/
//!   orders-created-0/                  <topic>-<partition>, split on the last '-'
//!     00000000000000000000.meta        segments, named by the logical offset
//!     00000000001073741800.meta        of their first byte, 20 digits
//! ```
//!
//! Each partition is an append-only byte log of records:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | body length N (big-endian) |
//! | 4 | CRC32(body) & 0x7FFFFFFF |
//! | 8 | message id |
//! | 4 | flag |
//! | N | body |
//!
//! A record's offset is the position of its first byte in the log, counted
//! across segments. A new segment starts when the current one would grow past
//! [`StoreConfig::max_segment_size`]; a record never spans two.
//!
//! * [`MessageStore`] appends, with one writer thread per partition and
//!   group commit (see [`FlushPolicy`]), and recovers from torn writes on open.
//! * [`read_records`] reads everything back, also while a broker runs.

mod config;
mod message_store;
mod partition;
mod read;
mod record;
mod segment;
mod writer;

pub use config::{
    FlushPolicy, ParseFlushPolicyError, StoreConfig, DEFAULT_MAX_SEGMENT_SIZE,
    DEFAULT_UNFLUSHED_MESSAGES,
};
pub use message_store::MessageStore;
pub(crate) use read::find_ids;
pub use read::{read_records, StoredRecord};
pub use record::{Record, HEADER_LEN, MAX_BODY_LEN};
pub(crate) use segment::check_topic;
