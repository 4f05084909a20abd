//! One send: choose a partition, write the put, wait for the answer, and
//! retry a keyless message on another broker within the one send timeout.
//!
//! The first attempt is queued synchronously, inside [`Producer::send`], so
//! messages leave in the order `send` was called. Later attempts, and sends
//! that must first publish their topic or wait for room (backpressure), are
//! queued when the returned future runs.

use std::time::Duration;

use bytes::BytesMut;
use tokio::time::Instant;

use super::topics::TopicState;
use super::{Producer, ProducerInner};
use crate::cluster::Partition;
use crate::error::{Attempt, Attempts, Delivery, Error, Result};
use crate::net::{Connection, NotQueued as Full, PendingReply, RequestError};
use crate::protocol::{encode_put, ProtocolError, PutHeader, TxKey};
use crate::{Message, SendResult};

use super::selector::Selection;
use super::send_metrics;
use super::slow_brokers::Skipped;

/// A put written (or queued) to one broker, awaiting its answer.
pub(crate) struct InFlight {
    partition: Partition,
    connection: Connection,
    /// Holds the attempt's room on the connection until the answer came or
    /// the attempt gave up (backpressure), and ends at its deadline.
    reply: PendingReply,
    /// How long the attempt may wait for its answer.
    timeout: Duration,
    /// The attempt in the `metrics` feature's in-flight gauge until dropped.
    metrics: send_metrics::Attempt,
}

/// Where an attempt goes: the partition the selector chose, its broker's
/// connection and that broker's `metrics` handles for the topic.
pub(crate) struct Target {
    pub(crate) partition: Partition,
    pub(crate) connection: Connection,
    metrics: send_metrics::Handles,
}

/// Why an attempt could not even be queued synchronously.
pub(crate) enum NotQueued {
    /// The topic is not known yet, or its connection has no room: take the slow path.
    Later,
    /// Final answer.
    Failed(Error),
}

impl ProducerInner {
    /// Chooses a partition and queues the put without waiting; its answer
    /// is due `timeout` after `start` (now, read once by the caller).
    /// `avoid` lists brokers this send already tried.
    pub(crate) fn try_queue(
        &self,
        message: &Message,
        avoid: &[u32],
        start: Instant,
        timeout: Duration,
    ) -> Result<InFlight, NotQueued> {
        // Borrowed from the current map, not cloned: no reference count
        // traffic on the send path.
        let topics = self.topics.load();
        let Some(topic) = topics.get(message.topic()) else {
            return Err(NotQueued::Later);
        };
        if self.waits_for_route(topic, message) {
            return Err(NotQueued::Later); // the slow path waits
        }
        let Target {
            partition,
            connection,
            metrics,
        } = self
            .choose_target(topic, message, avoid, start)
            .map_err(NotQueued::Failed)?;
        if waits_for_connection(message, &connection) {
            return Err(NotQueued::Later); // the slow path waits
        }
        let deadline = start + timeout;
        let reply = match connection.try_request(None, start, deadline, |out, opaque| {
            encode_put_into(out, opaque, message, partition, None)
        }) {
            Ok(reply) => reply,
            Err(Full::Full) => return Err(NotQueued::Later),
            Err(Full::Invalid(e)) => {
                return Err(NotQueued::Failed(Error::invalid(message.topic(), e)))
            }
        };
        Ok(InFlight {
            partition,
            connection,
            reply,
            timeout,
            metrics: metrics.attempt(),
        })
    }

