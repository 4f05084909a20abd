//! The handle to one broker connection and the task that keeps it up.
//!
//! [`Connection`] is a cheap clone. Requests go to the task over a channel
//! with their reply slot; the task writes them in the order received, so
//! order is fixed when the request is made. While the socket is down,
//! requests fail at once as not written, so the producer can go elsewhere.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;
use std::time::Instant;

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use super::backoff::Backoff;
use super::session::{run_session, SessionEnd};
use crate::discovery::BrokerUri;
use crate::protocol::Response;

/// Tunables of a connection; the producer builder documents the defaults.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionSettings {
    pub(crate) connect_timeout: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) max_response_body: usize,
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConnError {
    /// Nothing of the request was written.
    NotWritten(String),
    /// The request was written, then the connection died.
    Lost(String),
}

/// A request handed to the connection task.
pub(crate) struct Request {
    pub(crate) opaque: i32,
    pub(crate) frame: BytesMut,
    pub(crate) reply: oneshot::Sender<Result<Response, ConnError>>,
    /// Only write it on this socket generation (see [`Connection::epoch`]).
    pub(crate) epoch: Option<u64>,
}

struct Shared {
    uri: BrokerUri,
    ready: AtomicBool,
    /// Milliseconds since `millis_since_epoch`'s origin before which the broker is avoided.
    suspect_until: AtomicU64,
    /// Socket generation: incremented each time a connection is established.
    epoch: AtomicU64,
    /// `None` until the first connection attempt ends, then whether the
    /// socket is up.
    state: watch::Sender<Option<bool>>,
    permits: Arc<Semaphore>,
    close: CancellationToken,
}

/// A cheap handle to the connection with one broker.
#[derive(Clone)]
pub(crate) struct Connection {
    shared: Arc<Shared>,
    requests: mpsc::UnboundedSender<Request>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("uri", &self.shared.uri)
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl Connection {
    /// Starts the task that connects to `uri` and keeps reconnecting until
    /// [`close`](Self::close) is called or every handle is dropped.
    pub(crate) fn open(uri: BrokerUri, settings: ConnectionSettings) -> Self {
        let (requests, rx) = mpsc::unbounded_channel();
        let (state, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            uri: uri.clone(),
            ready: AtomicBool::new(false),
            suspect_until: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            state,
            permits: Arc::new(Semaphore::new(settings.max_in_flight)),
            close: CancellationToken::new(),
        });
        let span = info_span!("connection", broker = %uri);
        tokio::spawn(supervise(Arc::clone(&shared), rx, settings).instrument(span));
        Connection { shared, requests }
    }

    pub(crate) fn uri(&self) -> &BrokerUri {
        &self.shared.uri
    }

    /// Whether the socket is up right now.
    pub(crate) fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    /// Whether the socket is up and the broker has not just failed a request.
    pub(crate) fn is_usable(&self) -> bool {
        // Asked for every partition of every send: read the clock only for
        // a broker that is suspected at all.
        let until = self.shared.suspect_until.load(Ordering::Relaxed);
        self.is_ready() && (until == 0 || millis_since_epoch() >= until)
    }

    /// Avoid this broker for `period` (it timed out or dropped a request).
    /// The bound means it is tried again afterwards, never avoided for ever.
    pub(crate) fn suspect_for(&self, period: Duration) {
        let until = millis_since_epoch() + period.as_millis() as u64;
        self.shared
            .suspect_until
            .fetch_max(until, Ordering::Relaxed);
    }

    /// The broker answered: stop avoiding it.
    pub(crate) fn clear_suspicion(&self) {
        if self.shared.suspect_until.load(Ordering::Relaxed) != 0 {
            self.shared.suspect_until.store(0, Ordering::Relaxed);
        }
    }

    /// The current socket generation. Local transactions live on one socket
    /// on the broker; a request submitted with [`submit_on`](Self::submit_on)
    /// fails unwritten if the socket was replaced since.
    pub(crate) fn epoch(&self) -> u64 {
        self.shared.epoch.load(Ordering::Acquire)
    }

    /// Waits until the first connection attempt has ended, at most `wait`.
    /// True if the socket is up. A broker that refuses connections (dead
    /// but still registered) answers at once, so a route is not held back
    /// for it.
    pub(crate) async fn wait_first_attempt(&self, wait: Duration) -> bool {
        self.wait_state(wait, Option::is_some).await
    }

    /// Waits until the socket is up, at most `wait`. True if it is.
    pub(crate) async fn wait_ready(&self, wait: Duration) -> bool {
        self.wait_state(wait, |up| *up == Some(true)).await
    }

