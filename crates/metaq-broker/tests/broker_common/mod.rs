//! Helpers shared by the `broker_*` integration tests: raw frames written by
//! hand (not with the crate's encoder, so the tests check the broker against
//! docs/protocol.md, not against our own encoder), ZooKeeper node checks,
//! polling with a deadline, and running the `metaq-broker` binary.
//!
//! Each test binary uses a subset; the rest is dead code there.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use metaq::protocol::Response;
use metaq_testkit::{RawClient, ZkServer};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use zookeeper_client::{Client, Error as ZkError, Stat};

/// CRC32 (IEEE) & 0x7FFFFFFF, as docs/protocol.md §3.12 defines the checksum.
pub fn crc(body: &[u8]) -> i32 {
    (crc32fast::hash(body) & 0x7fff_ffff) as i32
}

/// A current-form put: `put <topic> <partition> <len> 0 <crc> <opaque>\r\n<body>`.
pub fn put(topic: &str, partition: i32, body: &[u8], opaque: i32) -> Vec<u8> {
    frame(
        format!(
            "put {topic} {partition} {} 0 {} {opaque}",
            body.len(),
            crc(body)
        ),
        body,
    )
}

/// A transactional put (8 tokens, with checksum).
pub fn tx_put(topic: &str, partition: i32, body: &[u8], key: &str, opaque: i32) -> Vec<u8> {
    frame(
        format!(
            "put {topic} {partition} {} 0 {} {key} {opaque}",
            body.len(),
            crc(body)
        ),
        body,
    )
}

/// `transaction <key> <session> <kind> [<timeout>] <opaque>\r\n`.
pub fn tx(key: &str, session: &str, kind: &str, timeout: Option<u32>, opaque: i32) -> Vec<u8> {
    let timeout = timeout.map(|t| format!(" {t}")).unwrap_or_default();
    format!("transaction {key} {session} {kind}{timeout} {opaque}\r\n").into_bytes()
}

/// A header line plus CRLF plus body.
pub fn frame(header: String, body: &[u8]) -> Vec<u8> {
    let mut bytes = header.into_bytes();
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(body);
    bytes
}

/// The body as text.
pub fn text(response: &Response) -> &str {
    std::str::from_utf8(&response.body).expect("a UTF-8 answer")
}

/// `<id> <partition> <offset>` of a 200 put answer, checked to have exactly
/// three tokens.
pub fn put_result(response: &Response) -> (i64, i32, i64) {
    assert_eq!(response.code.0, 200, "put failed: {}", text(response));
    let parts: Vec<&str> = text(response).split(' ').collect();
    assert_eq!(parts.len(), 3, "answer {:?}", text(response));
    (
        parts[0].parse().unwrap(),
        parts[1].parse().unwrap(),
        parts[2].parse().unwrap(),
    )
}

/// The failure prefix of every put answered 500 (docs/protocol.md §5.1).
pub fn put_failure(uri: &str, topic: &str, partition: i32, detail: &str) -> String {
    format!(
        "Put message to [broker '{uri}'] [partition '{topic}-{partition}'] failed.Detail:{detail}"
    )
}

/// Reads one `result` frame byte by byte: the header line (checked to have
/// exactly four single-space-separated tokens) and its body.
pub async fn raw_result(stream: &mut TcpStream) -> (Vec<String>, Vec<u8>) {
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        let mut byte = [0u8];
        stream.read_exact(&mut byte).await.expect("a header line");
        line.push(byte[0]);
    }
    let header = std::str::from_utf8(&line[..line.len() - 2]).unwrap();
    let tokens: Vec<String> = header.split(' ').map(String::from).collect();
    assert_eq!(tokens.len(), 4, "header {header:?}");
    assert_eq!(tokens[0], "result");
    let mut body = vec![0u8; tokens[2].parse().unwrap()];
    stream.read_exact(&mut body).await.unwrap();
    (tokens, body)
}

