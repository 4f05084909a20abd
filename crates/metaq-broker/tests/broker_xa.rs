//! XA transactions on the development broker over TCP (docs/protocol.md §2.7,
//! 3.5, 4.3 – 4.6): the state table, the exact error texts, RECOVER and
//! FORGET, branches shared by every connection, timeouts, and prepared
//! branches that survive a graceful restart, a SIGKILL and a corrupt journal.
//!
//! Frames come from the crate's encoders (`TransactionRequest`,
//! `PutRequest`), except example 5 of §3.14, written by hand.

mod broker_common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use broker_common::*;
use bytes::{Bytes, BytesMut};
use metaq::protocol::{
    checksum, LocalTxId, PutRequest, Response, TransactionKind, TransactionRequest, TxKey, XaTxId,
};
use metaq_broker::store::{read_records, StoredRecord};
use metaq_testkit::{
    test_broker_config, unique_root, BrokerProcess, RawClient, TestBroker, ZkServer,
};

use TransactionKind::{Begin, CommitOnePhase, CommitTwoPhase, End, Forget, Prepare, Rollback};

const SESSION: &str = "10.20.30.40-1700000000000-7";
const QUALIFIER: &str = "XAMessageProducer-host1";

/// Branch `n` of global transaction `01 02 <n>`, resource manager `qualifier`.
fn xid(n: u8, qualifier: &str) -> TxKey {
    TxKey::Xa(XaTxId {
        format_id: 1,
        global_id: vec![1, 2, n],
        branch_qualifier: vec![0x0a],
        unique_qualifier: qualifier.into(),
    })
}

fn key(n: u8) -> TxKey {
    xid(n, QUALIFIER)
}

/// A `transaction` frame; XA keys carry their qualifier, as Java sends them.
fn tx(key: &TxKey, kind: TransactionKind, timeout: Option<i32>, opaque: i32) -> Vec<u8> {
    let unique_qualifier = match key {
        TxKey::Xa(x) => Some(x.unique_qualifier.clone()),
        _ => None,
    };
    encode_tx(key.clone(), kind, timeout, unique_qualifier, opaque)
}

fn recover(qualifier: Option<&str>, opaque: i32) -> Vec<u8> {
    let kind = TransactionKind::Recover;
    encode_tx(TxKey::Null, kind, None, qualifier.map(String::from), opaque)
}

fn encode_tx(
    key: TxKey,
    kind: TransactionKind,
    timeout_secs: Option<i32>,
    unique_qualifier: Option<String>,
    opaque: i32,
) -> Vec<u8> {
    let request = TransactionRequest {
        key,
        session_id: SESSION.into(),
        kind,
        timeout_secs,
        unique_qualifier,
        opaque,
    };
    let mut buf = BytesMut::new();
    request.encode(&mut buf).unwrap();
    buf.to_vec()
}

/// A current-form transactional put (8 words).
fn xput(topic: &str, partition: i32, body: &[u8], key: &TxKey, opaque: i32) -> Vec<u8> {
    let put = PutRequest {
        topic: topic.into(),
        partition,
        flag: 0,
        checksum: Some(checksum(body)),
        tx_key: Some(key.clone()),
        opaque,
        body: Bytes::copy_from_slice(body),
    };
    let mut buf = BytesMut::new();
    put.encode(&mut buf).unwrap();
    buf.to_vec()
}

/// Sends `frame`, checks the answer echoes `opaque`, returns (code, body).
async fn ask(c: &mut RawClient, frame: &[u8]) -> (u16, String) {
    let answer: Response = c.call(frame).await.expect("an answer");
    let body = text(&answer).to_owned();
    (answer.code.0, body)
}

/// A transactional put that must be held: its message id.
async fn held(c: &mut RawClient, topic: &str, partition: i32, body: &[u8], key: &TxKey) -> i64 {
    let answer = c.call(&xput(topic, partition, body, key, 1)).await.unwrap();
    let (id, answered_partition, offset) = put_result(&answer);
    assert_eq!((answered_partition, offset), (partition, -1));
    id
}

fn xa_error(code: i32, msg: &str) -> String {
    format!("XAException:code={code},msg={msg}")
}

fn not_started(key: &TxKey) -> String {
    xa_error(-4, &format!("XA transaction '{key}' has not been started."))
}

