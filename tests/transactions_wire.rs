//! Local transactions on the wire (issue 4, docs/protocol.md §3.5, 3.14 example 4,
//! 4.2): a recording TCP proxy sits between the producer and a development
//! broker. The proxy is registered by hand in ZooKeeper, under a root of
//! its own, as broker 7 serving the topics the test chooses (which may
//! differ from what the broker behind it really has).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metaq::discovery::{TopicBroker, ZkPaths};
use metaq::producer::{PartitionSelector, Selection};
use metaq::protocol::split_body;
use metaq::{BrokerUri, Error, Message, Partition, Producer};
use metaq_testkit::{unique_root, RawClient, TestBroker, ZkServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zookeeper_client::{Acls, Client, CreateMode, CreateOptions};

const PERSISTENT: CreateOptions<'static> = CreateMode::Persistent.with_acls(Acls::anyone_all());
const EPHEMERAL: CreateOptions<'static> = CreateMode::Ephemeral.with_acls(Acls::anyone_all());

/// The id the proxy is registered under.
const PROXY_ID: u32 = 7;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

// ---------------------------------------------------------------------------
// The recording proxy
// ---------------------------------------------------------------------------

/// Client-to-broker bytes of one proxied connection.
type Recording = Arc<Mutex<Vec<u8>>>;

/// Forwards every connection on 127.0.0.1 to `target`, recording what the
/// client sends (before forwarding it). When either side closes, both do.
struct Proxy {
    addr: SocketAddr,
    /// Client-to-broker bytes, one entry per accepted connection.
    connections: Arc<Mutex<Vec<Recording>>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections: Arc<Mutex<Vec<Recording>>> = Arc::default();
        let all = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let recorded = Arc::new(Mutex::new(Vec::new()));
                all.lock().unwrap().push(Arc::clone(&recorded));
                tokio::spawn(async move {
                    let Ok(broker) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut client_in, mut client_out) = client.into_split();
                    let (mut broker_in, mut broker_out) = broker.into_split();
                    let up = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match client_in.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            recorded.lock().unwrap().extend_from_slice(&buf[..n]);
                            if broker_out.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    let down = async {
                        let _ = tokio::io::copy(&mut broker_in, &mut client_out).await;
                    };
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                    }
                });
            }
        });
        Proxy { addr, connections }
    }

    fn uri(&self) -> BrokerUri {
        format!("meta://127.0.0.1:{}", self.addr.port())
            .parse()
            .unwrap()
    }

    fn connection_count(&self) -> usize {
        self.connections.lock().unwrap().len()
    }

    /// Every complete frame the client sent: (connection number, frame).
    fn frames(&self) -> Vec<(usize, Frame)> {
        let connections = self.connections.lock().unwrap();
        connections
            .iter()
            .enumerate()
            .flat_map(|(i, bytes)| {
                parse_frames(&bytes.lock().unwrap())
                    .into_iter()
                    .map(move |f| (i, f))
            })
            .collect()
    }

    /// The frames of one transaction key (BEGIN, puts, COMMIT, ROLLBACK).
    fn frames_of(&self, key: &str) -> Vec<(usize, Frame)> {
        self.frames()
            .into_iter()
            .filter(|(_, f)| f.tokens().contains(&key))
            .collect()
    }

    /// Every `transaction` line sent so far.
    fn transaction_lines(&self) -> Vec<String> {
        self.frames()
            .into_iter()
            .filter(|(_, f)| f.line.starts_with("transaction "))
            .map(|(_, f)| f.line)
            .collect()
    }
}

/// One client frame: its header line (without CRLF) and body.
#[derive(Debug, Clone)]
struct Frame {
    line: String,
    body: Vec<u8>,
    /// The exact bytes of the frame.
    raw: Vec<u8>,
}

impl Frame {
    fn tokens(&self) -> Vec<&str> {
        self.line.split(' ').collect()
    }

    fn opaque(&self) -> i32 {
        self.tokens()
            .last()
            .unwrap()
            .parse()
            .expect("opaque is an int")
    }
}

/// Splits a client byte stream into frames; only `put` carries a body
/// (its length is token 3). A trailing incomplete frame is left out.
fn parse_frames(bytes: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut at = 0;
    while let Some(end) = bytes[at..].windows(2).position(|w| w == b"\r\n") {
        let line = String::from_utf8(bytes[at..at + end].to_vec()).expect("ASCII header");
        let body_len = if line.starts_with("put ") {
            line.split(' ').nth(3).unwrap().parse::<usize>().unwrap()
        } else {
            0
        };
        let body_start = at + end + 2;
        if bytes.len() < body_start + body_len {
            break;
        }
        frames.push(Frame {
            line,
            body: bytes[body_start..body_start + body_len].to_vec(),
            raw: bytes[at..body_start + body_len].to_vec(),
        });
        at = body_start + body_len;
    }
    frames
}

// ---------------------------------------------------------------------------
// Set-up: a broker, the proxy in front of it, the proxy in ZooKeeper
// ---------------------------------------------------------------------------

