//! `metaq produce --ordered` and `--oneway --spill-dir` against a real
//! ZooKeeper and development brokers: messages whose partition is down are
//! reported stored, and what a killed producer left in its store is
//! delivered, in order and once, by the next run on the same directory.

mod cli_support;
#[path = "../../../tests/producer_support/mod.rs"]
mod producer_support;

use std::collections::BTreeMap;

use cli_support::*;
use metaq::Partition;
use metaq_testkit::TestBroker;
use producer_support::*;
use serde_json::Value;

const TOPIC: &str = "ordered";
const LAYOUT: &str = "0:2;1:2";

fn all_partitions() -> Vec<Partition> {
    parts(0, 2).into_iter().chain(parts(1, 2)).collect()
}

/// `produce --ordered --store-dir dir` on `root` with extra arguments.
fn ordered(root: &str, dir: &std::path::Path, extra: &[&str]) -> tokio::process::Command {
    let zk = zk().connect_string();
    let dir = dir.to_str().expect("a UTF-8 temp dir");
    let mut args = vec![
        "produce",
        "--zk",
        &zk,
        "--root",
        root,
        "--topic",
        TOPIC,
        "--ordered",
        "--store-dir",
        dir,
        "--layout",
        LAYOUT,
        "--timeout-ms",
        "1000",
    ];
    args.extend_from_slice(extra);
    metaq(&args)
}

/// Every stored `key:n` payload per key, in log order.
fn stored_by_key(broker: &TestBroker) -> BTreeMap<String, Vec<u64>> {
    let mut records = broker.records(Some(TOPIC));
    records.sort_by_key(|r| (r.partition, r.offset));
    let mut by_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for record in records {
        let text = String::from_utf8(record.body.to_vec()).unwrap();
        let (key, n) = text.split_once(':').expect("key:n");
        by_key
            .entry(key.to_owned())
            .or_default()
            .push(n.parse().unwrap());
    }
    by_key
}

fn kill_hard(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -KILL {pid}: {status}");
}

/// Broker 1 refuses connections: keyed records for its partitions are
/// reported stored (partition and seq), one for broker 0 is sent. The
/// producer is killed; once broker 1 is back, the next run on the same
/// store delivers every stored message, per key in input order, once; a
/// record without a key is an error line and counts as failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_producers_store_is_delivered_by_the_next_run() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 2)]).await;
    let b1 = broker(&root, 1, &[(TOPIC, 2)]).await;
    b1.faults().refuse_connections(true);
    b1.faults().drop_connections();
    let store = tempfile::tempdir().unwrap();
    let keys = keys_for_broker(&all_partitions(), 1, 2);
    let key0 = &keys_for_broker(&all_partitions(), 0, 1)[0];

    let mut first = Running::start(ordered(
        &root,
        store.path(),
        &["--stdin", "--key-delimiter", ",", "--json"],
    ));
    let mut input = String::new();
    for n in 0..3 {
        for key in &keys {
            input.push_str(&format!("{key},{key}:{n}\n"));
        }
    }
    first.write(input.as_bytes()).await;
    for line in 1..=6u64 {
        let result = first.next_json().await;
        assert_eq!(result["line"], line, "{result}");
        assert_eq!(result["stored"], true, "{result}");
        let partition = result["partition"].as_str().expect("a partition");
        assert!(partition.starts_with("1-"), "{result}");
        assert!(result["seq"].is_u64(), "{result}");
    }
    first.write(format!("{key0},{key0}:0\n").as_bytes()).await;
    let sent = first.next_json().await;
    assert_eq!(sent["line"], 7, "{sent}");
    assert!(
        sent["partition"].as_str().unwrap().starts_with("0-"),
        "{sent}"
    );
    assert!(
        sent["offset"].is_i64() && sent.get("stored").is_none(),
        "{sent}"
    );
    kill_hard(first.pid());
    let (_, status, _) = first.finish().await;
    assert!(!status.success(), "killed: {status}");
    assert!(b1.records(Some(TOPIC)).is_empty());

    b1.faults().refuse_connections(false);
    let last = &keys[0];
    let output = run_with_input(
        ordered(
            &root,
            store.path(),
            &[
                "--stdin",
                "--key-delimiter",
                ",",
                "--json",
                "--flush-ms",
                "20000",
            ],
        ),
        format!("{last},{last}:3\nno key here\n").as_bytes(),
    )
    .await;
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 3, "{}", describe(&output));
    assert!(lines[0]["offset"].is_i64(), "{}", describe(&output));
    assert_eq!(lines[1]["line"], 2);
    assert_eq!(lines[1]["kind"], "not_sent", "{}", describe(&output));
    let error = lines[1]["error"].as_str().unwrap();
    assert!(error.contains("no key"), "{error}");
    let summary = &lines[2];
    assert_eq!(summary["sent"], 1, "{summary}");
    assert_eq!(summary["failed"], 1, "{summary}");
    assert_eq!(summary["ordered"]["replayed"], 6, "{summary}");
    assert_eq!(summary["ordered"]["held_now"], 0, "{summary}");
    assert_eq!(summary["ordered"]["stored"], 0, "{summary}");
    assert!(!output.status.success(), "a keyless record failed");

    let mut expected = BTreeMap::new();
    expected.insert(keys[0].clone(), vec![0, 1, 2, 3]);
    expected.insert(keys[1].clone(), vec![0, 1, 2]);
    assert_eq!(stored_by_key(&b1), expected);
    assert_eq!(stored_by_key(&b0).len(), 1);
}