    /// The slow path: publish the topic if needed, wait for room, queue.
    /// Every wait ends at the send's deadline; the attempt then gets its
    /// share of what is left, one of `attempts_left`.
    async fn queue(
        &self,
        message: &Message,
        avoid: &[u32],
        deadline: Instant,
        attempts_left: u32,
    ) -> Result<InFlight> {
        // A topic's first listing may take long (ZooKeeper down): the send
        // timeout still bounds the send.
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(self.config.publish_timeout);
        let topic = self.ensure_topic(message.topic(), wait).await?;
        if self.waits_for_route(&topic, message) {
            let left = deadline.saturating_duration_since(Instant::now());
            topic.wait_non_empty(left / 2).await;
        }
        let Target {
            partition,
            connection,
            metrics,
        } = self.choose_target(&topic, message, avoid, Instant::now())?;
        if waits_for_connection(message, &connection) {
            let left = deadline.saturating_duration_since(Instant::now());
            connection.wait_ready(left / 2).await;
        }
        let encode =
            |out: &mut BytesMut, opaque| encode_put_into(out, opaque, message, partition, None);
        loop {
            if !connection.wait_for_room(deadline).await {
                return Err(Error::NotSent {
                    topic: message.topic().to_owned(),
                    partition,
                    broker: connection.uri().clone(),
                    cause: "no room on the connection before the send timeout (backpressure)"
                        .into(),
                    attempts: Attempts::default(),
                });
            }
            let now = Instant::now();
            let timeout = deadline.saturating_duration_since(now) / attempts_left.max(1);
            match connection.try_request(None, now, now + timeout, encode) {
                Ok(reply) => {
                    return Ok(InFlight {
                        partition,
                        connection,
                        reply,
                        timeout,
                        metrics: metrics.attempt(),
                    })
                }
                Err(Full::Full) => continue, // another send took the room
                Err(Full::Invalid(e)) => return Err(Error::invalid(message.topic(), e)),
            }
        }
    }

    /// Whether a send must wait for the topic's route to fill again before
    /// choosing. A broker that restarts gracefully, or whose ZooKeeper
    /// session was renewed, leaves ZooKeeper for a moment; when it was the
    /// topic's only one the route is empty meanwhile. A keyless send then
    /// waits (with half of what is left of its timeout), as it waits for a
    /// reconnecting broker. A keyed send, or one to a topic that never had
    /// a broker, fails promptly instead.
    fn waits_for_route(&self, topic: &TopicState, message: &Message) -> bool {
        message.key().is_none()
            && topic.was_served()
            && topic.route.load().partitions.is_empty()
            && self
                .default_topic_state()
                .is_none_or(|default| default.route.load().partitions.is_empty())
    }

    /// Runs the selector over the topic's route (or the default topic's,
    /// when no broker lists this one).
    pub(crate) fn choose(
        &self,
        topic: &TopicState,
        message: &Message,
        avoid: &[u32],
        now: Instant,
    ) -> Result<(Partition, Connection)> {
        let target = self.choose_target(topic, message, avoid, now)?;
        Ok((target.partition, target.connection))
    }

