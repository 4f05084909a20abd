//! The null server through the library and `metaq-broker null`, and the
//! real `metaq bench` binary in short runs, checked through its `--json`.
//!
//! Runs against `--zk` use the test binary's shared ZooKeeper and a null
//! server the test starts; `--null` and `--local` start their own
//! ZooKeeper and servers, which must be gone when the bench exits. Nothing
//! here asserts on speed: the figures only have to be there and be sane.

use std::process::{Output, Stdio};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use metaq::discovery::ZkPaths;
use metaq::protocol::StatusCode;
use metaq::{Message, Partition, Producer};
use metaq_broker::null::{NullServer, NULL_SERVER_VERSION};
use metaq_broker::{BrokerError, TopicConfig};
use metaq_testkit::{unique_root, BrokerProcess, RawClient, ZkServer};
use serde_json::Value;
use tokio::process::Command;

const TOPIC: &str = "bench";

fn zk() -> &'static ZkServer {
    ZkServer::shared()
}

async fn null_server(root: &str, partitions: u32) -> NullServer {
    NullServer::builder(zk().connect_string())
        .root(root)
        .topic(TopicConfig::new(TOPIC, partitions))
        .zk_session_timeout(Duration::from_secs(4))
        .start()
        .await
        .expect("the null server starts")
}

/// Polls until `check` holds, failing after 10 s (a liveness bound, not a
/// speed assertion).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A producer finds the null server through ZooKeeper; every send is
/// answered 200 by it, on the registered partitions; its counter sees
/// them all; stopping it removes its ZooKeeper nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_server_serves_a_producer_found_through_zookeeper() {
    let root = unique_root();
    let server = null_server(&root, 3).await;
    let producer = Producer::builder(zk().connect_string())
        .root(&root)
        .build()
        .await
        .expect("the producer starts");
    producer.publish(TOPIC).await.expect("the topic is served");
    let mut sends: FuturesUnordered<_> = (0..300)
        .map(|i| producer.send(Message::new(TOPIC, format!("message {i}"))))
        .collect();
    let mut partitions = std::collections::BTreeSet::new();
    while let Some(sent) = sends.next().await {
        let sent = sent.expect("the null server answers every put");
        assert_eq!(sent.broker, server.uri());
        partitions.insert(sent.partition);
    }
    let expected: std::collections::BTreeSet<_> = (0..3).map(|i| Partition::new(0, i)).collect();
    assert_eq!(
        partitions, expected,
        "round-robin over the registered partitions"
    );
    eventually("300 puts counted", || server.puts_answered() == 300).await;
    assert_eq!(server.connections(), 1);
    producer.close().await;

    let master = ZkPaths::new(&root).broker_master(0);
    let client = zk().client().await;
    assert!(client.check_stat(&master).await.unwrap().is_some());
    server.stop().await;
    assert_eq!(client.check_stat(&master).await.unwrap(), None);
}

/// Settings that cannot work are refused before anything is contacted.
#[tokio::test]
async fn null_server_refuses_unusable_settings() {
    // No ZooKeeper listens there: a refusal must come before connecting.
    let builder = || NullServer::builder("127.0.0.1:1");
    let cases = [
        ("no topic", builder()),
        (
            "id over 1023",
            builder().id(1024).topic(TopicConfig::new("t", 1)),
        ),
        ("pattern", builder().topic(TopicConfig::new("log-*", 1))),
        ("no partitions", builder().topic(TopicConfig::new("t", 0))),
    ];
    for (what, builder) in cases {
        let refused = builder.start().await;
        assert!(
            matches!(refused, Err(BrokerError::Config { .. })),
            "{what}: {refused:?}"
        );
    }
}

/// `metaq-broker null` prints its `ready` line, answers `version` as a
/// null server and a put with a readable 200, and exits 0 on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metaq_broker_null_subcommand() {
    let root = unique_root();
    let args = [
        "null",
        "--zk",
        &zk().connect_string(),
        "--root",
        &root,
        "--listen",
        "127.0.0.1:0",
        "--topic",
        "t:2",
    ]
    .map(String::from);
    let mut process = BrokerProcess::spawn(metaq_testkit::broker_binary(), &args)
        .expect("metaq-broker null starts");
    let mut client = RawClient::connect(process.addr()).await;
    let version = client.call(b"version 7\r\n").await.expect("an answer");
    assert_eq!((version.code, version.opaque), (StatusCode::SUCCESS, 7));
    assert_eq!(&version.body[..], NULL_SERVER_VERSION.as_bytes());
    let put = client
        .call(b"put t 1 5 0 907060870 8\r\nhello")
        .await
        .expect("an answer");
    assert_eq!((put.code, put.opaque), (StatusCode::SUCCESS, 8));
    assert_eq!(put.put_result(), Some((0, 1, 0)));
    let master = ZkPaths::new(&root).broker_master(0);
    let zk_client = zk().client().await;
    assert!(zk_client.check_stat(&master).await.unwrap().is_some());
    let status = process.terminate().expect("SIGTERM");
    assert!(status.success(), "{status}");
    assert_eq!(zk_client.check_stat(&master).await.unwrap(), None);
}

