//! XA transactions through the producer (issue 12, item 1), against a real
//! ZooKeeper and development brokers: two-phase commit over two brokers,
//! votes, rollback, XA error codes, recovery by unique qualifier, and a
//! broker killed between prepare and commit whose branch is completed after
//! its restart.

mod producer_support;

use std::path::Path;
use std::time::Duration;

use metaq::producer::{xa_code, PrepareVote, XaResource, XaTxId};
use metaq::{BrokerUri, Error, Message, Partition, Producer};
use metaq_testkit::BrokerProcess;
use producer_support::*;

const TOPIC: &str = "ledger";

/// Two brokers with two partitions each, and a producer that sees all four.
async fn two_brokers(root: &str) -> (Vec<metaq_testkit::TestBroker>, Producer) {
    let brokers = vec![
        broker(root, 0, &[(TOPIC, 2)]).await,
        broker(root, 1, &[(TOPIC, 2)]).await,
    ];
    let producer = producer(root).build().await.expect("producer");
    producer.publish(TOPIC).await.expect("publish");
    let all: Vec<Partition> = parts(0, 2).into_iter().chain(parts(1, 2)).collect();
    wait_partitions(&producer, TOPIC, &all).await;
    (brokers, producer)
}

fn texts(broker: &metaq_testkit::TestBroker) -> Vec<String> {
    bodies(broker, TOPIC)
        .into_iter()
        .map(|b| String::from_utf8(b).expect("text"))
        .collect()
}

/// Starts a branch on `xa`, sends `messages` in it and ends it.
async fn branch_with(xa: &XaResource, xid: XaTxId, messages: &[&str]) -> (XaTxId, Vec<i64>) {
    let mut branch = xa.start(xid).await.expect("start");
    let mut ids = Vec::new();
    for text in messages {
        let sent = branch
            .send(Message::new(TOPIC, text.to_string()))
            .await
            .expect("send in branch");
        assert_eq!(&sent.broker, xa.broker(), "a branch stays on its broker");
        assert_eq!(sent.offset, -1, "held until commit");
        ids.push(sent.message_id);
    }
    (branch.end().await.expect("end"), ids)
}

fn xa_code_of(error: Error) -> i32 {
    match error {
        Error::Xa { code, .. } => code,
        other => panic!("expected an XA error, got {other}"),
    }
}

/// A branch on each broker, both prepared, both committed: each broker
/// stores exactly its branch's messages, with the ids the puts were given,
/// and nothing before the commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phase_commit_over_two_brokers() {
    init_tracing();
    let root = unique_root();
    let (brokers, producer) = two_brokers(&root).await;
    let ids: Vec<u32> = producer.xa_brokers().iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [0, 1]);

    let mut enlisted = Vec::new();
    for id in [0, 1] {
        let xa = producer.xa_resource_on(id).unwrap();
        assert_eq!(xa.broker(), &brokers[id as usize].uri());
        let xid = xa.xid(1, b"global-1".to_vec(), vec![id as u8]);
        let a = format!("b{id}-a");
        let b = format!("b{id}-b");
        let (xid, sent_ids) = branch_with(&xa, xid, &[&a, &b]).await;
        enlisted.push((xa, xid, sent_ids));
    }
    for broker in &brokers {
        assert!(texts(broker).is_empty(), "nothing visible before commit");
    }
    for (xa, xid, _) in &enlisted {
        assert_eq!(xa.prepare(xid).await.unwrap(), PrepareVote::Ok);
    }
    for broker in &brokers {
        assert!(texts(broker).is_empty(), "nothing visible after prepare");
    }
    for (xa, xid, _) in &enlisted {
        assert!(xa.recover().await.unwrap().contains(xid));
        xa.commit(xid, false).await.unwrap();
        assert!(xa.recover().await.unwrap().is_empty());
    }
    for (id, broker) in brokers.iter().enumerate() {
        let mut stored = texts(broker);
        stored.sort();
        assert_eq!(stored, [format!("b{id}-a"), format!("b{id}-b")]);
        let mut stored_ids: Vec<i64> = broker.records(Some(TOPIC)).iter().map(|r| r.id).collect();
        let mut sent_ids = enlisted[id].2.clone();
        stored_ids.sort();
        sent_ids.sort();
        assert_eq!(stored_ids, sent_ids, "ids assigned at put time");
    }
    producer.close().await;
}

