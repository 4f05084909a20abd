//! What `metaq produce` prints: a line per result (JSON with `--json`,
//! failures only otherwise), a progress bar on a terminal, and a summary.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use metaq::producer::{OneWayStats, OrderedSend, OrderedStats};
use metaq::{Error, Partition, ProducerStats, SendResult};
use serde_json::json;

/// Why sending stopped.
pub(super) enum Ended {
    /// Every record was read.
    Complete,
    /// SIGINT: input was left unread, or the last answers not all awaited.
    Interrupted,
    /// Standard input could not be read: why.
    InputFailed(String),
}

/// One transaction's records (`first_line..=last_line`), as reported.
pub(super) struct TransactionReport<'a> {
    pub(super) key: &'a str,
    pub(super) first_line: u64,
    pub(super) last_line: u64,
    pub(super) messages: u64,
}

pub(super) struct Output {
    json: bool,
    progress: ProgressBar,
    started: Instant,
    sent: u64,
    failed: u64,
    /// Sends given up on after an interrupt, their outcome unknown.
    unanswered: u64,
    per_partition: BTreeMap<String, u64>,
    /// With `--oneway`: the one-way producer's counters, for the summary.
    one_way: Option<OneWayStats>,
    /// With `--ordered`: records kept in the local store.
    stored: u64,
    /// With `--ordered`: the ordered producer's counters at the end.
    ordered: Option<OrderedStats>,
}

impl Output {
    /// `total`: how many messages there will be, if known (for the bar).
    pub(super) fn new(json: bool, total: Option<u64>) -> Output {
        Output {
            json,
            progress: progress_bar(total, json),
            started: Instant::now(),
            sent: 0,
            failed: 0,
            unanswered: 0,
            per_partition: BTreeMap::new(),
            one_way: None,
            stored: 0,
            ordered: None,
        }
    }

    /// The outcome of record `line`'s ordered send: sent (reported as by
    /// [`result`](Self::result)), stored locally, or failed.
    pub(super) fn ordered_result(&mut self, line: u64, outcome: &Result<OrderedSend, Error>) {
        let (partition, seq) = match outcome {
            Ok(OrderedSend::Sent(sent)) => return self.result(line, &Ok(sent.clone())),
            Err(error) => return self.result(line, &Err(error.clone())),
            Ok(OrderedSend::Stored { partition, seq }) => (*partition, *seq),
            // `OrderedSend` is non-exhaustive: a future outcome is neither
            // sent nor failed here.
            Ok(other) => {
                self.progress.inc(1);
                say!("record {line}: {other:?}");
                return;
            }
        };
        self.progress.inc(1);
        self.stored += 1;
        if self.json {
            say!(
                "{}",
                json!({
                    "line": line,
                    "stored": true,
                    "partition": partition.to_string(),
                    "seq": seq,
                })
            );
        } else {
            self.progress.suspend(|| {
                say!("record {line} stored locally for partition {partition} (seq {seq}): sent when the partition is back");
            });
        }
    }

    /// With `--ordered`, at the end: the ordered producer's counters.
    pub(super) fn ordered(&mut self, stats: OrderedStats) {
        self.ordered = Some(stats);
    }

    /// The outcome of record `line`'s send.
    pub(super) fn result(&mut self, line: u64, outcome: &Result<SendResult, Error>) {
        self.progress.inc(1);
        match outcome {
            Ok(sent) => {
                self.sent += 1;
                self.count_partition(sent.partition);
                if self.json {
                    // `id_str`: JSON tools that read numbers as doubles
                    // (jq) change ids above 2^53.
                    say!(
                        "{}",
                        json!({
                            "line": line,
                            "partition": sent.partition.to_string(),
                            "offset": sent.offset,
                            "id": sent.message_id,
                            "id_str": sent.message_id.to_string(),
                        })
                    );
                }
            }
            Err(error) => {
                self.failed += 1;
                let kind = kind(error);
                if self.json {
                    say!(
                        "{}",
                        json!({ "line": line, "error": error.to_string(), "kind": kind })
                    );
                } else {
                    self.progress
                        .suspend(|| eprintln!("record {line} failed ({kind}): {error}"));
                }
            }
        }
    }

