//! Fault injection for tests, in the spirit of librdkafka's mock cluster.

use std::sync::Mutex;
use std::time::Duration;

use metaq::protocol::StatusCode;

/// Faults currently in force; read by every connection for every request.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    state: Mutex<FaultState>,
}

#[derive(Debug, Default, Clone)]
struct FaultState {
    response_delay: Duration,
    failing_puts: u32,
    failure_code: Option<StatusCode>,
    stalled: bool,
    refuse_connections: bool,
}

impl Faults {
    fn with<T>(&self, f: impl FnOnce(&mut FaultState) -> T) -> T {
        // A poisoned lock only means a test panicked while holding it; the
        // plain data inside is still usable.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state)
    }

    pub(crate) fn set_response_delay(&self, delay: Duration) {
        self.with(|s| s.response_delay = delay);
    }

    pub(crate) fn response_delay(&self) -> Duration {
        self.with(|s| s.response_delay)
    }

    pub(crate) fn fail_next_puts(&self, count: u32, code: StatusCode) {
        self.with(|s| {
            s.failing_puts = count;
            s.failure_code = Some(code);
        });
    }

    /// The injected answer for this put, if one is due (counts it down).
    pub(crate) fn take_put_failure(&self) -> Option<StatusCode> {
        self.with(|s| {
            if s.failing_puts == 0 {
                return None;
            }
            s.failing_puts -= 1;
            s.failure_code
        })
    }

    pub(crate) fn set_stalled(&self, stalled: bool) {
        self.with(|s| s.stalled = stalled);
    }

    pub(crate) fn stalled(&self) -> bool {
        self.with(|s| s.stalled)
    }

    pub(crate) fn set_refuse_connections(&self, refuse: bool) {
        self.with(|s| s.refuse_connections = refuse);
    }

    pub(crate) fn refuse_connections(&self) -> bool {
        self.with(|s| s.refuse_connections)
    }
}