/// The `key value` lines of a STATS body.
pub fn stats_lines(body: &str) -> BTreeMap<String, String> {
    assert!(body.starts_with("STATS\r\n"), "{body:?}");
    assert!(body.ends_with("END\r\n"), "{body:?}");
    body["STATS\r\n".len()..body.len() - "END\r\n".len()]
        .split_terminator("\r\n")
        .map(|line| {
            let (key, value) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("stats line {line:?}"));
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

/// One counter of the broker's `stats` summary, asked on `client`.
pub async fn stat(client: &mut RawClient, key: &str) -> u64 {
    let answer = client
        .call(b"stats  2147483646\r\n")
        .await
        .expect("a stats answer");
    assert_eq!((answer.code.0, answer.opaque), (200, 2_147_483_646));
    stats_lines(text(&answer))[key].parse().unwrap()
}

/// Polls the `stats` counter `key` on `client` until it reaches `wanted`;
/// fails after `limit` (or if it goes past `wanted`).
pub async fn wait_for_stat(client: &mut RawClient, key: &str, wanted: u64, limit: Duration) {
    let start = Instant::now();
    loop {
        let value = stat(client, key).await;
        assert!(value <= wanted, "{key} is {value}, past {wanted}");
        if value == wanted {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{key} still {value} after {limit:?}, waiting for {wanted}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `frame` and returns the answer's status code.
pub async fn code(client: &mut RawClient, frame: &[u8]) -> u16 {
    client.call(frame).await.expect("an answer").code.0
}

/// Reads `n` answers and keys them by opaque (answers may come in any
/// order); fails on a duplicate opaque or if the connection ends first.
pub async fn responses(client: &mut RawClient, n: usize) -> HashMap<i32, Response> {
    let mut got = HashMap::with_capacity(n);
    while got.len() < n {
        let response = client
            .response()
            .await
            .unwrap_or_else(|| panic!("connection ended after {} of {n} answers", got.len()));
        let opaque = response.opaque;
        assert!(
            got.insert(opaque, response).is_none(),
            "two answers for opaque {opaque}"
        );
    }
    got
}

/// Polls `check` every 50 ms until it returns true; fails after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node's data (as text) and stat, `None` if it does not exist.
pub async fn node(zk: &Client, path: &str) -> Option<(String, Stat)> {
    match zk.get_data(path).await {
        Ok((data, stat)) => Some((String::from_utf8(data).expect("UTF-8 node data"), stat)),
        Err(ZkError::NoNode) => None,
        Err(e) => panic!("get {path}: {e}"),
    }
}

/// A node that must exist and be persistent; returns its data.
pub async fn persistent(zk: &Client, path: &str) -> String {
    let (data, stat) = node(zk, path)
        .await
        .unwrap_or_else(|| panic!("{path} is missing"));
    assert_eq!(stat.ephemeral_owner, 0, "{path} should be persistent");
    data
}

/// A node that must exist and be ephemeral; returns its data and owner.
pub async fn ephemeral(zk: &Client, path: &str) -> (String, i64) {
    let (data, stat) = node(zk, path)
        .await
        .unwrap_or_else(|| panic!("{path} is missing"));
    assert_ne!(stat.ephemeral_owner, 0, "{path} should be ephemeral");
    (data, stat.ephemeral_owner)
}

/// Every ephemeral node a master broker `id` writes for `topics` (docs/protocol.md §1.2).
pub fn ephemeral_paths(root: &str, id: u32, topics: &[(&str, u32)]) -> Vec<String> {
    let mut paths = vec![
        format!("{root}/brokers/ids/{id}/master"),
        format!("{root}/brokers/ids/{id}/master_config_checksum"),
    ];
    for (topic, _) in topics {
        for kind in ["topics", "topics-pub", "topics-sub"] {
            paths.push(format!("{root}/brokers/{kind}/{topic}/{id}-m"));
        }
    }
    paths
}

/// Checks every node of broker `id` exactly as docs/protocol.md §1.2 / 1.3 list
/// them, and returns the session that owns its ephemeral nodes.
pub async fn assert_registered(
    zk: &Client,
    root: &str,
    id: u32,
    uri: &str,
    topics: &[(&str, u32)],
) -> i64 {
    for parent in ["", "/brokers", "/brokers/ids"] {
        persistent(zk, &format!("{root}{parent}")).await;
    }
    assert_eq!(
        persistent(zk, &format!("{root}/brokers/ids/{id}")).await,
        uri
    );
    let (master, owner) = ephemeral(zk, &format!("{root}/brokers/ids/{id}/master")).await;
    assert_eq!(master, uri);
    let (checksum, checksum_owner) = ephemeral(
        zk,
        &format!("{root}/brokers/ids/{id}/master_config_checksum"),
    )
    .await;
    assert_eq!(checksum, "0");
    assert_eq!(checksum_owner, owner);
    for (topic, parts) in topics {
        for kind in ["topics", "topics-pub", "topics-sub"] {
            persistent(zk, &format!("{root}/brokers/{kind}")).await;
            persistent(zk, &format!("{root}/brokers/{kind}/{topic}")).await;
        }
        let legacy = format!("{root}/brokers/topics/{topic}/{id}-m");
        let (data, legacy_owner) = ephemeral(zk, &legacy).await;
        assert_eq!(data, parts.to_string(), "{legacy}");
        assert_eq!(legacy_owner, owner);
        for kind in ["topics-pub", "topics-sub"] {
            let path = format!("{root}/brokers/{kind}/{topic}/{id}-m");
            let (json, json_owner) = ephemeral(zk, &path).await;
            assert_eq!(json_owner, owner);
            let value: serde_json::Value = serde_json::from_str(&json)
                .unwrap_or_else(|e| panic!("{path}: {json:?} is not JSON: {e}"));
            let object = value.as_object().expect("a JSON object");
            assert_eq!(object.len(), 2, "{path}: exactly two keys in {json}");
            assert_eq!(object["numParts"], serde_json::json!(parts), "{path}");
            assert!(
                object["numParts"].is_u64(),
                "{path}: numParts is an integer"
            );
            assert_eq!(
                object["broker"],
                serde_json::json!(format!("{id}-m")),
                "{path}"
            );
        }
    }
    owner
}

/// Whether every ephemeral node of broker `id` exists (for polling).
pub async fn all_present(zk: &Client, root: &str, id: u32, topics: &[(&str, u32)]) -> bool {
    for path in ephemeral_paths(root, id, topics) {
        if node(zk, &path).await.is_none() {
            return false;
        }
    }
    true
}

/// Whether every ephemeral node of broker `id` is gone (for polling).
pub async fn all_absent(zk: &Client, root: &str, id: u32, topics: &[(&str, u32)]) -> bool {
    for path in ephemeral_paths(root, id, topics) {
        if node(zk, &path).await.is_some() {
            return false;
        }
    }
    true
}

/// Checks a graceful unregistration: every ephemeral node and `ids/<id>` are
/// gone; the persistent parents stay.
pub async fn assert_unregistered(zk: &Client, root: &str, id: u32, topics: &[(&str, u32)]) {
    for path in ephemeral_paths(root, id, topics) {
        assert!(node(zk, &path).await.is_none(), "{path} is still there");
    }
    let ids = format!("{root}/brokers/ids/{id}");
    assert!(node(zk, &ids).await.is_none(), "{ids} is still there");
    persistent(zk, &format!("{root}/brokers/ids")).await;
    for (topic, _) in topics {
        for kind in ["topics", "topics-pub", "topics-sub"] {
            persistent(zk, &format!("{root}/brokers/{kind}/{topic}")).await;
        }
    }
}

/// Arguments for `metaq-broker` with port 0 on loopback.
pub fn broker_args(
    zk: &ZkServer,
    root: &str,
    id: u32,
    data_dir: &Path,
    topics: &[&str],
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = [
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
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for topic in topics {
        args.push("--topic".into());
        args.push(topic.to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The path of the `metaq-broker` binary built for these tests.
pub const BROKER_BIN: &str = env!("CARGO_BIN_EXE_metaq-broker");

/// Runs `metaq-broker dump` and parses its JSON lines.
pub fn dump(data_dir: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let output = std::process::Command::new(BROKER_BIN)
        .arg("dump")
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .output()
        .expect("run metaq-broker dump");
    assert!(
        output.status.success(),
        "metaq-broker dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}