    /// [`choose`](Self::choose), with the chosen broker's `metrics` handles.
    fn choose_target(
        &self,
        topic: &TopicState,
        message: &Message,
        avoid: &[u32],
        now: Instant,
    ) -> Result<Target> {
        let mut route = topic.route.load();
        let mut sequence = &topic.sequence;
        let mut own_route = true;
        let default;
        if route.partitions.is_empty() {
            if let Some(state) = self.default_topic_state() {
                default = state;
                route = default.route.load();
                sequence = &default.sequence;
                own_route = false;
            }
        }
        if route.partitions.is_empty() {
            return Err(Error::NoPartition {
                topic: message.topic().to_owned(),
                reason: "no broker serves this topic (still watching ZooKeeper for one)".into(),
            });
        }
        // Fitness tiers, best first. The selector sees one at a time as
        // "usable"; a built-in selector that finds nothing usable falls back
        // to an arbitrary partition, so when its answer is not in the tier
        // the next, looser tier is tried. Without the middle tiers a retry
        // whose other brokers were all merely suspected (e.g. one that lost
        // its connection a moment ago and is back) fell back blindly, often
        // to the broker this send had just failed on and that is down.
        let connected = |p: Partition| route.connection(p).is_some_and(|c| c.is_ready());
        let untried = |p: Partition| !avoid.contains(&p.broker_id);
        // A keyless message skips, in its first choice, brokers far slower
        // than the fastest (but for their trickle of turns, which go to
        // them).
        let slow = match &self.config.slow_brokers {
            Some(policy) if message.key().is_none() => {
                Skipped::for_send(&route, avoid, now, policy)
            }
            _ => Skipped::default(),
        };
        // Nearly always every broker is healthy and none was tried: then the
        // first tier admits every partition without a lookup per partition.
        let all_healthy = avoid.is_empty() && slow.is_empty() && route.all_usable();
        let healthy = |p: Partition| {
            all_healthy
                || (untried(p)
                    && slow.admits(p.broker_id)
                    && route.connection(p).is_some_and(|c| c.is_usable()))
        };
        let connected_untried = |p: Partition| untried(p) && connected(p);
        let tiers: [&(dyn Fn(Partition) -> bool + Sync); 4] =
            [&healthy, &connected_untried, &connected, &untried];
        // A fixed server: the broker chooses, the selector is not asked.
        let chosen = if self.config.server.is_some() {
            route.partitions.first().copied()
        } else {
            let mut chosen = None;
            for tier in tiers {
                let selection =
                    Selection::new(&route.partitions, message, sequence).with_usable(tier);
                let partition = self.config.selector.select(&selection);
                chosen = partition;
                if partition.is_none_or(tier) {
                    break;
                }
            }
            chosen
        };
        let partition = chosen.ok_or_else(|| Error::NoPartition {
            topic: message.topic().to_owned(),
            reason: "the partition selector chose none".into(),
        })?;
        let connection =
            route
                .connection(partition)
                .cloned()
                .ok_or_else(|| Error::NoPartition {
                    topic: message.topic().to_owned(),
                    reason: format!("partition {partition} is not in the topic's route"),
                })?;
        // The route's handles carry its topic's label: a send borrowing the
        // default topic's route (rare) looks up its own.
        let metrics = own_route
            .then(|| route.metrics.get(partition.broker_id))
            .flatten()
            .unwrap_or_else(|| send_metrics::Handles::lookup(message.topic(), connection.uri()));
        Ok(Target {
            partition,
            connection,
            metrics,
        })
    }
}

/// Whether a send must wait for `connection` to come up before writing.
/// The selector prefers connected brokers, so a chosen connection that is
/// down means none of the topic's is up (a broker restart, a network
/// blip): a keyless send waits for it (with half of what is left of its
/// timeout) rather than fail at once, as librdkafka queues messages for a
/// reconnecting broker. A keyed send cannot move, so it fails promptly.
fn waits_for_connection(message: &Message, connection: &Connection) -> bool {
    message.key().is_none() && !connection.is_ready()
}

/// Encodes a put (inside a transaction when `tx_key` is given) into `out`.
pub(crate) fn encode_put_into(
    out: &mut BytesMut,
    opaque: i32,
    message: &Message,
    partition: Partition,
    tx_key: Option<&TxKey>,
) -> std::result::Result<(), ProtocolError> {
    let header = PutHeader {
        topic: message.topic(),
        partition: super::fixed::put_index(partition, tx_key.is_some()),
        tx_key,
        opaque,
    };
    encode_put(out, &header, message.attribute(), message.payload())
}

/// What became of one attempt.
enum Outcome {
    Done(SendResult),
    Failed { delivery: Delivery, error: Error },
}

/// The future [`Producer::send`] returns. A send whose first attempt was
/// queued synchronously and succeeds (nearly every one) is this small
/// struct polling its reply: no boxed state machine, no timer, no extra
/// wake-up. Anything else (waiting for a topic, a route or room, retries)
/// continues in a boxed [`drive`].
pub(crate) struct SendFuture {
    state: SendState,
    span: tracing::Span,
    /// Counts the send in the producer's task tracker until it ends.
    /// Held until the send ends (or the future is dropped).
    in_flight: Option<super::in_flight::SendToken>,
}

/// A send's time: when it started and how long it may take, retries
/// included (the producer's `send_timeout`, or the caller's own).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    pub(crate) start: Instant,
    pub(crate) timeout: Duration,
}

