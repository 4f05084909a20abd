//! The table of one connection's requests, shared by the callers that queue
//! them and the session task that writes them and matches the answers.
//!
//! Callers encode their frame straight into the table's write buffer (one
//! copy of the payload, no allocation per request) and take a slot; the
//! session takes the whole buffer when it can write, resolves slots as
//! answers come, and times them out at their deadlines, so a request costs
//! no channel, no oneshot and no timer of its own. A caller finds its slot
//! by index; only answers are matched through the opaque map.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::load::{Average, LoadGauge};
use super::next_opaque;
use super::request_error::{NotQueued, RequestError};
use crate::protocol::{ProtocolError, Response};

/// Opaques come from one counter, so they hash well with one multiply
/// (SipHash was a measurable part of every send).
#[derive(Default)]
pub(super) struct OpaqueHasher(u64);

impl Hasher for OpaqueHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_i32(&mut self, n: i32) {
        self.0 = (n as u32 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type OpaqueMap<V> = HashMap<i32, V, BuildHasherDefault<OpaqueHasher>>;

/// Where a queued request lives: its slot, and its opaque to tell a reused
/// slot from its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ticket {
    pub(super) opaque: i32,
    slot: u32,
}

/// What became of a request given to [`Requests::try_request`]: waiting
/// for its answer in the slot its ticket names, or refused at once
/// without being written. [`PendingReply`](super::PendingReply) is the
/// caller's side of it.
pub(super) enum Queued {
    Waiting(Ticket),
    Refused(RequestError),
}

/// A connection's requests; see the module documentation.
pub(crate) struct Requests {
    table: Mutex<Table>,
    /// Tells the session there is something to write (or an earlier deadline).
    pub(super) wake_session: Notify,
    /// Tells callers waiting for room that some was given back.
    room: Notify,
    max_in_flight: usize,
    /// How slow the broker is, for sends choosing one.
    pub(super) load: LoadGauge,
}

struct Table {
    /// The socket generation requests are written on; `None` while down.
    session: Option<u64>,
    /// Encoded requests the session has not taken yet.
    out: BytesMut,
    /// Bytes ever queued on this socket: stream positions of frame ends.
    queued: u64,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Slots waiting for an answer, by opaque.
    waiting_by_opaque: OpaqueMap<u32>,
    /// Callers waiting for room.
    room_waiters: usize,
    deadlines: Deadlines,
    /// The instant the session's timer is set for, if any.
    timer_at: Option<Instant>,
    abandoned: Abandoned,
    /// Answer latencies, averaged.
    latency: Average,
}

struct Slot {
    opaque: i32,
    /// Stream position just past this request's frame.
    end: u64,
    /// When the caller made the request: its answer's latency runs from here.
    queued: Instant,
    state: State,
}

enum State {
    Vacant,
    Waiting(Option<Waker>),
    /// Resolved; with the time the session read the answer, if one came.
    Done(Result<Response, RequestError>, Option<Instant>),
}

impl Table {
    fn slot(&mut self, ticket: Ticket) -> Option<&mut Slot> {
        self.slots
            .get_mut(ticket.slot as usize)
            .filter(|slot| slot.opaque == ticket.opaque && !matches!(slot.state, State::Vacant))
    }

    fn is_waiting(&mut self, ticket: Ticket) -> bool {
        self.slot(ticket)
            .is_some_and(|slot| matches!(slot.state, State::Waiting(_)))
    }

    /// Frees a slot; returns what it held, to be dropped outside the lock.
    fn vacate(&mut self, ticket: Ticket) -> State {
        self.free.push(ticket.slot);
        std::mem::replace(&mut self.slots[ticket.slot as usize].state, State::Vacant)
    }

    /// Requests waiting for an answer: the room they take.
    fn waiting(&self) -> usize {
        self.waiting_by_opaque.len()
    }
}

impl Requests {
    pub(super) fn new(max_in_flight: usize) -> Self {
        Requests {
            table: Mutex::new(Table {
                session: None,
                out: BytesMut::with_capacity(64 * 1024),
                queued: 0,
                slots: Vec::new(),
                free: Vec::new(),
                waiting_by_opaque: OpaqueMap::default(),
                room_waiters: 0,
                deadlines: Deadlines::default(),
                timer_at: None,
                abandoned: Abandoned::new(max_in_flight.saturating_mul(4).max(1024)),
                latency: Average::default(),
            }),
            wake_session: Notify::new(),
            room: Notify::new(),
            max_in_flight,
            load: LoadGauge::default(),
        }
    }