struct Setup {
    broker: TestBroker,
    proxy: Proxy,
    /// The root producers use (the proxy is registered there).
    root: String,
    /// Holds the hand-written ephemeral nodes.
    _zk: Client,
}

/// A broker serving `real` topics (under a root of its own), and the proxy
/// registered as broker 7 advertising `advertised` topics.
async fn setup(real: &[(&str, u32)], advertised: &[(&str, u32)]) -> Setup {
    let server = ZkServer::shared();
    let broker = TestBroker::start(server, &unique_root(), 0, real).await;
    let proxy = Proxy::start(broker.local_addr()).await;
    let root = unique_root();
    let zk = server.client().await;
    let paths = ZkPaths::new(&root);
    let uri = proxy.uri().to_string();
    zk.mkdir(&paths.broker(PROXY_ID), &PERSISTENT)
        .await
        .unwrap();
    zk.set_data(&paths.broker(PROXY_ID), uri.as_bytes(), None)
        .await
        .unwrap();
    zk.create(&paths.broker_master(PROXY_ID), uri.as_bytes(), &EPHEMERAL)
        .await
        .unwrap();
    for (topic, parts) in advertised {
        zk.mkdir(&paths.topic_pub(topic), &PERSISTENT)
            .await
            .unwrap();
        let json = TopicBroker::master(PROXY_ID, *parts).to_json();
        assert_eq!(json, format!("{{\"numParts\":{parts},\"broker\":\"7-m\"}}"));
        zk.create(
            &paths.topic_pub_broker(topic, PROXY_ID),
            json.as_bytes(),
            &EPHEMERAL,
        )
        .await
        .unwrap();
    }
    Setup {
        broker,
        proxy,
        root,
        _zk: zk,
    }
}

impl Setup {
    fn builder(&self) -> metaq::ProducerBuilder {
        Producer::builder(ZkServer::shared().connect_string()).root(&self.root)
    }

    async fn producer(&self) -> Producer {
        let producer = self.builder().build().await.unwrap();
        producer.publish("orders").await.unwrap();
        producer
    }

    fn stored(&self, topic: &str) -> Vec<String> {
        self.broker
            .records(Some(topic))
            .iter()
            .map(|r| {
                let (_, payload) = split_body(r.flag, &r.body).unwrap();
                String::from_utf8(payload.to_vec()).unwrap()
            })
            .collect()
    }
}

fn session_of(key: &str) -> &str {
    let parts: Vec<&str> = key.split(':').collect();
    assert_eq!(parts.len(), 3, "{key}");
    parts[1]
}

/// Waits until `check` holds, at most `within`.
async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn expect_failed(error: Error, key: &str, broker: &BrokerUri) -> String {
    match error {
        Error::TransactionFailed {
            key: k,
            broker: b,
            reason,
        } => {
            assert_eq!(k, key);
            assert_eq!(b, broker.to_string());
            reason
        }
        other => panic!("expected TransactionFailed for {key}, got {other:?}"),
    }
}

/// Chooses by the message key `"<broker>-<index>"` when that partition is
/// offered, else the partition with that index, else the first one.
#[derive(Debug)]
struct ByKey;

impl PartitionSelector for ByKey {
    fn select(&self, s: &Selection<'_>) -> Option<Partition> {
        let wanted: Option<Partition> = s
            .message
            .key()
            .and_then(|k| std::str::from_utf8(k).ok()?.parse().ok());
        match wanted {
            Some(w) => s
                .partitions
                .iter()
                .copied()
                .find(|p| *p == w)
                .or_else(|| s.partitions.iter().copied().find(|p| p.index == w.index)),
            None => s.partitions.first().copied(),
        }
    }
}

// ---------------------------------------------------------------------------
// 2. The bytes of BEGIN, put and COMMIT / ROLLBACK
// ---------------------------------------------------------------------------

