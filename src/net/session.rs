//! One socket's lifetime: write queued requests, read answers, heartbeat.
//!
//! Reading and writing happen in one `select!` loop with cancel-safe
//! `write`, so a broker that is busy writing answers is always read from
//! while requests are still going out (no write/write deadlock).
//!
//! Every request remembers the stream position where its frame ends. When
//! the socket dies, requests whose whole frame was handed to the kernel are
//! reported as lost after writing (maybe stored); the rest as not written (a
//! partial frame can never be decoded by the broker).

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::connection::{ConnError, ConnectionSettings, Request};
use super::next_opaque;
use crate::protocol::{ClientCodec, CodecError, DecodeLimits, Request as Frame, DEFAULT_MAX_LINE};

/// Stop taking requests while this much is waiting to be written.
const WRITE_HIGH_WATER: usize = 1 << 20;
/// Non-200 heartbeat answers in a row before the connection is dropped.
const HEARTBEAT_FAILURES: u32 = 3;

pub(crate) enum SessionEnd {
    /// Closed on purpose (or every handle dropped): do not reconnect.
    Closed,
    /// The socket or the peer failed: reconnect.
    Failed(String),
}

struct InFlight {
    reply: tokio::sync::oneshot::Sender<Result<crate::protocol::Response, ConnError>>,
    /// Stream position just past this request's frame.
    end: u64,
}

struct Heartbeat {
    opaque: i32,
    deadline: Instant,
}

pub(crate) async fn run_session(
    stream: TcpStream,
    epoch: u64,
    requests: &mut mpsc::UnboundedReceiver<Request>,
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
    let mut in_flight: HashMap<i32, InFlight> = HashMap::new();
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut queued: u64 = 0; // bytes ever put in `out`
    let mut written: u64 = 0; // bytes ever written to the socket

    // Idleness is measured on what the broker sends: a broker that reads
    // requests but never answers must be heartbeaten even while requests
    // keep being written to it.
    let mut last_read = Instant::now();
    let mut heartbeat: Option<Heartbeat> = None;
    let mut heartbeat_failures = 0;

    let end = loop {
        let check_at = match &heartbeat {
            Some(h) => h.deadline,
            None => last_read + settings.heartbeat_interval,
        };
        tokio::select! {
            biased;
            _ = close.cancelled() => break SessionEnd::Closed,
            frame = answers.next() => match frame {
                Some(Ok(response)) => {
                    last_read = Instant::now();
                    if heartbeat.as_ref().is_some_and(|h| h.opaque == response.opaque) {
                        heartbeat = None;
                        if response.code.is_success() {
                            heartbeat_failures = 0;
                        } else {
                            heartbeat_failures += 1;
                            if heartbeat_failures >= HEARTBEAT_FAILURES {
                                break SessionEnd::Failed(format!("{HEARTBEAT_FAILURES} failed heartbeats"));
                            }
                        }
                    } else if let Some(waiter) = in_flight.remove(&response.opaque) {
                        // The caller may have given up (timeout, dropped future).
                        let _ = waiter.reply.send(Ok(response));
                    } else {
                        break SessionEnd::Failed(format!("answer for unknown opaque {}", response.opaque));
                    }
                }
                Some(Err(CodecError::Io(e))) => break SessionEnd::Failed(format!("read failed: {e}")),
                Some(Err(e)) => break SessionEnd::Failed(format!("garbled answer: {e}")),
                None => break SessionEnd::Failed("closed by the broker".into()),
            },
            written_now = write_half.write(&out), if !out.is_empty() => match written_now {
                Ok(0) => break SessionEnd::Failed("socket closed for writing".into()),
                Ok(n) => {
                    out.advance(n);
                    written += n as u64;
                }
                Err(e) => break SessionEnd::Failed(format!("write failed: {e}")),
            },
            request = requests.recv(), if out.len() < WRITE_HIGH_WATER => match request {
                None => break SessionEnd::Closed,
                Some(request) => {
                    accept(request, epoch, &mut out, &mut queued, &mut in_flight);
                    // Coalesce whatever else is already queued into one write.
                    while out.len() < WRITE_HIGH_WATER {
                        match requests.try_recv() {
                            Ok(request) => accept(request, epoch, &mut out, &mut queued, &mut in_flight),
                            Err(_) => break,
                        }
                    }
                    if in_flight.len() > unanswered_cap(settings) {
                        break SessionEnd::Failed(format!(
                            "{} requests unanswered, most of them given up by their callers",
                            in_flight.len()
                        ));
                    }
                }
            },
            _ = sleep_until(check_at) => {
                if heartbeat.is_some() {
                    break SessionEnd::Failed(format!("no heartbeat answer within {:?}", settings.heartbeat_timeout));
                }
                let opaque = next_opaque();
                // `version` never fails to encode.
                let _ = Frame::Version { opaque }.encode(&mut out);
                queued = written + out.len() as u64;
                heartbeat = Some(Heartbeat {
                    opaque,
                    deadline: Instant::now() + settings.heartbeat_timeout,
                });
                debug!(opaque, "heartbeat");
            }
        }
    };

    if let SessionEnd::Failed(reason) = &end {
        warn!(%reason, in_flight = in_flight.len(), "connection failed");
    }
    // Before any waiter hears of the failure: a caller that retries at once
    // must see this connection down, not pick it again.
    mark_down();
    let reason = match &end {
        SessionEnd::Closed => "connection closed".to_owned(),
        SessionEnd::Failed(reason) => reason.clone(),
    };
    for (_, waiter) in in_flight.drain() {
        let error = if waiter.end <= written {
            ConnError::Lost(reason.clone())
        } else {
            ConnError::NotWritten(reason.clone())
        };
        let _ = waiter.reply.send(Err(error));
    }
    // A graceful close flushes what is left; a failed socket cannot.
    if matches!(end, SessionEnd::Closed) {
        let _ = tokio::time::timeout(Duration::from_secs(1), write_half.shutdown()).await;
    }
    end
}

/// How many unanswered requests a socket may carry. Callers waiting for an
/// answer hold a permit each (at most `max_in_flight`); an entry whose caller
/// gave up stays until its answer comes, because a late answer for an opaque
/// we forgot would look like a garbled stream. Past this bound the broker is
/// evidently dropping requests: the socket is replaced, which also frees the
/// table, so it cannot grow without bound.
fn unanswered_cap(settings: &ConnectionSettings) -> usize {
    settings.max_in_flight.saturating_mul(2).max(64)
}

fn accept(
    request: Request,
    epoch: u64,
    out: &mut BytesMut,
    queued: &mut u64,
    in_flight: &mut HashMap<i32, InFlight>,
) {
    if request.reply.is_closed() {
        // The caller gave up before it was written: do not send it at all.
        return;
    }
    if request.epoch.is_some_and(|wanted| wanted != epoch) {
        let _ = request.reply.send(Err(ConnError::NotWritten(
            "the connection was re-established since the transaction began".into(),
        )));
        return;
    }
    out.extend_from_slice(&request.frame);
    *queued += request.frame.len() as u64;
    in_flight.insert(
        request.opaque,
        InFlight {
            reply: request.reply,
            end: *queued,
        },
    );
}
