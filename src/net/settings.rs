//! Tunables of a broker connection.

use std::time::Duration;

/// Tunables of a connection; the producer builder documents the defaults.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionSettings {
    pub(crate) connect_timeout: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) heartbeat_timeout: Duration,
    /// Requests waiting for an answer at once (backpressure).
    pub(crate) max_in_flight: usize,
    pub(crate) max_response_body: usize,
}