impl Budget {
    pub(crate) fn deadline(&self) -> Instant {
        self.start + self.timeout
    }
}

pub(crate) enum SendState {
    /// Refused before any attempt.
    Refused(Option<Error>),
    /// The first attempt is waiting for its answer.
    First {
        producer: Producer,
        message: Message,
        budget: Budget,
        in_flight: InFlight,
    },
    /// The slow path and retries.
    Driven(std::pin::Pin<Box<dyn std::future::Future<Output = Result<SendResult>> + Send>>),
    Finished,
}

impl SendFuture {
    pub(crate) fn new(
        state: SendState,
        span: tracing::Span,
        in_flight: super::in_flight::SendToken,
    ) -> Self {
        SendFuture {
            state,
            span,
            in_flight: Some(in_flight),
        }
    }

    /// Whether the send only waits for its first attempt's answer: then
    /// polling it does nothing but look for that answer. Otherwise it has
    /// work of its own to drive (waiting for a topic or room, retrying).
    pub(crate) fn awaits_first_answer(&self) -> bool {
        matches!(self.state, SendState::First { .. })
    }
}

impl SendState {
    /// The send continues in [`drive`], from `progress`.
    pub(crate) fn driven(
        producer: Producer,
        message: Message,
        budget: Budget,
        progress: Progress,
    ) -> Self {
        // Outside tokio's cooperative budget: a caller awaiting thousands of
        // sends in one task (a `FuturesUnordered`) would otherwise exhaust
        // the budget, and every further answer's poll would be deferred and
        // woken again. A send does not loop, so it cannot starve other tasks.
        SendState::Driven(Box::pin(tokio::task::unconstrained(drive(
            producer, message, budget, progress,
        ))))
    }
}

impl std::future::Future for SendFuture {
    type Output = Result<SendResult>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.get_mut();
        let poll = this.poll_send(cx);
        if poll.is_ready() {
            // Ended: no longer in flight, even if the future is kept.
            this.in_flight = None;
        }
        poll
    }
}

impl SendFuture {
    fn poll_send(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<SendResult>> {
        use std::task::Poll;
        let this = self;
        let _entered = this.span.enter();
        loop {
            match &mut this.state {
                SendState::Refused(error) => {
                    let error = error.take().expect("polled after it resolved");
                    this.state = SendState::Finished;
                    return Poll::Ready(Err(error));
                }
                SendState::First { in_flight, .. } => {
                    let Poll::Ready(answer) = std::pin::Pin::new(&mut in_flight.reply).poll(cx)
                    else {
                        return Poll::Pending;
                    };
                    let SendState::First {
                        producer,
                        message,
                        budget,
                        in_flight,
                    } = std::mem::replace(&mut this.state, SendState::Finished)
                    else {
                        unreachable!("matched First above")
                    };
                    let outcome = judge(&producer.inner, &message, &in_flight, 1, answer);
                    let mut progress = Progress::default();
                    match progress.record(&producer.inner, &message, budget, &in_flight, outcome) {
                        Next::Done(result) => {
                            producer.inner.counters.ended(message.topic(), &result);
                            return Poll::Ready(result);
                        }
                        Next::Retry => {
                            this.state = SendState::driven(producer, message, budget, progress);
                        }
                    }
                }
                SendState::Driven(send) => {
                    let result = std::task::ready!(send.as_mut().poll(cx));
                    this.state = SendState::Finished;
                    return Poll::Ready(result);
                }
                SendState::Finished => panic!("send future polled after it resolved"),
            }
        }
    }
}

/// Where a send stands between attempts.
#[derive(Default)]
pub(crate) struct Progress {
    /// Attempts made so far, for the final error.
    attempts: Attempts,
    /// Brokers tried so far, avoided by the next attempt.
    tried: Vec<u32>,
    /// The next attempt when it was already made (queued synchronously).
    next: Option<std::result::Result<InFlight, NotQueued>>,
}

/// What a send does after an attempt.
enum Next {
    Done(Result<SendResult>),
    Retry,
}

impl Progress {
    /// Starts with a first attempt made synchronously (or not).
    pub(crate) fn first(attempt: std::result::Result<InFlight, NotQueued>) -> Self {
        Progress {
            next: Some(attempt),
            ..Progress::default()
        }
    }