/// Text output and a run that only drains: with broker 1 refusing, `--key
/// K --count 2` prints a stored line per message and exits 0; once it is
/// back, `--count 0 --flush-ms` delivers both and holds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_zero_with_flush_only_drains_the_store() {
    init_tracing();
    let root = unique_root();
    let _b0 = broker(&root, 0, &[(TOPIC, 2)]).await;
    let b1 = broker(&root, 1, &[(TOPIC, 2)]).await;
    b1.faults().refuse_connections(true);
    b1.faults().drop_connections();
    let store = tempfile::tempdir().unwrap();
    let key = &keys_for_broker(&all_partitions(), 1, 1)[0];
    let output = run(ordered(
        &root,
        store.path(),
        &["--key", key, "--count", "2", "--payload", "p"],
    ))
    .await;
    assert!(output.status.success(), "{}", describe(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    let stored = text
        .lines()
        .filter(|l| l.starts_with("record ") && l.contains(" stored locally for partition 1-"))
        .count();
    assert_eq!(stored, 2, "{text}");
    assert!(text.contains("ordered: sent 0, stored 2 "), "{text}");
    assert!(text.contains("held now 2 "), "{text}");

    b1.faults().refuse_connections(false);
    let output = run(ordered(
        &root,
        store.path(),
        &[
            "--key",
            key,
            "--count",
            "0",
            "--flush-ms",
            "20000",
            "--json",
        ],
    ))
    .await;
    assert!(output.status.success(), "{}", describe(&output));
    let lines = json_lines(&output);
    let summary = lines.last().expect("a summary");
    assert_eq!(summary["ordered"]["replayed"], 2, "{summary}");
    assert_eq!(summary["ordered"]["held_now"], 0, "{summary}");
    assert_eq!(bodies(&b1, TOPIC), [b"p".to_vec(), b"p".to_vec()]);
}

/// Without a key, `--ordered` is refused before anything is contacted; it
/// cannot go with `--server`, and `--store-dir` needs `--ordered`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_arguments_are_checked() {
    let store = tempfile::tempdir().unwrap();
    let output = run(ordered("/nowhere", store.path(), &["--count", "1"])).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--ordered needs a key"), "{stderr}");
    let output = run(metaq(&[
        "produce",
        "--server",
        "meta://127.0.0.1:1",
        "--topic",
        TOPIC,
        "--ordered",
        "--store-dir",
        "x",
        "--key",
        "k",
    ]))
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("cannot be used"),
        "{stderr}"
    );
    let output = run(metaq(&[
        "produce",
        "--zk",
        "127.0.0.1:1",
        "--topic",
        TOPIC,
        "--store-dir",
        "x",
    ]))
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("--ordered"),
        "{stderr}"
    );
}

/// `--oneway --spill-dir`: while the only broker refuses connections,
/// every message is spilled and still held at exit; the summary says so
/// and, nothing being lost, the exit status is 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oneway_spills_what_the_broker_cannot_take() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    b0.faults().refuse_connections(true);
    b0.faults().drop_connections();
    let spill = tempfile::tempdir().unwrap();
    let zk = zk().connect_string();
    let output = run(metaq(&[
        "produce",
        "--zk",
        &zk,
        "--root",
        &root,
        "--topic",
        TOPIC,
        "--oneway",
        "--spill-dir",
        spill.path().to_str().unwrap(),
        "--count",
        "3",
        "--timeout-ms",
        "500",
        "--json",
    ]))
    .await;
    let lines = json_lines(&output);
    let summary: &Value = lines.last().expect("a summary");
    let one_way = &summary["one_way"];
    assert!(
        one_way["spilled"].as_u64() >= Some(3),
        "{}",
        describe(&output)
    );
    assert_eq!(one_way["spill_held"], 3, "{}", describe(&output));
    assert_eq!(one_way["sent"], 0, "{}", describe(&output));
    assert!(one_way["replayed"].is_u64(), "{summary}");
    assert!(output.status.success(), "{}", describe(&output));
    assert!(b0.records(Some(TOPIC)).is_empty());
}
