//! A producer client for MetaQ (Taobao Metamorphosis 1.4).
//!
//! Layers, with data flowing one way:
//!
//! * [`protocol`]: the sans-IO wire format (commands, responses, codec, checksum).
//! * [`discovery`]: the ZooKeeper layout MetaQ brokers publish.
//! * [`producer`]: the API, selectors, transactions and retries.
//!
//! The development broker (crate `metaq-broker`), the `metaq` command
//! (crate `metaq-cli`) and the test harness (crate `metaq-testkit`) are
//! workspace members that depend on this crate.
//!
//! # Examples
//!
//! Send one message; [`producer`] explains delivery and retries.
//!
//! ```no_run
//! # async fn example() -> Result<(), metaq::Error> {
//! use metaq::{Message, Producer};
//! let producer = Producer::builder("127.0.0.1:2181").build().await?;
//! let sent = producer.send(Message::new("orders", "hello")).await?;
//! println!("stored in partition {} at offset {}", sent.partition, sent.offset);
//! producer.close().await;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

mod backoff;
mod cluster;
pub mod discovery;
mod error;
mod message;
mod net;
pub mod producer;
pub mod protocol;

pub use cluster::{BrokerUri, Partition};
pub use error::{Attempt, Attempts, Delivery, Error, Result};
pub use message::{Message, SendResult};
pub use producer::{Producer, ProducerBuilder, ProducerStats};