    /// Waits, at most `wait`, until `done` holds for the state; true if the
    /// socket is up then.
    async fn wait_state(&self, wait: Duration, done: impl FnMut(&Option<bool>) -> bool) -> bool {
        let mut state = self.shared.state.subscribe();
        match tokio::time::timeout(wait, state.wait_for(done)).await {
            Ok(Ok(state)) => *state == Some(true),
            _ => false,
        }
    }

    /// A slot for one more request in flight, without waiting. The caller
    /// holds it until it has the answer or gives up (timeout, dropped
    /// future), so a request whose answer never comes does not take room
    /// for ever.
    pub(crate) fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.shared.permits).try_acquire_owned().ok()
    }

    /// A slot for one more request in flight; waits while `max_in_flight`
    /// callers are waiting for answers on this connection (backpressure).
    pub(crate) async fn permit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.shared.permits).acquire_owned().await.ok()
    }

    /// Queues an encoded request; the answer (or failure) comes on the
    /// returned channel. Requests are written in the order of these calls.
    pub(crate) fn submit(
        &self,
        opaque: i32,
        frame: BytesMut,
    ) -> oneshot::Receiver<Result<Response, ConnError>> {
        self.submit_on(None, opaque, frame)
    }

    /// Like [`submit`](Self::submit), but only written on socket generation
    /// `epoch` when one is given.
    pub(crate) fn submit_on(
        &self,
        epoch: Option<u64>,
        opaque: i32,
        frame: BytesMut,
    ) -> oneshot::Receiver<Result<Response, ConnError>> {
        let (reply, answer) = oneshot::channel();
        if !self.is_ready() {
            let _ = reply.send(Err(ConnError::NotWritten("not connected".into())));
            return answer;
        }
        let request = Request {
            opaque,
            frame,
            reply,
            epoch,
        };
        if let Err(mpsc::error::SendError(request)) = self.requests.send(request) {
            let _ = request
                .reply
                .send(Err(ConnError::NotWritten("connection closed".into())));
        }
        answer
    }

    /// Stops the task; requests in flight fail.
    pub(crate) fn close(&self) {
        self.shared.close.cancel();
    }
}

fn millis_since_epoch() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

fn set_ready(shared: &Shared, ready: bool) {
    shared.ready.store(ready, Ordering::Release);
    shared.state.send_replace(Some(ready));
}

/// Connects, serves a session, and reconnects with jittered backoff.
async fn supervise(
    shared: Arc<Shared>,
    mut requests: mpsc::UnboundedReceiver<Request>,
    settings: ConnectionSettings,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    let address = shared.uri.socket_addr_text();
    loop {
        let connect = tokio::time::timeout(settings.connect_timeout, TcpStream::connect(&address));
        let outcome = tokio::select! {
            _ = shared.close.cancelled() => break,
            outcome = connect => outcome,
        };
        match outcome {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                let epoch = shared.epoch.fetch_add(1, Ordering::AcqRel) + 1;
                info!(epoch, "connected");
                set_ready(&shared, true);
                backoff.reset();
                let end = run_session(
                    stream,
                    epoch,
                    &mut requests,
                    &settings,
                    &shared.close,
                    || set_ready(&shared, false),
                )
                .await;
                match end {
                    SessionEnd::Closed => break,
                    SessionEnd::Failed(reason) => warn!(%reason, "connection lost; reconnecting"),
                }
            }
            Ok(Err(e)) => {
                debug!(error = %e, "connect failed");
                set_ready(&shared, false);
            }
            Err(_) => {
                debug!(timeout = ?settings.connect_timeout, "connect timed out");
                set_ready(&shared, false);
            }
        }
        // Down: anything queued meanwhile fails at once (it was never written).
        let delay = tokio::time::sleep(backoff.next_delay());
        tokio::pin!(delay);
        loop {
            tokio::select! {
                _ = shared.close.cancelled() => return drain(&mut requests, "connection closed"),
                _ = &mut delay => break,
                request = requests.recv() => match request {
                    Some(r) => { let _ = r.reply.send(Err(ConnError::NotWritten("not connected".into()))); }
                    None => return,
                },
            }
        }
    }
    drain(&mut requests, "connection closed");
    debug!("connection task finished");
}

fn drain(requests: &mut mpsc::UnboundedReceiver<Request>, why: &str) {
    requests.close();
    while let Ok(request) = requests.try_recv() {
        let _ = request.reply.send(Err(ConnError::NotWritten(why.into())));
    }
}