fn journal_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir.join("xa"))
        .map(|dir| dir.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

fn ids(records: &[StoredRecord]) -> Vec<i64> {
    records.iter().map(|r| r.id).collect()
}

/// Each partition's records, in log order, are one contiguous block.
fn assert_contiguous(records: &[StoredRecord]) {
    for pair in records.windows(2) {
        if (&pair[0].topic, pair[0].partition) == (&pair[1].topic, pair[1].partition) {
            assert_eq!(
                pair[1].offset,
                pair[0].offset + 20 + i64::from(pair[0].length)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_then_two_phase_commit_stores_the_put_ids_contiguously() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 2), ("other", 1)]).await;
    let mut c = RawClient::connect(broker.local_addr()).await;
    let mut other = RawClient::connect(broker.local_addr()).await;
    let k = key(3);
    assert_eq!(k.to_string(), "XID:1:010203:0a:XAMessageProducer-host1");

    // Example 5 of docs/protocol.md §3.14, its BEGIN and first put by hand.
    let begin = format!("transaction {k} {SESSION} BEGIN {QUALIFIER} 10\r\n");
    assert_eq!(ask(&mut c, begin.as_bytes()).await, (200, String::new()));
    let example_put = format!("put test 0 5 0 907060870 {k} 11\r\nhello");
    let answer = c.call(example_put.as_bytes()).await.unwrap();
    assert_eq!(answer.opaque, 11);
    let (first, _, _) = put_result(&answer);
    let mut answered = vec![("test", 0, first, b"hello".to_vec())];

    // A plain put on the same partition, mid-transaction, from elsewhere.
    let (plain, _, plain_offset) =
        put_result(&other.call(&put("test", 0, b"plain", 1)).await.unwrap());
    assert_eq!(plain_offset, 0);
    let more: [(&str, i32, &[u8]); 4] = [
        ("test", 1, b"a1"),
        ("other", 0, b"c"),
        ("test", 0, b"b0"),
        ("test", 1, b""),
    ];
    for (topic, partition, body) in more {
        let id = held(&mut c, topic, partition, body, &k).await;
        answered.push((topic, partition as u32, id, body.to_vec()));
    }
    assert!(
        first < plain && plain < answered[1].2,
        "ids are given at put time"
    );

    // END is never answered.
    c.send(&tx(&k, End, None, 12)).await;
    assert!(c
        .response_within(Duration::from_millis(300))
        .await
        .is_none());
    let answer = c.call(&tx(&k, Prepare, None, 13)).await.unwrap();
    assert_eq!(
        (answer.code.0, answer.opaque, text(&answer)),
        (200, 13, "0")
    );
    assert_eq!(journal_files(broker.data_dir()).len(), 1);
    assert_eq!(
        ids(&broker.records(None)),
        [plain],
        "nothing visible before the commit"
    );
    assert_eq!(
        ask(&mut other, &recover(Some(QUALIFIER), 14)).await,
        (200, k.to_string())
    );

    let answer = c.call(&tx(&k, CommitTwoPhase, None, 15)).await.unwrap();
    assert_eq!(
        (answer.code.0, answer.opaque, answer.body.len()),
        (200, 15, 0)
    );
    let records = broker.records(None);
    assert_eq!(records.len(), 1 + answered.len());
    assert!(records.iter().all(|r| r.checksum_valid));
    for (topic, partition) in [("test", 0), ("test", 1), ("other", 0)] {
        let stored: Vec<_> = records
            .iter()
            .filter(|r| r.topic == topic && r.partition == partition && r.id != plain)
            .map(|r| (r.id, r.body.to_vec()))
            .collect();
        let expected: Vec<_> = answered
            .iter()
            .filter(|a| a.0 == topic && a.1 == partition)
            .map(|a| (a.2, a.3.clone()))
            .collect();
        assert_eq!(stored, expected, "{topic}-{partition} in put order");
    }
    assert_contiguous(&records);
    let first_record = records.iter().find(|r| r.id == first).unwrap();
    assert_eq!(
        first_record.offset, 25,
        "the block follows the plain record"
    );
    assert!(journal_files(broker.data_dir()).is_empty());
    assert_eq!(
        ask(&mut other, &recover(Some(QUALIFIER), 16)).await,
        (200, String::new())
    );

    // Finished: every command but BEGIN now finds nothing.
    for kind in [CommitTwoPhase, CommitOnePhase, Prepare, Rollback] {
        assert_eq!(
            ask(&mut c, &tx(&k, kind, None, 17)).await,
            (500, not_started(&k))
        );
    }
    assert_eq!(stat(&mut other, "tx_xa_begin").await, 1);
    assert_eq!(stat(&mut other, "tx_begin").await, 0);
    assert_eq!(stat(&mut other, "tx_commit").await, 1);
}

#[tokio::test]
async fn wrong_sequences_and_unknown_keys_get_the_documented_answers() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 2)]).await;
    let mut c = RawClient::connect(broker.local_addr()).await;

    // Unknown key: -4 for PREPARE, COMMIT and ROLLBACK; a put gets the text alone.
    let unknown = key(99);
    let expected = "XAException:code=-4,msg=XA transaction 'XID:1:010263:0a:XAMessageProducer-host1' has not been started.";
    for kind in [Prepare, CommitOnePhase, CommitTwoPhase, Rollback] {
        assert_eq!(
            ask(&mut c, &tx(&unknown, kind, None, 1)).await,
            (500, expected.to_owned())
        );
    }
    assert_eq!(
        ask(&mut c, &xput("test", 0, b"x", &unknown, 2)).await,
        (
            500,
            "XA transaction 'XID:1:010263:0a:XAMessageProducer-host1' has not been started."
                .to_owned()
        )
    );

    // PREPARE of START: read-only, finished.
    let k = key(1);
    assert_eq!(code(&mut c, &tx(&k, Begin, None, 3)).await, 200);
    assert_eq!(
        ask(&mut c, &tx(&k, Prepare, None, 4)).await,
        (200, "3".to_owned())
    );
    assert_eq!(
        ask(&mut c, &tx(&k, CommitOnePhase, None, 5)).await,
        (500, not_started(&k))
    );

    // Two-phase commit without PREPARE, in START and in IN_USE: -6, nothing changes.
    let k = key(2);
    let proto = |k: &TxKey| {
        xa_error(
            -6,
            &format!("Cannot do 2 phase commit if the transaction '{k}' has not been prepared."),
        )
    };
    assert_eq!(code(&mut c, &tx(&k, Begin, None, 6)).await, 200);
    assert_eq!(
        ask(&mut c, &tx(&k, CommitTwoPhase, None, 7)).await,
        (500, proto(&k))
    );
    // A refused put leaves the branch in START; partition -1 is refused as for local ones.
    let refused = ask(&mut c, &xput("test", -1, b"x", &k, 8)).await;
    assert_eq!(
        refused,
        (
            500,
            "Invalid partition for transaction command:-1".to_owned()
        )
    );
    assert_eq!(
        ask(&mut c, &tx(&k, CommitTwoPhase, None, 9)).await,
        (500, proto(&k))
    );
    let id = held(&mut c, "test", 1, b"one-phase", &k).await;
    assert_eq!(
        ask(&mut c, &tx(&k, CommitTwoPhase, None, 10)).await,
        (500, proto(&k))
    );
    // BEGIN again changes nothing; COMMIT_ONE_PHASE of IN_USE appends.
    assert_eq!(code(&mut c, &tx(&k, Begin, Some(30), 11)).await, 200);
    assert_eq!(
        ask(&mut c, &tx(&k, CommitOnePhase, None, 12)).await,
        (200, String::new())
    );
    assert_eq!(ids(&broker.records(None)), [id]);

    // A second PREPARE: -6; a put after PREPARE: -6; one-phase commit of PREPARED appends.
    let k = key(3);
    assert_eq!(code(&mut c, &tx(&k, Begin, None, 13)).await, 200);
    let id2 = held(&mut c, "test", 0, b"prepared", &k).await;
    assert_eq!(
        ask(&mut c, &tx(&k, Prepare, None, 14)).await,
        (200, "0".to_owned())
    );
    let again = xa_error(-6, &format!("XA transaction '{k}' is already prepared."));
    assert_eq!(ask(&mut c, &tx(&k, Prepare, None, 15)).await, (500, again));
    let (put_code, put_text) = ask(&mut c, &xput("test", 0, b"late", &k, 16)).await;
    assert_eq!(put_code, 500);
    assert!(
        put_text.starts_with("XAException:code=-6,msg="),
        "{put_text}"
    );
    assert_eq!(code(&mut c, &tx(&k, CommitOnePhase, None, 17)).await, 200);
    assert_eq!(ids(&broker.records(None)), [id2, id]);

    // FORGET: 200 for any XA key, known or not; XAER_NOTA for other keys.
    assert_eq!(
        ask(&mut c, &tx(&unknown, Forget, None, 18)).await,
        (200, String::new())
    );
    let local = TxKey::Local(LocalTxId {
        session_id: SESSION.into(),
        counter: 1,
    });
    let (forget_code, forget_text) = ask(&mut c, &tx(&local, Forget, None, 19)).await;
    assert_eq!(forget_code, 500);
    assert!(
        forget_text.starts_with("XAException:code=-4,msg="),
        "{forget_text}"
    );
    let (null_code, null_text) = ask(&mut c, &encode_tx(TxKey::Null, Forget, None, None, 20)).await;
    assert_eq!(null_code, 500);
    assert!(
        null_text.starts_with("XAException:code=-4,msg="),
        "{null_text}"
    );
    // PREPARE of a local transaction keeps its answer.
    assert_eq!(code(&mut c, &tx(&local, Begin, None, 21)).await, 200);
    assert_eq!(
        ask(&mut c, &tx(&local, Prepare, None, 22)).await,
        (
            500,
            "XAException:code=-3,msg=Prepare not implemented on Local Transactions.".to_owned()
        )
    );
}

