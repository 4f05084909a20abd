//! The one-line progress summary `metaq produce` prints on stderr every
//! interval when stderr is not a terminal (a log, a pipe), as
//! `rdkafka_performance` does; a terminal has the progress bar instead.

use std::io::IsTerminal;
use std::time::Duration;

use metaq::Producer;
use tokio::task::JoinHandle;
use tokio::time::{interval_at, Instant, MissedTickBehavior};

/// Prints until dropped.
pub(super) struct Progress {
    task: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts printing every `every` (zero: never), unless stderr is a
    /// terminal.
    pub(super) fn start(producer: &Producer, every: Duration) -> Progress {
        if every.is_zero() || std::io::stderr().is_terminal() {
            return Progress { task: None };
        }
        let producer = producer.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut ticks = interval_at(started + every, every);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut last_sent = 0;
            let mut last_at = started;
            loop {
                let now = ticks.tick().await;
                let stats = producer.stats();
                let rate = (stats.sent - last_sent) as f64 / (now - last_at).as_secs_f64();
                eprintln!(
                    "metaq produce: {:.1} s: {} sent ({rate:.0} msgs/s), {} failed, {} retried, \
                     {} in flight, p99 {}",
                    (now - started).as_secs_f64(),
                    stats.sent,
                    stats.failed(),
                    stats.retries,
                    stats.in_flight,
                    micros(stats.latency.p99),
                );
                last_sent = stats.sent;
                last_at = now;
            }
        });
        Progress { task: Some(task) }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// `412 µs`, or `-` before any answer.
fn micros(latency: Duration) -> String {
    if latency.is_zero() {
        "-".to_owned()
    } else {
        format!("{} µs", latency.as_micros())
    }
}
