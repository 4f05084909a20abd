//! The handle to one broker connection and the task that keeps it up.
//!
//! [`Connection`] is a cheap clone. A request is encoded into the
//! connection's write buffer when it is made, so order is fixed then, and
//! comes back as a [`PendingReply`] that owns its room, its in-flight entry
//! and its deadline. While the socket is down, requests fail at once as not
//! written, so the producer can go elsewhere.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;
use std::time::Instant;

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use super::inflight::Requests;
use super::load::Load;
use super::request::PendingReply;
use super::request_error::NotQueued;
use super::session::{run_session, SessionEnd};
use super::settings::ConnectionSettings;
use super::tally::Tally;
use crate::backoff::Backoff;
use crate::cluster::BrokerUri;
use crate::protocol::ProtocolError;

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
    requests: Arc<Requests>,
    close: CancellationToken,
    /// What sends came to here, counted by the producer: reached through
    /// the connection a send already holds, so counting costs no lookup.
    tally: Arc<Tally>,
}

/// Closes the connection when the last handle is dropped.
struct LastHandle(CancellationToken);

impl Drop for LastHandle {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// A cheap handle to the connection with one broker.
#[derive(Clone)]
pub(crate) struct Connection {
    shared: Arc<Shared>,
    _last: Arc<LastHandle>,
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
    /// [`close`](Self::close) is called or every handle is dropped. Sends'
    /// outcomes here are counted in `tally`.
    pub(crate) fn open(uri: BrokerUri, settings: ConnectionSettings, tally: Arc<Tally>) -> Self {
        let (state, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            uri: uri.clone(),
            ready: AtomicBool::new(false),
            suspect_until: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            state,
            requests: Arc::new(Requests::new(settings.max_in_flight)),
            close: CancellationToken::new(),
            tally,
        });
        let span = info_span!("connection", broker = %uri);
        tokio::spawn(supervise(Arc::clone(&shared), settings).instrument(span));
        let last = LastHandle(shared.close.clone());
        Connection {
            shared,
            _last: Arc::new(last),
        }
    }

    pub(crate) fn uri(&self) -> &BrokerUri {
        &self.shared.uri
    }

    /// What sends came to on this broker address.
    pub(crate) fn tally(&self) -> &Tally {
        &self.shared.tally
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

    /// Queues a request without waiting: `encode` writes its frame for the
    /// opaque it is given, straight into the connection's write buffer.
    /// Requests are written in the order of these calls. With `epoch`, it
    /// is only written on that socket generation. `Full` while
    /// `max_in_flight` requests await answers here (backpressure); a request
    /// that cannot be written (socket down or replaced) resolves at once as
    /// not written. The answer must come by `deadline`; its latency counts
    /// from `queued` (when the caller made it, read once per send).
    pub(crate) fn try_request(
        &self,
        epoch: Option<u64>,
        queued: tokio::time::Instant,
        deadline: tokio::time::Instant,
        encode: impl FnOnce(&mut BytesMut, i32) -> Result<(), ProtocolError>,
    ) -> Result<PendingReply, NotQueued> {
        let requests = &self.shared.requests;
        let queued = requests.try_request(epoch, queued, deadline, encode)?;
        Ok(PendingReply::new(requests, queued))
    }

    /// One in `every` calls is true (a slow broker's turns).
    pub(crate) fn take_turn(&self, every: u64) -> bool {
        self.shared.requests.load.take_turn(every)
    }

    /// How slow the broker is being, as of `now`.
    pub(crate) fn load(&self, now: tokio::time::Instant) -> Load {
        self.shared.requests.load.read(now)
    }

    /// Waits until a request would find room, at most until `until`. False
    /// if none came in time (backpressure).
    pub(crate) async fn wait_for_room(&self, until: tokio::time::Instant) -> bool {
        self.shared.requests.wait_for_room(until).await
    }

    /// Queues a request once there is room (waiting at most until
    /// `room_until`); its answer must then come within `answer_within`.
    pub(crate) async fn request(
        &self,
        epoch: Option<u64>,
        room_until: tokio::time::Instant,
        answer_within: Duration,
        encode: impl Fn(&mut BytesMut, i32) -> Result<(), ProtocolError>,
    ) -> Result<PendingReply, NotQueued> {
        loop {
            if !self.wait_for_room(room_until).await {
                return Err(NotQueued::Full);
            }
            let now = tokio::time::Instant::now();
            match self.try_request(epoch, now, now + answer_within, &encode) {
                Err(NotQueued::Full) => continue, // another caller took the room
                queued => return queued,
            }
        }
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
async fn supervise(shared: Arc<Shared>, settings: ConnectionSettings) {
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
                shared.requests.open_session(epoch);
                set_ready(&shared, true);
                backoff.reset();
                let end = run_session(stream, &shared.requests, &settings, &shared.close, || {
                    set_ready(&shared, false)
                })
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
        // Down: requests made meanwhile fail at once (they are never written).
        tokio::select! {
            _ = shared.close.cancelled() => break,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
    debug!("connection task finished");
}
