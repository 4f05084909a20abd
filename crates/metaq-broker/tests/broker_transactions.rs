//! Local transactions on the development broker over TCP (docs/protocol.md §3.5,
//! 3.14 example 4, 4.2, 4.4 – 4.6): commit, rollback, unknown keys,
//! timeouts, rollback on disconnect, PREPARE and END.

mod broker_common;

use std::time::Duration;

use broker_common::*;
use metaq_testkit::{test_broker_config, unique_root, RawClient, TestBroker, ZkServer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A session id as the Java client builds it (`<ip>-<millis>-<n>`), ours.
const SESSION: &str = "10.20.30.40-1700000000000-7";

fn key(n: u32) -> String {
    format!("TX:{SESSION}:{n}")
}

fn not_started(key: &str) -> String {
    format!("Local transaction '{key}' has not been started.")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_appends_each_partition_contiguously_with_the_ids_answered() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 2), ("other", 1)]).await;
    let mut stream = TcpStream::connect(broker.local_addr()).await.unwrap();
    let mut other = RawClient::connect(broker.local_addr()).await;
    let k = key(1);

    // Example 4 of docs/protocol.md §3.14 with our session id, byte for byte.
    let begin = format!("transaction {k} {SESSION} BEGIN 10 3\r\n");
    assert_eq!(
        begin.len(),
        87 - "192.168.1.10-1367290000000-1".len() * 2 + SESSION.len() * 2
    );
    stream.write_all(begin.as_bytes()).await.unwrap();
    let (header, body) = raw_result(&mut stream).await;
    assert_eq!(
        (header.join(" "), body.len()),
        ("result 200 0 3".to_owned(), 0)
    );

    let example_put = format!("put test 0 5 0 907060870 {k} 4\r\nhello");
    stream.write_all(example_put.as_bytes()).await.unwrap();
    let (header, body) = raw_result(&mut stream).await;
    assert_eq!((header[1].as_str(), header[3].as_str()), ("200", "4"));
    let body = String::from_utf8(body).unwrap();
    let parts: Vec<&str> = body.split(' ').collect();
    assert_eq!(&parts[1..], ["0", "-1"], "{body:?}");
    let mut answered = vec![(
        "test",
        0u32,
        parts[0].parse::<i64>().unwrap(),
        b"hello".to_vec(),
    )];

    // A plain put on the same partition from another connection, mid-transaction.
    let (plain_id, _, plain_offset) =
        put_result(&other.call(&put("test", 0, b"plain", 1)).await.unwrap());
    assert_eq!(plain_offset, 0);

    // More puts, interleaved over partitions and topics.
    let more: &[(&str, i32, &[u8])] = &[
        ("test", 1, b"a1"),
        ("test", 0, b"b0-longer"),
        ("other", 0, b"c"),
        ("test", 1, b"d1"),
        ("test", 0, b""),
    ];
    for (i, (topic, partition, payload)) in more.iter().enumerate() {
        let opaque = 5 + i as i32;
        stream
            .write_all(&tx_put(topic, *partition, payload, &k, opaque))
            .await
            .unwrap();
        let (header, body) = raw_result(&mut stream).await;
        assert_eq!(header[3], opaque.to_string());
        let body = String::from_utf8(body).unwrap();
        let parts: Vec<&str> = body.split(' ').collect();
        assert_eq!(&parts[1..], [&*partition.to_string(), "-1"], "{body:?}");
        answered.push((
            topic,
            *partition as u32,
            parts[0].parse().unwrap(),
            payload.to_vec(),
        ));
    }
    // Ids are assigned at put time: the plain put came after the first.
    assert!(answered[0].2 < plain_id && plain_id < answered[1].2);

    // Nothing of the transaction is visible before the commit.
    let before = broker.records(None);
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].id, plain_id);

    stream
        .write_all(format!("transaction {k} {SESSION} COMMIT_ONE_PHASE 5\r\n").as_bytes())
        .await
        .unwrap();
    let (header, body) = raw_result(&mut stream).await;
    assert_eq!(
        (header.join(" "), body.len()),
        ("result 200 0 5".to_owned(), 0)
    );

    let records = broker.records(None);
    assert_eq!(records.len(), 1 + answered.len());
    assert!(records.iter().all(|r| r.checksum_valid && r.flag == 0));
    for (topic, partition) in [("test", 0), ("test", 1), ("other", 0)] {
        let expected: Vec<_> = answered
            .iter()
            .filter(|a| a.0 == topic && a.1 == partition)
            .collect();
        let stored: Vec<_> = records
            .iter()
            .filter(|r| r.topic == topic && r.partition == partition && r.id != plain_id)
            .collect();
        // In put order, with the answered ids and the bodies sent.
        assert_eq!(
            stored
                .iter()
                .map(|r| (r.id, r.body.to_vec()))
                .collect::<Vec<_>>(),
            expected
                .iter()
                .map(|a| (a.2, a.3.clone()))
                .collect::<Vec<_>>(),
            "{topic}-{partition}"
        );
        // One contiguous block.
        for pair in stored.windows(2) {
            assert_eq!(
                pair[1].offset,
                pair[0].offset + 20 + i64::from(pair[0].length)
            );
        }
    }
    // The block follows the plain record on test-0.
    let first_tx = records.iter().find(|r| r.id == answered[0].2).unwrap();
    assert_eq!(first_tx.offset, 25);

    // A plain put goes after the block.
    let (_, _, offset) = put_result(&other.call(&put("test", 0, b"after", 2)).await.unwrap());
    assert_eq!(offset, 25 + 25 + 29 + 20);
    assert_eq!(stat(&mut other, "tx_begin").await, 1);
    assert_eq!(stat(&mut other, "tx_commit").await, 1);

    // Finished: committing again is an unknown transaction.
    stream
        .write_all(format!("transaction {k} {SESSION} COMMIT_ONE_PHASE 6\r\n").as_bytes())
        .await
        .unwrap();
    let (header, body) = raw_result(&mut stream).await;
    assert_eq!((header[1].as_str(), header[3].as_str()), ("500", "6"));
    assert_eq!(String::from_utf8(body).unwrap(), not_started(&k));
}