fn metaq(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_metaq"));
    command
        .arg("bench")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn run(args: &[&str]) -> Output {
    tokio::time::timeout(Duration::from_secs(120), metaq(args).output())
        .await
        .expect("metaq bench finished within 120 s")
        .expect("metaq bench ran")
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `metaq bench --json ...`, which must succeed, and returns its document.
async fn bench_json(args: &[&str]) -> Value {
    let output = run(&[args, &["--json"]].concat()).await;
    assert!(output.status.success(), "{}", describe(&output));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", describe(&output)))
}

/// The figures every run reports are there and sane, with `sent` messages.
fn assert_figures(figures: &Value, sent: u64) {
    assert_eq!(figures["sent"], sent, "{figures}");
    assert_eq!(figures["failed"], 0, "{figures}");
    for key in ["msgs_per_sec", "mb_per_sec", "cpu_us_per_msg", "elapsed_ms"] {
        let value = figures[key].as_f64();
        assert!(value.is_some_and(|v| v > 0.0), "{key} in {figures}");
    }
    assert!(
        figures["peak_rss_kib"].as_u64().is_some_and(|k| k > 0),
        "{figures}"
    );
    let latency = &figures["latency_us"];
    let p = |key: &str| {
        latency[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {latency}"))
    };
    assert!(p("p50") > 0.0, "{latency}");
    assert!(p("p50") <= p("p90") && p("p90") <= p("p99"), "{latency}");
    assert!(p("p99") <= p("p999") && p("p999") <= p("max"), "{latency}");
}

/// The servers a bench started are gone once it exited.
fn assert_servers_gone(document: &Value, expected: usize) {
    let servers = document["servers"].as_array().expect("servers");
    assert_eq!(servers.len(), expected, "{document}");
    for server in servers {
        let pid = server["pid"].as_u64().expect("a pid");
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "server {pid} still running"
        );
    }
}

/// `--null`: its own ZooKeeper and null server, one run, every message
/// answered, no baseline, the child stopped at the end.
#[tokio::test]
async fn bench_null_throughput() {
    let document = bench_json(&["--null", "--count", "2000", "--runs", "1"]).await;
    assert_eq!(document["mode"], "throughput");
    assert_eq!(document["target"], "null");
    assert_eq!(document["count"], 2000);
    assert_eq!(document["window"], 10_000);
    assert_eq!(document["runs"].as_array().map(Vec::len), Some(1));
    assert_figures(&document["runs"][0]["metaq"], 2000);
    assert!(document["runs"][0]["raw"].is_null(), "{document}");
    assert!(document["ratio"].is_null(), "{document}");
    assert_figures(&document["median"]["metaq"], 2000);
    // The null server is a child process: its CPU is measured apart.
    let server_cpu = document["runs"][0]["metaq"]["server_cpu_us_per_msg"].as_f64();
    assert!(server_cpu.is_some_and(|cpu| cpu >= 0.0), "{document}");
    assert_eq!(document["sent"], 2000);
    assert_eq!(document["failed"], 0);
    assert_servers_gone(&document, 1);
}

/// `--local 1`: a development broker process; messages go through it.
#[tokio::test]
async fn bench_local_broker() {
    let document = bench_json(&["--local", "1", "--count", "1000", "--runs", "1"]).await;
    assert_eq!(document["target"], "local");
    assert_figures(&document["runs"][0]["metaq"], 1000);
    assert_servers_gone(&document, 1);
}

/// `--zk` with `--baseline raw`: the raw writer and metaq both go through
/// the test's null server, found in ZooKeeper; the ratio is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_zk_throughput_with_raw_baseline() {
    let root = unique_root();
    let server = null_server(&root, 2).await;
    let zk = zk().connect_string();
    let args = [
        "--zk",
        &zk,
        "--root",
        &root,
        "--count",
        "3000",
        "--runs",
        "1",
        "--baseline",
        "raw",
        "--window",
        "500",
        "--threads",
        "2",
    ];
    let document = bench_json(&args).await;
    assert_eq!(document["threads"], 2);
    assert_eq!(document["baseline"], "raw");
    let run = &document["runs"][0];
    assert_figures(&run["metaq"], 3000);
    assert_figures(&run["raw"], 3000);
    let ratio = document["ratio"]["msgs_per_sec"].as_f64().expect("a ratio");
    assert!(ratio > 0.0, "{document}");
    assert!(server.puts_answered() >= 6000, "{}", server.puts_answered());
    // Not started by the bench: its CPU is not known to it.
    assert!(
        run["metaq"]["server_cpu_us_per_msg"].is_null(),
        "{document}"
    );
    assert_servers_gone(&document, 0);
    server.stop().await;
}

/// Latency mode, two runs beside raw ping-pong: two results, medians and
/// latency ratios.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_latency_with_raw_ping_pong() {
    let root = unique_root();
    let server = null_server(&root, 1).await;
    let zk = zk().connect_string();
    let args = [
        "--zk",
        &zk,
        "--root",
        &root,
        "--mode",
        "latency",
        "--count",
        "200",
        "--runs",
        "2",
        "--baseline",
        "raw",
    ];
    let document = bench_json(&args).await;
    assert_eq!(document["mode"], "latency");
    let runs = document["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    for run in runs {
        assert_figures(&run["metaq"], 200);
        assert_figures(&run["raw"], 200);
    }
    assert_figures(&document["median"]["raw"], 200);
    for key in ["p50", "p99"] {
        let ratio = document["ratio"][key].as_f64();
        assert!(ratio.is_some_and(|r| r > 0.0), "{key} in {document}");
    }
    assert_eq!(document["sent"], 400);
    server.stop().await;
}

