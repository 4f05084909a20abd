//! Send latencies, counted in a fixed log-linear histogram of atomic
//! counters: recording one costs a bucket computation and one relaxed
//! atomic add (plus a relaxed load for the maximum), with no lock and no
//! allocation, so every send can afford it.
//!
//! Values are whole microseconds. Below 8 µs each microsecond has its own
//! bucket; above, each power of two is cut into [`SUB_BUCKETS`] equal
//! buckets (as HdrHistogram does), so a bucket is at most 1/8 of its lower
//! edge wide and its midpoint within 6.25 % of any value in it. Up to
//! [`MAX_MICROS`] (60 s) that is 191 buckets; longer values count in the
//! last one. Eight sub-buckets rather than four (104 buckets, 12.5 %) keep
//! a p99 honest to a few per cent, which is what a latency figure is read
//! for; the extra kilobyte is read only by [`Producer::stats`].
//!
//! [`Producer::stats`]: super::Producer::stats

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// log2 of the buckets per power of two.
const SUB_BITS: u32 = 3;
/// Buckets per power of two (and the values below the first one, one
/// bucket per microsecond).
const SUB_BUCKETS: u64 = 1 << SUB_BITS;
/// The longest latency told apart from longer ones: 60 s.
const MAX_MICROS: u64 = 60_000_000;
/// Buckets needed to reach [`MAX_MICROS`].
const BUCKETS: usize = bucket_of(MAX_MICROS) + 1;

/// The bucket holding `micros` (values over [`MAX_MICROS`] in the last).
const fn bucket_of(micros: u64) -> usize {
    let micros = if micros > MAX_MICROS {
        MAX_MICROS
    } else {
        micros
    };
    if micros < SUB_BUCKETS {
        return micros as usize;
    }
    let octave = 63 - micros.leading_zeros(); // >= SUB_BITS
    let shift = octave - SUB_BITS;
    let sub = (micros >> shift) - SUB_BUCKETS; // 0..SUB_BUCKETS
    (SUB_BUCKETS + (shift as u64) * SUB_BUCKETS + sub) as usize
}

/// The lowest value of bucket `index`, in µs, and its width.
const fn bucket_edges(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < SUB_BUCKETS {
        return (index, 1);
    }
    let shift = (index - SUB_BUCKETS) / SUB_BUCKETS;
    let sub = (index - SUB_BUCKETS) % SUB_BUCKETS;
    ((SUB_BUCKETS + sub) << shift, 1 << shift)
}

/// The value that stands for bucket `index`: its midpoint (a one-µs
/// bucket stands for its own value).
fn representative(index: usize) -> Duration {
    let (low, width) = bucket_edges(index);
    Duration::from_nanos(low * 1_000 + width * 1_000 / 2 * u64::from(width > 1))
}

/// What [`Producer::stats`](super::Producer::stats) tells of the latency
/// of sends that succeeded: from the call to the broker's answer, retries
/// included.
///
/// Percentiles come from a histogram whose buckets are at most 12.5 % of
/// their value wide: a percentile is its bucket's midpoint (within 6.25 %
/// of the true value), never above `max`, which is exact.
///
/// # Examples
///
/// ```no_run
/// # async fn example(producer: metaq::Producer) -> Result<(), metaq::Error> {
/// producer.send(metaq::Message::new("orders", "hello")).await?;
/// let latency = producer.stats().latency;
/// println!(
///     "{} sends: p50 {:?}, p99 {:?}, max {:?}",
///     latency.count, latency.p50, latency.p99, latency.max
/// );
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LatencySummary {
    /// Sends counted: those that succeeded.
    pub count: u64,
    /// Half of the sends took at most about this long.
    pub p50: Duration,
    /// 99 % of the sends took at most about this long.
    pub p99: Duration,
    /// The longest send.
    pub max: Duration,
}

/// The live histogram behind [`LatencySummary`].
#[derive(Debug)]
pub(crate) struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS],
    /// The longest latency recorded, in ns.
    max_nanos: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            max_nanos: AtomicU64::new(0),
        }
    }
}

impl LatencyHistogram {
    /// Counts one latency.
    pub(crate) fn record(&self, latency: Duration) {
        // In 64 bits (584 years of nanoseconds): `as_nanos` is 128-bit.
        let nanos = latency
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(latency.subsec_nanos()));
        self.buckets[bucket_of(nanos / 1_000)].fetch_add(1, Ordering::Relaxed);
        // A new maximum is rare: read first, and only then pay for the
        // read-modify-write.
        if nanos > self.max_nanos.load(Ordering::Relaxed) {
            self.max_nanos.fetch_max(nanos, Ordering::Relaxed);
        }
    }

    /// Count and percentiles as of now (sends recorded meanwhile may or
    /// may not be in it).
    pub(crate) fn summary(&self) -> LatencySummary {
        let counts: [u64; BUCKETS] =
            std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed));
        let count = counts.iter().sum();
        let max = Duration::from_nanos(self.max_nanos.load(Ordering::Relaxed));
        LatencySummary {
            count,
            p50: percentile(&counts, count, (50, 100)).min(max),
            p99: percentile(&counts, count, (99, 100)).min(max),
            max,
        }
    }
}