#[tokio::test]
async fn two_phase_commit_empty_commits_and_repeated_begins() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 1)]).await;
    let mut c = RawClient::connect(broker.local_addr()).await;

    // COMMIT_TWO_PHASE commits a local transaction like one phase.
    assert_eq!(
        code(&mut c, &tx(&key(1), SESSION, "BEGIN", None, 1)).await,
        200
    );
    let (id, _, offset) = put_result(&c.call(&tx_put("test", 0, b"x", &key(1), 2)).await.unwrap());
    assert_eq!(offset, -1);
    assert_eq!(
        code(&mut c, &tx(&key(1), SESSION, "COMMIT_TWO_PHASE", None, 3)).await,
        200
    );
    assert_eq!(
        broker
            .records(None)
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        [id]
    );

    // An empty transaction commits fine and stores nothing.
    assert_eq!(
        code(&mut c, &tx(&key(2), SESSION, "BEGIN", None, 4)).await,
        200
    );
    let answer = c
        .call(&tx(&key(2), SESSION, "COMMIT_ONE_PHASE", None, 5))
        .await
        .unwrap();
    assert_eq!((answer.code.0, answer.body.len()), (200, 0));

    // BEGIN of an open transaction is a no-op: its puts stay.
    assert_eq!(
        code(&mut c, &tx(&key(3), SESSION, "BEGIN", Some(30), 6)).await,
        200
    );
    put_result(&c.call(&tx_put("test", 0, b"y", &key(3), 7)).await.unwrap());
    assert_eq!(
        code(&mut c, &tx(&key(3), SESSION, "BEGIN", None, 8)).await,
        200
    );
    assert_eq!(
        code(&mut c, &tx(&key(3), SESSION, "COMMIT_ONE_PHASE", None, 9)).await,
        200
    );
    assert_eq!(broker.records(None).len(), 2);
    assert_eq!(stat(&mut c, "tx_begin").await, 3);

    // The pre-1.4.4 transactional put (7 tokens: key, no checksum).
    assert_eq!(
        code(&mut c, &tx(&key(4), SESSION, "BEGIN", None, 10)).await,
        200
    );
    let legacy = frame(format!("put test 0 5 0 {} 11", key(4)), b"hello");
    let (_, _, offset) = put_result(&c.call(&legacy).await.unwrap());
    assert_eq!(offset, -1);
    assert_eq!(
        code(&mut c, &tx(&key(4), SESSION, "COMMIT_ONE_PHASE", None, 12)).await,
        200
    );
    let records = broker.records(None);
    assert_eq!(records.len(), 3);
    assert_eq!(
        (records[2].checksum, records[2].checksum_valid),
        (907_060_870, true)
    );
}