    /// Publishes the table's load: the latency average, the oldest request
    /// still waiting (its deadline comes first in the in-order queue, as
    /// nearly every request of a connection has the same timeout) and how
    /// many wait.
    fn publish_load(&self, table: &mut Table) {
        let Table {
            deadlines, slots, ..
        } = &mut *table;
        deadlines.drop_answered(slots);
        let waiting = table.waiting();
        let oldest = (waiting > 0)
            .then(|| table.deadlines.in_order.front())
            .flatten()
            .map(|(_, ticket)| table.slots[ticket.slot as usize].queued);
        self.load.publish(&table.latency, oldest, waiting);
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a request unless the connection is full: `encode` writes the
    /// frame for the opaque it is given. Written on socket generation
    /// `epoch` only, when one is given; a request that cannot be written
    /// (socket down or replaced) resolves at once as not written.
    pub(super) fn try_request(
        self: &Arc<Self>,
        epoch: Option<u64>,
        queued: Instant,
        deadline: Instant,
        encode: impl FnOnce(&mut BytesMut, i32) -> Result<(), ProtocolError>,
    ) -> Result<Queued, NotQueued> {
        let mut table = self.table();
        let refusal = match table.session {
            None => Some("not connected"),
            Some(current) if epoch.is_some_and(|wanted| wanted != current) => {
                Some("the connection was re-established since the transaction began")
            }
            Some(_) => None,
        };
        if let Some(cause) = refusal {
            return Ok(Queued::Refused(RequestError::NotWritten(cause.into())));
        }
        if table.waiting() >= self.max_in_flight {
            return Err(NotQueued::Full);
        }
        let opaque = next_opaque();
        let was_empty = table.out.is_empty();
        let before = table.out.len();
        if let Err(e) = encode(&mut table.out, opaque) {
            table.out.truncate(before);
            return Err(NotQueued::Invalid(e));
        }
        table.queued += (table.out.len() - before) as u64;
        let slot = Slot {
            opaque,
            end: table.queued,
            queued,
            state: State::Waiting(None),
        };
        let index = match table.free.pop() {
            Some(index) => {
                table.slots[index as usize] = slot;
                index
            }
            None => {
                table.slots.push(slot);
                (table.slots.len() - 1) as u32
            }
        };
        table.waiting_by_opaque.insert(opaque, index);
        let ticket = Ticket {
            opaque,
            slot: index,
        };
        let earlier = table.timer_at.is_none_or(|at| deadline < at);
        table.deadlines.push(deadline, ticket);
        if table.waiting() == 1 {
            self.publish_load(&mut table);
        } else {
            self.load.set_in_flight(table.waiting());
        }
        drop(table);
        if was_empty || earlier {
            self.wake_session.notify_one();
        }
        Ok(Queued::Waiting(ticket))
    }

    /// Waits until there is room for a request (or the socket is down,
    /// when a request fails at once), at most until `until`. False if no
    /// room came in time (backpressure).
    pub(super) async fn wait_for_room(&self, until: Instant) -> bool {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut table = self.table();
                if table.session.is_none() || table.waiting() < self.max_in_flight {
                    return true;
                }
                table.room_waiters += 1;
            }
            let waited = tokio::time::timeout_at(until, room).await;
            self.table().room_waiters -= 1;
            if waited.is_err() {
                return false;
            }
        }
    }