/// docs/protocol.md §3.14, example 4, in form: with a 10 s timeout,
/// `transaction TX:<sid>:1 <sid> BEGIN 10 <opaque>`, then
/// `put orders <p> 5 0 907060870 TX:<sid>:1 <opaque>` + `hello`, then
/// `transaction TX:<sid>:1 <sid> COMMIT_ONE_PHASE <opaque>`, in that order,
/// on one connection, with negative opaques; nothing else with the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn begin_put_commit_match_worked_example_4() {
    init_tracing();
    let setup = setup(&[("orders", 2)], &[("orders", 2)]).await;
    let producer = setup
        .builder()
        .transaction_timeout(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    producer.publish("orders").await.unwrap();

    let mut tx = producer.begin_transaction().unwrap();
    let key = tx.key().to_owned();
    let sid = session_of(&key).to_owned();
    assert!(
        key.ends_with(":1"),
        "first transaction of the producer: {key}"
    );
    let sent = tx.send(Message::new("orders", "hello")).await.unwrap();
    assert_eq!(sent.broker, setup.proxy.uri());
    assert_eq!(sent.offset, -1);
    tx.commit().await.unwrap();

    let frames = setup.proxy.frames_of(&key);
    assert_eq!(frames.len(), 3, "{frames:#?}");
    let connection = frames[0].0;
    assert!(frames.iter().all(|(c, _)| *c == connection), "one socket");
    let [begin, put, commit] = [&frames[0].1, &frames[1].1, &frames[2].1];
    let p = sent.partition.index;
    for frame in [begin, put, commit] {
        assert!(
            frame.opaque() < 0,
            "opaques count up from i32::MIN: {frame:?}"
        );
    }
    let opaques: BTreeSet<i32> = [begin, put, commit].iter().map(|f| f.opaque()).collect();
    assert_eq!(opaques.len(), 3, "distinct opaques");

    let expected_begin = format!("transaction {key} {sid} BEGIN 10 {}\r\n", begin.opaque());
    assert_eq!(String::from_utf8_lossy(&begin.raw), expected_begin);
    assert_eq!(begin.tokens().len(), 6);
    let expected_put = format!(
        "put orders {p} 5 0 907060870 {key} {}\r\nhello",
        put.opaque()
    );
    assert_eq!(String::from_utf8_lossy(&put.raw), expected_put);
    assert_eq!(put.tokens().len(), 8);
    assert_eq!(put.body, b"hello");
    let expected_commit = format!(
        "transaction {key} {sid} COMMIT_ONE_PHASE {}\r\n",
        commit.opaque()
    );
    assert_eq!(String::from_utf8_lossy(&commit.raw), expected_commit);
    assert_eq!(commit.tokens().len(), 5);
    // Byte counts of the example, given our session id and opaques.
    assert_eq!(
        begin.raw.len(),
        87 - 2 * "192.168.1.10-1367290000000-1".len() - 1
            + 2 * sid.len()
            + begin.opaque().to_string().len()
    );

    // Nothing but heartbeats besides the transaction on that socket.
    for (c, frame) in setup.proxy.frames() {
        if c == connection && !frame.line.contains(&key) {
            assert!(frame.line.starts_with("version "), "unexpected {frame:?}");
        }
    }
    assert_eq!(setup.stored("orders"), ["hello"]);
    producer.close().await;
}

/// Without a timeout BEGIN has 5 tokens; rollback sends
/// `transaction <key> <sid> ROLLBACK <opaque>`; a per-transaction
/// `with_timeout` shows in BEGIN (whole seconds, at least 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn begin_without_timeout_and_rollback_forms() {
    init_tracing();
    let setup = setup(&[("orders", 2)], &[("orders", 2)]).await;
    let producer = setup.producer().await;

    let mut tx = producer.begin_transaction().unwrap();
    let key = tx.key().to_owned();
    let sid = session_of(&key).to_owned();
    tx.send(Message::new("orders", "hello")).await.unwrap();
    tx.send(Message::new("orders", "again")).await.unwrap();
    tx.rollback().await.unwrap();
    let frames = setup.proxy.frames_of(&key);
    assert_eq!(frames.len(), 4, "{frames:#?}");
    let begin = &frames[0].1;
    assert_eq!(
        begin.line,
        format!("transaction {key} {sid} BEGIN {}", begin.opaque())
    );
    assert_eq!(begin.tokens().len(), 5);
    assert!(frames[1].1.line.starts_with("put orders "));
    assert_eq!(frames[2].1.body, b"again");
    let rollback = &frames[3].1;
    assert_eq!(
        String::from_utf8_lossy(&rollback.raw),
        format!("transaction {key} {sid} ROLLBACK {}\r\n", rollback.opaque())
    );
    assert!(setup.stored("orders").is_empty());

    for (timeout, shown) in [
        (Duration::from_secs(3), "3"),
        (Duration::from_millis(200), "1"),
    ] {
        let mut tx = producer.begin_transaction().unwrap().with_timeout(timeout);
        let key = tx.key().to_owned();
        tx.send(Message::new("orders", "timed")).await.unwrap();
        tx.commit().await.unwrap();
        let begin = &setup.proxy.frames_of(&key)[0].1;
        assert_eq!(
            begin.line,
            format!("transaction {key} {sid} BEGIN {shown} {}", begin.opaque())
        );
    }
    assert_eq!(setup.stored("orders").len(), 2);
    producer.close().await;
}

// ---------------------------------------------------------------------------
// 7. Nothing sent without messages; broker errors
// ---------------------------------------------------------------------------

/// Commit, rollback or drop with no message sent puts nothing on the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_transactions_send_nothing() {
    init_tracing();
    let setup = setup(&[("orders", 2)], &[("orders", 2)]).await;
    let producer = setup.producer().await;

    producer
        .begin_transaction()
        .unwrap()
        .commit()
        .await
        .unwrap();
    producer
        .begin_transaction()
        .unwrap()
        .rollback()
        .await
        .unwrap();
    drop(producer.begin_transaction().unwrap());
    // A real one afterwards: once its COMMIT is recorded, anything the empty
    // ones had queued on the same socket would be recorded before it.
    let mut tx = producer.begin_transaction().unwrap();
    let key = tx.key().to_owned();
    assert!(key.ends_with(":4"), "{key}");
    tx.send(Message::new("orders", "real")).await.unwrap();
    tx.commit().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = setup.proxy.transaction_lines();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines.iter().all(|l| l.contains(&key)), "{lines:#?}");
    producer.close().await;
}

