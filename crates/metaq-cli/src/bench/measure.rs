//! What one run measures around its sends: wall time, CPU time and peak
//! RSS of this process.
//!
//! CPU is `getrusage(RUSAGE_SELF)` (user + system, every thread) taken
//! before and after the run. The servers `metaq bench` starts run in child
//! processes, so this is the producer's CPU (with its runtime and the
//! bench loop), or the raw writer's, never the server's.
//!
//! The servers' own CPU is summed from `/proc/<pid>/task/*/schedstat` of
//! the child processes (nanoseconds on CPU per thread), to show how small
//! the null server's share is; it is unknown for servers the bench did not
//! start.
//!
//! Peak RSS is the kernel's high-water mark (`VmHWM`), reset before each run
//! through `/proc/self/clear_refs` so that it belongs to that run; where the
//! reset is refused it is the peak since the process started.

use std::time::{Duration, Instant};

use nix::sys::resource::{getrusage, UsageWho};

use super::histogram::Histogram;

/// Counts and latencies a run hands back.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) sent: u64,
    pub(crate) failed: u64,
    pub(crate) latency: Histogram,
    /// The first failure, to show the user why.
    pub(crate) first_error: Option<String>,
}

impl Tally {
    pub(crate) fn fail(&mut self, error: impl FnOnce() -> String) {
        self.failed += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error());
        }
    }

    pub(crate) fn merge(&mut self, other: Tally) {
        self.sent += other.sent;
        self.failed += other.failed;
        self.latency.merge(&other.latency);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// A finished run: its tally with the time, CPU and memory it took.
pub(crate) struct Measurement {
    pub(crate) tally: Tally,
    pub(crate) elapsed: Duration,
    pub(crate) cpu: Duration,
    /// CPU of the servers the bench started, when it could be read.
    pub(crate) server_cpu: Option<Duration>,
    pub(crate) peak_rss_kib: Option<u64>,
}

/// Started right before a run's first send.
pub(crate) struct Meter {
    started: Instant,
    cpu_before: Duration,
    servers: Vec<u32>,
    server_cpu_before: Option<Duration>,
}

impl Meter {
    /// `servers`: pids of the server processes to account apart.
    pub(crate) fn start(servers: &[u32]) -> Meter {
        reset_peak_rss();
        Meter {
            server_cpu_before: servers_cpu_time(servers),
            servers: servers.to_vec(),
            cpu_before: cpu_time(),
            started: Instant::now(),
        }
    }

    pub(crate) fn finish(self, tally: Tally) -> Measurement {
        let elapsed = self.started.elapsed();
        let cpu = cpu_time().saturating_sub(self.cpu_before);
        let server_cpu = match (self.server_cpu_before, servers_cpu_time(&self.servers)) {
            (Some(before), Some(after)) => Some(after.saturating_sub(before)),
            _ => None,
        };
        Measurement {
            tally,
            elapsed,
            cpu,
            server_cpu,
            peak_rss_kib: peak_rss_kib(),
        }
    }
}

/// CPU time of every thread of every process in `pids`; `None` when there
/// is none or one cannot be read.
fn servers_cpu_time(pids: &[u32]) -> Option<Duration> {
    if pids.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    for pid in pids {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
        for task in tasks.flatten() {
            // A thread that ended since the listing has no schedstat left:
            // skip it rather than lose the whole figure.
            let Ok(schedstat) = std::fs::read_to_string(task.path().join("schedstat")) else {
                continue;
            };
            let nanos: u64 = schedstat.split_whitespace().next()?.parse().ok()?;
            total += Duration::from_nanos(nanos);
        }
    }
    Some(total)
}

/// User plus system time of every thread of this process so far.
fn cpu_time() -> Duration {
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(usage) => {
            let micros = |t: nix::sys::time::TimeVal| {
                Duration::from_secs(t.tv_sec().max(0) as u64)
                    + Duration::from_micros(t.tv_usec().max(0) as u64)
            };
            micros(usage.user_time()) + micros(usage.system_time())
        }
        // getrusage(RUSAGE_SELF) cannot fail on Linux; zero shows as 0 µs.
        Err(_) => Duration::ZERO,
    }
}

/// Writing 5 to `clear_refs` resets the peak RSS (Linux 4.0 and later).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_run_uses_cpu_and_memory() {
        let meter = Meter::start(&[std::process::id()]);
        // Spin until this process has used 30 ms of CPU, however busy the
        // machine is (a wall-clock spin gets less CPU under load); the
        // guard only stops a broken clock from spinning for ever.
        let mut spin = 0u64;
        let from = cpu_time();
        let guard = Instant::now() + Duration::from_secs(30);
        while cpu_time() - from < Duration::from_millis(30) && Instant::now() < guard {
            for _ in 0..10_000 {
                spin = std::hint::black_box(spin.wrapping_add(1));
            }
        }
        let measurement = meter.finish(Tally::default());
        assert!(
            measurement.cpu >= Duration::from_millis(10),
            "{:?}",
            measurement.cpu
        );
        assert!(measurement.elapsed >= Duration::from_millis(10));
        assert!(measurement.peak_rss_kib.is_some_and(|kib| kib > 0));
        // This process stands in for a server: its threads' schedstat
        // saw the spin too.
        let server_cpu = measurement.server_cpu.expect("own schedstat is readable");
        assert!(server_cpu >= Duration::from_millis(10), "{server_cpu:?}");
    }
}
