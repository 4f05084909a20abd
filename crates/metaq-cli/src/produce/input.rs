//! Where records come from: `--count` copies of one payload, or standard
//! input cut into records as it arrives.
//!
//! Standard input is read on a thread of its own (a read blocks, and a
//! `tail -f` may not end), which hands records over a bounded channel; so
//! each record is sent as soon as it is read, and a slow cluster slows the
//! reading instead of filling memory. The thread is not waited for: it may
//! sit in a read when the command ends, and the process exit ends it.

use std::io::BufRead;

use bytes::Bytes;
use tokio::sync::mpsc;

use tokio_util::sync::CancellationToken;

use super::checks::Plan;
use super::delimiter::Split;
use super::output::Ended;
use super::pace::Pacer;
use super::ProduceArgs;

/// One message to send.
pub(super) struct Record {
    /// 1-based: the record's place in standard input, or the message's
    /// number with `--count`. Printed as `"line"` so results can be matched
    /// to input.
    pub(super) line: u64,
    /// From `--key-delimiter`; `None` for a record without it (and then
    /// `--key`, if given, applies).
    pub(super) key: Option<Bytes>,
    pub(super) payload: Bytes,
}

/// How standard input is cut into records.
impl Split {
    /// The record `raw` as read (ending with the delimiter unless it is the
    /// last one): the delimiter goes, and with a newline delimiter a `\r`
    /// before it too (CRLF text gives the same records as LF text); every
    /// other byte is kept as it is.
    fn record(&self, line: u64, mut raw: Vec<u8>) -> Record {
        if raw.last() == Some(&self.delimiter) {
            raw.pop();
            if self.delimiter == b'\n' && raw.last() == Some(&b'\r') {
                raw.pop();
            }
        }
        let raw = Bytes::from(raw);
        let Some(key_delimiter) = &self.key_delimiter else {
            return Record {
                line,
                key: None,
                payload: raw,
            };
        };
        match raw
            .windows(key_delimiter.len())
            .position(|w| w == key_delimiter.as_slice())
        {
            Some(at) => Record {
                line,
                key: Some(raw.slice(..at)),
                payload: raw.slice(at + key_delimiter.len()..),
            },
            None => Record {
                line,
                key: None,
                payload: raw,
            },
        }
    }
}

/// Records waiting in the channel from the stdin thread.
const STDIN_BACKLOG: usize = 1024;

enum Source {
    Generated {
        next: u64,
        count: u64,
        payload: Bytes,
    },
    Stdin(mpsc::Receiver<Result<Record, String>>),
}

/// The records to send, paced by `--rate`.
pub(super) struct Input {
    source: Source,
    pacer: Pacer,
    /// Taken from the source but not yet released by the pacer: kept here
    /// so that [`Input::next`] can be cancelled without losing it.
    pending: Option<Result<Record, String>>,
}

impl Input {
    pub(super) fn new(args: &ProduceArgs, plan: &Plan) -> Input {
        let source = if args.stdin {
            Source::Stdin(read_stdin(plan.split.clone()))
        } else {
            Source::Generated {
                next: 1,
                count: args.count,
                payload: plan.payload.clone(),
            }
        };
        Input {
            source,
            pacer: Pacer::new(plan.interval),
            pending: None,
        }
    }

    /// How many records there will be, if known.
    pub(super) fn total(&self) -> Option<u64> {
        match &self.source {
            Source::Generated { count, .. } => Some(*count),
            Source::Stdin(_) => None,
        }
    }

    /// The next record, or how sending ends: input done, input failed, or
    /// the first interrupt (which wins over a record that is ready).
    pub(super) async fn next_or_stop(&mut self, stop: &CancellationToken) -> Result<Record, Ended> {
        tokio::select! {
            biased;
            _ = stop.cancelled() => Err(Ended::Interrupted),
            next = self.next() => match next {
                None => Err(Ended::Complete),
                Some(Err(reason)) => Err(Ended::InputFailed(reason)),
                Some(Ok(record)) => Ok(record),
            },
        }
    }

