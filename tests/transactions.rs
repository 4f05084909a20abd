//! Local transactions end to end (issue 4), against a real ZooKeeper and
//! development brokers: pinning to one broker, visibility only at commit,
//! keys, concurrency, a killed broker, broker-side timeouts, dropped guards,
//! a broker leaving the snapshot, and `metaq produce --transaction`.
//!
//! The bytes on the wire are checked in `transactions_wire.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use metaq::producer::{PartitionSelector, Selection};
use metaq::protocol::split_body;
use metaq::{BrokerUri, Error, Message, Partition, Producer, SendResult};
use metaq_broker::store::{read_records, StoredRecord};
use metaq_testkit::{
    test_broker_config, unique_root, BrokerProcess, RawClient, TestBroker, ZkServer,
};

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn builder(root: &str) -> metaq::ProducerBuilder {
    Producer::builder(ZkServer::shared().connect_string()).root(root)
}

async fn producer(root: &str) -> Producer {
    builder(root).build().await.expect("producer")
}

/// Waits until `check` holds, at most `within`.
async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until the producer's route of `topic` has `count` partitions.
async fn wait_partitions(producer: &Producer, topic: &str, count: usize) {
    eventually(
        &format!("{count} partitions of {topic}"),
        Duration::from_secs(10),
        || producer.partitions(topic).len() == count,
    )
    .await;
}

fn payload_of(record: &StoredRecord) -> String {
    let (_, payload) = split_body(record.flag, &record.body).expect("a well-formed body");
    String::from_utf8(payload.to_vec()).expect("utf-8 payload")
}

fn stored(broker: &TestBroker, topic: &str) -> Vec<String> {
    broker.records(Some(topic)).iter().map(payload_of).collect()
}

fn stored_all(brokers: &[TestBroker], topic: &str) -> Vec<String> {
    brokers.iter().flat_map(|b| stored(b, topic)).collect()
}