/// A dropped guard's background rollback is a ROLLBACK on the
/// transaction's socket; nothing is stored, and the socket stays in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_guard_sends_rollback() {
    init_tracing();
    let setup = setup(&[("orders", 2)], &[("orders", 2)]).await;
    let producer = setup.producer().await;

    let mut tx = producer.begin_transaction().unwrap();
    let key = tx.key().to_owned();
    tx.send(Message::new("orders", "dropped")).await.unwrap();
    drop(tx);
    eventually(
        "a ROLLBACK for the dropped guard",
        Duration::from_secs(10),
        || {
            setup
                .proxy
                .frames_of(&key)
                .iter()
                .any(|(_, f)| f.tokens().get(3) == Some(&"ROLLBACK"))
        },
    )
    .await;
    let frames = setup.proxy.frames_of(&key);
    assert_eq!(frames.len(), 3, "BEGIN, put, ROLLBACK: {frames:#?}");
    assert!(frames.iter().all(|(c, _)| *c == frames[0].0));
    assert!(!setup
        .proxy
        .transaction_lines()
        .iter()
        .any(|l| l.contains("COMMIT")));

    let mut tx = producer.begin_transaction().unwrap();
    let next = tx.key().to_owned();
    tx.send(Message::new("orders", "kept")).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        setup.proxy.frames_of(&next)[0].0,
        frames[0].0,
        "same socket"
    );
    assert_eq!(setup.stored("orders"), ["kept"]);
    producer.close().await;
}

/// The broker answers an error to a put (partition out of its range, or a
/// topic it does not accept, although ZooKeeper says otherwise): the send
/// fails with `TransactionFailed` carrying the broker's text, later sends
/// fail without touching the wire, and commit rolls back instead: no
/// COMMIT is ever sent, nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_error_fails_the_transaction_without_partial_commit() {
    init_tracing();
    // The broker has 2 partitions of orders and no topic ghost; the proxy
    // advertises 4 and ghost.
    let setup = setup(&[("orders", 2)], &[("orders", 4), ("ghost", 1)]).await;
    let producer = setup.builder().selector(ByKey).build().await.unwrap();
    producer.publish("orders").await.unwrap();
    producer.publish("ghost").await.unwrap();
    let proxy_uri = setup.proxy.uri();

    // Wrong partition on the second message.
    let mut tx = producer.begin_transaction().unwrap();
    let key = tx.key().to_owned();
    tx.send(Message::new("orders", "wp-0").with_key("7-0"))
        .await
        .unwrap();
    let error = tx
        .send(Message::new("orders", "wp-3").with_key("7-3"))
        .await
        .unwrap_err();
    let reason = expect_failed(error, &key, &proxy_uri);
    assert!(reason.contains("wrong partition 3"), "{reason}");
    let before = setup.proxy.frames_of(&key).len();
    let error = tx
        .send(Message::new("orders", "wp-1").with_key("7-1"))
        .await
        .unwrap_err();
    expect_failed(error, &key, &proxy_uri);
    assert_eq!(setup.proxy.frames_of(&key).len(), before, "nothing sent");
    expect_failed(tx.commit().await.unwrap_err(), &key, &proxy_uri);

    // A topic the broker does not accept.
    let mut tx = producer.begin_transaction().unwrap();
    let key2 = tx.key().to_owned();
    tx.send(Message::new("orders", "ghost-0")).await.unwrap();
    let error = tx.send(Message::new("ghost", "ghost-1")).await.unwrap_err();
    let reason = expect_failed(error, &key2, &proxy_uri);
    assert!(reason.contains("do not accept topic ghost"), "{reason}");
    expect_failed(tx.commit().await.unwrap_err(), &key2, &proxy_uri);

    for key in [&key, &key2] {
        let kinds: Vec<String> = setup
            .proxy
            .frames_of(key)
            .iter()
            .map(|(_, f)| match f.tokens()[0] {
                "transaction" => f.tokens()[3].to_owned(),
                word => word.to_owned(),
            })
            .collect();
        assert_eq!(kinds, ["BEGIN", "put", "put", "ROLLBACK"], "{key}");
    }
    assert!(setup.stored("orders").is_empty());
    assert!(setup.stored("ghost").is_empty());
    producer.close().await;
}