    fn number(&self) -> u32 {
        self.attempts.0.len() as u32 + 1
    }

    /// Takes an attempt's outcome: done, or retry while the budget lasts.
    /// Counts it for its broker too (the counters are in structs the
    /// attempt holds: no lookup).
    fn record(
        &mut self,
        inner: &ProducerInner,
        message: &Message,
        budget: Budget,
        attempt: &InFlight,
        outcome: Outcome,
    ) -> Next {
        let InFlight {
            partition,
            connection,
            ..
        } = attempt;
        let (delivery, error) = match outcome {
            Outcome::Done(result) => {
                // The answer's time is the session's reading for its batch
                // of answers: timing a send costs no clock read.
                let latency = attempt.reply.answered_at().map_or_else(
                    || budget.start.elapsed(),
                    |at| at.saturating_duration_since(budget.start),
                );
                inner.counters.latency.record(latency);
                connection.tally().sent();
                attempt.metrics.sent(latency);
                return Next::Done(Ok(result));
            }
            Outcome::Failed { delivery, error } => (delivery, error),
        };
        connection.tally().failed();
        let number = self.number();
        let retriable = matches!(delivery, Delivery::NotSent | Delivery::MaybeSent);
        self.tried.push(partition.broker_id);
        self.attempts.0.push(Attempt {
            broker: connection.uri().clone(),
            partition: *partition,
            elapsed: budget.start.elapsed(),
            delivery,
            cause: cause_of(&error),
        });
        let deadline = budget.deadline();
        if !retriable || number >= max_attempts(inner, message) || Instant::now() >= deadline {
            return Next::Done(Err(with_attempts(
                error,
                std::mem::take(&mut self.attempts),
            )));
        }
        tracing::debug!(attempt = number, error = %error, "retrying on another broker");
        inner.counters.retried(delivery);
        attempt.metrics.retried();
        Next::Retry
    }
}

/// Drives a send to its end from `progress`: the next attempt (already
/// queued or not), then retries while the budget lasts.
async fn drive(
    producer: Producer,
    message: Message,
    budget: Budget,
    progress: Progress,
) -> Result<SendResult> {
    let result = attempts(&producer, &message, budget, progress).await;
    producer.inner.counters.ended(message.topic(), &result);
    result
}

/// The attempts of [`drive`].
async fn attempts(
    producer: &Producer,
    message: &Message,
    budget: Budget,
    mut progress: Progress,
) -> Result<SendResult> {
    let inner = &producer.inner;
    let deadline = budget.deadline();
    let max_attempts = max_attempts(inner, message);
    loop {
        let number = progress.number();
        let queued = match progress.next.take() {
            Some(Ok(in_flight)) => Ok(in_flight),
            Some(Err(NotQueued::Failed(e))) => Err(e),
            Some(Err(NotQueued::Later)) | None => {
                let attempts_left = max_attempts - number + 1;
                inner
                    .queue(message, &progress.tried, deadline, attempts_left)
                    .await
            }
        };
        let mut in_flight = match queued {
            Ok(in_flight) => in_flight,
            Err(e) => {
                // An attempt that got as far as a broker (and found no room) is listed too.
                if let Error::NotSent {
                    broker,
                    partition,
                    cause,
                    ..
                } = &e
                {
                    progress.attempts.0.push(Attempt {
                        broker: broker.clone(),
                        partition: *partition,
                        elapsed: budget.start.elapsed(),
                        delivery: Delivery::NotSent,
                        cause: cause.clone(),
                    });
                }
                return Err(with_attempts(e, progress.attempts));
            }
        };
        let answer = (&mut in_flight.reply).await;
        let outcome = judge(inner, message, &in_flight, number, answer);
        match progress.record(inner, message, budget, &in_flight, outcome) {
            Next::Done(result) => return result,
            Next::Retry => {}
        }
    }
}

/// How many attempts a send may make: a keyed message never moves to
/// another partition, so it gets one.
pub(crate) fn max_attempts(inner: &ProducerInner, message: &Message) -> u32 {
    if message.key().is_some() {
        1
    } else {
        1 + inner.config.retries
    }
}

/// What an attempt's answer (or its absence) means for the send, and for
/// the broker: one that failed a request is avoided for a while.
fn judge(
    inner: &ProducerInner,
    message: &Message,
    attempt: &InFlight,
    number: u32,
    answer: std::result::Result<crate::protocol::Response, RequestError>,
) -> Outcome {
    let InFlight {
        partition,
        connection,
        timeout,
        ..
    } = attempt;
    let (partition, timeout) = (*partition, *timeout);
    // Only failures need the topic owned: a success allocates nothing here.
    let topic = || message.topic().to_owned();
    let broker = connection.uri().clone(); // shared host: no allocation
    let failed = |delivery, error| Outcome::Failed { delivery, error };
    match answer {
        Ok(response) if response.code.is_success() => {
            match response.put_result() {
                Some((message_id, index, offset)) => {
                    connection.clear_suspicion();
                    Outcome::Done(SendResult {
                        partition: Partition::new(partition.broker_id, index.max(0) as u32),
                        offset,
                        message_id,
                        broker,
                        attempts: number,
                    })
                }
                // A broker that says 200 but whose answer cannot be read is
                // as suspect as one that did not answer: avoid it a while.
                None => {
                    connection.suspect_for(inner.config.avoid_period);
                    failed(
                        Delivery::MaybeSent,
                        Error::ConnectionLost {
                            topic: topic(),
                            partition,
                            broker,
                            cause: format!(
                                "unreadable success answer {:?}",
                                String::from_utf8_lossy(&response.body)
                            ),
                            attempts: Attempts::default(),
                        },
                    )
                }
            }
        }
        // A readable refusal: the broker is up and answering.
        Ok(response) => {
            connection.clear_suspicion();
            failed(
                Delivery::Rejected,
                Error::Rejected {
                    topic: topic(),
                    partition,
                    broker,
                    code: response.code.0,
                    message: String::from_utf8_lossy(&response.body).into_owned(),
                    attempts: Attempts::default(),
                },
            )
        }
        Err(RequestError::NotWritten(cause)) => {
            connection.suspect_for(inner.config.avoid_period);
            failed(
                Delivery::NotSent,
                Error::NotSent {
                    topic: topic(),
                    partition,
                    broker,
                    cause,
                    attempts: Attempts::default(),
                },
            )
        }
        Err(RequestError::Lost(cause)) => {
            connection.suspect_for(inner.config.avoid_period);
            failed(
                Delivery::MaybeSent,
                Error::ConnectionLost {
                    topic: topic(),
                    partition,
                    broker,
                    cause,
                    attempts: Attempts::default(),
                },
            )
        }
        Err(RequestError::TimedOut) => {
            connection.suspect_for(inner.config.avoid_period);
            failed(
                Delivery::MaybeSent,
                Error::Timeout {
                    topic: topic(),
                    partition,
                    broker,
                    timeout,
                    attempts: Attempts::default(),
                },
            )
        }
    }
}

fn cause_of(error: &Error) -> String {
    match error {
        Error::NotSent { cause, .. } | Error::ConnectionLost { cause, .. } => cause.clone(),
        Error::Timeout { timeout, .. } => format!("no answer within {timeout:?}"),
        Error::Rejected { code, message, .. } => format!("{code} {message}"),
        other => other.to_string(),
    }
}

/// Puts the full attempt list into the final error.
fn with_attempts(mut error: Error, all: Attempts) -> Error {
    match &mut error {
        Error::NotSent { attempts, .. }
        | Error::Timeout { attempts, .. }
        | Error::ConnectionLost { attempts, .. }
        | Error::Rejected { attempts, .. } => *attempts = all,
        _ => {}
    }
    error
}
