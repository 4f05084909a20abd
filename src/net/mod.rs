//! Connections to brokers: one task per socket, requests pipelined and
//! matched by opaque, heartbeats, reconnects. Nothing here knows about topics
//! or producers; it moves frames.

mod backoff;
mod connection;
mod opaque;
mod pool;
mod session;

pub(crate) use connection::{ConnError, Connection, ConnectionSettings};
pub(crate) use opaque::next_opaque;
pub(crate) use pool::ConnectionPool;
