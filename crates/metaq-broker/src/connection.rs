//! One client connection: decode requests, answer each by opaque, possibly
//! out of order, and pipeline as many as the client sends.
//!
//! The loop reads frames and starts each request at once (so appends reach
//! the store in the order the client sent them), keeps the answers in flight
//! in a `FuturesUnordered`, and writes every answer that is ready in one
//! `write_all`. A malformed frame stops reading; answers to requests already
//! decoded are still written before the socket closes.

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::BytesMut;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};

use super::counters::Stats;
use super::put_batch::{one, Answers, PutBatch};
use super::reply::Reply;
use super::shared::Shared;
use super::transactions::TxSession;
use metaq::protocol::{CodecError, DecodeLimits, Request, Response, ServerCodec, DEFAULT_MAX_LINE};

/// Requests read ahead of their answers before reading pauses.
const MAX_IN_FLIGHT: usize = 4096;

/// How a connection is told to stop.
pub(crate) struct Stop {
    /// Close at once (fault injection, broker dropped).
    pub(crate) kill: CancellationToken,
    /// Stop reading, answer what was read, then close (graceful shutdown).
    pub(crate) drain: CancellationToken,
}

pub(crate) async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, stop: Stop) {
    let span = info_span!("connection", broker = shared.config.id, %peer);
    Stats::bump(&shared.stats.connections);
    run(Arc::clone(&shared), stream, stop)
        .instrument(span)
        .await;
    shared
        .stats
        .connections
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
}

/// Serves the connection until it ends, then rolls back its open transactions.
async fn run(shared: Arc<Shared>, stream: TcpStream, stop: Stop) {
    let (read_half, write_half) = stream.into_split();
    let limits = DecodeLimits {
        max_line: DEFAULT_MAX_LINE,
        max_body: shared.config.max_message_size,
    };
    let mut connection = Connection {
        frames: FramedRead::new(read_half, ServerCodec::new(limits)),
        write_half,
        in_flight: FuturesUnordered::new(),
        puts: PutBatch::default(),
        txs: TxSession::new(Arc::clone(&shared)),
        out: BytesMut::new(),
        reading: true,
        shared,
        stop,
    };
    connection.run().await;
    connection.txs.rollback_all();
}

/// One connection's state while it is served.
struct Connection {
    shared: Arc<Shared>,
    stop: Stop,
    frames: FramedRead<OwnedReadHalf, ServerCodec>,
    write_half: OwnedWriteHalf,
    /// Answers not written yet.
    in_flight: FuturesUnordered<Answers>,
    /// Plain puts read but not queued yet.
    puts: PutBatch,
    txs: TxSession,
    /// Encoded answers, written together.
    out: BytesMut,
    /// Whether requests are still read (not after the end of the stream,
    /// QUIT, a bad frame or a drain).
    reading: bool,
}

impl Connection {
    /// Reads requests and writes answers until the client is done and
    /// everything read is answered, a write fails, or the connection is killed.
    async fn run(&mut self) {
        while self.reading || !self.in_flight.is_empty() {
            tokio::select! {
                biased;
                _ = self.stop.kill.cancelled() => break,
                _ = self.stop.drain.cancelled(), if self.reading => self.reading = false,
                Some(responses) = self.in_flight.next() => {
                    if self.write_answers(responses).await.is_break() {
                        break;
                    }
                }
                expired = self.txs.next_expired() => self.txs.expire(expired),
                frame = self.frames.next(), if self.reading && self.in_flight.len() < MAX_IN_FLIGHT => {
                    self.read_requests(frame);
                }
            }
        }
    }

    /// Writes `responses` and every other answer already done in one write;
    /// `Break` if the write failed or the connection was killed meanwhile.
    async fn write_answers(&mut self, responses: Vec<Response>) -> ControlFlow<()> {
        responses.iter().for_each(|r| write(&mut self.out, r));
        // Coalesce every other answer that is already done.
        while let Some(Some(responses)) = self.in_flight.next().now_or_never() {
            responses.iter().for_each(|r| write(&mut self.out, r));
        }
        // A client that stops reading must not keep this task (and
        // the broker it holds) alive past a kill.
        tokio::select! {
            written = self.write_half.write_all(&self.out) => if let Err(e) = written {
                debug!(error = %e, "write failed; closing");
                return ControlFlow::Break(());
            },
            _ = self.stop.kill.cancelled() => return ControlFlow::Break(()),
        }
        self.out.clear();
        ControlFlow::Continue(())
    }

    /// Takes `frame` and every request already buffered behind it: plain
    /// puts are appended together, anything else in its turn.
    fn read_requests(&mut self, frame: Option<Result<Request, CodecError>>) {
        let mut frame = frame;
        loop {
            self.take_frame(frame);
            if !self.reading || self.in_flight.len() + self.puts.len() >= MAX_IN_FLIGHT {
                break;
            }
            match self.frames.next().now_or_never() {
                Some(next) => frame = next,
                None => break,
            }
        }
        submit(&self.shared, &mut self.puts, &mut self.in_flight);
    }

    /// Takes one frame read (`None`: the end of the stream).
    fn take_frame(&mut self, frame: Option<Result<Request, CodecError>>) {
        let shared = &self.shared;
        match frame {
            None => self.reading = false,
            Some(Err(e)) => {
                warn!(error = %e, "bad frame; closing the connection");
                self.reading = false;
            }
            Some(Ok(Request::Quit)) => self.reading = false,
            Some(Ok(_)) if shared.faults.stalled() => {}
            Some(Ok(Request::Put(put))) if put.tx_key.is_none() => {
                self.puts.add(shared, put);
            }
            Some(Ok(request)) => {
                // Puts read before it are queued before it.
                submit(shared, &mut self.puts, &mut self.in_flight);
                if let Some(reply) = dispatch(shared, &mut self.txs, request) {
                    self.in_flight.push(delayed(shared, one(reply)));
                }
            }
        }
    }
}

fn dispatch(shared: &Arc<Shared>, txs: &mut TxSession, request: Request) -> Option<Reply> {
    Some(match request {
        Request::Put(put) if put.tx_key.is_some() => txs.put(put),
        Request::Put(put) => shared.put(put),
        Request::PutTooLarge {
            topic,
            partition,
            len,
            opaque,
        } => shared.put_too_large(&topic, partition, len, opaque),
        Request::Transaction(request) => return txs.command(request),
        Request::Version { opaque } => shared.version(opaque),
        Request::Stats { opaque, .. } => shared.stats(opaque),
        Request::Unsupported(u) => shared.unsupported(u.command, u.opaque),
        // Quit is handled by the loop; nothing else exists today.
        _ => return None,
    })
}

/// Queues the appends of the plain puts read so far.
fn submit(shared: &Arc<Shared>, puts: &mut PutBatch, in_flight: &mut FuturesUnordered<Answers>) {
    if puts.len() == 0 {
        return;
    }
    for answers in puts.submit(shared) {
        in_flight.push(delayed(shared, answers));
    }
}

/// Applies the injected response delay, if any. The append was already
/// queued by the handler; only the answer waits.
fn delayed(shared: &Shared, answers: Answers) -> Answers {
    let delay = shared.faults.response_delay();
    if delay.is_zero() {
        return answers;
    }
    async move {
        let responses = answers.await;
        tokio::time::sleep(delay).await;
        responses
    }
    .boxed()
}

fn write(out: &mut BytesMut, response: &Response) {
    // A response built by the broker always encodes (its body is far below 2 GiB).
    if let Err(e) = response.encode(out) {
        warn!(error = %e, "could not encode a response");
    }
}