/// The broker's `stats` summary, read on a connection of its own.
async fn broker_stats(addr: std::net::SocketAddr) -> HashMap<String, String> {
    let mut client = RawClient::connect(addr).await;
    let response = client.call(b"stats  1\r\n").await.expect("a stats answer");
    assert!(response.code.is_success(), "stats answered {response:?}");
    String::from_utf8_lossy(&response.body)
        .split("\r\n")
        .filter_map(|line| line.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

async fn tx_rollbacks(broker: &TestBroker) -> u64 {
    broker_stats(broker.local_addr()).await["tx_rollback"]
        .parse()
        .unwrap()
}

/// Checks a key is `TX:<sessionId>:<n>` and returns (sessionId, n). The
/// session id is `<host>-<millis>-<seq>` without `:` or a space.
fn parse_key(key: &str) -> (String, i32) {
    let parts: Vec<&str> = key.split(':').collect();
    assert_eq!(parts.len(), 3, "key {key:?} is TX:<sessionId>:<n>");
    assert_eq!(parts[0], "TX", "key {key:?}");
    let session = parts[1];
    assert!(!session.contains(' ') && !session.is_empty(), "{key:?}");
    let mut tail = session.rsplitn(3, '-');
    let seq: u64 = tail.next().unwrap().parse().expect("numeric sequence");
    let millis: u64 = tail.next().unwrap().parse().expect("numeric millis");
    let host = tail.next().expect("a host part");
    assert!(
        seq >= 1 && millis > 1_500_000_000_000 && !host.is_empty(),
        "{key:?}"
    );
    let n: i32 = parts[2].parse().expect("n is a 32-bit int");
    assert!(n >= 1, "{key:?}");
    (session.to_owned(), n)
}

/// Every partition of broker `id` (round-robin among them); anything else
/// only if it has none. For tests that need a transaction on one broker.
#[derive(Debug)]
struct Prefer(u32);

impl PartitionSelector for Prefer {
    fn select(&self, s: &Selection<'_>) -> Option<Partition> {
        let mine: Vec<Partition> = s
            .partitions
            .iter()
            .copied()
            .filter(|p| p.broker_id == self.0)
            .collect();
        let pool = if mine.is_empty() { s.partitions } else { &mine };
        let n = s.sequence.fetch_add(1, Ordering::Relaxed) as usize;
        (!pool.is_empty()).then(|| pool[n % pool.len()])
    }
}

/// Only the partitions of broker `id`, round-robin; none if it has none.
#[derive(Debug)]
struct Only(u32);

impl PartitionSelector for Only {
    fn select(&self, s: &Selection<'_>) -> Option<Partition> {
        let mine: Vec<Partition> = s
            .partitions
            .iter()
            .copied()
            .filter(|p| p.broker_id == self.0)
            .collect();
        let n = s.sequence.fetch_add(1, Ordering::Relaxed) as usize;
        (!mine.is_empty()).then(|| mine[n % mine.len()])
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

// ---------------------------------------------------------------------------
// 1. Many transactions over two brokers
// ---------------------------------------------------------------------------

/// 50 transactions of 20 messages over two brokers (3 + 4 partitions, so
/// the round-robin start moves between brokers): each stays on one broker,
/// nothing shows before commit, committed ones are all stored (with the ids
/// of put time, one contiguous block per partition), rolled-back ones
/// (every 5th) never; keys are `TX:<sessionId>:1…50`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_transactions_over_two_brokers() {
    init_tracing();
    let zk = ZkServer::shared();
    let root = unique_root();
    let brokers = [
        TestBroker::start(zk, &root, 0, &[("orders", 3)]).await,
        TestBroker::start(zk, &root, 1, &[("orders", 4)]).await,
    ];
    let producer = producer(&root).await;
    producer.publish("orders").await.unwrap();
    wait_partitions(&producer, "orders", 7).await;

    let mut session = None;
    // (tx index, broker index, results) of committed transactions.
    let mut committed: Vec<(usize, usize, Vec<SendResult>)> = Vec::new();
    let mut used = BTreeSet::new();
    for i in 0..50 {
        let mut tx = producer.begin_transaction().unwrap();
        let (sid, n) = parse_key(tx.key());
        assert_eq!(session.get_or_insert_with(|| sid.clone()), &sid);
        assert_eq!(n as usize, i + 1, "keys count 1, 2, 3… per producer");
        assert!(tx.broker().is_none(), "nothing chosen before a message");

        let mut results = Vec::new();
        for j in 0..20 {
            let sent = tx
                .send(Message::new("orders", format!("tx{i}-m{j}")))
                .await
                .unwrap_or_else(|e| panic!("tx{i} m{j}: {e}"));
            assert_eq!(sent.offset, -1, "not in the log before commit");
            assert_eq!(Some(&sent.broker), tx.broker());
            results.push(sent);
        }
        let pinned = tx.broker().unwrap().clone();
        let b = brokers.iter().position(|b| b.uri() == pinned).unwrap();
        used.insert(b);
        for sent in &results {
            assert_eq!(sent.broker, pinned, "tx{i}");
            assert_eq!(sent.partition.broker_id, b as u32, "tx{i}");
        }

        // Nothing of this one, nor of any uncommitted one, is visible.
        let visible = stored_all(&brokers, "orders");
        assert_eq!(
            visible.len(),
            committed.len() * 20,
            "before commit of tx{i}"
        );
        let prefix = format!("tx{i}-");
        assert!(!visible.iter().any(|p| p.starts_with(&prefix)));

        if i % 5 == 4 {
            tx.rollback().await.unwrap();
        } else {
            tx.commit().await.unwrap();
            committed.push((i, b, results));
        }
        // Commit answers after the append: all of it is visible now.
        assert_eq!(stored_all(&brokers, "orders").len(), committed.len() * 20);
    }
    assert_eq!(used.len(), 2, "transactions went to both brokers");
    assert_eq!(committed.len(), 40);

    // Where everything is: payload -> (broker, partition, position, id).
    let mut place: HashMap<String, (usize, u32, usize, i64)> = HashMap::new();
    for (b, broker) in brokers.iter().enumerate() {
        let mut position: BTreeMap<u32, usize> = BTreeMap::new();
        for record in broker.records(Some("orders")) {
            let pos = position.entry(record.partition).or_default();
            let previous =
                place.insert(payload_of(&record), (b, record.partition, *pos, record.id));
            assert!(previous.is_none(), "stored twice: {}", payload_of(&record));
            *pos += 1;
        }
    }
    assert_eq!(place.len(), 800);
    for (i, b, results) in &committed {
        // Per partition, the positions of this transaction's records.
        let mut blocks: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (j, sent) in results.iter().enumerate() {
            let name = format!("tx{i}-m{j}");
            let &(broker, partition, pos, id) = place
                .get(&name)
                .unwrap_or_else(|| panic!("{name} committed but missing"));
            assert_eq!(broker, *b, "{name} on the pinned broker");
            assert_eq!(partition, sent.partition.index, "{name} in its partition");
            assert_eq!(id, sent.message_id, "{name} keeps its put-time id");
            blocks.entry(partition).or_default().push(pos);
        }
        for (partition, positions) in blocks {
            let contiguous = positions.windows(2).all(|w| w[1] == w[0] + 1);
            assert!(contiguous, "tx{i} in partition {partition}: {positions:?}");
        }
    }
    for i in (4..50).step_by(5) {
        assert!(
            !place.keys().any(|p| p.starts_with(&format!("tx{i}-"))),
            "rolled-back tx{i} is stored"
        );
    }
    producer.close().await;
}

// ---------------------------------------------------------------------------
// 3. Concurrency on one producer
// ---------------------------------------------------------------------------

/// 8 transactions open at once on one producer (tokio tasks, interleaved
/// sends): distinct keys; while all are open nothing is visible; then they
/// finish one at a time and after each the store holds exactly the
/// committed ones. Task 3 rolls back; that changes nothing for the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_open_transactions_stay_isolated() {
    init_tracing();
    let zk = ZkServer::shared();
    let root = unique_root();
    let brokers = [
        TestBroker::start(zk, &root, 0, &[("orders", 2)]).await,
        TestBroker::start(zk, &root, 1, &[("orders", 2)]).await,
    ];
    let producer = producer(&root).await;
    producer.publish("orders").await.unwrap();
    wait_partitions(&producer, "orders", 4).await;

    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let producer = producer.clone();
        let ready = ready_tx.clone();
        let (go, go_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut tx = producer.begin_transaction().unwrap();
            let key = tx.key().to_owned();
            let mut results = Vec::new();
            for j in 0..10 {
                let sent = tx
                    .send(Message::new("orders", format!("c{t}-m{j}")))
                    .await
                    .unwrap_or_else(|e| panic!("c{t} m{j}: {e}"));
                results.push(sent);
                tokio::task::yield_now().await;
            }
            let pinned = tx.broker().unwrap().clone();
            ready.send(t).unwrap();
            go_rx.await.unwrap();
            let outcome = if t == 3 {
                tx.rollback().await
            } else {
                tx.commit().await
            };
            (key, pinned, results, outcome)
        });
        tasks.push((go, task));
    }
    for _ in 0..8 {
        ready_rx.recv().await.unwrap();
    }
    assert!(
        stored_all(&brokers, "orders").is_empty(),
        "80 messages held in 8 open transactions; none visible"
    );

    let mut keys = BTreeSet::new();
    let mut expected: BTreeSet<String> = BTreeSet::new();
    for (t, (go, task)) in tasks.into_iter().enumerate() {
        go.send(()).unwrap();
        let (key, pinned, results, outcome) = task.await.unwrap();
        outcome.unwrap_or_else(|e| panic!("task {t}: {e}"));
        let (_, n) = parse_key(&key);
        assert!((1..=8).contains(&n));
        assert!(keys.insert(key), "keys are distinct");
        assert!(results.iter().all(|r| r.broker == pinned), "task {t} moved");
        if t != 3 {
            expected.extend((0..10).map(|j| format!("c{t}-m{j}")));
        }
        let visible: BTreeSet<String> = stored_all(&brokers, "orders").into_iter().collect();
        assert_eq!(visible, expected, "after task {t} finished");
        // Each committed message is on the broker its transaction was pinned to.
        let on_pinned: Vec<String> = brokers
            .iter()
            .find(|b| b.uri() == pinned)
            .map(|b| stored(b, "orders"))
            .unwrap();
        if t != 3 {
            assert!((0..10).all(|j| on_pinned.contains(&format!("c{t}-m{j}"))));
        }
    }
    assert_eq!(stored_all(&brokers, "orders").len(), 70);
    producer.close().await;
}

