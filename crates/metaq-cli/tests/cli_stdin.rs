//! `metaq produce --stdin` against a real ZooKeeper and development brokers:
//! records are bytes, streamed as they arrive, cut by `--delimiter`, keyed
//! by `--key-delimiter`, numbered by `"line"`, and batched into
//! transactions as they arrive.

mod cli_support;
#[path = "../../../tests/producer_support/mod.rs"]
mod producer_support;

use cli_support::*;
use metaq::producer::KeyHash;
use metaq_testkit::TestBroker;
use producer_support::*;
use serde_json::Value;

const TOPIC: &str = "stdin";

/// `produce --stdin` on `root` with extra arguments.
fn produce(root: &str, extra: &[&str]) -> tokio::process::Command {
    let zk = zk().connect_string();
    let mut args = vec!["produce", "--zk", &zk, "--root", root, "--topic", TOPIC];
    args.push("--stdin");
    args.extend_from_slice(extra);
    metaq(&args)
}

/// The stored body at the partition and offset a result line names.
fn body_at(broker: &TestBroker, result: &Value) -> Vec<u8> {
    let partition = result["partition"].as_str().expect("a partition");
    let index: u32 = partition.split_once('-').unwrap().1.parse().unwrap();
    let offset = result["offset"].as_i64().expect("an offset");
    let record = broker
        .records(Some(TOPIC))
        .into_iter()
        .find(|r| r.partition == index && r.offset == offset)
        .unwrap_or_else(|| panic!("no record at {partition}@{offset}"));
    record.body.to_vec()
}

/// A line that is not UTF-8 is sent as it is, with every line after it;
/// each result's `"line"` names the input line stored where it says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_bytes_and_results_name_their_line() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 2)]).await;
    let input: [&[u8]; 4] = [b"one", b"\xff\xfe", b"three", b"four"];
    let output = run_with_input(
        produce(&root, &["--json", "--concurrency", "4"]),
        b"one\n\xff\xfe\nthree\nfour\n",
    )
    .await;
    assert!(output.status.success(), "{}", describe(&output));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 5, "{}", describe(&output));
    assert_eq!(lines[4]["sent"], 4, "{}", describe(&output));
    let mut seen = Vec::new();
    for result in &lines[..4] {
        let line = result["line"].as_u64().expect("a line number");
        assert_eq!(body_at(&b0, result), input[line as usize - 1], "{result}");
        seen.push(line);
    }
    seen.sort_unstable();
    assert_eq!(seen, [1, 2, 3, 4]);
    let mut stored = bodies(&b0, TOPIC);
    stored.sort();
    let mut expected: Vec<Vec<u8>> = input.iter().map(|b| b.to_vec()).collect();
    expected.sort();
    assert_eq!(stored, expected);
}

/// A record is sent while standard input is still open (as with
/// `tail -f`); a last record without a delimiter is sent at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_sent_as_they_arrive() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let mut child = Running::start(produce(&root, &["--json"]));
    child.write(b"first\n").await;
    let result = child.next_json().await;
    assert_eq!(result["line"], 1, "{result}");
    assert_eq!(bodies(&b0, TOPIC), [b"first".to_vec()]);

    child.write(b"second").await;
    let (rest, status, stderr) = child.finish().await;
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(rest.len(), 2, "{rest:?}");
    let last: Value = serde_json::from_str(&rest[0]).unwrap();
    assert_eq!(last["line"], 2, "{last}");
    let summary: Value = serde_json::from_str(&rest[1]).unwrap();
    assert_eq!(
        (summary["sent"].as_u64(), summary["failed"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(bodies(&b0, TOPIC), [b"first".to_vec(), b"second".to_vec()]);
}

/// `--delimiter '\0'` cuts at NUL bytes and keeps newlines and `\r`; a
/// trailing delimiter adds no empty record. With the default newline, a
/// `\r` before it goes (CRLF text).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delimiters_cut_records() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let output = run_with_input(
        produce(&root, &["--delimiter", "\\0", "--concurrency", "1"]),
        b"a\0b\nc\0\0d\r\0",
    )
    .await;
    assert!(output.status.success(), "{}", describe(&output));
    let stored = bodies(&b0, TOPIC);
    assert_eq!(stored, [&b"a"[..], b"b\nc", b"", b"d\r"]);

    let output = run_with_input(produce(&root, &["--concurrency", "1"]), b"x\r\ny\nlast\r").await;
    assert!(output.status.success(), "{}", describe(&output));
    let stored = bodies(&b0, TOPIC);
    assert_eq!(stored[4..], [&b"x"[..], b"y", b"last\r"]);
}

/// `--key-delimiter ':'`: the text before the first ':' is the key (not
/// sent) and picks the partition; a record without ':' is sent whole,
/// without a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_delimiter_splits_off_the_key() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 4)]).await;
    let output = run_with_input(
        produce(
            &root,
            &["--selector", "key-hash", "--key-delimiter", ":", "--json"],
        ),
        b"k1:v1\nk2:v2\nnokey\nk1:a:b\n",
    )
    .await;
    assert!(output.status.success(), "{}", describe(&output));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 5, "{}", describe(&output));
    let expected: [(&[u8], Option<&str>); 4] = [
        (b"v1", Some("k1")),
        (b"v2", Some("k2")),
        (b"nokey", None),
        (b"a:b", Some("k1")),
    ];
    for result in &lines[..4] {
        let line = result["line"].as_u64().expect("a line number") as usize;
        let (payload, key) = expected[line - 1];
        assert_eq!(body_at(&b0, result), payload, "{result}");
        if let Some(key) = key {
            let partition = format!("0-{}", KeyHash::hash(key.as_bytes()) % 4);
            assert_eq!(result["partition"], partition.as_str(), "{result}");
        }
    }
}

/// `--stdin --transaction 2`: a transaction commits once two records came,
/// while input is still open; the last, partial one commits at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_take_records_as_they_arrive() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let mut child = Running::start(produce(&root, &["--transaction", "2", "--json"]));
    child.write(b"a\nb\n").await;
    let first = child.next_json().await;
    assert_eq!(first["state"], "committed", "{first}");
    assert_eq!(
        (
            &first["messages"],
            &first["first_line"],
            &first["last_line"]
        ),
        (&Value::from(2), &Value::from(1), &Value::from(2)),
        "{first}"
    );
    assert_eq!(bodies(&b0, TOPIC), [b"a".to_vec(), b"b".to_vec()]);

    child.write(b"c\n").await;
    let (rest, status, stderr) = child.finish().await;
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(rest.len(), 2, "{rest:?}");
    let last: Value = serde_json::from_str(&rest[0]).unwrap();
    assert_eq!(
        (&last["state"], &last["messages"], &last["first_line"]),
        (&Value::from("committed"), &Value::from(1), &Value::from(3)),
        "{last}"
    );
    let summary: Value = serde_json::from_str(&rest[1]).unwrap();
    assert_eq!(summary["sent"], 3, "{summary}");
    assert_eq!(bodies(&b0, TOPIC).len(), 3);
}
