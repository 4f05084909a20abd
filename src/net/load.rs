//! How slow a broker is right now, readable by every send without a lock.
//!
//! Two signals, because either alone misleads: the answer latency (a
//! peak-sensitive moving average, as Finagle's "peak EWMA": a slow answer
//! counts at once, fast ones bring it down gradually) says how slow the
//! broker was; the age of the oldest request still waiting says how slow it
//! is being, and keeps growing when a broker stops answering altogether,
//! when no latency sample arrives at all.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

/// Weight of one answer's latency in the average once it is below it. At
/// 0.2, ten fast answers take a 200 ms average below 25 ms, so a broker
/// that recovers is believed after a few of its trickle of sends.
const DECAY: f64 = 0.2;

/// A connection's load, published by its session as answers come and read
/// by sends choosing a broker.
#[derive(Debug, Default)]
pub(crate) struct LoadGauge {
    /// The moving average of answer latencies, in µs.
    latency_micros: AtomicU64,
    /// When the oldest waiting request was queued, in µs since [`base`]
    /// plus one; 0 when none waits.
    oldest_waiting: AtomicU64,
    in_flight: AtomicUsize,
    /// Sends that considered this broker while it was slow.
    offers: AtomicU64,
}

/// What a send sees of a connection's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Load {
    /// The larger of the average answer latency and the age of the oldest
    /// request still waiting.
    pub(crate) latency: Duration,
    /// Requests waiting for an answer.
    pub(crate) in_flight: usize,
}

impl LoadGauge {
    pub(crate) fn read(&self, now: Instant) -> Load {
        let average = Duration::from_micros(self.latency_micros.load(Ordering::Relaxed));
        let oldest = self.oldest_waiting.load(Ordering::Relaxed);
        let waiting_for = if oldest == 0 {
            Duration::ZERO
        } else {
            now.saturating_duration_since(from_stamp(oldest))
        };
        Load {
            latency: average.max(waiting_for),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }

    /// One in `every` calls is true: a slow broker's turns in the trickle.
    pub(crate) fn take_turn(&self, every: u64) -> bool {
        self.offers.fetch_add(1, Ordering::Relaxed) % every.max(1) == 0
    }

    pub(super) fn set_in_flight(&self, in_flight: usize) {
        self.in_flight.store(in_flight, Ordering::Relaxed);
    }

    /// Publishes what the table holds now (called with its lock held).
    pub(super) fn publish(&self, average: &Average, oldest: Option<Instant>, in_flight: usize) {
        self.latency_micros
            .store(average.micros as u64, Ordering::Relaxed);
        self.oldest_waiting
            .store(oldest.map_or(0, stamp), Ordering::Relaxed);
        self.in_flight.store(in_flight, Ordering::Relaxed);
    }
}

/// The table's running average of answer latencies.
#[derive(Debug, Default)]
pub(super) struct Average {
    micros: f64,
}

impl Average {
    pub(super) fn add(&mut self, latency: Duration) {
        let sample = latency.as_secs_f64() * 1e6;
        self.micros = if sample >= self.micros {
            sample
        } else {
            self.micros + DECAY * (sample - self.micros)
        };
    }
}

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn stamp(at: Instant) -> u64 {
    at.saturating_duration_since(base()).as_micros() as u64 + 1
}

fn from_stamp(stamp: u64) -> Instant {
    base() + Duration::from_micros(stamp - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_answer_counts_at_once_and_fast_ones_bring_it_down() {
        let mut average = Average::default();
        average.add(Duration::from_millis(1));
        average.add(Duration::from_millis(200));
        assert_eq!(average.micros as u64, 200_000);
        for _ in 0..10 {
            average.add(Duration::from_millis(1));
        }
        assert!(average.micros < 25_000.0, "{}", average.micros);
        assert!(average.micros > 1_000.0, "{}", average.micros);
    }

    #[test]
    fn the_oldest_waiting_request_ages_with_the_clock() {
        let gauge = LoadGauge::default();
        let now = Instant::now();
        let mut average = Average::default();
        average.add(Duration::from_millis(2));
        gauge.publish(&average, Some(now), 3);
        let load = gauge.read(now + Duration::from_millis(500));
        assert_eq!(load.in_flight, 3);
        assert!(load.latency >= Duration::from_millis(499), "{load:?}");
        gauge.publish(&average, None, 0);
        let load = gauge.read(now + Duration::from_millis(500));
        assert_eq!(load.latency, Duration::from_millis(2));
    }
}