    /// A transaction that ended as asked (committed, or rolled back with
    /// `--rollback`), with the partitions of its messages.
    pub(super) fn transaction_done(
        &mut self,
        report: &TransactionReport<'_>,
        state: &str,
        partitions: &[Partition],
    ) {
        self.progress.inc(report.messages);
        self.sent += report.messages;
        for partition in partitions {
            self.count_partition(*partition);
        }
        if self.json {
            say!(
                "{}",
                json!({
                    "transaction": report.key,
                    "messages": report.messages,
                    "first_line": report.first_line,
                    "last_line": report.last_line,
                    "state": state,
                })
            );
        }
    }

    /// A transaction that failed: none of its messages counts as sent.
    pub(super) fn transaction_failed(&mut self, report: &TransactionReport<'_>, error: &Error) {
        self.progress.inc(report.messages);
        self.failed += report.messages;
        let kind = kind(error);
        if self.json {
            say!(
                "{}",
                json!({
                    "transaction": report.key,
                    "messages": report.messages,
                    "first_line": report.first_line,
                    "last_line": report.last_line,
                    "error": error.to_string(),
                    "kind": kind,
                })
            );
        } else {
            let (first, last) = (report.first_line, report.last_line);
            self.progress.suspend(|| {
                eprintln!("transaction of records {first}..={last} failed ({kind}): {error}")
            });
        }
    }

    /// With `--oneway`, after close: the counts come from the one-way
    /// producer (messages still pending are unanswered).
    pub(super) fn one_way(&mut self, stats: OneWayStats) {
        self.progress.inc(stats.accepted);
        self.sent += stats.sent;
        self.failed += stats.failed();
        self.unanswered += stats.in_window as u64;
        self.one_way = Some(stats);
    }

    /// Sends left without an answer after an interrupt.
    pub(super) fn unanswered(&mut self, count: u64) {
        self.unanswered += count;
    }

    /// Prints the summary; whether any message failed or went unanswered.
    /// Prints the summary (with the producer's counters when `stats` is
    /// given); true if a send failed or was left unanswered.
    pub(super) fn summary(self, ended: &Ended, stats: Option<&ProducerStats>) -> bool {
        self.progress.finish_and_clear();
        let elapsed = self.started.elapsed();
        let rate = (self.sent + self.failed) as f64 / elapsed.as_secs_f64().max(1e-9);
        let interrupted = matches!(ended, Ended::Interrupted);
        if self.json {
            let mut summary = json!({
                "sent": self.sent,
                "failed": self.failed,
                "unanswered": self.unanswered,
                "interrupted": interrupted,
                "elapsed_ms": elapsed.as_millis() as u64,
                "msgs_per_sec": (rate * 10.0).round() / 10.0,
                "per_partition": self.per_partition,
            });
            if let Some(stats) = stats {
                summary["stats"] = stats_json(stats);
            }
            if let Some(one_way) = &self.one_way {
                summary["one_way"] = one_way_json(one_way);
            }
            if let Some(ordered) = &self.ordered {
                summary["ordered"] = ordered_json(ordered);
            }
            say!("{summary}");
        } else {
            print_text_summary(&self, elapsed, rate, interrupted);
            if let Some(one_way) = &self.one_way {
                say!("{}", one_way_line(one_way));
            }
            if let Some(ordered) = &self.ordered {
                say!("{}", ordered_line(ordered));
            }
            if let Some(stats) = stats {
                print_text_stats(stats);
            }
        }
        self.failed > 0 || self.unanswered > 0
    }

    fn count_partition(&mut self, partition: Partition) {
        *self.per_partition.entry(partition.to_string()).or_default() += 1;
    }
}

fn print_text_summary(output: &Output, elapsed: Duration, rate: f64, interrupted: bool) {
    say!(
        "sent {} failed {} in {:.3}s ({:.0} msgs/s)",
        output.sent,
        output.failed,
        elapsed.as_secs_f64(),
        rate
    );
    if interrupted {
        say!(
            "interrupted: {} send(s) left without an answer",
            output.unanswered
        );
    }
    for (partition, count) in &output.per_partition {
        say!("  {partition}: {count}");
    }
}