/// Transaction mode: messages count once committed, latency is per
/// transaction (of which there are 15 per run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_transactions() {
    let root = unique_root();
    let server = null_server(&root, 2).await;
    let zk = zk().connect_string();
    let args = [
        "--zk",
        &zk,
        "--root",
        &root,
        "--mode",
        "transaction",
        "--count",
        "300",
        "--batch",
        "20",
        "--runs",
        "1",
    ];
    let document = bench_json(&args).await;
    assert_eq!(document["mode"], "transaction");
    assert_eq!(document["batch"], 20);
    assert_eq!(document["latency_of"], "transaction");
    assert_figures(&document["runs"][0]["metaq"], 300);
    server.stop().await;
}

/// Batch mode: `send_all` calls of `--batch` messages (the last one
/// smaller), beside the raw writer; every message counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_send_all_batches_with_raw_baseline() {
    let root = unique_root();
    let server = null_server(&root, 2).await;
    let zk = zk().connect_string();
    let args = [
        "--zk",
        &zk,
        "--root",
        &root,
        "--mode",
        "batch",
        "--count",
        "2500",
        "--batch",
        "1000",
        "--window",
        "2000",
        "--baseline",
        "raw",
        "--runs",
        "1",
    ];
    let document = bench_json(&args).await;
    assert_eq!(document["mode"], "batch");
    assert_eq!(document["batch"], 1000);
    assert_eq!(document["latency_of"], "message");
    assert_figures(&document["runs"][0]["metaq"], 2500);
    assert_figures(&document["runs"][0]["raw"], 2500);
    assert!(
        document["ratio"]["msgs_per_sec"]
            .as_f64()
            .is_some_and(|r| r > 0.0),
        "{document}"
    );
    server.stop().await;
}

/// Bad arguments: a clear message, a failure status, no panic, and nothing
/// started (each is refused before ZooKeeper would be).
#[tokio::test]
async fn bench_refuses_bad_arguments() {
    let cases: [(&[&str], &str); 7] = [
        (&[], "--zk CONNECT, --local N or --null"),
        (&["--null", "--local", "1"], "exclude each other"),
        (&["--local", "0"], "at least 1 broker"),
        (
            &["--null", "--mode", "transaction", "--baseline", "raw"],
            "no transaction mode",
        ),
        (&["--null", "--count", "0"], "--count"),
        (&["--null", "--topic", "a b"], "--topic"),
        (&["--null", "--flush", "sometimes"], "--flush"),
    ];
    for (args, expected) in cases {
        let output = run(args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}: {}", describe(&output));
        assert!(stderr.contains(expected), "{args:?}: {}", describe(&output));
        assert!(
            !stderr.contains("panicked"),
            "{args:?}: {}",
            describe(&output)
        );
    }
}
