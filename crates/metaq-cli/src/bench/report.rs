//! The figures of each run, their medians, and how they are printed: one
//! line per run for people, one JSON object for scripts (`--json`).

use serde::Serialize;

use super::measure::Measurement;

/// What one run of metaq or of the raw writer achieved.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Figures {
    pub(crate) sent: u64,
    pub(crate) failed: u64,
    pub(crate) elapsed_ms: f64,
    /// Messages answered 200 per second of wall time.
    pub(crate) msgs_per_sec: f64,
    /// Payload bytes (`--size` per message, no framing) per second, in 10^6 bytes.
    pub(crate) mb_per_sec: f64,
    pub(crate) latency_us: Latency,
    /// CPU time (user + system) of this process over the run, per message.
    pub(crate) cpu_us_per_msg: f64,
    /// CPU time of the servers the bench started (all their threads), per
    /// message; absent with `--zk`.
    pub(crate) server_cpu_us_per_msg: Option<f64>,
    /// Peak resident memory of this process during the run.
    pub(crate) peak_rss_kib: Option<u64>,
    /// Why the first failed message failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) first_error: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Latency {
    pub(crate) p50: Option<f64>,
    pub(crate) p90: Option<f64>,
    pub(crate) p99: Option<f64>,
    pub(crate) p999: Option<f64>,
    pub(crate) max: Option<f64>,
}

impl Figures {
    pub(crate) fn new(measurement: &Measurement, payload_size: usize) -> Figures {
        let tally = &measurement.tally;
        let seconds = measurement.elapsed.as_secs_f64().max(1e-9);
        let messages = (tally.sent + tally.failed).max(1) as f64;
        let histogram = &tally.latency;
        let p = |q| histogram.percentile_us(q).map(round1);
        Figures {
            sent: tally.sent,
            failed: tally.failed,
            elapsed_ms: round1(seconds * 1000.0),
            msgs_per_sec: round1(tally.sent as f64 / seconds),
            mb_per_sec: round2(tally.sent as f64 * payload_size as f64 / 1e6 / seconds),
            latency_us: Latency {
                p50: p(0.5),
                p90: p(0.9),
                p99: p(0.99),
                p999: p(0.999),
                max: histogram.max_us().map(round1),
            },
            cpu_us_per_msg: round2(measurement.cpu.as_secs_f64() * 1e6 / messages),
            server_cpu_us_per_msg: measurement
                .server_cpu
                .map(|cpu| round2(cpu.as_secs_f64() * 1e6 / messages)),
            peak_rss_kib: measurement.peak_rss_kib,
            first_error: tally.first_error.clone(),
        }
    }

    /// Each figure's median over `runs` (not the figures of the median run).
    pub(crate) fn median(runs: &[Figures]) -> Figures {
        let of = |f: fn(&Figures) -> f64| median(runs.iter().map(f).collect());
        let of_opt = |f: fn(&Figures) -> Option<f64>| {
            let values: Vec<f64> = runs.iter().filter_map(f).collect();
            (!values.is_empty()).then(|| median(values))
        };
        Figures {
            sent: of(|f| f.sent as f64) as u64,
            failed: of(|f| f.failed as f64) as u64,
            elapsed_ms: of(|f| f.elapsed_ms),
            msgs_per_sec: of(|f| f.msgs_per_sec),
            mb_per_sec: of(|f| f.mb_per_sec),
            latency_us: Latency {
                p50: of_opt(|f| f.latency_us.p50),
                p90: of_opt(|f| f.latency_us.p90),
                p99: of_opt(|f| f.latency_us.p99),
                p999: of_opt(|f| f.latency_us.p999),
                max: of_opt(|f| f.latency_us.max),
            },
            cpu_us_per_msg: of(|f| f.cpu_us_per_msg),
            server_cpu_us_per_msg: of_opt(|f| f.server_cpu_us_per_msg),
            peak_rss_kib: of_opt(|f| f.peak_rss_kib.map(|k| k as f64)).map(|k| k as u64),
            first_error: runs.iter().find_map(|f| f.first_error.clone()),
        }
    }
}

