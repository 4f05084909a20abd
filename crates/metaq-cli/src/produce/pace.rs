//! `--rate`: at most one message per interval.

use std::time::Duration;

use tokio::time::Instant;

/// How far behind schedule sending may fall and still catch up. Without a
/// bound, input that paused (a quiet `tail -f`) would be followed by a burst
/// far above the rate; with none at all, a busy run would drift below it.
const CATCH_UP: Duration = Duration::from_millis(100);

pub(super) struct Pacer {
    interval: Option<Duration>,
    next_at: Option<Instant>,
}

impl Pacer {
    pub(super) fn new(interval: Option<Duration>) -> Pacer {
        Pacer {
            interval,
            next_at: None,
        }
    }

    /// Waits for the next message's turn. Cancel-safe: the schedule moves
    /// only when a turn was given.
    pub(super) async fn wait(&mut self) {
        let Some(interval) = self.interval else {
            return;
        };
        let now = Instant::now();
        let earliest = now.checked_sub(CATCH_UP).unwrap_or(now);
        let at = self.next_at.map_or(now, |at| at.max(earliest));
        tokio::time::sleep_until(at).await;
        self.next_at = Some(at + interval);
    }
}
