//! Network faults between the producer and a broker: a link blackholed
//! then healed, and a broker answering garbage. Real ZooKeeper; real
//! brokers over TCP, or a fake one registered in ZooKeeper by hand.
//!
//! The blackhole is a TCP proxy of the test's own in front of one of three
//! brokers; that broker advertises the proxy's port in ZooKeeper
//! (`BrokerConfig::with_advertised_port`), so the producer reaches it only
//! through the proxy. Blackholing stops forwarding with every socket left
//! open, which no broker control (`stall`, `stop_listening`, ...) can do.
//!
//! What the producer reads from a broker is bounded: a header line of
//! 64 KiB, a body of 2 MiB. To show that garbage cannot make it allocate
//! more, each garbage scenario runs on a runtime of its own whose threads
//! (and the test's thread) report the size of every allocation they make
//! (`net_fault_support::allocations`); the largest one must stay under
//! twice the body cap (a decoder that reserved an announced body before
//! checking it shows up as a 2 GiB allocation). That was preferred to
//! running `metaq produce` under `ulimit -v`: the address-space limit has
//! to leave room for thread stacks and malloc arenas, whose virtual size
//! varies with the machine, so it could only catch allocations hundreds of
//! MB large, while the counting catches one of a few MB, per scenario, even
//! with the binary's other tests running in parallel in the same process.
//!
//! Covered elsewhere and not repeated: a stalled or killed broker, an
//! unreadable success (`producer_faults.rs`), the decoder's caps on their
//! own (`protocol_examples.rs`). `producer_faults.rs` also has one garbled
//! and one unknown-opaque answer with a single send in flight; here five
//! sends wait when the broker misbehaves, and allocations are watched.

mod net_fault_support;
mod producer_support;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use futures::future::join_all;
use metaq::producer::KeyHash;
use metaq::{BrokerUri, Delivery, Error, Message, Partition, Producer, SendResult};
use metaq_testkit::TestBroker;
use net_fault_support::{BlackholeProxy, FakeBroker, LargestAllocation, Misbehaviour};
use producer_support::*;
use tokio::time::Instant;

const TOPIC: &str = "network";

/// Scheduling slack on top of a send timeout before a send counts as hung.
const SLACK: Duration = Duration::from_secs(1);

/// One send: its body, when it started, how long it took, its outcome.
struct Sent {
    body: String,
    started: Instant,
    elapsed: Duration,
    result: Result<SendResult, Error>,
}

/// Sends `message`, timing it from the call (its first attempt is queued
/// then).
fn timed_send(producer: &Producer, message: Message) -> impl Future<Output = Sent> + 'static {
    let body = String::from_utf8(message.payload().to_vec()).unwrap();
    let started = Instant::now();
    let send = producer.send(message);
    async move {
        let result = send.await;
        Sent {
            body,
            started,
            elapsed: started.elapsed(),
            result,
        }
    }
}

/// Sends `count` keyless messages named `<label>-<i>`, two every 10 ms
/// (200 a second), each in a task of its own; every outcome once all ended.
async fn paced_sends(producer: &Producer, label: &str, count: usize) -> Vec<Sent> {
    let mut ticks = tokio::time::interval(Duration::from_millis(10));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        if i % 2 == 0 {
            ticks.tick().await;
        }
        let message = Message::new(TOPIC, format!("{label}-{i}"));
        tasks.push(tokio::spawn(timed_send(producer, message)));
    }
    let mut sent = Vec::with_capacity(count);
    for task in tasks {
        sent.push(task.await.unwrap());
    }
    sent
}

/// Every send succeeded within its timeout (plus slack).
fn all_succeeded_in_time(sent: &[Sent], send_timeout: Duration) {
    for s in sent {
        if let Err(e) = &s.result {
            panic!("{} failed after {:?}: {e}", s.body, s.elapsed);
        }
        assert!(
            s.elapsed <= send_timeout + SLACK,
            "{} took {:?}",
            s.body,
            s.elapsed
        );
    }
}

/// The broker ids of the successful sends.
fn brokers_used(sent: &[Sent]) -> Vec<u32> {
    sent.iter()
        .filter_map(|s| s.result.as_ref().ok())
        .map(|r| r.partition.broker_id)
        .collect()
}