/// docs/protocol.md §8, item 11: the first put fails; the transaction does
/// not move to another broker for the next message (Java would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_first_put_never_moves_the_transaction() {
    init_tracing();
    let setup = setup(&[("orders", 1)], &[("orders", 1), ("ghost", 1)]).await;
    // A real broker 8 under the producers' root also serves both topics.
    let other = TestBroker::start(
        ZkServer::shared(),
        &setup.root,
        8,
        &[("orders", 1), ("ghost", 1)],
    )
    .await;
    let producer = setup.builder().selector(ByKey).build().await.unwrap();
    producer.publish("orders").await.unwrap();
    producer.publish("ghost").await.unwrap();
    eventually("both brokers listed", Duration::from_secs(10), || {
        producer.partitions("orders").len() == 2 && producer.partitions("ghost").len() == 2
    })
    .await;
    let proxy_uri = setup.proxy.uri();

    let mut tx = producer.begin_transaction().unwrap();
    let key = tx.key().to_owned();
    let error = tx
        .send(Message::new("ghost", "first").with_key("7-0"))
        .await
        .unwrap_err();
    let reason = expect_failed(error, &key, &proxy_uri);
    assert!(reason.contains("do not accept topic ghost"), "{reason}");
    assert_eq!(tx.broker(), Some(&proxy_uri), "pinned at BEGIN");
    let error = tx
        .send(Message::new("orders", "second").with_key("8-0"))
        .await
        .unwrap_err();
    expect_failed(error, &key, &proxy_uri);
    expect_failed(tx.commit().await.unwrap_err(), &key, &proxy_uri);
    assert!(other.records(None).is_empty(), "nothing went to broker 8");
    assert!(setup.broker.records(None).is_empty());
    let kinds: Vec<String> = setup
        .proxy
        .frames_of(&key)
        .iter()
        .map(|(_, f)| f.tokens()[0].to_owned())
        .collect();
    assert_eq!(kinds, ["transaction", "put", "transaction"]);
    producer.close().await;
}

/// The socket carrying a transaction breaks and the producer reconnects:
/// nothing of the transaction is ever written on the new socket (the broker
/// would not know it there); the send fails with `TransactionFailed` and
/// commit refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnected_socket_never_carries_the_transaction() {
    init_tracing();
    let setup = setup(&[("orders", 2)], &[("orders", 2)]).await;
    let producer = setup.producer().await;
    let proxy_uri = setup.proxy.uri();

    let mut tx = producer.begin_transaction().unwrap();
    let key = tx.key().to_owned();
    tx.send(Message::new("orders", "before-cut")).await.unwrap();
    let first_socket = setup.proxy.frames_of(&key)[0].0;
    setup.broker.faults().drop_connections();
    eventually("the producer reconnects", Duration::from_secs(10), || {
        setup.proxy.connection_count() > first_socket + 1
    })
    .await;
    // Give the new socket time to be marked ready (the connection task
    // sets it right after connecting).
    tokio::time::sleep(Duration::from_millis(200)).await;

    let error = tx
        .send(Message::new("orders", "after-cut"))
        .await
        .unwrap_err();
    expect_failed(error, &key, &proxy_uri);
    expect_failed(tx.commit().await.unwrap_err(), &key, &proxy_uri);
    let frames = setup.proxy.frames_of(&key);
    assert_eq!(frames.len(), 2, "BEGIN and one put only: {frames:#?}");
    assert!(frames.iter().all(|(c, _)| *c == first_socket));

    // The new socket works for a new transaction.
    let mut tx = producer.begin_transaction().unwrap();
    let next = tx.key().to_owned();
    tx.send(Message::new("orders", "after-reconnect"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_ne!(setup.proxy.frames_of(&next)[0].0, first_socket);
    assert_eq!(setup.stored("orders"), ["after-reconnect"]);
    producer.close().await;
}

// ---------------------------------------------------------------------------
// Cancelled sends and lost answers
// ---------------------------------------------------------------------------

/// COMMIT written, answer never comes (the broker stalls): the error is
/// `TransactionOutcomeUnknown` ("maybe sent"), distinct from a failed
/// transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_without_answer_is_outcome_unknown() {
    init_tracing();
    let setup = setup(&[("orders", 2)], &[("orders", 2)]).await;
    let producer = setup
        .builder()
        .transaction_request_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    producer.publish("orders").await.unwrap();

    let mut tx = producer.begin_transaction().unwrap();
    let key = tx.key().to_owned();
    tx.send(Message::new("orders", "in-doubt")).await.unwrap();
    setup.broker.faults().stall(true);
    let started = Instant::now();
    let error = tx.commit().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "bounded wait");
    match &error {
        Error::TransactionOutcomeUnknown { key: k, broker, .. } => {
            assert_eq!(k, &key);
            assert_eq!(broker, &setup.proxy.uri().to_string());
        }
        other => panic!("expected TransactionOutcomeUnknown, got {other:?}"),
    }
    assert_eq!(error.delivery(), Some(metaq::Delivery::MaybeSent));
    assert!(setup
        .proxy
        .frames_of(&key)
        .iter()
        .any(|(_, f)| f.line.contains("COMMIT_ONE_PHASE")));
    setup.broker.faults().stall(false);
    producer.close().await;
}
/// A send whose future is dropped after its put was written (here: a
/// caller-side timeout while the broker is slow) leaves the put's fate
/// unknown to the caller; committing would make visible a message the
/// caller never saw succeed. The transaction must refuse to commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_send_breaks_the_transaction() {
    init_tracing();
    let setup = setup(&[("orders", 2)], &[("orders", 2)]).await;
    let producer = setup.producer().await;
    let proxy_uri = setup.proxy.uri();

    let mut tx = producer.begin_transaction().unwrap();
    let key = tx.key().to_owned();
    tx.send(Message::new("orders", "confirmed")).await.unwrap();
    setup
        .broker
        .faults()
        .delay_responses(Duration::from_millis(500));
    let cancelled = tokio::time::timeout(
        Duration::from_millis(100),
        tx.send(Message::new("orders", "unseen")),
    )
    .await;
    assert!(cancelled.is_err(), "the caller gave up: {cancelled:?}");
    eventually("the put was written", Duration::from_secs(5), || {
        setup.proxy.frames_of(&key).len() == 3
    })
    .await;
    setup.broker.faults().delay_responses(Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(600)).await;

    let error = tx.send(Message::new("orders", "after")).await.unwrap_err();
    expect_failed(error, &key, &proxy_uri);
    expect_failed(tx.commit().await.unwrap_err(), &key, &proxy_uri);
    assert!(
        setup.stored("orders").is_empty(),
        "{:?}",
        setup.stored("orders")
    );
    producer.close().await;
}