/// `Producer::stats()` as a JSON object, one key per field.
fn stats_json(stats: &ProducerStats) -> serde_json::Value {
    json!({
        "sent": stats.sent,
        "failed_not_sent": stats.failed_not_sent,
        "failed_maybe_sent": stats.failed_maybe_sent,
        "failed_rejected": stats.failed_rejected,
        "failed_other": stats.failed_other,
        "retries": stats.retries,
        "retries_after_maybe_sent": stats.retries_after_maybe_sent,
        "in_flight": stats.in_flight,
        "route_changes": stats.route_changes,
        "latency_us": {
            "count": stats.latency.count,
            "p50": stats.latency.p50.as_micros() as u64,
            "p99": stats.latency.p99.as_micros() as u64,
            "max": stats.latency.max.as_micros() as u64,
        },
        "brokers": stats.brokers.iter().map(|b| json!({
            "id": b.broker_id,
            "uri": b.uri.to_string(),
            "sent": b.sent,
            "failed": b.failed,
            "in_flight": b.in_flight,
            "slow": b.slow,
            "latency_us": b.latency.as_micros() as u64,
            "serving": b.serving,
        })).collect::<Vec<_>>(),
    })
}

fn print_text_stats(stats: &ProducerStats) {
    say!(
        "producer stats: sent {}, failed {} (not sent {}, maybe sent {}, rejected {}, other {}), \
         retries {} ({} after a maybe-sent attempt: possible duplicates), in flight {}",
        stats.sent,
        stats.failed(),
        stats.failed_not_sent,
        stats.failed_maybe_sent,
        stats.failed_rejected,
        stats.failed_other,
        stats.retries,
        stats.retries_after_maybe_sent,
        stats.in_flight
    );
    let latency = &stats.latency;
    say!(
        "latency of {} sends: p50 {} µs, p99 {} µs, max {} µs; {} route change(s)",
        latency.count,
        latency.p50.as_micros(),
        latency.p99.as_micros(),
        latency.max.as_micros(),
        stats.route_changes
    );
    for broker in &stats.brokers {
        say!(
            "  broker {} {}: sent {}, failed attempts {}, in flight {}, latency {} µs{}{}",
            broker.broker_id,
            broker.uri,
            broker.sent,
            broker.failed,
            broker.in_flight,
            broker.latency.as_micros(),
            if broker.slow { ", slow" } else { "" },
            if broker.serving {
                ""
            } else {
                ", no longer serving"
            },
        );
    }
}

/// The summary's `one_way` object.
fn one_way_json(stats: &OneWayStats) -> serde_json::Value {
    serde_json::json!({
        "accepted": stats.accepted,
        "sent": stats.sent,
        "failed_not_sent": stats.failed_not_sent,
        "failed_maybe_sent": stats.failed_maybe_sent,
        "failed_rejected": stats.failed_rejected,
        "failed_other": stats.failed_other,
        "pending": stats.in_window,
        "spilled": stats.spilled,
        "replayed": stats.replayed,
        "spill_held": stats.spill_held,
    })
}

/// The summary's one-way line.
fn one_way_line(stats: &OneWayStats) -> String {
    format!(
        "one-way: accepted {}, sent {}, failed {} (not sent {}, maybe sent {}, rejected {}, other {}), pending {}; spilled {}, replayed {}, spill held {}",
        stats.accepted,
        stats.sent,
        stats.failed(),
        stats.failed_not_sent,
        stats.failed_maybe_sent,
        stats.failed_rejected,
        stats.failed_other,
        stats.in_window,
        stats.spilled,
        stats.replayed,
        stats.spill_held
    )
}

/// The summary's `ordered` object.
fn ordered_json(stats: &OrderedStats) -> serde_json::Value {
    json!({
        "sent": stats.sent,
        "stored": stats.stored,
        "stored_after_maybe_sent": stats.stored_after_maybe_sent,
        "replayed": stats.replayed,
        "dropped_in_replay": stats.dropped_in_replay,
        "held_now": stats.held_messages,
        "held_bytes": stats.held_bytes,
    })
}

/// The summary's ordered line.
fn ordered_line(stats: &OrderedStats) -> String {
    format!(
        "ordered: sent {}, stored {} ({} after a maybe-sent put), replayed {}, dropped in replay {}, held now {} ({} bytes)",
        stats.sent,
        stats.stored,
        stats.stored_after_maybe_sent,
        stats.replayed,
        stats.dropped_in_replay,
        stats.held_messages,
        stats.held_bytes
    )
}

/// `not_sent`, `maybe_sent`, `rejected`, or `error` for the rest.
fn kind(error: &Error) -> String {
    error
        .delivery()
        .map_or("error".to_owned(), |d| d.to_string())
}

fn progress_bar(total: Option<u64>, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() || total.is_some_and(|t| t < 1000) {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(total) => ProgressBar::new(total),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