#[tokio::test]
async fn rollback_discards_active_and_prepared_branches() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 2)]).await;
    let mut c = RawClient::connect(broker.local_addr()).await;
    for n in [1, 2] {
        let k = key(n);
        assert_eq!(code(&mut c, &tx(&k, Begin, Some(10), 1)).await, 200);
        held(&mut c, "test", 0, b"gone", &k).await;
        held(&mut c, "test", 1, b"gone too", &k).await;
    }
    assert_eq!(
        ask(&mut c, &tx(&key(2), Prepare, None, 2)).await,
        (200, "0".to_owned())
    );
    assert_eq!(journal_files(broker.data_dir()).len(), 1);
    for n in [1, 2] {
        let k = key(n);
        let answer = c.call(&tx(&k, Rollback, None, 3)).await.unwrap();
        assert_eq!(
            (answer.code.0, answer.opaque, answer.body.len()),
            (200, 3, 0)
        );
        assert_eq!(
            ask(&mut c, &tx(&k, CommitOnePhase, None, 4)).await,
            (500, not_started(&k))
        );
    }
    assert!(journal_files(broker.data_dir()).is_empty());
    assert!(broker.records(None).is_empty());
    assert_eq!(ask(&mut c, &recover(None, 5)).await, (200, String::new()));
    assert_eq!(stat(&mut c, "tx_rollback").await, 2);
}