/// Every acknowledged message is on the broker it was acknowledged by, at
/// the partition and offset given, and named by that broker's URI; no two
/// acknowledgements share a record. Records nobody was told of are copies
/// of sends that went "maybe sent" (at most one per such attempt), and
/// every record is a message the test sent.
fn check_ledger(sent: &[Sent], brokers: &[(&TestBroker, BrokerUri)], producer: &Producer) {
    let mut records = HashMap::new();
    for (id, (broker, _)) in brokers.iter().enumerate() {
        for r in broker.records(Some(TOPIC)) {
            assert!(r.checksum_valid, "bad checksum on broker {id}: {r:?}");
            records.insert((id as u32, r.partition, r.offset), r.body);
        }
    }
    let mut claimed = HashSet::new();
    for s in sent {
        let Ok(result) = &s.result else { continue };
        let id = result.partition.broker_id;
        let at = (id, result.partition.index, result.offset);
        assert_eq!(
            records.get(&at).map(|body| &body[..]),
            Some(s.body.as_bytes()),
            "{} acknowledged as {result:?}",
            s.body
        );
        assert_eq!(result.broker, brokers[id as usize].1, "{result:?}");
        assert!(claimed.insert(at), "two sends acknowledged as {at:?}");
    }
    let bodies: HashSet<&[u8]> = sent.iter().map(|s| s.body.as_bytes()).collect();
    for ((id, partition, offset), body) in &records {
        assert!(
            bodies.contains(&body[..]),
            "broker {id} stored {body:?} at {partition}/{offset}, never sent"
        );
    }
    let stats = producer.stats();
    let copies = (records.len() - claimed.len()) as u64;
    assert!(
        copies <= stats.retries_after_maybe_sent + stats.failed_maybe_sent,
        "{copies} unacknowledged records; {stats:?}"
    );
    eprintln!(
        "{} records, {} acknowledged, {copies} copies; {stats:?}",
        records.len(),
        claimed.len()
    );
}