/// The first send is cancelled while it waits for BEGIN's answer: the
/// broker may hold the transaction, so it stays pinned there (a later send
/// must not BEGIN the same key on another socket or broker), commit
/// refuses, and the broker is told to roll back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_cancelled_during_begin_keeps_the_transaction_pinned() {
    init_tracing();
    let setup = setup(&[("orders", 2)], &[("orders", 2)]).await;
    let producer = setup.producer().await;
    let proxy_uri = setup.proxy.uri();

    let mut tx = producer.begin_transaction().unwrap();
    let key = tx.key().to_owned();
    setup
        .broker
        .faults()
        .delay_responses(Duration::from_millis(500));
    let cancelled = tokio::time::timeout(
        Duration::from_millis(100),
        tx.send(Message::new("orders", "first")),
    )
    .await;
    assert!(cancelled.is_err());
    setup.broker.faults().delay_responses(Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(tx.broker(), Some(&proxy_uri), "BEGIN was written: pinned");

    let error = tx.send(Message::new("orders", "second")).await.unwrap_err();
    expect_failed(error, &key, &proxy_uri);
    expect_failed(tx.commit().await.unwrap_err(), &key, &proxy_uri);
    let kinds: Vec<String> = setup
        .proxy
        .frames_of(&key)
        .iter()
        .map(|(_, f)| f.tokens()[3].to_owned())
        .collect();
    assert_eq!(kinds, ["BEGIN", "ROLLBACK"], "one BEGIN, then a rollback");
    assert!(setup.stored("orders").is_empty());
    producer.close().await;
}

/// BEGIN without an answer (the broker stalls) within the transaction
/// request timeout: the send fails, the transaction stays pinned to that
/// broker (it may hold the transaction) and broken, and commit sends a
/// ROLLBACK, never a COMMIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_begin_pins_and_breaks_the_transaction() {
    init_tracing();
    let setup = setup(&[("orders", 2)], &[("orders", 2)]).await;
    let producer = setup
        .builder()
        .transaction_request_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    producer.publish("orders").await.unwrap();
    let proxy_uri = setup.proxy.uri();

    setup.broker.faults().stall(true);
    let mut tx = producer.begin_transaction().unwrap();
    let key = tx.key().to_owned();
    let error = tx.send(Message::new("orders", "never")).await.unwrap_err();
    let reason = expect_failed(error, &key, &proxy_uri);
    assert!(reason.contains("BEGIN"), "{reason}");
    assert_eq!(tx.broker(), Some(&proxy_uri));
    setup.broker.faults().stall(false);
    let error = tx
        .send(Message::new("orders", "still never"))
        .await
        .unwrap_err();
    expect_failed(error, &key, &proxy_uri);
    expect_failed(tx.commit().await.unwrap_err(), &key, &proxy_uri);
    let kinds: Vec<String> = setup
        .proxy
        .frames_of(&key)
        .iter()
        .map(|(_, f)| f.tokens()[3].to_owned())
        .collect();
    assert_eq!(kinds, ["BEGIN", "ROLLBACK"]);
    assert!(setup.stored("orders").is_empty());
    producer.close().await;
}