#[tokio::test]
async fn recover_lists_the_prepared_keys_of_a_qualifier() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 1)]).await;
    let mut c = RawClient::connect(broker.local_addr()).await;
    assert_eq!(
        ask(&mut c, &recover(Some("rm-a"), 1)).await,
        (200, String::new())
    );
    assert_eq!(ask(&mut c, &recover(None, 2)).await, (200, String::new()));

    // Prepared: 1 and 2 of rm-a, 3 of rm-b. 4 of rm-a is only IN_USE.
    let branches = [
        xid(1, "rm-a"),
        xid(2, "rm-a"),
        xid(3, "rm-b"),
        xid(4, "rm-a"),
    ];
    for (i, k) in branches.iter().enumerate() {
        assert_eq!(code(&mut c, &tx(k, Begin, None, 3)).await, 200);
        held(&mut c, "test", 0, b"m", k).await;
        if i < 3 {
            assert_eq!(
                ask(&mut c, &tx(k, Prepare, None, 4)).await,
                (200, "0".to_owned())
            );
        }
    }
    let listed = |body: String| {
        assert!(!body.ends_with("\r\n"), "no trailing CRLF: {body:?}");
        let mut keys: Vec<String> = body.split("\r\n").map(String::from).collect();
        keys.sort();
        keys
    };
    let (status, body) = ask(&mut c, &recover(Some("rm-a"), 5)).await;
    assert_eq!(status, 200);
    assert_eq!(
        listed(body),
        [branches[0].to_string(), branches[1].to_string()]
    );
    let (_, body) = ask(&mut c, &recover(Some("rm-b"), 6)).await;
    assert_eq!(body, branches[2].to_string());
    let (_, body) = ask(&mut c, &recover(None, 7)).await;
    assert_eq!(
        listed(body),
        branches[..3]
            .iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        ask(&mut c, &recover(Some("rm-c"), 8)).await,
        (200, String::new())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_begun_on_one_connection_is_finished_on_another() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 1)]).await;
    let k = key(1);
    let mut first = RawClient::connect(broker.local_addr()).await;
    assert_eq!(code(&mut first, &tx(&k, Begin, None, 1)).await, 200);
    let a = held(&mut first, "test", 0, b"from the first", &k).await;
    // Closing the connection does not roll an XA branch back.
    drop(first);
    let mut observer = RawClient::connect(broker.local_addr()).await;
    // Once the broker has seen it close (only the observer is left).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stat(&mut observer, "curr_connections").await != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first connection never closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut second = RawClient::connect(broker.local_addr()).await;
    let b = held(&mut second, "test", 0, b"from the second", &k).await;
    assert_eq!(
        ask(&mut second, &tx(&k, Prepare, None, 2)).await,
        (200, "0".to_owned())
    );
    let mut third = RawClient::connect(broker.local_addr()).await;
    assert_eq!(
        code(&mut third, &tx(&k, CommitTwoPhase, None, 3)).await,
        200
    );
    assert_eq!(ids(&broker.records(None)), [a, b]);
    assert_eq!(stat(&mut observer, "tx_rollback").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unprepared_branches_time_out_and_prepared_ones_do_not() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 1)]).await;
    let mut c = RawClient::connect(broker.local_addr()).await;
    let (expiring, prepared, forever) = (key(1), key(2), key(3));
    // Prepared within its 1 s; the other begun after it, with the same timeout.
    assert_eq!(code(&mut c, &tx(&prepared, Begin, Some(1), 1)).await, 200);
    let x = held(&mut c, "test", 0, b"x", &prepared).await;
    let kept = held(&mut c, "test", 0, b"kept", &prepared).await;
    assert_eq!(
        ask(&mut c, &tx(&prepared, Prepare, None, 2)).await,
        (200, "0".to_owned())
    );
    assert_eq!(code(&mut c, &tx(&expiring, Begin, Some(1), 3)).await, 200);
    held(&mut c, "test", 0, b"expires", &expiring).await;
    assert_eq!(code(&mut c, &tx(&forever, Begin, None, 4)).await, 200);

    // COMMIT_TWO_PHASE of IN_USE is refused without changing anything, so
    // it can be asked until the branch is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let last = loop {
        let answer = ask(&mut c, &tx(&expiring, CommitTwoPhase, None, 5)).await;
        if answer.1.starts_with("XAException:code=-4,") {
            break answer;
        }
        assert!(answer.1.starts_with("XAException:code=-6,"), "{answer:?}");
        assert!(
            std::time::Instant::now() < deadline,
            "the branch never timed out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(last, (500, not_started(&expiring)));
    assert_eq!(
        ask(&mut c, &xput("test", 0, b"y", &expiring, 5)).await.0,
        500
    );
    assert_eq!(stat(&mut c, "tx_rollback").await, 1);

    // The prepared one (same timeout) and the one without timeout are still there.
    assert_eq!(
        ask(&mut c, &recover(None, 6)).await,
        (200, prepared.to_string())
    );
    assert_eq!(
        ask(&mut c, &tx(&forever, Prepare, None, 7)).await,
        (200, "3".to_owned())
    );
    assert_eq!(
        code(&mut c, &tx(&prepared, CommitTwoPhase, None, 8)).await,
        200
    );
    let records = broker.records(None);
    assert_eq!(ids(&records), [x, kept]);
}