/// The value below which a share `quantile` (a fraction: 99/100) of
/// `count` values lie: the representative of the bucket holding the value
/// of that rank.
fn percentile(counts: &[u64], count: u64, quantile: (u64, u64)) -> Duration {
    if count == 0 {
        return Duration::ZERO;
    }
    // The rank (1-based) of the value wanted: the smallest that has at
    // least `quantile` of the values at or below it. In integers, so that
    // 99 % of 100 is 99, not 100 through a rounding error.
    let (part, whole) = (u128::from(quantile.0), u128::from(quantile.1));
    let rank = (u128::from(count) * part).div_ceil(whole);
    let rank = u64::try_from(rank).unwrap_or(count).clamp(1, count);
    let mut seen = 0;
    for (index, &n) in counts.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return representative(index);
        }
    }
    representative(counts.len() - 1) // not reached: the counts sum to `count`
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn small_values_have_a_bucket_each() {
        for v in 0..SUB_BUCKETS {
            assert_eq!(bucket_of(v), v as usize);
            assert_eq!(bucket_edges(v as usize), (v, 1));
        }
        assert_eq!(representative(5), micros(5));
    }

    #[test]
    fn bucket_edges_double_every_eight_buckets() {
        // 8..16 µs: one µs wide; 16..32: two; 32..64: four.
        assert_eq!(bucket_of(8), 8);
        assert_eq!(bucket_of(15), 15);
        assert_eq!(bucket_of(16), 16);
        assert_eq!(bucket_of(17), 16);
        assert_eq!(bucket_of(18), 17);
        assert_eq!(bucket_of(31), 23);
        assert_eq!(bucket_of(32), 24);
        assert_eq!(bucket_edges(16), (16, 2));
        assert_eq!(bucket_edges(24), (32, 4));
        assert_eq!(representative(24), micros(34));
    }

    #[test]
    fn every_value_falls_between_its_buckets_edges() {
        let mut v = 0;
        while v <= MAX_MICROS {
            let index = bucket_of(v);
            let (low, width) = bucket_edges(index);
            assert!(low <= v && v < low + width, "{v} in {index}: {low}+{width}");
            // Buckets are narrow: at most an eighth of their lower edge.
            assert!(width == 1 || width * 8 <= low, "{index}: {low}+{width}");
            v = v * 9 / 8 + 1;
        }
    }

    #[test]
    fn buckets_are_contiguous_up_to_sixty_seconds() {
        for index in 1..BUCKETS {
            let (low, _) = bucket_edges(index);
            let (previous, width) = bucket_edges(index - 1);
            assert_eq!(previous + width, low, "gap before bucket {index}");
        }
        assert_eq!(BUCKETS, 191);
        let (low, width) = bucket_edges(BUCKETS - 1);
        assert!(low <= MAX_MICROS && MAX_MICROS < low + width);
        // Longer values count in the last bucket.
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn an_empty_histogram_says_zero() {
        assert_eq!(
            LatencyHistogram::default().summary(),
            LatencySummary::default()
        );
    }

    #[test]
    fn percentiles_come_from_the_bucket_of_their_rank() {
        let histogram = LatencyHistogram::default();
        // 98 sends of 100 µs, one of 1 ms, one of 50 ms.
        for _ in 0..98 {
            histogram.record(micros(100));
        }
        histogram.record(micros(1_000));
        histogram.record(Duration::from_millis(50));
        let summary = histogram.summary();
        assert_eq!(summary.count, 100);
        // 100 µs is in [96, 104): its midpoint is 100 µs.
        assert_eq!(summary.p50, micros(100));
        // The 99th value is 1 ms, in [960, 1024): midpoint 992 µs.
        assert_eq!(summary.p99, micros(992));
        assert_eq!(summary.max, Duration::from_millis(50));
    }

    #[test]
    fn percentiles_are_within_a_sixteenth_of_the_value() {
        for v in [9, 100, 777, 12_345, 3_000_000, 59_000_000] {
            let histogram = LatencyHistogram::default();
            histogram.record(micros(v));
            histogram.record(micros(v * 2));
            let p50 = histogram.summary().p50.as_micros() as f64;
            let error = (p50 - v as f64).abs() / v as f64;
            assert!(error <= 1.0 / 16.0, "{v} µs reads as {p50} µs");
        }
    }

    #[test]
    fn no_percentile_exceeds_the_exact_maximum() {
        let histogram = LatencyHistogram::default();
        // 960 µs is the bottom of [960, 1024): its midpoint is above it.
        histogram.record(micros(960));
        let summary = histogram.summary();
        assert_eq!(summary.p50, micros(960));
        assert_eq!(summary.p99, micros(960));
        assert_eq!(summary.max, micros(960));
    }

    #[test]
    fn latencies_past_sixty_seconds_count_in_the_last_bucket() {
        let histogram = LatencyHistogram::default();
        histogram.record(Duration::from_secs(100));
        let summary = histogram.summary();
        assert_eq!(summary.count, 1);
        assert_eq!(summary.max, Duration::from_secs(100));
        let (low, _) = bucket_edges(BUCKETS - 1);
        assert!(summary.p99 >= micros(low), "{summary:?}");
    }
}
