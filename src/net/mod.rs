//! Connections to brokers: one task per socket, requests pipelined and
//! matched by opaque, deadlines, heartbeats, reconnects. Nothing here knows
//! about topics or producers; it moves frames.
//!
//! Data flows one way: [`Connection`] (the handle) starts a task that runs
//! one `session` per socket; both share the connection's `inflight` table,
//! and callers hold a [`PendingReply`] per request.

mod connection;
mod inflight;
mod load;
mod opaque;
mod pool;
mod request;
mod request_error;
mod session;
mod settings;
mod tally;

pub(crate) use connection::Connection;
pub(crate) use load::Load;
pub(crate) use opaque::next_opaque;
pub(crate) use pool::ConnectionPool;
pub(crate) use request::PendingReply;
pub(crate) use request_error::{NotQueued, RequestError};
pub(crate) use settings::ConnectionSettings;
pub(crate) use tally::Tally;