/// Transactional puts are answered at once, so what XA branches may hold is
/// bounded broker-wide: 64 messages of the maximum size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xa_branches_hold_a_bounded_amount_of_memory() {
    let zk = ZkServer::shared();
    let data = tempfile::tempdir().unwrap();
    let config = test_broker_config(zk, &unique_root(), 0, data.path(), &[("test", 1)])
        .with_max_message_size(1000);
    let broker = TestBroker::start_with(config, data).await;
    let mut c = RawClient::connect(broker.local_addr()).await;
    let mut d = RawClient::connect(broker.local_addr()).await;
    let body = [b'x'; 1000];
    for n in [1, 2] {
        assert_eq!(code(&mut c, &tx(&key(n), Begin, None, 1)).await, 200);
    }
    // 64 000 bytes over two branches and two connections: accepted.
    for i in 0..64u8 {
        let conn = if i % 2 == 0 { &mut c } else { &mut d };
        held(conn, "test", 0, &body, &key(1 + i % 2)).await;
    }
    let (status, refused) = ask(&mut d, &xput("test", 0, &body, &key(1), 2)).await;
    assert_eq!(status, 500);
    assert!(refused.starts_with("XAException:code=-3,msg="), "{refused}");
    assert!(refused.contains("would hold over 64000 bytes"), "{refused}");
    // Rolling one back frees its 32 000 bytes.
    assert_eq!(code(&mut c, &tx(&key(2), Rollback, None, 3)).await, 200);
    held(&mut d, "test", 0, &body, &key(1)).await;
    assert_eq!(
        code(&mut c, &tx(&key(1), CommitOnePhase, None, 4)).await,
        200
    );
    assert_eq!(broker.records(None).len(), 33);
}

