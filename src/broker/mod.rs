//! The development broker.