    /// The next record when the rate allows it; `None` at the end, an
    /// error when standard input could not be read. Cancel-safe.
    pub(super) async fn next(&mut self) -> Option<Result<Record, String>> {
        if self.pending.is_none() {
            self.pending = Some(match &mut self.source {
                Source::Generated {
                    next,
                    count,
                    payload,
                } => {
                    if *next > *count {
                        return None;
                    }
                    *next += 1;
                    Ok(Record {
                        line: *next - 1,
                        key: None,
                        payload: payload.clone(),
                    })
                }
                Source::Stdin(records) => records.recv().await?,
            });
        }
        self.pacer.wait().await;
        self.pending.take()
    }
}

/// Starts the thread reading standard input.
fn read_stdin(split: Split) -> mpsc::Receiver<Result<Record, String>> {
    let (records, receiver) = mpsc::channel(STDIN_BACKLOG);
    std::thread::spawn(move || read_records(std::io::stdin().lock(), &split, &records));
    receiver
}

/// Reads `input` to its end (or until nobody takes records any more),
/// sending each record as soon as it is complete.
fn read_records(
    mut input: impl BufRead,
    split: &Split,
    records: &mpsc::Sender<Result<Record, String>>,
) {
    let mut line = 0;
    loop {
        let mut raw = Vec::new();
        match input.read_until(split.delimiter, &mut raw) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                let error = format!("reading standard input failed after record {line}: {e}");
                let _ = records.blocking_send(Err(error));
                return;
            }
        }
        line += 1;
        if records.blocking_send(Ok(split.record(line, raw))).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(split: &Split, input: &[u8]) -> Vec<(u64, Option<Vec<u8>>, Vec<u8>)> {
        let (sender, mut receiver) = mpsc::channel(64);
        read_records(input, split, &sender);
        drop(sender);
        let mut out = Vec::new();
        while let Ok(record) = receiver.try_recv() {
            let record = record.unwrap();
            out.push((
                record.line,
                record.key.map(|k| k.to_vec()),
                record.payload.to_vec(),
            ));
        }
        out
    }

    fn newline() -> Split {
        Split {
            delimiter: b'\n',
            key_delimiter: None,
        }
    }

    #[test]
    fn records_are_bytes_numbered_from_one() {
        let got = records(&newline(), b"one\n\xff\xfe\n\nfour");
        let payloads: Vec<&[u8]> = got.iter().map(|r| &r.2[..]).collect();
        assert_eq!(payloads, [&b"one"[..], b"\xff\xfe", b"", b"four"]);
        assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
    }

    #[test]
    fn a_trailing_delimiter_makes_no_empty_record() {
        assert_eq!(records(&newline(), b"a\nb\n").len(), 2);
        assert!(records(&newline(), b"").is_empty());
    }

    #[test]
    fn carriage_returns_go_only_before_a_newline_delimiter() {
        let got = records(&newline(), b"a\r\nb\rc\r");
        let payloads: Vec<&[u8]> = got.iter().map(|r| &r.2[..]).collect();
        assert_eq!(payloads, [&b"a"[..], b"b\rc\r"]);
        let semicolon = Split {
            delimiter: b';',
            key_delimiter: None,
        };
        let got = records(&semicolon, b"a\r;b\n;");
        let payloads: Vec<&[u8]> = got.iter().map(|r| &r.2[..]).collect();
        assert_eq!(payloads, [&b"a\r"[..], b"b\n"]);
    }

    #[test]
    fn the_key_ends_at_the_first_key_delimiter() {
        let split = Split {
            delimiter: b'\n',
            key_delimiter: Some(b"::".to_vec()),
        };
        let got = records(&split, b"k::v::w\nnokey\n::empty key\n");
        assert_eq!(got[0].1.as_deref(), Some(&b"k"[..]));
        assert_eq!(got[0].2, b"v::w");
        assert_eq!(got[1].1, None);
        assert_eq!(got[1].2, b"nokey");
        assert_eq!(got[2].1.as_deref(), Some(&b""[..]));
        assert_eq!(got[2].2, b"empty key");
    }
}