/// The same without any coordination: 8 tasks × 3 rounds of begin, send,
/// commit (or roll back every third) all at once. Exactly the committed
/// messages end up stored, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transactions_race_freely() {
    init_tracing();
    let zk = ZkServer::shared();
    let root = unique_root();
    let brokers = [
        TestBroker::start(zk, &root, 0, &[("orders", 2)]).await,
        TestBroker::start(zk, &root, 1, &[("orders", 3)]).await,
    ];
    let producer = producer(&root).await;
    producer.publish("orders").await.unwrap();
    wait_partitions(&producer, "orders", 5).await;

    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let producer = producer.clone();
            tokio::spawn(async move {
                let mut kept = Vec::new();
                let mut keys = Vec::new();
                for round in 0..3 {
                    let mut tx = producer.begin_transaction().unwrap();
                    keys.push(tx.key().to_owned());
                    let names: Vec<String> = (0..5).map(|j| format!("r{t}.{round}-m{j}")).collect();
                    for name in &names {
                        tx.send(Message::new("orders", name.clone())).await.unwrap();
                    }
                    if (t + round) % 3 == 0 {
                        tx.rollback().await.unwrap();
                    } else {
                        tx.commit().await.unwrap();
                        kept.extend(names);
                    }
                }
                (keys, kept)
            })
        })
        .collect();
    let mut keys = BTreeSet::new();
    let mut expected = Vec::new();
    for task in tasks {
        let (k, kept) = task.await.unwrap();
        keys.extend(k);
        expected.extend(kept);
    }
    assert_eq!(keys.len(), 24, "24 distinct keys");
    let numbers: BTreeSet<i32> = keys.iter().map(|k| parse_key(k).1).collect();
    assert_eq!(numbers, (1..=24).collect());
    let mut visible = stored_all(&brokers, "orders");
    visible.sort();
    expected.sort();
    assert_eq!(visible, expected);
    producer.close().await;
}

// ---------------------------------------------------------------------------
// 4. The pinned broker is killed
// ---------------------------------------------------------------------------