/// Broker 2 of three sits behind a proxy that blackholes its link for about
/// ten seconds (8 s of paced keyless sends, then keyed ones). Keyless sends
/// all succeed within the send timeout (those that tried broker 2 moved on
/// after a typed "maybe sent" failure) and soon leave broker 2 alone; keyed
/// sends for broker 2 fail with a typed error within it; the producer's
/// heartbeat finds the dead link and reconnects. Once healed, broker 2 gets
/// keyless and keyed traffic again. Every acknowledged message is stored
/// where its acknowledgement says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_link_is_left_and_used_again_once_healed() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 2)]).await;
    let b1 = broker(&root, 1, &[(TOPIC, 2)]).await;
    let listener = BlackholeProxy::listen().await;
    let proxy_port = listener.local_addr().unwrap().port();
    let b2 = broker_with(zk(), &root, 2, &[(TOPIC, 2)], |c| {
        c.with_advertised_port(proxy_port)
    })
    .await;
    let proxy = BlackholeProxy::start(listener, b2.local_addr());
    assert_eq!(b2.uri(), proxy.uri(), "broker 2 advertises the proxy");

    let send_timeout = Duration::from_secs(2);
    let producer = producer(&root)
        .send_timeout(send_timeout)
        .heartbeat_interval(Duration::from_millis(500))
        .selector(KeyHash)
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    let all = [parts(0, 2), parts(1, 2), parts(2, 2)].concat();
    wait_partitions(&producer, TOPIC, &all).await;
    let mut ledger = Vec::new();

    let healthy = paced_sends(&producer, "healthy", 300).await;
    all_succeeded_in_time(&healthy, send_timeout);
    // Through the proxy, broker 2 may answer more slowly than the others
    // on a busy machine and get a smaller share, but it gets some.
    let via_proxy = brokers_used(&healthy).iter().filter(|&&b| b == 2).count();
    eprintln!("{via_proxy} of 300 sends on broker 2 before the blackhole");
    assert!(via_proxy > 0, "no send on broker 2 through the proxy");
    ledger.extend(healthy);

    proxy.blackhole();
    let cut_at = Instant::now();
    let accepted_before = proxy.accepted();
    let blackholed = paced_sends(&producer, "blackholed", 1600).await;
    all_succeeded_in_time(&blackholed, send_timeout);
    assert!(
        brokers_used(&blackholed).iter().all(|&b| b != 2),
        "nothing passes the blackhole"
    );
    // The first sends to broker 2 wait for their attempt's share of the
    // send timeout before moving on; after that broker 2 is avoided (a
    // suspect, and its requests wait ever longer), so few sends try it
    // first, not the third of them that round-robin would give it.
    let (settling, settled): (Vec<&Sent>, Vec<&Sent>) = blackholed
        .iter()
        .partition(|s| s.started < cut_at + Duration::from_millis(1500));
    eprintln!(
        "retried: {} of {} sends while settling, {} of {} after",
        retried(&settling),
        settling.len(),
        retried(&settled),
        settled.len()
    );
    assert!(retried(&settling) > 0, "no send tried broker 2");
    assert!(
        retried(&settled) * 10 <= settled.len(),
        "{} of {} sends tried broker 2 first after settling",
        retried(&settled),
        settled.len()
    );
    assert!(producer.stats().retries_after_maybe_sent > 0);
    ledger.extend(blackholed);

    // Keyed sends cannot move: they fail, typed, within the send timeout.
    let dead_keys = keys_for_broker(&all, 2, 3);
    let keyed = join_all(dead_keys.iter().map(|key| {
        timed_send(
            &producer,
            Message::new(TOPIC, format!("keyed-blackholed-{key}")).with_key(key.clone()),
        )
    }))
    .await;
    for s in &keyed {
        let error = s.result.as_ref().expect_err("broker 2 is blackholed");
        assert!(
            matches!(
                error,
                Error::Timeout { .. } | Error::ConnectionLost { .. } | Error::NotSent { .. }
            ),
            "{error:?}"
        );
        assert!(matches!(
            error.delivery(),
            Some(Delivery::MaybeSent | Delivery::NotSent)
        ));
        assert_eq!(
            error.attempts().len(),
            1,
            "a keyed send is tried once: {error}"
        );
        assert_eq!(error.attempts()[0].broker, proxy.uri(), "{error}");
        assert!(
            s.elapsed <= send_timeout + SLACK,
            "{error} after {:?}",
            s.elapsed
        );
    }
    ledger.extend(keyed);

    // The heartbeat found the dead link (nothing came back within its
    // timeout) and opened a new one, through the proxy again.
    eventually(
        Duration::from_secs(10),
        "a new connection after the blackhole",
        || async { (proxy.accepted() > accepted_before).then_some(()) },
    )
    .await;
    eprintln!(
        "blackholed for {:?}; {} connection(s) opened meanwhile",
        cut_at.elapsed(),
        proxy.accepted() - accepted_before
    );

    proxy.heal();
    let healed_at = Instant::now();
    for round in 0.. {
        assert!(
            healed_at.elapsed() < Duration::from_secs(30),
            "no keyless send on broker 2 within 30 s of healing"
        );
        let healing = paced_sends(&producer, &format!("healed{round}"), 100).await;
        all_succeeded_in_time(&healing, send_timeout);
        let back = brokers_used(&healing).contains(&2);
        ledger.extend(healing);
        if back {
            break;
        }
    }
    eprintln!(
        "keyless traffic on broker 2 again {:?} after healing",
        healed_at.elapsed()
    );
    for key in &dead_keys {
        let s = timed_send(
            &producer,
            Message::new(TOPIC, format!("keyed-healed-{key}")).with_key(key.clone()),
        )
        .await;
        let result = s.result.as_ref().expect("broker 2 is reachable again");
        assert_eq!(result.partition.broker_id, 2);
        ledger.push(s);
    }

    check_ledger(
        &ledger,
        &[(&b0, b0.uri()), (&b1, b1.uri()), (&b2, proxy.uri())],
        &producer,
    );
    producer.close().await;
}

/// Sends that succeeded on a later attempt, having failed on a first one.
fn retried(sent: &[&Sent]) -> usize {
    sent.iter()
        .filter(|s| s.result.as_ref().is_ok_and(|r| r.attempts > 1))
        .count()
}

/// Largest allocation a garbage scenario may make: twice the largest
/// answer body the producer accepts. Believing a 2 GiB header, or buffering
/// an endless line, would go far past it.
const ALLOCATION_BOUND: usize = 2 * metaq::protocol::DEFAULT_MAX_BODY;

/// Puts in flight when a fake broker misbehaves.
const DOOMED: usize = 5;

