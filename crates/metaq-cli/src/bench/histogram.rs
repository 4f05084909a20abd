//! A latency histogram of constant size (about 60 KiB), so that recording a
//! million latencies neither allocates nor shows in the peak RSS a run
//! reports.
//!
//! Values are nanoseconds. Below 128 ns each value has its own bucket;
//! above, each power of two is split into 128 buckets, so a percentile is
//! within 0.8 % of the true value.

use std::time::Duration;

/// Buckets per power of two (and the exact range below it).
const SUB_BUCKETS: u64 = 128;
const SUB_BITS: u32 = SUB_BUCKETS.trailing_zeros();
/// Octaves 7 to 63 above the exact range.
const BUCKETS: usize = (SUB_BUCKETS as usize) * (64 - SUB_BITS as usize + 1);

pub(crate) struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            max: 0,
        }
    }
}

impl Histogram {
    pub(crate) fn record(&mut self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.counts[bucket(nanos)] += 1;
        self.total += 1;
        self.max = self.max.max(nanos);
    }

    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.total
    }

    /// The value below which a fraction `quantile` (0 to 1) of the
    /// recorded values lie, in microseconds; `None` when empty.
    pub(crate) fn percentile_us(&self, quantile: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((quantile * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                // The middle of the bucket, but never above the largest value seen.
                let (low, width) = bounds(index);
                let value = (low + width / 2).min(self.max);
                return Some(value as f64 / 1000.0);
            }
        }
        Some(self.max as f64 / 1000.0)
    }

    pub(crate) fn max_us(&self) -> Option<f64> {
        (self.total > 0).then(|| self.max as f64 / 1000.0)
    }
}

fn bucket(nanos: u64) -> usize {
    if nanos < SUB_BUCKETS {
        return nanos as usize;
    }
    let octave = 63 - nanos.leading_zeros(); // >= SUB_BITS
    let shift = octave - SUB_BITS;
    let sub = (nanos >> shift) - SUB_BUCKETS; // 0..SUB_BUCKETS
    ((shift as u64 + 1) * SUB_BUCKETS + sub) as usize
}

/// Lowest value of bucket `index`, and its width.
fn bounds(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < SUB_BUCKETS {
        return (index, 1);
    }
    let shift = index / SUB_BUCKETS - 1;
    let sub = index % SUB_BUCKETS;
    ((SUB_BUCKETS + sub) << shift, 1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_their_values() {
        for nanos in [
            0,
            1,
            127,
            128,
            129,
            255,
            256,
            1_000,
            123_456,
            10_000_000_000,
            u64::MAX,
        ] {
            let (low, width) = bounds(bucket(nanos));
            assert!(
                low <= nanos && nanos - low < width,
                "{nanos} in {low}+{width}"
            );
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_are_within_one_percent() {
        let mut histogram = Histogram::default();
        for micros in 1..=1000u64 {
            histogram.record(Duration::from_micros(micros));
        }
        for (quantile, expected) in [(0.5, 500.0), (0.9, 900.0), (0.99, 990.0), (0.999, 999.0)] {
            let got = histogram.percentile_us(quantile).unwrap();
            assert!(
                (got - expected).abs() / expected < 0.01,
                "p{quantile}: {got}"
            );
        }
        assert_eq!(histogram.max_us(), Some(1000.0));
        assert_eq!(histogram.count(), 1000);
    }

    #[test]
    fn merge_adds_counts_and_keeps_the_max() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        a.record(Duration::from_micros(10));
        b.record(Duration::from_micros(30));
        b.record(Duration::from_micros(20));
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.max_us(), Some(30.0));
        let p50 = a.percentile_us(0.5).unwrap();
        assert!((p50 - 20.0).abs() < 0.2, "{p50}");
        assert_eq!(Histogram::default().percentile_us(0.5), None);
    }
}
