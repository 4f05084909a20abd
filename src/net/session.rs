//! One socket's lifetime: write queued requests, read answers, time requests
//! out, heartbeat.
//!
//! Reading and writing happen in one `select!` loop with cancel-safe
//! `write`, so a broker that is busy writing answers is always read from
//! while requests are still going out (no write/write deadlock).
//!
//! Every request remembers the stream position where its frame ends. When
//! the socket dies, requests whose whole frame was handed to the kernel are
//! reported as lost after writing (maybe stored); the rest as not written (a
//! partial frame can never be decoded by the broker).

use std::pin::pin;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures::{FutureExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::inflight::Requests;
use super::next_opaque;
use super::settings::ConnectionSettings;
use crate::protocol::{
    ClientCodec, CodecError, DecodeLimits, Request as Frame, Response, DEFAULT_MAX_LINE,
};

/// Non-200 heartbeat answers in a row before the connection is dropped.
const HEARTBEAT_FAILURES: u32 = 3;

pub(crate) enum SessionEnd {
    /// Closed on purpose (or every handle dropped): do not reconnect.
    Closed,
    /// The socket or the peer failed: reconnect.
    Failed(String),
}

struct Heartbeat {
    opaque: i32,
    deadline: Instant,
}

/// Serves `requests` on `stream` until it fails or `close` is cancelled.
/// The caller has opened the table's session for `stream`; this closes it,
/// after `mark_down`, so that a caller retrying at once sees the connection
/// down.
pub(crate) async fn run_session(
    stream: TcpStream,
    requests: &Requests,
    settings: &ConnectionSettings,
    close: &CancellationToken,
    mark_down: impl FnOnce(),
) -> SessionEnd {
    let (read_half, mut write_half) = stream.into_split();
    let limits = DecodeLimits {
        max_line: DEFAULT_MAX_LINE,
        max_body: settings.max_response_body,
    };
    let mut answers = FramedRead::new(read_half, ClientCodec::new(limits));
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut written: u64 = 0; // bytes ever written to the socket

    // Idleness is measured on what the broker sends: a broker that reads
    // requests but never answers must be heartbeaten even while requests
    // keep being written to it.
    let mut last_read = Instant::now();
    let mut heartbeat: Option<Heartbeat> = None;
    let mut heartbeat_failures = 0;
    // The earliest request deadline, as the table last told.
    let mut request_deadline: Option<Instant> = None;
    let mut timer = pin!(sleep_until(last_read + settings.heartbeat_interval));
    // Answers taken in one batch, and why reading stopped, if it did.
    let mut answered: Vec<Response> = Vec::new();
    let mut wakers = Vec::new();
    let mut failure: Option<String> = None;

    let end = loop {
        let check_at = match &heartbeat {
            Some(h) => h.deadline,
            None => last_read + settings.heartbeat_interval,
        };
        let wake_at = request_deadline.map_or(check_at, |at| at.min(check_at));
        if timer.deadline() != wake_at {
            timer.as_mut().reset(wake_at);
        }
        tokio::select! {
            biased;
            _ = close.cancelled() => break SessionEnd::Closed,
            frame = answers.next() => {
                // Take every answer already buffered in one go: one clock
                // read and one lock of the table for the lot.
                let mut frame = frame;
                loop {
                    match frame {
                        Some(Ok(response)) => {
                            if heartbeat.as_ref().is_some_and(|h| h.opaque == response.opaque) {
                                heartbeat = None;
                                if response.code.is_success() {
                                    heartbeat_failures = 0;
                                } else {
                                    heartbeat_failures += 1;
                                }
                            } else {
                                answered.push(response);
                            }
                        }
                        Some(Err(CodecError::Io(e))) => {
                            failure = Some(format!("read failed: {e}"));
                            break;
                        }
                        Some(Err(e)) => {
                            failure = Some(format!("garbled answer: {e}"));
                            break;
                        }
                        None => {
                            failure = Some("closed by the broker".into());
                            break;
                        }
                    }
                    match answers.next().now_or_never() {
                        Some(next) => frame = next,
                        None => break,
                    }
                }
                last_read = Instant::now();
                if let Some(opaque) = requests.answer_all(&mut answered, &mut wakers, last_read) {
                    break SessionEnd::Failed(format!("answer for unknown opaque {opaque}"));
                }
                if let Some(reason) = failure.take() {
                    break SessionEnd::Failed(reason);
                }
                if heartbeat_failures >= HEARTBEAT_FAILURES {
                    break SessionEnd::Failed(format!("{HEARTBEAT_FAILURES} failed heartbeats"));
                }
            }
            written_now = write_half.write(&out), if !out.is_empty() => match written_now {
                Ok(0) => break SessionEnd::Failed("socket closed for writing".into()),
                Ok(n) => {
                    out.advance(n);
                    written += n as u64;
                    if out.is_empty() {
                        // Whatever was queued meanwhile goes in the next write.
                        requests.take_output(&mut out);
                    }
                }
                Err(e) => break SessionEnd::Failed(format!("write failed: {e}")),
            },
            _ = requests.wake_session.notified() => {
                if out.is_empty() {
                    requests.take_output(&mut out);
                }
                request_deadline = requests.expire(Instant::now());
            }
            _ = &mut timer => {
                let now = Instant::now();
                request_deadline = requests.expire(now);
                if now < check_at {
                    continue;
                }
                if heartbeat.is_some() {
                    break SessionEnd::Failed(format!("no heartbeat answer within {:?}", settings.heartbeat_timeout));
                }
                let opaque = next_opaque();
                // `version` never fails to encode.
                requests.queue_own(|out| {
                    let _ = Frame::Version { opaque }.encode(out);
                });
                if out.is_empty() {
                    requests.take_output(&mut out);
                }
                heartbeat = Some(Heartbeat {
                    opaque,
                    deadline: now + settings.heartbeat_timeout,
                });
                debug!(opaque, "heartbeat");
            }
        }
    };

    if let SessionEnd::Failed(reason) = &end {
        warn!(%reason, "connection failed");
    }
    // Before any waiter hears of the failure: a caller that retries at once
    // must see this connection down, not pick it again.
    mark_down();
    let reason = match &end {
        SessionEnd::Closed => "connection closed",
        SessionEnd::Failed(reason) => reason.as_str(),
    };
    requests.close_session(written, reason);
    // A graceful close flushes what is left; a failed socket cannot.
    if matches!(end, SessionEnd::Closed) {
        let _ = tokio::time::timeout(Duration::from_secs(1), write_half.shutdown()).await;
    }
    end
}