/// A fake broker (the topic's only one) answers one put, then reads
/// [`DOOMED`] puts sent at once and misbehaves. Every one of them ends with
/// a typed error within the send timeout (none hangs): "maybe sent", since
/// the broker read them, with one of the `causes` expected (`None`: a
/// timeout). The producer drops the connection, the fake sees a new one,
/// and a send succeeds on it. Meanwhile no allocation passes
/// [`ALLOCATION_BOUND`].
fn a_misbehaving_broker(misbehaviour: Misbehaviour, causes: Option<&[&str]>) {
    let largest = LargestAllocation::new();
    largest.run(async {
        init_tracing();
        let root = unique_root();
        let fake = FakeBroker::start(zk(), &root, 0, TOPIC, misbehaviour, DOOMED).await;
        let send_timeout = Duration::from_secs(2);
        let producer = producer(&root)
            .send_timeout(send_timeout)
            .heartbeat_interval(Duration::from_millis(500))
            .retries(0)
            .build()
            .await
            .unwrap();
        producer.publish(TOPIC).await.unwrap();
        wait_partitions(&producer, TOPIC, &[Partition::new(0, 0)]).await;
        // Its first put is answered: the connection is up, so the puts
        // sent next are written on it at once.
        let first = producer.send(Message::new(TOPIC, "first")).await.unwrap();
        assert_eq!((first.offset, fake.connections()), (0, 1));

        largest.reset();
        let doomed =
            (0..DOOMED).map(|i| timed_send(&producer, Message::new(TOPIC, format!("doomed-{i}"))));
        let doomed = join_all(doomed).await;
        for s in &doomed {
            let error = s.result.as_ref().expect_err("the broker misbehaved");
            assert!(
                s.elapsed <= send_timeout + SLACK,
                "{error} after {:?}",
                s.elapsed
            );
            match causes {
                None => assert!(matches!(error, Error::Timeout { .. }), "{error:?}"),
                Some(causes) => {
                    assert!(matches!(error, Error::ConnectionLost { .. }), "{error:?}");
                    let text = error.to_string();
                    assert!(causes.iter().any(|c| text.contains(c)), "{text}");
                }
            }
            assert_eq!(error.delivery(), Some(Delivery::MaybeSent), "{error}");
            assert_eq!(error.attempts().len(), 1, "{error}");
            assert_eq!(error.attempts()[0].broker, fake.uri(), "{error}");
        }
        eventually(Duration::from_secs(15), "a new connection", || async {
            (fake.connections() >= 2).then_some(())
        })
        .await;
        let sent = eventually(
            Duration::from_secs(10),
            "a send on the new connection",
            || async {
                match producer.send(Message::new(TOPIC, "after")).await {
                    Err(Error::NotSent { .. }) => None, // still reconnecting
                    other => Some(other),
                }
            },
        )
        .await
        .expect("the new connection answers properly");
        assert_eq!((sent.broker, sent.offset), (fake.uri(), 0));
        let largest_seen = largest.get();
        eprintln!(
            "{misbehaviour:?}: largest allocation {largest_seen} bytes; {} puts read",
            fake.puts()
        );
        assert!(
            largest_seen <= ALLOCATION_BOUND,
            "{misbehaviour:?}: an allocation of {largest_seen} bytes"
        );
        producer.close().await;
    });
}

#[test]
fn random_garbage_closes_the_connection() {
    a_misbehaving_broker(Misbehaviour::Garbage, Some(&["garbled answer"]));
}

#[test]
fn a_2_gib_body_header_closes_the_connection_without_allocating_it() {
    a_misbehaving_broker(
        Misbehaviour::HugeBody,
        Some(&["garbled answer: body of 2147483648 bytes is over the"]),
    );
}

#[test]
fn a_result_for_an_unknown_opaque_closes_the_connection() {
    a_misbehaving_broker(Misbehaviour::UnknownOpaque, Some(&["unknown opaque"]));
}

#[test]
fn a_100_kb_line_without_crlf_closes_the_connection_without_buffering_it() {
    a_misbehaving_broker(
        Misbehaviour::EndlessLine,
        Some(&["garbled answer: header line is longer than"]),
    );
}

#[test]
fn silence_times_sends_out_and_the_heartbeat_replaces_the_connection() {
    a_misbehaving_broker(Misbehaviour::Silence, None);
}

#[test]
fn a_connection_reset_fails_the_sends_in_flight() {
    a_misbehaving_broker(
        Misbehaviour::Reset,
        Some(&["read failed", "closed by the broker", "write failed"]),
    );
}