fn broker_args(zk: &ZkServer, root: &str, id: u32, data_dir: &Path) -> Vec<String> {
    [
        "--id",
        &id.to_string(),
        "--listen",
        "127.0.0.1:0",
        "--zk",
        &zk.connect_string(),
        "--root",
        root,
        "--data-dir",
        &data_dir.display().to_string(),
        "--topic",
        "orders:2",
        "--zk-session-timeout-ms",
        "4000",
        "--shutdown-grace-ms",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `metaq-broker dump --bodies`: the payloads of every record, in order.
fn dump_payloads(data_dir: &Path) -> Vec<String> {
    let output = std::process::Command::new(metaq_testkit::broker_binary())
        .args(["dump", "--bodies", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run metaq-broker dump");
    assert!(output.status.success(), "dump failed: {output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(value["checksum_valid"], true, "{line}");
            value["payload"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// SIGKILL of the broker holding an open transaction: the next send fails
/// with `TransactionFailed` naming the key and that broker, nothing moves to
/// the other broker, commit refuses; another open transaction fails the
/// same way once the broker's session expired and it left the route;
/// after a restart on the same data
/// directory the earlier committed transactions are in `dump` and nothing
/// of the killed one is. The producer then works with the new process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_pinned_broker_fails_the_transaction() {
    init_tracing();
    let zk = ZkServer::shared();
    let root = unique_root();
    let data_dir = tempfile::tempdir().unwrap();
    let args = broker_args(zk, &root, 0, data_dir.path());
    let binary = metaq_testkit::broker_binary();
    let mut process = BrokerProcess::spawn(&binary, &args).expect("spawn metaq-broker");
    let other = TestBroker::start(zk, &root, 1, &[("orders", 2)]).await;
    let producer = builder(&root).selector(Only(0)).build().await.unwrap();
    producer.publish("orders").await.unwrap();
    wait_partitions(&producer, "orders", 4).await;
    let killed_uri: BrokerUri = format!("meta://{}", process.addr()).parse().unwrap();

    for i in 0..2 {
        let mut tx = producer.begin_transaction().unwrap();
        for j in 0..5 {
            tx.send(Message::new("orders", format!("kept{i}-m{j}")))
                .await
                .unwrap();
        }
        assert_eq!(tx.broker(), Some(&killed_uri));
        tx.commit().await.unwrap();
    }

    let mut tx = producer.begin_transaction().unwrap();
    for j in 0..3 {
        tx.send(Message::new("orders", format!("doomed-m{j}")))
            .await
            .unwrap();
    }
    let key = tx.key().to_owned();
    assert_eq!(tx.broker(), Some(&killed_uri));
    // A second one, used only after the killed broker left ZooKeeper.
    let mut later = producer.begin_transaction().unwrap();
    later
        .send(Message::new("orders", "doomed-later-m0"))
        .await
        .unwrap();
    let later_key = later.key().to_owned();
    process.kill();

    let error = tx
        .send(Message::new("orders", "doomed-after-kill"))
        .await
        .unwrap_err();
    let reason = expect_failed(error, &key, &killed_uri);
    tracing::info!(%reason, "send after the kill");
    assert_eq!(tx.broker(), Some(&killed_uri), "still pinned");
    let again = tx
        .send(Message::new("orders", "doomed-again"))
        .await
        .unwrap_err();
    expect_failed(again, &key, &killed_uri);
    let refused = tx.commit().await.unwrap_err();
    expect_failed(refused, &key, &killed_uri);
    // Once its session expired (4 s), the broker is gone from the route.
    eventually(
        "the killed broker leaves the route",
        Duration::from_secs(20),
        || {
            producer
                .partitions("orders")
                .iter()
                .all(|p| p.broker_id == 1)
        },
    )
    .await;
    let error = later
        .send(Message::new("orders", "doomed-later-m1"))
        .await
        .unwrap_err();
    let reason = expect_failed(error, &later_key, &killed_uri);
    assert!(reason.contains("no longer listed"), "{reason}");
    expect_failed(later.commit().await.unwrap_err(), &later_key, &killed_uri);
    assert!(
        !stored(&other, "orders")
            .iter()
            .any(|p| p.starts_with("doomed")),
        "nothing moved to the other broker"
    );

    // Restart on the same data directory.
    let process = BrokerProcess::spawn(&binary, &args).expect("restart metaq-broker");
    let payloads = dump_payloads(data_dir.path());
    let mut expected: Vec<String> = (0..2)
        .flat_map(|i| (0..5).map(move |j| format!("kept{i}-m{j}")))
        .collect();
    let mut found = payloads.clone();
    found.sort();
    expected.sort();
    assert_eq!(found, expected, "dump after restart: {payloads:?}");
    let records = read_records(data_dir.path(), Some("orders")).unwrap();
    assert_eq!(records.len(), 10);

    // The producer follows the broker to its new address (broker 0 may
    // first vanish from the route when the killed session expires).
    let new_uri: BrokerUri = format!("meta://{}", process.addr()).parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut tx = producer.begin_transaction().unwrap();
        match tx.send(Message::new("orders", "after-restart")).await {
            Ok(sent) => {
                assert_eq!(sent.broker, new_uri);
                tx.commit().await.unwrap();
                break;
            }
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no transaction after restart: {e}"
                );
                drop(tx);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    assert!(dump_payloads(data_dir.path()).contains(&"after-restart".to_owned()));
    producer.close().await;
    drop(process);
}

// ---------------------------------------------------------------------------
// 5. Broker-side timeout
// ---------------------------------------------------------------------------

/// A transaction left open past its timeout (builder `transaction_timeout(1 s)`)
/// is rolled back by the broker: commit then fails with the broker's
/// "has not been started" text and nothing is stored. One committed in time
/// is kept after its timer would have fired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_past_its_timeout_is_rolled_back_by_the_broker() {
    init_tracing();
    let zk = ZkServer::shared();
    let root = unique_root();
    let broker = TestBroker::start(zk, &root, 0, &[("orders", 2)]).await;
    let producer = builder(&root)
        .transaction_timeout(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    producer.publish("orders").await.unwrap();

    let begun = Instant::now();
    let mut tx = producer.begin_transaction().unwrap();
    for j in 0..2 {
        tx.send(Message::new("orders", format!("late-m{j}")))
            .await
            .unwrap();
    }
    let key = tx.key().to_owned();
    let pinned = tx.broker().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tx_rollbacks(&broker).await == 0 {
        assert!(
            Instant::now() < deadline,
            "the broker never timed {key} out"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        begun.elapsed() >= Duration::from_millis(900),
        "rolled back before its 1 s timeout"
    );
    let reason = expect_failed(tx.commit().await.unwrap_err(), &key, &pinned);
    assert!(
        reason.contains(&format!("Local transaction '{key}' has not been started.")),
        "{reason}"
    );
    assert!(stored(&broker, "orders").is_empty());

    // Committed in time: the cancelled timer does not touch it later.
    let mut tx = producer.begin_transaction().unwrap();
    tx.send(Message::new("orders", "in-time")).await.unwrap();
    tx.commit().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(tx_rollbacks(&broker).await, 1);
    assert_eq!(stored(&broker, "orders"), ["in-time"]);
    producer.close().await;
}

/// The broker caps a timeout at its maximum (60 s in MetaQ): with the cap
/// at 1 s, a transaction asking for 30 s is rolled back after about 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_caps_the_transaction_timeout() {
    init_tracing();
    let zk = ZkServer::shared();
    let root = unique_root();
    let data_dir = tempfile::TempDir::with_prefix("metaq-broker-").unwrap();
    let mut config = test_broker_config(zk, &root, 0, data_dir.path(), &[("orders", 1)]);
    config.max_tx_timeout = Duration::from_secs(1);
    let broker = TestBroker::start_with(config, data_dir).await;
    let producer = producer(&root).await;
    producer.publish("orders").await.unwrap();

    let mut tx = producer
        .begin_transaction()
        .unwrap()
        .with_timeout(Duration::from_secs(30));
    tx.send(Message::new("orders", "capped")).await.unwrap();
    let key = tx.key().to_owned();
    let pinned = tx.broker().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tx_rollbacks(&broker).await == 0 {
        assert!(Instant::now() < deadline, "the cap did not apply");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reason = expect_failed(tx.commit().await.unwrap_err(), &key, &pinned);
    assert!(reason.contains("has not been started"), "{reason}");
    assert!(stored(&broker, "orders").is_empty());
    producer.close().await;
}

// ---------------------------------------------------------------------------
// 6. A dropped guard
// ---------------------------------------------------------------------------

/// Dropping an uncommitted transaction rolls it back in the background:
/// the broker counts a rollback while the connection stays up, nothing
/// becomes visible, and the next transaction on the producer works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_guard_leaves_nothing_visible() {
    init_tracing();
    let zk = ZkServer::shared();
    let root = unique_root();
    let broker = TestBroker::start(zk, &root, 0, &[("orders", 2)]).await;
    let producer = producer(&root).await;
    producer.publish("orders").await.unwrap();

    {
        let mut tx = producer.begin_transaction().unwrap();
        for j in 0..3 {
            tx.send(Message::new("orders", format!("dropped-m{j}")))
                .await
                .unwrap();
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while tx_rollbacks(&broker).await == 0 {
        assert!(Instant::now() < deadline, "no rollback reached the broker");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // (`transactions_wire.rs` sees the ROLLBACK itself on the wire.)
    let stats = broker_stats(broker.local_addr()).await;
    assert_eq!(stats["tx_commit"], "0", "{stats:?}");
    let watch_until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < watch_until {
        assert!(stored(&broker, "orders").is_empty());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut tx = producer.begin_transaction().unwrap();
    assert_eq!(parse_key(tx.key()).1, 2);
    for j in 0..3 {
        tx.send(Message::new("orders", format!("later-m{j}")))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let mut visible = stored(&broker, "orders");
    visible.sort();
    assert_eq!(visible, ["later-m0", "later-m1", "later-m2"]);
    producer.close().await;
}

// ---------------------------------------------------------------------------
// 7. Never moving, never committing partially
// ---------------------------------------------------------------------------

/// The pinned broker leaves the snapshot (it unregisters but keeps
/// serving): the next send fails with `TransactionFailed` and goes nowhere,
/// although the other broker serves the topic; commit refuses; nothing of
/// the transaction is stored anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pinned_broker_leaving_the_snapshot_fails_the_transaction() {
    init_tracing();
    let zk = ZkServer::shared();
    let root = unique_root();
    let brokers = [
        TestBroker::start(zk, &root, 0, &[("orders", 2)]).await,
        TestBroker::start(zk, &root, 1, &[("orders", 2)]).await,
    ];
    let producer = builder(&root).selector(Prefer(0)).build().await.unwrap();
    producer.publish("orders").await.unwrap();
    wait_partitions(&producer, "orders", 4).await;

    let mut tx = producer.begin_transaction().unwrap();
    tx.send(Message::new("orders", "left-m0")).await.unwrap();
    let key = tx.key().to_owned();
    let pinned = tx.broker().unwrap().clone();
    assert_eq!(pinned, brokers[0].uri());

    brokers[0].faults().unregister().await.unwrap();
    eventually(
        "broker 0 leaves the producer's route",
        Duration::from_secs(10),
        || {
            producer
                .partitions("orders")
                .iter()
                .all(|p| p.broker_id == 1)
        },
    )
    .await;
    let error = tx
        .send(Message::new("orders", "left-m1"))
        .await
        .unwrap_err();
    let reason = expect_failed(error, &key, &pinned);
    assert!(reason.contains("no longer listed"), "{reason}");
    expect_failed(tx.commit().await.unwrap_err(), &key, &pinned);
    assert!(stored_all(&brokers, "orders").is_empty());

    // Plain sends and new transactions go to the remaining broker.
    let mut tx = producer.begin_transaction().unwrap();
    tx.send(Message::new("orders", "moved-on")).await.unwrap();
    assert_eq!(tx.broker(), Some(&brokers[1].uri()));
    tx.commit().await.unwrap();
    assert_eq!(stored(&brokers[1], "orders"), ["moved-on"]);
    assert!(stored(&brokers[0], "orders").is_empty());
    producer.close().await;
}

/// A transaction may span topics of its broker; a message for a topic
/// only the other broker serves is a typed error that breaks the
/// transaction (nothing is sent there), and commit then refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_the_pinned_broker_lacks_fails_without_partial_commit() {
    init_tracing();
    let zk = ZkServer::shared();
    let root = unique_root();
    let brokers = [
        TestBroker::start(zk, &root, 0, &[("orders", 2), ("only0", 1)]).await,
        TestBroker::start(zk, &root, 1, &[("orders", 2), ("only1", 1)]).await,
    ];
    let producer = builder(&root).selector(Prefer(0)).build().await.unwrap();
    for topic in ["orders", "only0", "only1"] {
        producer.publish(topic).await.unwrap();
    }
    wait_partitions(&producer, "orders", 4).await;

    // Two topics of the pinned broker in one transaction.
    let mut tx = producer.begin_transaction().unwrap();
    tx.send(Message::new("orders", "both-a")).await.unwrap();
    tx.send(Message::new("only0", "both-b")).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(stored(&brokers[0], "orders"), ["both-a"]);
    assert_eq!(stored(&brokers[0], "only0"), ["both-b"]);

    let mut tx = producer.begin_transaction().unwrap();
    tx.send(Message::new("orders", "partial-a")).await.unwrap();
    let key = tx.key().to_owned();
    let pinned = tx.broker().unwrap().clone();
    let error = tx
        .send(Message::new("only1", "partial-b"))
        .await
        .unwrap_err();
    expect_failed(error, &key, &pinned);
    let error = tx
        .send(Message::new("orders", "partial-c"))
        .await
        .unwrap_err();
    expect_failed(error, &key, &pinned);
    expect_failed(tx.commit().await.unwrap_err(), &key, &pinned);
    assert_eq!(stored(&brokers[0], "orders"), ["both-a"]);
    assert!(stored(&brokers[1], "only1").is_empty());
    assert!(stored(&brokers[1], "orders").is_empty());
    producer.close().await;
}

/// docs/protocol.md §2.6: inside a transaction, a message for a topic no broker
/// lists yet goes to the pinned broker's partitions of the default topic
/// (as outside transactions); here the broker accepts it through a `dyn-*`
/// wildcard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlisted_topic_uses_the_default_topics_partitions_of_the_pinned_broker() {
    init_tracing();
    let zk = ZkServer::shared();
    let root = unique_root();
    let brokers = [
        TestBroker::start(zk, &root, 0, &[("orders", 2), ("dyn-*", 2)]).await,
        TestBroker::start(zk, &root, 1, &[("orders", 2), ("dyn-*", 2)]).await,
    ];
    let producer = builder(&root)
        .default_topic("orders")
        .build()
        .await
        .unwrap();
    wait_partitions(&producer, "orders", 4).await;

    // Outside a transaction, for comparison.
    producer
        .send(Message::new("dyn-plain", "plain"))
        .await
        .unwrap();

    let mut tx = producer.begin_transaction().unwrap();
    tx.send(Message::new("orders", "first")).await.unwrap();
    let pinned = tx.broker().unwrap().clone();
    let sent = tx
        .send(Message::new("dyn-tx", "unlisted"))
        .await
        .unwrap_or_else(|e| panic!("unlisted topic in a transaction: {e}"));
    assert_eq!(sent.broker, pinned);
    tx.commit().await.unwrap();
    let on_pinned = brokers.iter().find(|b| b.uri() == pinned).unwrap();
    assert_eq!(stored(on_pinned, "dyn-tx"), ["unlisted"]);
    producer.close().await;
}

/// A put that gets no answer within the send timeout (the broker stalls)
/// fails the transaction in bounded time; commit refuses in bounded time;
/// nothing is ever stored, also after the producer closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_put_fails_the_transaction_in_bounded_time() {
    init_tracing();
    let zk = ZkServer::shared();
    let root = unique_root();
    let broker = TestBroker::start(zk, &root, 0, &[("orders", 2)]).await;
    let producer = builder(&root)
        .send_timeout(Duration::from_millis(500))
        .transaction_request_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    producer.publish("orders").await.unwrap();

    let mut tx = producer.begin_transaction().unwrap();
    tx.send(Message::new("orders", "answered")).await.unwrap();
    let key = tx.key().to_owned();
    let pinned = tx.broker().unwrap().clone();
    broker.faults().stall(true);
    let started = Instant::now();
    let error = tx
        .send(Message::new("orders", "stalled"))
        .await
        .unwrap_err();
    let reason = expect_failed(error, &key, &pinned);
    assert!(reason.contains("no answer"), "{reason}");
    expect_failed(tx.commit().await.unwrap_err(), &key, &pinned);
    assert!(started.elapsed() < Duration::from_secs(5), "bounded");
    broker.faults().stall(false);
    producer.close().await;
    let stats_deadline = Instant::now() + Duration::from_secs(5);
    // The stalled ROLLBACK was dropped; closing the connection rolls back.
    while tx_rollbacks(&broker).await == 0 {
        assert!(Instant::now() < stats_deadline, "never rolled back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stored(&broker, "orders").is_empty());
}

/// After `Producer::close`, a send in an open transaction is refused and
/// its commit fails as not committed (the broker rolled it back when the
/// connection closed); nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_producer_abandons_open_transactions() {
    init_tracing();
    let zk = ZkServer::shared();
    let root = unique_root();
    let broker = TestBroker::start(zk, &root, 0, &[("orders", 2)]).await;
    let producer = producer(&root).await;
    producer.publish("orders").await.unwrap();

    let mut tx = producer.begin_transaction().unwrap();
    tx.send(Message::new("orders", "open at close"))
        .await
        .unwrap();
    let key = tx.key().to_owned();
    let pinned = tx.broker().unwrap().clone();
    producer.close().await;
    assert!(matches!(
        tx.send(Message::new("orders", "after close")).await,
        Err(Error::Closed)
    ));
    expect_failed(tx.commit().await.unwrap_err(), &key, &pinned);
    assert!(matches!(producer.begin_transaction(), Err(Error::Closed)));
    assert!(stored(&broker, "orders").is_empty());
}

/// Two producers in one process: distinct session ids, each counting its
/// own transactions from 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_producer_has_its_own_session_and_counter() {
    init_tracing();
    let root = unique_root();
    let _broker = TestBroker::start(ZkServer::shared(), &root, 0, &[("orders", 1)]).await;
    let a = producer(&root).await;
    let b = producer(&root).await;
    let (a1, b1) = (
        a.begin_transaction().unwrap(),
        b.begin_transaction().unwrap(),
    );
    let a2 = a.begin_transaction().unwrap();
    let (sa, na) = parse_key(a1.key());
    let (sb, nb) = parse_key(b1.key());
    assert_ne!(sa, sb);
    assert_eq!((na, nb), (1, 1));
    assert_eq!(parse_key(a2.key()), (sa, 2));
    a.close().await;
    b.close().await;
}

/// Commit appends each partition's messages as one block, even while plain
/// sends hammer the same partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_is_one_block_amid_plain_sends() {
    init_tracing();
    let zk = ZkServer::shared();
    let root = unique_root();
    let broker = TestBroker::start(zk, &root, 0, &[("orders", 1)]).await;
    let producer = producer(&root).await;
    producer.publish("orders").await.unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let (producer, stop) = (producer.clone(), std::sync::Arc::clone(&stop));
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<_> = (0..20)
                    .map(|k| producer.send(Message::new("orders", format!("plain-{n}-{k}"))))
                    .collect();
                for sent in futures::future::join_all(batch).await {
                    sent.unwrap();
                }
                n += 1;
            }
            n
        })
    };
    let mut tx = producer.begin_transaction().unwrap();
    for j in 0..50 {
        tx.send(Message::new("orders", format!("block-{j:02}")))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(flood.await.unwrap() > 0);

    let payloads = stored(&broker, "orders");
    let first = payloads.iter().position(|p| p == "block-00").unwrap();
    let block: Vec<String> = (0..50).map(|j| format!("block-{j:02}")).collect();
    assert_eq!(
        payloads[first..first + 50],
        block[..],
        "one block, in put order"
    );
    assert!(payloads.iter().any(|p| p.starts_with("plain-")));
    producer.close().await;
}

/// A commit bigger than a segment rolls over into new segment files and
/// reads back whole, also after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_commit_spans_segments() {
    init_tracing();
    let zk = ZkServer::shared();
    let root = unique_root();
    let data_dir = tempfile::TempDir::with_prefix("metaq-broker-").unwrap();
    let config = test_broker_config(zk, &root, 0, data_dir.path(), &[("orders", 1)])
        .with_max_segment_size(1024);
    let mut broker = TestBroker::start_with(config, data_dir).await;
    let producer = producer(&root).await;
    producer.publish("orders").await.unwrap();

    let names: Vec<String> = (0..200)
        .map(|j| format!("segmented-{j:03}-{}", "x".repeat(20)))
        .collect();
    let mut tx = producer.begin_transaction().unwrap();
    for name in &names {
        tx.send(Message::new("orders", name.clone())).await.unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(stored(&broker, "orders"), names);
    let segments = std::fs::read_dir(broker.data_dir().join("orders-0"))
        .unwrap()
        .count();
    assert!(segments > 5, "{segments} segment files");
    producer.close().await;
    broker.restart().await;
    assert_eq!(stored(&broker, "orders"), names);
    let records = broker.records(Some("orders"));
    assert!(records.iter().all(|r| r.checksum_valid));
    assert!(records
        .windows(2)
        .all(|w| w[1].offset == w[0].offset + 20 + i64::from(w[0].length)));
}

// ---------------------------------------------------------------------------
// 8. The CLI
// ---------------------------------------------------------------------------

async fn metaq_produce(
    root: &str,
    extra: &[&str],
) -> (std::process::ExitStatus, Vec<serde_json::Value>) {
    let output = tokio::process::Command::new(metaq_testkit::workspace_binary("metaq"))
        .args(["produce", "--zk", &ZkServer::shared().connect_string()])
        .args(["--root", root, "--topic", "orders", "--json"])
        .args(extra)
        .output()
        .await
        .expect("run metaq produce");
    let lines = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    }
    (output.status, lines)
}

/// `metaq produce --transaction 10 --count 30 --json` commits three
/// transactions (30 records); with `--rollback` nothing is stored; both
/// exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_produces_in_transactions() {
    init_tracing();
    let zk = ZkServer::shared();
    let root = unique_root();
    let brokers = [
        TestBroker::start(zk, &root, 0, &[("orders", 2)]).await,
        TestBroker::start(zk, &root, 1, &[("orders", 2)]).await,
    ];

    let (status, lines) = metaq_produce(
        &root,
        &["--transaction", "10", "--count", "30", "--payload", "cli"],
    )
    .await;
    assert!(status.success(), "{status}: {lines:?}");
    let transactions: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l.get("transaction").is_some())
        .collect();
    assert_eq!(transactions.len(), 3, "{lines:?}");
    let keys: BTreeSet<&str> = transactions
        .iter()
        .map(|l| l["transaction"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 3);
    let numbers: BTreeSet<i32> = keys.iter().map(|k| parse_key(k).1).collect();
    assert_eq!(numbers, BTreeSet::from([1, 2, 3]));
    for line in &transactions {
        assert_eq!(line["state"], "committed");
        assert_eq!(line["messages"], 10);
    }
    let summary = lines.last().unwrap();
    assert_eq!(summary["sent"], 30);
    assert_eq!(summary["failed"], 0);
    assert_eq!(stored_all(&brokers, "orders").len(), 30);
    // Each transaction's 10 messages are on one broker.
    assert!(brokers.iter().all(|b| stored(b, "orders").len() % 10 == 0));

    let (status, lines) = metaq_produce(
        &root,
        &["--transaction", "10", "--count", "30", "--rollback"],
    )
    .await;
    assert!(status.success(), "{status}: {lines:?}");
    let rolled_back = lines.iter().filter(|l| l["state"] == "rolled_back").count();
    assert_eq!(rolled_back, 3, "{lines:?}");
    assert_eq!(
        stored_all(&brokers, "orders").len(),
        30,
        "nothing more stored"
    );
    for broker in &brokers {
        let stats = broker_stats(broker.local_addr()).await;
        let rollbacks: u64 = stats["tx_rollback"].parse().unwrap();
        let commits: u64 = stats["tx_commit"].parse().unwrap();
        assert_eq!(commits * 10, stored(broker, "orders").len() as u64);
        assert!(rollbacks <= 3);
    }
}
