//! Network faults for `tests/fault_network.rs`: a proxy that blackholes a
//! broker's link, a fake broker that answers puts with garbage, and a watch
//! on the largest allocation a test's own threads make.
//!
//! Including this module installs its global allocator (see
//! [`allocations`]) in the test binary.

#![allow(dead_code)]

pub mod allocations;
pub mod fake_broker;
pub mod proxy;

pub use allocations::LargestAllocation;
pub use fake_broker::{FakeBroker, Misbehaviour};
pub use proxy::BlackholeProxy;