#[tokio::test]
async fn rollback_discards_every_put() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 2)]).await;
    let mut c = RawClient::connect(broker.local_addr()).await;
    let k = key(1);
    assert_eq!(
        code(&mut c, &tx(&k, SESSION, "BEGIN", Some(10), 1)).await,
        200
    );
    for (i, partition) in [0, 1, 0].into_iter().enumerate() {
        put_result(
            &c.call(&tx_put("test", partition, b"gone", &k, 2 + i as i32))
                .await
                .unwrap(),
        );
    }
    // docs/protocol.md §3.14: `result 200 0 6`.
    let answer = c.call(&tx(&k, SESSION, "ROLLBACK", None, 6)).await.unwrap();
    assert_eq!(
        (answer.code.0, answer.opaque, answer.body.len()),
        (200, 6, 0)
    );
    assert!(broker.records(None).is_empty());

    // It is finished: commit, rollback and put no longer find it.
    for (frame, opaque) in [
        (tx(&k, SESSION, "COMMIT_ONE_PHASE", None, 7), 7),
        (tx(&k, SESSION, "ROLLBACK", None, 8), 8),
        (tx_put("test", 0, b"late", &k, 9), 9),
    ] {
        let answer = c.call(&frame).await.unwrap();
        assert_eq!((answer.code.0, answer.opaque), (500, opaque));
        assert_eq!(text(&answer), not_started(&k));
    }
    assert!(broker.records(None).is_empty());
    // The session's later transactions work.
    assert_eq!(
        code(&mut c, &tx(&key(2), SESSION, "BEGIN", None, 10)).await,
        200
    );
    put_result(
        &c.call(&tx_put("test", 1, b"kept", &key(2), 11))
            .await
            .unwrap(),
    );
    assert_eq!(
        code(&mut c, &tx(&key(2), SESSION, "COMMIT_ONE_PHASE", None, 12)).await,
        200
    );
    assert_eq!(broker.records(None).len(), 1);
    assert_eq!(stat(&mut c, "tx_rollback").await, 1);
}