/// A branch that sent nothing votes read-only and is finished; one-phase
/// commit needs no prepare; rollback after prepare discards everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_one_phase_and_rollback() {
    init_tracing();
    let root = unique_root();
    let (brokers, producer) = two_brokers(&root).await;
    let xa = producer.xa_resource_on(0).unwrap();

    let (empty, _) = branch_with(&xa, xa.xid(1, b"empty".to_vec(), b"0".to_vec()), &[]).await;
    assert_eq!(xa.prepare(&empty).await.unwrap(), PrepareVote::ReadOnly);
    let finished = xa.commit(&empty, false).await.unwrap_err();
    assert_eq!(
        xa_code_of(finished),
        xa_code::XAER_NOTA,
        "read-only is finished"
    );

    let (one, _) = branch_with(
        &xa,
        xa.xid(1, b"one".to_vec(), b"0".to_vec()),
        &["one-phase"],
    )
    .await;
    xa.commit(&one, true).await.unwrap();

    let (undone, _) = branch_with(
        &xa,
        xa.xid(1, b"undone".to_vec(), b"0".to_vec()),
        &["undone"],
    )
    .await;
    assert_eq!(xa.prepare(&undone).await.unwrap(), PrepareVote::Ok);
    xa.rollback(&undone).await.unwrap();
    assert!(xa.recover().await.unwrap().is_empty());

    assert_eq!(texts(&brokers[0]), ["one-phase"]);
    assert!(texts(&brokers[1]).is_empty());
    producer.close().await;
}

/// The broker's XA refusals arrive as `Error::Xa` with their codes, and
/// bad qualifiers are refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_their_xa_codes() {
    init_tracing();
    let root = unique_root();
    let (brokers, producer) = two_brokers(&root).await;
    let xa = producer.xa_resource_on(1).unwrap();

    let (xid, _) = branch_with(&xa, xa.xid(2, b"g".to_vec(), b"b".to_vec()), &["m"]).await;
    let early = xa.commit(&xid, false).await.unwrap_err();
    assert_eq!(
        xa_code_of(early),
        xa_code::XAER_PROTO,
        "two-phase without prepare"
    );
    assert_eq!(xa.prepare(&xid).await.unwrap(), PrepareVote::Ok);
    let again = xa.prepare(&xid).await.unwrap_err();
    assert_eq!(xa_code_of(again), xa_code::XAER_PROTO, "second prepare");
    xa.commit(&xid, false).await.unwrap();

    let unknown = xa.xid(2, b"never".to_vec(), b"b".to_vec());
    for error in [
        xa.prepare(&unknown).await.unwrap_err(),
        xa.commit(&unknown, true).await.unwrap_err(),
        xa.rollback(&unknown).await.unwrap_err(),
    ] {
        let text = error.to_string();
        assert_eq!(xa_code_of(error), xa_code::XAER_NOTA, "{text}");
    }
    xa.forget(&unknown).await.expect("forget answers OK");

    for bad in ["12345", "has space", "a:b"] {
        let refused = producer
            .xa_resource_on(1)
            .unwrap()
            .with_unique_qualifier(bad);
        assert!(matches!(refused, Err(Error::Config { .. })), "{bad:?}");
    }
    let unknown_broker = producer.xa_resource_on(7).unwrap_err();
    assert_eq!(xa_code_of(unknown_broker), xa_code::XAER_RMFAIL);
    assert_eq!(texts(&brokers[1]), ["m"]);
    producer.close().await;
}

/// `recover` lists the prepared branches of its own unique qualifier,
/// `recover_all` those of every qualifier; a branch prepared by one resource
/// is committed by another (branches are broker-global).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_by_unique_qualifier() {
    init_tracing();
    let root = unique_root();
    let (brokers, producer) = two_brokers(&root).await;
    let a = producer
        .xa_resource_on(0)
        .unwrap()
        .with_unique_qualifier("rm-a")
        .unwrap();
    let b = producer
        .xa_resource_on(0)
        .unwrap()
        .with_unique_qualifier("rm-b")
        .unwrap();
    let (xa_a, _) = branch_with(&a, a.xid(1, b"ga".to_vec(), b"1".to_vec()), &["from-a"]).await;
    let (xa_b, _) = branch_with(&b, b.xid(1, b"gb".to_vec(), b"1".to_vec()), &["from-b"]).await;
    a.prepare(&xa_a).await.unwrap();
    b.prepare(&xa_b).await.unwrap();

    assert_eq!(a.recover().await.unwrap(), std::slice::from_ref(&xa_a));
    assert_eq!(b.recover().await.unwrap(), std::slice::from_ref(&xa_b));
    let mut all = a.recover_all().await.unwrap();
    all.sort_by_key(|x| x.to_string());
    assert_eq!(all, [xa_a.clone(), xa_b.clone()]);

    // A resource of another producer that published nothing, made by the
    // broker's address (an operator's), finishes them.
    let admin = producer_support::producer(&root).build().await.unwrap();
    let later = admin.xa_resource_at(&brokers[0].uri()).unwrap();
    assert_eq!(
        later.broker_id(),
        u32::MAX,
        "no published topic lists it here"
    );
    later.commit(&xa_a, false).await.unwrap();
    later.rollback(&xa_b).await.unwrap();
    assert!(later.recover_all().await.unwrap().is_empty());
    assert_eq!(texts(&brokers[0]), ["from-a"]);
    admin.close().await;
    producer.close().await;
}

