#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

mod backoff;
mod cluster;
pub mod discovery;
mod error;
pub mod local_store;
mod message;
mod net;
pub mod producer;
pub mod protocol;

pub use cluster::{BrokerUri, Partition};
pub use error::{Attempt, Attempts, Delivery, Error, Result};
pub use message::{Message, SendResult};
pub use producer::{Producer, ProducerBuilder, ProducerStats};