/// Begins `k`, holds `bodies` on test-0 and test-1 alternately, prepares it;
/// returns the ids.
async fn prepared_branch(c: &mut RawClient, k: &TxKey, bodies: &[&[u8]]) -> Vec<i64> {
    assert_eq!(code(c, &tx(k, Begin, Some(30), 1)).await, 200);
    let mut ids = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        ids.push(held(c, "test", (i % 2) as i32, body, k).await);
    }
    assert_eq!(
        ask(c, &tx(k, Prepare, None, 2)).await,
        (200, "0".to_owned())
    );
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_branches_survive_a_restart() {
    let zk = ZkServer::shared();
    let mut broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 2)]).await;
    let mut c = RawClient::connect(broker.local_addr()).await;
    let (kept, dropped, open) = (key(1), key(2), key(3));
    let mut expected = prepared_branch(&mut c, &kept, &[b"a", b"b", b"c"]).await;
    prepared_branch(&mut c, &dropped, &[b"never"]).await;
    assert_eq!(code(&mut c, &tx(&open, Begin, None, 3)).await, 200);
    held(&mut c, "test", 0, b"lost", &open).await;
    drop(c);

    broker.restart().await;
    let mut c = RawClient::connect(broker.local_addr()).await;
    let (_, body) = ask(&mut c, &recover(Some(QUALIFIER), 4)).await;
    let mut listed: Vec<&str> = body.split("\r\n").collect();
    listed.sort();
    assert_eq!(listed, [kept.to_string(), dropped.to_string()]);
    // Only prepared branches are kept.
    assert_eq!(
        ask(&mut c, &tx(&open, Rollback, None, 5)).await,
        (500, not_started(&open))
    );
    assert!(broker.records(None).is_empty());

    assert_eq!(code(&mut c, &tx(&kept, CommitTwoPhase, None, 6)).await, 200);
    assert_eq!(code(&mut c, &tx(&dropped, Rollback, None, 7)).await, 200);
    assert!(journal_files(broker.data_dir()).is_empty());
    let records = broker.records(None);
    assert_contiguous(&records);
    let mut stored = ids(&records);
    stored.sort();
    expected.sort();
    assert_eq!(stored, expected, "committed exactly once");

    // Nothing comes back from a second restart.
    drop(c);
    broker.restart().await;
    let mut c = RawClient::connect(broker.local_addr()).await;
    assert_eq!(ask(&mut c, &recover(None, 8)).await, (200, String::new()));
    assert_eq!(broker.records(None).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_branches_survive_sigkill() {
    let zk = ZkServer::shared();
    let root = unique_root();
    let data = tempfile::tempdir().unwrap();
    let args = broker_args(
        zk,
        &root,
        0,
        data.path(),
        &["test:2"],
        &["--zk-session-timeout-ms", "2000"],
    );
    let mut process = BrokerProcess::spawn(metaq_testkit::broker_binary(), &args).unwrap();
    let mut c = RawClient::connect(process.addr()).await;
    let k = key(1);
    let mut expected = prepared_branch(&mut c, &k, &[b"one", b"two", b"three"]).await;
    process.kill();
    assert_eq!(journal_files(data.path()).len(), 1);

    let mut process = BrokerProcess::spawn(metaq_testkit::broker_binary(), &args).unwrap();
    let mut c = RawClient::connect(process.addr()).await;
    assert_eq!(ask(&mut c, &recover(None, 3)).await, (200, k.to_string()));
    assert!(read_records(data.path(), None).unwrap().is_empty());
    assert_eq!(code(&mut c, &tx(&k, CommitTwoPhase, None, 4)).await, 200);
    assert!(journal_files(data.path()).is_empty());
    assert_eq!(
        ask(&mut c, &tx(&k, CommitTwoPhase, None, 5)).await,
        (500, not_started(&k))
    );
    assert!(process.terminate().unwrap().success());

    let records = read_records(data.path(), None).unwrap();
    assert_contiguous(&records);
    let mut stored = ids(&records);
    stored.sort();
    expected.sort();
    assert_eq!(stored, expected, "committed exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_journal_files_are_skipped() {
    let zk = ZkServer::shared();
    let mut broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 2)]).await;
    let mut c = RawClient::connect(broker.local_addr()).await;
    let good = prepared_branch(&mut c, &key(1), &[b"good"]).await;
    prepared_branch(&mut c, &key(2), &[b"torn", b"tail"]).await;
    prepared_branch(&mut c, &key(3), &[b"flipped"]).await;
    drop(c);
    broker.shutdown().await;

    let files = journal_files(broker.data_dir());
    assert_eq!(files.len(), 3);
    let torn = std::fs::read(&files[1]).unwrap();
    std::fs::write(&files[1], &torn[..torn.len() - 3]).unwrap();
    let mut flipped = std::fs::read(&files[2]).unwrap();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    std::fs::write(&files[2], flipped).unwrap();
    std::fs::write(
        broker.data_dir().join("xa/00000000000000000042.xa"),
        b"not a journal",
    )
    .unwrap();

    broker.restart().await;
    let mut c = RawClient::connect(broker.local_addr()).await;
    assert_eq!(
        ask(&mut c, &recover(None, 3)).await,
        (200, key(1).to_string())
    );
    for n in [2, 3] {
        assert_eq!(
            ask(&mut c, &tx(&key(n), CommitTwoPhase, None, 4)).await,
            (500, not_started(&key(n)))
        );
    }
    assert_eq!(
        code(&mut c, &tx(&key(1), CommitTwoPhase, None, 5)).await,
        200
    );
    assert_eq!(ids(&broker.records(None)), good);
}