fn broker_args(root: &str, data_dir: &Path) -> Vec<String> {
    let zk = zk().connect_string();
    let text = format!(
        "--id 0 --listen 127.0.0.1:0 --zk {zk} --root {root} --data-dir {} \
         --topic {TOPIC}:2 --zk-session-timeout-ms 4000 --shutdown-grace-ms 0",
        data_dir.display()
    );
    text.split(' ').map(String::from).collect()
}

/// The broker is SIGKILLed between prepare and commit. After its restart
/// (on the same data directory, a new port), a new resource recovers the
/// prepared branch and commits it: its messages are stored exactly once.
/// A branch that was started but not prepared when the broker died is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_prepared_before_a_broker_kill_commits_after_restart() {
    init_tracing();
    let root = unique_root();
    let data_dir = tempfile::tempdir().unwrap();
    let args = broker_args(&root, data_dir.path());
    let binary = metaq_testkit::broker_binary();
    let mut process = BrokerProcess::spawn(&binary, &args).expect("spawn metaq-broker");
    let producer = producer(&root).build().await.unwrap();
    producer.publish(TOPIC).await.unwrap();
    wait_partitions(&producer, TOPIC, &parts(0, 2)).await;

    let xa = producer
        .xa_resource_on(0)
        .unwrap()
        .with_unique_qualifier("rm-kill")
        .unwrap();
    let (prepared, _) = branch_with(
        &xa,
        xa.xid(9, b"kill".to_vec(), b"1".to_vec()),
        &["p0", "p1", "p2"],
    )
    .await;
    assert_eq!(xa.prepare(&prepared).await.unwrap(), PrepareVote::Ok);
    let (unprepared, _) =
        branch_with(&xa, xa.xid(9, b"kill".to_vec(), b"2".to_vec()), &["u0"]).await;
    process.kill();

    let gone = xa.commit(&prepared, false).await.unwrap_err();
    assert_eq!(
        xa_code_of(gone),
        xa_code::XAER_RMFAIL,
        "no broker: outcome unknown"
    );
    drop(xa);

    let process = BrokerProcess::spawn(&binary, &args).expect("restart metaq-broker");
    let new_uri: BrokerUri = format!("meta://{}", process.addr()).parse().unwrap();
    eventually(
        Duration::from_secs(30),
        "the restarted broker in the route",
        || {
            let found = producer
                .xa_brokers()
                .into_iter()
                .any(|(id, uri)| id == 0 && uri == new_uri);
            async move { found.then_some(()) }
        },
    )
    .await;
    let xa = producer
        .xa_resource_on(0)
        .unwrap()
        .with_unique_qualifier("rm-kill")
        .unwrap();
    assert_eq!(
        xa.recover().await.unwrap(),
        std::slice::from_ref(&prepared),
        "only the prepared branch survives"
    );
    let lost = xa.prepare(&unprepared).await.unwrap_err();
    assert_eq!(xa_code_of(lost), xa_code::XAER_NOTA);
    xa.commit(&prepared, false).await.unwrap();
    assert!(xa.recover().await.unwrap().is_empty());
    let again = xa.commit(&prepared, false).await.unwrap_err();
    assert_eq!(xa_code_of(again), xa_code::XAER_NOTA, "committed once");
    drop(xa);
    producer.close().await;
    drop(process);

    let records = metaq_broker::store::read_records(data_dir.path(), Some(TOPIC)).unwrap();
    let mut payloads: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8(r.body.to_vec()).unwrap())
        .collect();
    payloads.sort();
    assert_eq!(payloads, ["p0", "p1", "p2"]);
}

/// A PREPARE whose answer does not come in time is `XAER_RMFAIL`, not a
/// rollback: the broker did prepare the branch, and `recover` shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_prepare_leaves_the_outcome_to_recover() {
    init_tracing();
    let root = unique_root();
    let broker = broker(&root, 0, &[(TOPIC, 2)]).await;
    let producer = producer(&root)
        .transaction_request_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    producer.publish(TOPIC).await.unwrap();
    wait_partitions(&producer, TOPIC, &parts(0, 2)).await;
    let xa = producer.xa_resource_on(0).unwrap();
    let (xid, _) = branch_with(&xa, xa.xid(3, b"slow".to_vec(), b"1".to_vec()), &["late"]).await;

    broker.faults().delay_responses(Duration::from_secs(1));
    let unanswered = xa.prepare(&xid).await.unwrap_err();
    assert_eq!(xa_code_of(unanswered), xa_code::XAER_RMFAIL);
    broker.faults().delay_responses(Duration::ZERO);
    let recovered = eventually(
        Duration::from_secs(10),
        "the prepared branch is listed",
        || {
            let xa = xa.clone();
            async move { xa.recover().await.ok().filter(|l| !l.is_empty()) }
        },
    )
    .await;
    assert_eq!(recovered, std::slice::from_ref(&xid));
    xa.commit(&xid, false).await.unwrap();
    assert_eq!(texts(&broker), ["late"]);
    producer.close().await;
}