    /// Requests waiting for an answer.
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        self.table().waiting()
    }

    /// The request's outcome, with the time its answer was read (the
    /// batch's clock reading: a caller timing its request needs no clock
    /// read of its own).
    pub(super) fn poll_answer(
        &self,
        ticket: Ticket,
        cx: &mut Context<'_>,
    ) -> Poll<(Result<Response, RequestError>, Option<Instant>)> {
        let mut table = self.table();
        let Some(slot) = table.slot(ticket) else {
            let forgotten = RequestError::Lost("the request was forgotten".into());
            return Poll::Ready((Err(forgotten), None));
        };
        match &mut slot.state {
            State::Waiting(waker) => {
                if waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    return Poll::Pending;
                }
                // Wakers are dropped outside the lock: dropping one may run
                // arbitrary code.
                let old = waker.replace(cx.waker().clone());
                drop(table);
                drop(old);
                Poll::Pending
            }
            State::Done(..) => {
                let State::Done(outcome, answered_at) =
                    std::mem::replace(&mut slot.state, State::Vacant)
                else {
                    unreachable!("matched Done above")
                };
                table.free.push(ticket.slot);
                Poll::Ready((outcome, answered_at))
            }
            State::Vacant => unreachable!("Table::slot skips vacant slots"),
        }
    }

    /// The caller gave up: free its room and slot at once. An answer that
    /// still comes is recognised as late, not as garbage.
    pub(super) fn abandon(&self, ticket: Ticket) {
        let mut table = self.table();
        if table.slot(ticket).is_none() {
            return;
        }
        let was_waiting = table.is_waiting(ticket);
        if was_waiting {
            table.waiting_by_opaque.remove(&ticket.opaque);
            table.abandoned.insert(ticket.opaque);
            self.room_given_back(&table);
        }
        let held = table.vacate(ticket);
        if was_waiting {
            self.publish_load(&mut table);
        }
        drop(table);
        drop(held); // a waker, or an answer nobody will read
    }

    fn room_given_back(&self, table: &Table) {
        if table.room_waiters > 0 {
            self.room.notify_one();
        }
    }

    /// Resolves a waiting slot (already out of `waiting_by_opaque`), with
    /// the time its answer was read if one was; returns its waker, to wake
    /// outside the lock.
    fn resolve(
        &self,
        table: &mut Table,
        index: u32,
        outcome: Result<Response, RequestError>,
        answered_at: Option<Instant>,
    ) -> Option<Waker> {
        let slot = &mut table.slots[index as usize];
        let State::Waiting(waker) = &mut slot.state else {
            return None;
        };
        let waker = waker.take();
        slot.state = State::Done(outcome, answered_at);
        self.room_given_back(table);
        waker
    }

    /// Answers came (all of `answers`, which is left empty; `wakers` is
    /// scratch room, kept by the caller so a batch allocates nothing).
    /// Returns the opaque of one that matches no request of this
    /// connection, if any: the stream is garbled. Answers before it are
    /// delivered.
    pub(super) fn answer_all(
        &self,
        answers: &mut Vec<Response>,
        wakers: &mut Vec<Waker>,
        now: Instant,
    ) -> Option<i32> {
        let mut unknown = None;
        {
            let mut table = self.table();
            for response in answers.drain(..) {
                let opaque = response.opaque;
                match table.waiting_by_opaque.remove(&opaque) {
                    Some(index) => {
                        let latency =
                            now.saturating_duration_since(table.slots[index as usize].queued);
                        table.latency.add(latency);
                        wakers.extend(self.resolve(&mut table, index, Ok(response), Some(now)));
                    }
                    None if table.abandoned.remove(opaque) => {
                        tracing::debug!(opaque, "late answer for a request given up");
                    }
                    None => {
                        unknown = Some(opaque);
                        break;
                    }
                }
            }
            // Answers come roughly in order: the deadlines of answered
            // requests are dropped as they reach the front.
            self.publish_load(&mut table);
        }
        wakers.drain(..).for_each(Waker::wake);
        answers.clear(); // what followed an unknown opaque
        unknown
    }

    /// A socket is up: requests may be queued for generation `epoch`.
    pub(super) fn open_session(&self, epoch: u64) {
        let mut table = self.table();
        table.session = Some(epoch);
        table.queued = 0;
        table.out.clear();
        table.abandoned.clear();
        table.deadlines.clear();
        table.timer_at = None;
        table.latency = Average::default();
        self.publish_load(&mut table);
    }

    /// The socket is gone: refuse new requests and resolve every waiting one,
    /// as lost if its whole frame reached the kernel (`written` bytes), else
    /// as not written.
    pub(super) fn close_session(&self, written: u64, cause: &str) {
        let mut wakers = Vec::new();
        {
            let mut table = self.table();
            table.session = None;
            table.out.clear();
            let waiting: Vec<u32> = table.waiting_by_opaque.drain().map(|(_, i)| i).collect();
            for index in waiting {
                let error = if table.slots[index as usize].end <= written {
                    RequestError::Lost(cause.to_owned())
                } else {
                    RequestError::NotWritten(cause.to_owned())
                };
                wakers.extend(self.resolve(&mut table, index, Err(error), None));
            }
            table.deadlines.clear();
            table.timer_at = None;
            self.publish_load(&mut table);
            if table.room_waiters > 0 {
                // They queue (and fail as not written) rather than wait.
                self.room.notify_waiters();
            }
        }
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Moves what callers queued into `dst` (the session's write buffer),
    /// without copying when `dst` is empty.
    pub(super) fn take_output(&self, dst: &mut BytesMut) {
        let mut table = self.table();
        if dst.is_empty() {
            std::mem::swap(dst, &mut table.out);
        } else {
            dst.extend_from_slice(&table.out);
            table.out.clear();
        }
    }

    /// Queues a frame of the session's own (a heartbeat), keeping stream
    /// positions right.
    pub(super) fn queue_own(&self, encode: impl FnOnce(&mut BytesMut)) {
        let mut table = self.table();
        let before = table.out.len();
        encode(&mut table.out);
        table.queued += (table.out.len() - before) as u64;
    }

    /// Times out every request whose deadline passed; returns the next
    /// deadline, which the session's timer is then set for.
    pub(super) fn expire(&self, now: Instant) -> Option<Instant> {
        let mut wakers = Vec::new();
        let next = {
            let mut table = self.table();
            while let Some(ticket) = table.deadlines.pop_due(now) {
                if table.is_waiting(ticket) {
                    table.waiting_by_opaque.remove(&ticket.opaque);
                    table.abandoned.insert(ticket.opaque);
                    let outcome = Err(RequestError::TimedOut);
                    wakers.extend(self.resolve(&mut table, ticket.slot, outcome, None));
                }
            }
            self.publish_load(&mut table);
            let next = table.deadlines.next();
            table.timer_at = next;
            next
        };
        wakers.into_iter().for_each(Waker::wake);
        next
    }
}

/// Deadlines in order. Most requests of a connection share one timeout, so
/// their deadlines arrive in order and go on a queue (O(1)); the rest
/// (shorter retries, transaction commands) go on a heap.
#[derive(Default)]
struct Deadlines {
    in_order: VecDeque<(Instant, Ticket)>,
    out_of_order: BinaryHeap<Reverse<(Instant, i32, u32)>>,
}

impl Deadlines {
    fn push(&mut self, at: Instant, ticket: Ticket) {
        if self.in_order.back().is_none_or(|(last, _)| *last <= at) {
            self.in_order.push_back((at, ticket));
        } else {
            self.out_of_order
                .push(Reverse((at, ticket.opaque, ticket.slot)));
        }
    }

    /// Drops the deadlines at the front whose requests are no longer
    /// waiting, so the queue stays as long as what is in flight.
    fn drop_answered(&mut self, slots: &[Slot]) {
        while let Some((_, ticket)) = self.in_order.front() {
            let slot = &slots[ticket.slot as usize];
            if slot.opaque == ticket.opaque && matches!(slot.state, State::Waiting(_)) {
                break;
            }
            self.in_order.pop_front();
        }
    }

    fn next(&self) -> Option<Instant> {
        let a = self.in_order.front().map(|(at, _)| *at);
        let b = self.out_of_order.peek().map(|Reverse((at, ..))| *at);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn pop_due(&mut self, now: Instant) -> Option<Ticket> {
        if self.in_order.front().is_some_and(|(at, _)| *at <= now) {
            return self.in_order.pop_front().map(|(_, ticket)| ticket);
        }
        if self
            .out_of_order
            .peek()
            .is_some_and(|Reverse((at, ..))| *at <= now)
        {
            return self
                .out_of_order
                .pop()
                .map(|Reverse((_, opaque, slot))| Ticket { opaque, slot });
        }
        None
    }

    fn clear(&mut self) {
        self.in_order.clear();
        self.out_of_order.clear();
    }
}

/// Opaques whose callers gave up, so that their late answers are told from
/// garbage. Bounded: a broker that leaves more than this many requests
/// unanswered gets its late answers treated as garbage, and its socket is
/// replaced, which is the right thing for a broker that drops requests.
struct Abandoned {
    order: VecDeque<i32>,
    set: HashSet<i32, BuildHasherDefault<OpaqueHasher>>,
    cap: usize,
}

impl Abandoned {
    fn new(cap: usize) -> Self {
        Abandoned {
            order: VecDeque::new(),
            set: HashSet::default(),
            cap,
        }
    }

    fn insert(&mut self, opaque: i32) {
        if self.order.len() >= self.cap {
            if let Some(oldest) = self.order.pop_front() {
                self.set.remove(&oldest);
            }
        }
        if self.set.insert(opaque) {
            self.order.push_back(opaque);
        }
    }

    /// Whether `opaque` was abandoned; forgets it (one answer per request).
    /// Its place in `order` is left to age out.
    fn remove(&mut self, opaque: i32) -> bool {
        self.set.remove(&opaque)
    }

    fn clear(&mut self) {
        self.order.clear();
        self.set.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use bytes::BufMut;

    use super::*;
    use crate::protocol::StatusCode;

    fn frame(out: &mut BytesMut, opaque: i32) -> Result<(), ProtocolError> {
        out.put_slice(format!("version {opaque}\r\n").as_bytes());
        Ok(())
    }

    fn open(max: usize) -> Arc<Requests> {
        let requests = Arc::new(Requests::new(max));
        requests.open_session(1);
        requests
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    fn answer_to(opaque: i32) -> Response {
        Response::text(StatusCode(200), opaque, "ok")
    }

    /// What the session makes of one answer: `None` if it is no garbage.
    fn answer(requests: &Requests, response: Response) -> Option<i32> {
        requests.answer_all(&mut vec![response], &mut Vec::new(), Instant::now())
    }

    /// What the caller of a queued request sees when it polls.
    fn poll(requests: &Requests, queued: &Queued) -> Poll<Result<Response, RequestError>> {
        let mut cx = Context::from_waker(Waker::noop());
        match queued {
            Queued::Waiting(ticket) => requests
                .poll_answer(*ticket, &mut cx)
                .map(|(outcome, _)| outcome),
            Queued::Refused(error) => Poll::Ready(Err(error.clone())),
        }
    }

    /// A caller giving up on a queued request.
    fn abandon(requests: &Requests, queued: Queued) {
        if let Queued::Waiting(ticket) = queued {
            requests.abandon(ticket);
        }
    }

    fn opaque_of(requests: &Requests) -> i32 {
        let mut out = BytesMut::new();
        requests.take_output(&mut out);
        let text = std::str::from_utf8(&out).unwrap();
        text.trim_end().rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn an_answer_reaches_its_request_and_frees_its_room() {
        let requests = open(1);
        let reply = requests
            .try_request(None, Instant::now(), later(), frame)
            .unwrap();
        assert!(matches!(
            requests.try_request(None, Instant::now(), later(), frame),
            Err(NotQueued::Full)
        ));
        let opaque = opaque_of(&requests);
        assert!(poll(&requests, &reply).is_pending());
        assert_eq!(answer(&requests, answer_to(opaque)), None);
        assert_eq!(requests.waiting(), 0);
        assert!(matches!(poll(&requests, &reply), Poll::Ready(Ok(r)) if r.opaque == opaque));
    }

    #[tokio::test]
    async fn a_dropped_request_frees_its_room_and_its_late_answer_is_not_garbage() {
        let requests = open(1);
        let reply = requests
            .try_request(None, Instant::now(), later(), frame)
            .unwrap();
        let opaque = opaque_of(&requests);
        abandon(&requests, reply);
        assert_eq!(requests.waiting(), 0);
        assert_eq!(answer(&requests, answer_to(opaque)), None); // late, not garbage
                                                                // One answer per request: a second one is garbage.
        assert_eq!(answer(&requests, answer_to(opaque)), Some(opaque));
        assert_eq!(answer(&requests, answer_to(opaque + 1)), Some(opaque + 1));
    }

    #[tokio::test]
    async fn a_request_times_out_at_its_deadline_and_frees_its_room() {
        let requests = open(4);
        let now = Instant::now();
        let soon = requests
            .try_request(None, Instant::now(), now + Duration::from_millis(5), frame)
            .unwrap();
        let late = requests
            .try_request(None, Instant::now(), later(), frame)
            .unwrap();
        // Out of order: earlier than the one before it.
        let sooner = requests
            .try_request(None, Instant::now(), now + Duration::from_millis(1), frame)
            .unwrap();
        let next = requests.expire(now + Duration::from_millis(10));
        assert!(next.is_some_and(|at| at > now + Duration::from_secs(59)));
        assert_eq!(requests.waiting(), 1);
        assert_eq!(
            poll(&requests, &soon),
            Poll::Ready(Err(RequestError::TimedOut))
        );
        assert_eq!(
            poll(&requests, &sooner),
            Poll::Ready(Err(RequestError::TimedOut))
        );
        assert!(poll(&requests, &late).is_pending());
    }

    #[tokio::test]
    async fn a_closed_session_tells_written_from_unwritten_requests() {
        let requests = open(4);
        let first = requests
            .try_request(None, Instant::now(), later(), frame)
            .unwrap();
        let written = requests.table().queued;
        let second = requests
            .try_request(None, Instant::now(), later(), frame)
            .unwrap();
        requests.close_session(written, "reset");
        assert_eq!(
            poll(&requests, &first),
            Poll::Ready(Err(RequestError::Lost("reset".into())))
        );
        assert_eq!(
            poll(&requests, &second),
            Poll::Ready(Err(RequestError::NotWritten("reset".into())))
        );
        // Down: a new request fails at once, unwritten.
        let third = requests
            .try_request(None, Instant::now(), later(), frame)
            .unwrap();
        assert!(matches!(
            poll(&requests, &third),
            Poll::Ready(Err(RequestError::NotWritten(_)))
        ));
    }

    #[tokio::test]
    async fn a_request_for_another_socket_generation_is_not_written() {
        let requests = open(4);
        let reply = requests
            .try_request(Some(7), Instant::now(), later(), frame)
            .unwrap();
        assert!(matches!(
            poll(&requests, &reply),
            Poll::Ready(Err(RequestError::NotWritten(_)))
        ));
        let mut out = BytesMut::new();
        requests.take_output(&mut out);
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn a_frame_that_cannot_be_encoded_leaves_nothing_behind() {
        let requests = open(4);
        let bad = |out: &mut BytesMut, _| {
            out.put_slice(b"half");
            Err(ProtocolError::InvalidName {
                field: "topic",
                value: String::new(),
                reason: "empty",
            })
        };
        assert!(matches!(
            requests.try_request(None, Instant::now(), later(), bad),
            Err(NotQueued::Invalid(_))
        ));
        assert_eq!(requests.waiting(), 0);
        let mut out = BytesMut::new();
        requests.take_output(&mut out);
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn a_caller_waiting_for_room_gets_it_when_a_request_ends() {
        let requests = open(1);
        let reply = requests
            .try_request(None, Instant::now(), later(), frame)
            .unwrap();
        let waiter = {
            let requests = Arc::clone(&requests);
            tokio::spawn(async move { requests.wait_for_room(later()).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        abandon(&requests, reply);
        assert!(waiter.await.unwrap());
        let full = requests
            .try_request(None, Instant::now(), later(), frame)
            .unwrap();
        assert!(
            !requests
                .wait_for_room(Instant::now() + Duration::from_millis(10))
                .await
        );
        abandon(&requests, full);
    }

    #[test]
    fn abandoned_opaques_are_bounded_oldest_first() {
        let mut abandoned = Abandoned::new(2);
        abandoned.insert(1);
        abandoned.insert(2);
        abandoned.insert(3);
        assert!(!abandoned.remove(1), "the oldest was forgotten");
        assert!(abandoned.remove(3));
        assert!(abandoned.remove(2));
        assert!(!abandoned.remove(2), "one answer per request");
    }

    #[tokio::test]
    async fn deadlines_of_answered_requests_leave_the_queue() {
        let requests = open(8);
        let replies: Vec<_> = (0..4)
            .map(|_| {
                requests
                    .try_request(None, Instant::now(), later(), frame)
                    .unwrap()
            })
            .collect();
        let mut out = BytesMut::new();
        requests.take_output(&mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        let opaques: Vec<i32> = text
            .lines()
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        // The second is answered first: the first still waits, so nothing leaves.
        assert_eq!(answer(&requests, answer_to(opaques[1])), None);
        assert_eq!(requests.table().deadlines.in_order.len(), 4);
        // The first is answered: it and the second leave, the rest stay.
        assert_eq!(answer(&requests, answer_to(opaques[0])), None);
        assert_eq!(requests.table().deadlines.in_order.len(), 2);
        for reply in replies {
            abandon(&requests, reply);
        }
    }
}
