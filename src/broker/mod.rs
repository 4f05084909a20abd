//! The development broker.

pub mod store;
