//! Jittered exponential backoff, the one used for every retry loop: broker
//! reconnects (`net`), ZooKeeper reconnects and watch re-reads
//! (`discovery`), and the development broker's re-registration.

use std::time::Duration;

#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            current: initial,
        }
    }

    /// The next wait: the current step with ±50 % jitter (so that many
    /// clients that lost one server at once do not come back in lockstep),
    /// then the step doubles, up to the maximum.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.current;
        self.current = (self.current * 2).min(self.max);
        step.mul_f64(0.5 + fastrand::f64())
    }

    pub(crate) fn reset(&mut self) {
        self.current = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let delays: Vec<_> = (0..6).map(|_| b.next_delay()).collect();
        for (d, step) in delays.iter().zip([100, 200, 400, 400, 400, 400]) {
            let step = Duration::from_millis(step);
            assert!(
                *d >= step.mul_f64(0.5) && *d <= step.mul_f64(1.5),
                "{d:?} vs {step:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(150));
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let delays: std::collections::HashSet<Duration> = (0..20)
            .map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).next_delay())
            .collect();
        assert!(delays.len() > 10, "{delays:?}");
    }
}