#[tokio::test]
async fn unknown_transactions_and_invalid_transactional_puts_get_500() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 2)]).await;
    let uri = broker.uri().to_string();
    let mut c = RawClient::connect(broker.local_addr()).await;
    let unknown = key(99);
    for (frame, opaque) in [
        (tx(&unknown, SESSION, "COMMIT_ONE_PHASE", None, 1), 1),
        (tx(&unknown, SESSION, "COMMIT_TWO_PHASE", None, 2), 2),
        (tx(&unknown, SESSION, "ROLLBACK", None, 3), 3),
        (tx_put("test", 0, b"x", &unknown, 4), 4),
    ] {
        let answer = c.call(&frame).await.unwrap();
        assert_eq!((answer.code.0, answer.opaque), (500, opaque));
        assert_eq!(
            text(&answer),
            "Local transaction 'TX:10.20.30.40-1700000000000-7:99' has not been started."
        );
    }

    let k = key(1);
    assert_eq!(code(&mut c, &tx(&k, SESSION, "BEGIN", None, 5)).await, 200);
    let refusals = [
        (
            tx_put("test", -1, b"x", &k, 6),
            "Invalid partition for transaction command:-1".to_owned(),
        ),
        (
            tx_put("test", 2, b"x", &k, 7),
            put_failure(&uri, "test", 2, "wrong partition 2"),
        ),
        (
            tx_put("nope", 0, b"x", &k, 8),
            put_failure(&uri, "nope", 0, "The server do not accept topic nope"),
        ),
    ];
    for (frame, expected) in &refusals {
        let answer = c.call(frame).await.unwrap();
        assert_eq!(answer.code.0, 500);
        assert_eq!(text(&answer), expected);
    }
    // The transaction survives refused puts and commits only the good one.
    let (id, _, _) = put_result(&c.call(&tx_put("test", 1, b"good", &k, 9)).await.unwrap());
    assert_eq!(
        code(&mut c, &tx(&k, SESSION, "COMMIT_ONE_PHASE", None, 10)).await,
        200
    );
    let records = broker.records(None);
    assert_eq!(
        records
            .iter()
            .map(|r| (r.id, r.partition))
            .collect::<Vec<_>>(),
        [(id, 1)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_time_out_and_roll_back() {
    let zk = ZkServer::shared();
    let root = unique_root();
    let data = tempfile::tempdir().unwrap();
    let mut config = test_broker_config(zk, &root, 0, data.path(), &[("test", 1)]);
    // Caps longer timeouts (docs/protocol.md §4.5: maxTxTimeoutInSeconds).
    config.max_tx_timeout = Duration::from_secs(2);
    let broker = TestBroker::start_with(config, data).await;
    let mut c = RawClient::connect(broker.local_addr()).await;
    let mut observer = RawClient::connect(broker.local_addr()).await;

    let started = std::time::Instant::now();
    // 1: times out after 1 s. 2: asks for an hour, capped to 2 s.
    // 3: no timeout. 4: the timeout of a second BEGIN is ignored.
    assert_eq!(
        code(&mut c, &tx(&key(1), SESSION, "BEGIN", Some(1), 1)).await,
        200
    );
    assert_eq!(
        code(&mut c, &tx(&key(2), SESSION, "BEGIN", Some(3600), 2)).await,
        200
    );
    assert_eq!(
        code(&mut c, &tx(&key(3), SESSION, "BEGIN", None, 3)).await,
        200
    );
    assert_eq!(
        code(&mut c, &tx(&key(4), SESSION, "BEGIN", None, 4)).await,
        200
    );
    assert_eq!(
        code(&mut c, &tx(&key(4), SESSION, "BEGIN", Some(1), 5)).await,
        200
    );
    for n in 1..=4 {
        put_result(
            &c.call(&tx_put("test", 0, b"x", &key(n), 10 + n as i32))
                .await
                .unwrap(),
        );
    }
    wait_for_stat(&mut observer, "tx_rollback", 2, Duration::from_secs(10)).await;
    // Transaction 2 ran into the 2 s cap, not its own hour.
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(stat(&mut observer, "tx_rollback").await, 2);

    for n in [1, 2] {
        let answer = c
            .call(&tx(&key(n), SESSION, "COMMIT_ONE_PHASE", None, 20))
            .await
            .unwrap();
        assert_eq!(answer.code.0, 500);
        assert_eq!(text(&answer), not_started(&key(n)));
    }
    assert!(broker.records(None).is_empty());
    for n in [3, 4] {
        assert_eq!(
            code(&mut c, &tx(&key(n), SESSION, "COMMIT_ONE_PHASE", None, 21)).await,
            200,
            "transaction {n}"
        );
    }
    assert_eq!(broker.records(None).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_connection_rolls_back_its_open_transactions() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 1)]).await;
    let mut owner = RawClient::connect(broker.local_addr()).await;
    let mut other = RawClient::connect(broker.local_addr()).await;
    let k = key(1);
    assert_eq!(
        code(&mut owner, &tx(&k, SESSION, "BEGIN", None, 1)).await,
        200
    );
    put_result(
        &owner
            .call(&tx_put("test", 0, b"orphan", &k, 2))
            .await
            .unwrap(),
    );

    // Local transactions belong to their connection (docs/protocol.md §4.2).
    let answer = other
        .call(&tx(&k, SESSION, "COMMIT_ONE_PHASE", None, 3))
        .await
        .unwrap();
    assert_eq!((answer.code.0, text(&answer)), (500, &*not_started(&k)));

    drop(owner);
    wait_for_stat(&mut other, "tx_rollback", 1, Duration::from_secs(10)).await;
    assert!(broker.records(None).is_empty());
    let answer = other
        .call(&tx(&k, SESSION, "COMMIT_ONE_PHASE", None, 4))
        .await
        .unwrap();
    assert_eq!((answer.code.0, text(&answer)), (500, &*not_started(&k)));
    let mut fresh = RawClient::connect(broker.local_addr()).await;
    let answer = fresh
        .call(&tx(&k, SESSION, "COMMIT_ONE_PHASE", None, 5))
        .await
        .unwrap();
    assert_eq!((answer.code.0, text(&answer)), (500, &*not_started(&k)));
    assert!(broker.records(None).is_empty());

    // A connection the broker cuts rolls back too.
    let mut cut = RawClient::connect(broker.local_addr()).await;
    assert_eq!(
        code(&mut cut, &tx(&key(2), SESSION, "BEGIN", None, 6)).await,
        200
    );
    put_result(
        &cut.call(&tx_put("test", 0, b"cut", &key(2), 7))
            .await
            .unwrap(),
    );
    broker.faults().drop_connections();
    assert!(cut.is_closed().await);
    let mut after = RawClient::connect(broker.local_addr()).await;
    wait_for_stat(&mut after, "tx_rollback", 2, Duration::from_secs(10)).await;
    assert!(broker.records(None).is_empty());
}