/// Heartbeats share the transaction's socket while it stays open; they
/// change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_do_not_disturb_an_open_transaction() {
    init_tracing();
    let setup = setup(&[("orders", 2)], &[("orders", 2)]).await;
    let producer = setup
        .builder()
        .heartbeat_interval(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    producer.publish("orders").await.unwrap();

    let mut tx = producer.begin_transaction().unwrap();
    let key = tx.key().to_owned();
    tx.send(Message::new("orders", "before beats"))
        .await
        .unwrap();
    let socket = setup.proxy.frames_of(&key)[0].0;
    let beats = |setup: &Setup| {
        setup
            .proxy
            .frames()
            .iter()
            .filter(|(c, f)| *c == socket && f.line.starts_with("version "))
            .count()
    };
    let before = beats(&setup);
    eventually("a few heartbeats", Duration::from_secs(10), || {
        beats(&setup) >= before + 3
    })
    .await;
    tx.send(Message::new("orders", "after beats"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(setup.stored("orders").len(), 2);
    assert!(setup
        .proxy
        .frames_of(&key)
        .iter()
        .all(|(c, _)| *c == socket));
    producer.close().await;
}

/// `transaction_timeout(0)` means no timeout, as MetaQ's
/// `setTransactionTimeout(0)`: BEGIN has no timeout token (it must not
/// become a 1 s timeout that kills every slower transaction).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_transaction_timeout_means_none() {
    init_tracing();
    let setup = setup(&[("orders", 2)], &[("orders", 2)]).await;
    let producer = setup
        .builder()
        .transaction_timeout(Duration::ZERO)
        .build()
        .await
        .unwrap();
    producer.publish("orders").await.unwrap();
    let mut tx = producer.begin_transaction().unwrap();
    let key = tx.key().to_owned();
    tx.send(Message::new("orders", "untimed")).await.unwrap();
    tx.commit().await.unwrap();
    let begin = &setup.proxy.frames_of(&key)[0].1;
    assert_eq!(begin.tokens().len(), 5, "{begin:?}");

    let mut tx = producer
        .begin_transaction()
        .unwrap()
        .with_timeout(Duration::ZERO);
    let key = tx.key().to_owned();
    tx.send(Message::new("orders", "untimed too"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let begin = &setup.proxy.frames_of(&key)[0].1;
    assert_eq!(begin.tokens().len(), 5, "{begin:?}");
    producer.close().await;
}

/// A guard dropped on a thread outside the runtime (sync code holding it)
/// still rolls back on the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_dropped_outside_the_runtime_still_rolls_back() {
    init_tracing();
    let setup = setup(&[("orders", 2)], &[("orders", 2)]).await;
    let producer = setup.producer().await;

    let mut tx = producer.begin_transaction().unwrap();
    let key = tx.key().to_owned();
    tx.send(Message::new("orders", "dropped elsewhere"))
        .await
        .unwrap();
    std::thread::spawn(move || drop(tx)).join().unwrap();
    eventually(
        "a ROLLBACK for the dropped guard",
        Duration::from_secs(10),
        || {
            setup
                .proxy
                .frames_of(&key)
                .iter()
                .any(|(_, f)| f.tokens().get(3) == Some(&"ROLLBACK"))
        },
    )
    .await;
    assert!(setup.stored("orders").is_empty());
    producer.close().await;
}

// ---------------------------------------------------------------------------
// The broker side, byte by byte (docs/protocol.md §4.2, 4.5, 4.6)
// ---------------------------------------------------------------------------

const SID: &str = "host-1367290000000-1";

fn tx_line(n: i32, kind: &str, opaque: i32) -> Vec<u8> {
    format!("transaction TX:{SID}:{n} {SID} {kind} {opaque}\r\n").into_bytes()
}

fn tx_put(n: i32, partition: i32, payload: &str, opaque: i32) -> Vec<u8> {
    let crc = metaq::protocol::checksum(payload.as_bytes());
    format!(
        "put orders {partition} {} 0 {crc} TX:{SID}:{n} {opaque}\r\n{payload}",
        payload.len()
    )
    .into_bytes()
}

async fn call(client: &mut RawClient, bytes: &[u8], opaque: i32) -> (u16, String) {
    let response = client.call(bytes).await.expect("an answer");
    assert_eq!(response.opaque, opaque);
    (
        response.code.0,
        String::from_utf8(response.body.to_vec()).unwrap(),
    )
}

/// Unknown keys get the 500 texts; BEGIN is idempotent; puts are held
/// (offset -1) and invisible, also to other connections, which cannot
/// finish them; COMMIT appends each partition's messages with the ids given
/// at put time; a finished key is unknown again; an empty transaction
/// commits; PREPARE is refused; partition -1 is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_local_transaction_rules() {
    init_tracing();
    let broker = TestBroker::start(ZkServer::shared(), &unique_root(), 0, &[("orders", 2)]).await;
    let not_started = |n: i32| format!("Local transaction 'TX:{SID}:{n}' has not been started.");
    let mut a = RawClient::connect(broker.local_addr()).await;
    let mut b = RawClient::connect(broker.local_addr()).await;

    assert_eq!(
        call(&mut a, &tx_line(1, "COMMIT_ONE_PHASE", 1), 1).await,
        (500, not_started(1))
    );
    assert_eq!(
        call(&mut a, &tx_line(1, "ROLLBACK", 2), 2).await,
        (500, not_started(1))
    );
    assert_eq!(
        call(&mut a, &tx_put(1, 0, "x", 3), 3).await,
        (500, not_started(1))
    );

    assert_eq!(
        call(&mut a, &tx_line(1, "BEGIN", 4), 4).await,
        (200, String::new())
    );
    assert_eq!(
        call(&mut a, &tx_line(1, "BEGIN", 5), 5).await,
        (200, String::new())
    );
    let (code, hello) = call(&mut a, &tx_put(1, 0, "hello", 6), 6).await;
    assert_eq!(code, 200, "{hello}");
    let hello: Vec<i64> = hello.split(' ').map(|t| t.parse().unwrap()).collect();
    assert_eq!(hello[1..], [0, -1]);
    let (code, world) = call(&mut a, &tx_put(1, 1, "world", 7), 7).await;
    assert_eq!(code, 200, "{world}");
    let world: Vec<i64> = world.split(' ').map(|t| t.parse().unwrap()).collect();
    assert_eq!(world[1..], [1, -1]);
    let (code, text) = call(&mut a, &tx_put(1, -1, "random", 8), 8).await;
    assert_eq!(
        (code, text.as_str()),
        (500, "Invalid partition for transaction command:-1")
    );
    let (code, text) = call(&mut a, &tx_put(1, 9, "wrong", 9), 9).await;
    assert_eq!(code, 500);
    assert!(text.ends_with("failed.Detail:wrong partition 9"), "{text}");
    let (code, text) = call(&mut a, &tx_line(1, "PREPARE", 10), 10).await;
    assert_eq!(
        (code, text.as_str()),
        (
            500,
            "XAException:code=-3,msg=Prepare not implemented on Local Transactions."
        )
    );
    assert!(broker.records(None).is_empty(), "held until commit");

    // Another connection does not see it.
    assert_eq!(
        call(&mut b, &tx_line(1, "COMMIT_ONE_PHASE", 11), 11).await,
        (500, not_started(1))
    );
    assert_eq!(
        call(&mut b, &tx_put(1, 0, "intruder", 12), 12).await,
        (500, not_started(1))
    );
    assert!(broker.records(None).is_empty());

    assert_eq!(
        call(&mut a, &tx_line(1, "COMMIT_ONE_PHASE", 13), 13).await,
        (200, String::new())
    );
    let records = broker.records(Some("orders"));
    let stored: Vec<(u32, i64, &[u8])> = records
        .iter()
        .map(|r| (r.partition, r.id, &r.body[..]))
        .collect();
    assert_eq!(
        stored,
        [(0, hello[0], &b"hello"[..]), (1, world[0], &b"world"[..])]
    );
    assert_eq!(
        call(&mut a, &tx_line(1, "COMMIT_ONE_PHASE", 14), 14).await,
        (500, not_started(1))
    );
    assert_eq!(
        call(&mut a, &tx_put(1, 0, "late", 15), 15).await,
        (500, not_started(1))
    );

    // Empty transaction; rollback; the same key can begin again.
    assert_eq!(call(&mut a, &tx_line(2, "BEGIN", 16), 16).await.0, 200);
    assert_eq!(
        call(&mut a, &tx_line(2, "COMMIT_ONE_PHASE", 17), 17)
            .await
            .0,
        200
    );
    assert_eq!(call(&mut a, &tx_line(3, "BEGIN", 18), 18).await.0, 200);
    assert_eq!(call(&mut a, &tx_put(3, 0, "undone", 19), 19).await.0, 200);
    assert_eq!(call(&mut a, &tx_line(3, "ROLLBACK", 20), 20).await.0, 200);
    assert_eq!(
        call(&mut a, &tx_line(3, "ROLLBACK", 21), 21).await,
        (500, not_started(3))
    );
    assert_eq!(broker.records(None).len(), 2);
}

/// Closing a connection rolls back its open transactions (the Java
/// broker forgets to; docs/protocol.md §8 item 4); a BEGIN timeout rolls
/// back on its own; a later COMMIT finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_rolls_back_on_close_and_on_timeout() {
    init_tracing();
    let broker = TestBroker::start(ZkServer::shared(), &unique_root(), 0, &[("orders", 2)]).await;
    let not_started = |n: i32| format!("Local transaction 'TX:{SID}:{n}' has not been started.");

    let mut a = RawClient::connect(broker.local_addr()).await;
    assert_eq!(call(&mut a, &tx_line(1, "BEGIN", 1), 1).await.0, 200);
    assert_eq!(call(&mut a, &tx_put(1, 0, "closed", 2), 2).await.0, 200);
    a.send(b"quit\r\n").await;
    assert!(a.is_closed().await);

    let mut b = RawClient::connect(broker.local_addr()).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, stats) = call(&mut b, b"stats  99\r\n", 99).await;
        assert_eq!(code, 200);
        if stats.contains("\r\ntx_rollback 1\r\n") {
            break;
        }
        assert!(Instant::now() < deadline, "no rollback at close: {stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let begin = b"transaction TX:host-1367290000000-1:2 host-1367290000000-1 BEGIN 1 3\r\n";
    assert_eq!(call(&mut b, begin, 3).await.0, 200);
    assert_eq!(call(&mut b, &tx_put(2, 1, "expired", 4), 4).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        call(&mut b, &tx_line(2, "COMMIT_ONE_PHASE", 5), 5).await,
        (500, not_started(2))
    );
    // Transaction 1 belonged to the closed connection; not here either.
    assert_eq!(
        call(&mut b, &tx_line(1, "COMMIT_ONE_PHASE", 6), 6).await,
        (500, not_started(1))
    );
    assert!(broker.records(None).is_empty());
}