/// metaq's medians over the raw writer's.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Ratio {
    /// Throughput: above 1 would mean metaq is faster than the wire allows.
    pub(crate) msgs_per_sec: f64,
    /// Latency: 1.1 means metaq's median latency is 10 % above raw's.
    pub(crate) p50: Option<f64>,
    pub(crate) p99: Option<f64>,
}

impl Ratio {
    pub(crate) fn new(metaq: &Figures, raw: &Figures) -> Ratio {
        let divide = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(round3(a / b)),
            _ => None,
        };
        Ratio {
            msgs_per_sec: if raw.msgs_per_sec > 0.0 {
                round3(metaq.msgs_per_sec / raw.msgs_per_sec)
            } else {
                0.0
            },
            p50: divide(metaq.latency_us.p50, raw.latency_us.p50),
            p99: divide(metaq.latency_us.p99, raw.latency_us.p99),
        }
    }
}

/// One line for a person: `label  123,456 msgs/s  12.3 MB/s  latency ...`.
pub(crate) fn line(label: &str, figures: &Figures) -> String {
    let l = &figures.latency_us;
    let us = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
    let rss = figures
        .peak_rss_kib
        .map_or("-".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    let server = figures
        .server_cpu_us_per_msg
        .map_or(String::new(), |cpu| format!(" (server {cpu:.2})"));
    let mut text = format!(
        "{label:<14} {:>11} msgs/s {:>8.1} MB/s  latency µs p50 {} p90 {} p99 {} p99.9 {}  cpu {:.2}{server} µs/msg  peak rss {rss}",
        thousands(figures.msgs_per_sec.round() as u64),
        figures.mb_per_sec,
        us(l.p50),
        us(l.p90),
        us(l.p99),
        us(l.p999),
        figures.cpu_us_per_msg,
    );
    if figures.failed > 0 {
        text.push_str(&format!("  FAILED {}", figures.failed));
        if let Some(error) = &figures.first_error {
            text.push_str(&format!(" (first: {error})"));
        }
    }
    text
}

pub(crate) fn ratio_line(ratio: &Ratio) -> String {
    let mut text = format!("metaq/raw      msgs/s ×{:.3}", ratio.msgs_per_sec);
    if let (Some(p50), Some(p99)) = (ratio.p50, ratio.p99) {
        text.push_str(&format!("  latency p50 ×{p50:.2} p99 ×{p99:.2}"));
    }
    text
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(msgs_per_sec: f64, p50: f64) -> Figures {
        Figures {
            sent: 10,
            failed: 0,
            elapsed_ms: 1.0,
            msgs_per_sec,
            mb_per_sec: 0.0,
            latency_us: Latency {
                p50: Some(p50),
                p99: Some(p50 * 2.0),
                ..Latency::default()
            },
            cpu_us_per_msg: 1.0,
            server_cpu_us_per_msg: None,
            peak_rss_kib: Some(1024),
            first_error: None,
        }
    }

    #[test]
    fn medians_are_per_figure() {
        let runs = [
            figures(300.0, 10.0),
            figures(100.0, 30.0),
            figures(200.0, 20.0),
        ];
        let median = Figures::median(&runs);
        assert_eq!(median.msgs_per_sec, 200.0);
        assert_eq!(median.latency_us.p50, Some(20.0));
        assert_eq!(median.latency_us.p90, None);
        let even = Figures::median(&runs[..2]);
        assert_eq!(even.msgs_per_sec, 200.0);
    }

    #[test]
    fn ratio_is_metaq_over_raw() {
        let ratio = Ratio::new(&figures(100.0, 30.0), &figures(400.0, 20.0));
        assert_eq!(ratio.msgs_per_sec, 0.25);
        assert_eq!(ratio.p50, Some(1.5));
        assert_eq!(ratio.p99, Some(1.5));
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }
}