#[tokio::test]
async fn prepare_on_a_local_transaction_is_refused_and_end_is_never_answered() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 1)]).await;
    let mut c = RawClient::connect(broker.local_addr()).await;
    let k = key(1);
    assert_eq!(code(&mut c, &tx(&k, SESSION, "BEGIN", None, 1)).await, 200);
    let (id, _, _) = put_result(&c.call(&tx_put("test", 0, b"x", &k, 2)).await.unwrap());

    let answer = c.call(&tx(&k, SESSION, "PREPARE", None, 3)).await.unwrap();
    assert_eq!((answer.code.0, answer.opaque), (500, 3));
    assert_eq!(
        text(&answer),
        "XAException:code=-3,msg=Prepare not implemented on Local Transactions."
    );

    // END gets no answer, known key or not; the next request's answer comes next.
    let mut batch = tx(&k, SESSION, "END", None, 4);
    batch.extend(tx(&key(50), SESSION, "END", None, 5));
    batch.extend(b"version 6\r\n");
    c.send(&batch).await;
    assert_eq!(c.response().await.unwrap().opaque, 6);
    assert!(c
        .response_within(Duration::from_millis(300))
        .await
        .is_none());

    // The transaction is still open and commits.
    assert_eq!(
        code(&mut c, &tx(&k, SESSION, "COMMIT_ONE_PHASE", None, 7)).await,
        200
    );
    assert_eq!(
        broker
            .records(None)
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        [id]
    );
}

/// Transactional puts are answered at once, so what a connection's open
/// transactions may hold is bounded: 64 messages of the maximum size. Past
/// that, puts get a 500; a rollback frees the room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_transactions_hold_a_bounded_amount_of_memory() {
    let zk = ZkServer::shared();
    let data = tempfile::tempdir().unwrap();
    let config = test_broker_config(zk, &unique_root(), 0, data.path(), &[("test", 1)])
        .with_max_message_size(1000);
    let broker = TestBroker::start_with(config, data).await;
    let mut c = RawClient::connect(broker.local_addr()).await;
    let body = [b'x'; 1000];
    for (n, opaque) in [(1, 1), (2, 2)] {
        assert_eq!(
            code(&mut c, &tx(&key(n), SESSION, "BEGIN", None, opaque)).await,
            200
        );
    }
    // 64 000 bytes in all, over two transactions: accepted.
    for i in 0..64 {
        let k = key(1 + i % 2);
        put_result(
            &c.call(&tx_put("test", 0, &body, &k, 10 + i as i32))
                .await
                .unwrap(),
        );
    }
    let refused = c
        .call(&tx_put("test", 0, &body, &key(1), 100))
        .await
        .unwrap();
    assert_eq!(refused.code.0, 500);
    assert!(
        text(&refused).contains("would hold over 64000 bytes"),
        "{}",
        text(&refused)
    );
    // Rolling one back frees its 32 000 bytes.
    assert_eq!(
        code(&mut c, &tx(&key(2), SESSION, "ROLLBACK", None, 101)).await,
        200
    );
    put_result(
        &c.call(&tx_put("test", 0, &body, &key(1), 102))
            .await
            .unwrap(),
    );
    assert_eq!(
        code(&mut c, &tx(&key(1), SESSION, "COMMIT_ONE_PHASE", None, 103)).await,
        200
    );
    assert_eq!(broker.records(None).len(), 33);
}
