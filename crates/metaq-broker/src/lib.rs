//! The development broker: speaks the MetaQ 1.4 protocol, stores messages in
//! MetaQ's on-disk format and registers in ZooKeeper like a Java master, so
//! the producer can be tested end to end.
//!
//! What it serves: `put` in every form, local transactions (BEGIN,
//! COMMIT_ONE_PHASE/TWO_PHASE, ROLLBACK, with timeouts), XA transactions
//! (BEGIN, END, PREPARE, both COMMITs, ROLLBACK, RECOVER, FORGET; broker-wide,
//! prepared branches journaled under `<data_dir>/xa/` and kept across
//! restarts), `version`, `stats` (the summary for every item) and `quit`.
//! `get`, `offset` and `sync` are answered 503.
//!
//! [`null::NullServer`] is its opposite for benchmarks: registered the same
//! way, it answers every `put` at once and stores nothing.

mod commit_blocks;
mod config;
mod connection;
mod counters;
mod error;
mod fault_controls;
mod faults;
mod handler;
mod ids;
pub mod null;
mod put_batch;
mod registry;
mod reply;
mod server;
mod shared;
pub mod store;
mod transactions;
mod tx_put_check;
mod xa;

pub use config::{BrokerConfig, InvalidTopicSpec, TopicConfig};
pub use error::BrokerError;
pub use fault_controls::FaultControls;
pub use server::Broker;
pub use store::FlushPolicy;