/// A crash after a commit's appends but before its journal file is gone
/// brings the branch back as prepared; committing it again stores nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_replayed_after_a_crash_is_not_stored_twice() {
    let zk = ZkServer::shared();
    let mut broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 2)]).await;
    let mut c = RawClient::connect(broker.local_addr()).await;
    let k = key(1);
    let mut expected = prepared_branch(&mut c, &k, &[b"a", b"b", b"c"]).await;
    let files = journal_files(broker.data_dir());
    assert_eq!(files.len(), 1);
    let saved = std::fs::read(&files[0]).unwrap();
    assert_eq!(code(&mut c, &tx(&k, CommitTwoPhase, None, 3)).await, 200);
    drop(c);
    broker.shutdown().await;
    // As if the broker had died before removing the file.
    std::fs::write(&files[0], saved).unwrap();

    broker.restart().await;
    let mut c = RawClient::connect(broker.local_addr()).await;
    assert_eq!(ask(&mut c, &recover(None, 4)).await, (200, k.to_string()));
    assert_eq!(code(&mut c, &tx(&k, CommitTwoPhase, None, 5)).await, 200);
    assert!(journal_files(broker.data_dir()).is_empty());
    let mut stored = ids(&broker.records(None));
    stored.sort();
    expected.sort();
    assert_eq!(stored, expected, "stored exactly once");
}
