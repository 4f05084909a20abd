//! The `metaq` command line against a real ZooKeeper and development
//! brokers: `produce` (JSON lines, summary, exit status, `--stdin`) and
//! `routes`.

mod cli_support;
#[path = "../../../tests/producer_support/mod.rs"]
mod producer_support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use cli_support::*;
use producer_support::*;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

const TOPIC: &str = "cli";

/// `produce --json --count 30` over two brokers × 3 partitions: 30 result
/// lines, then a summary whose per-partition counts add up; exit 0; the
/// brokers hold the 30 messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_json_reports_each_message_and_a_summary() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 3)]).await;
    let b1 = broker(&root, 1, &[(TOPIC, 3)]).await;
    let zk = zk().connect_string();
    let output = run(metaq(&[
        "produce",
        "--zk",
        &zk,
        "--root",
        &root,
        "--topic",
        TOPIC,
        "--count",
        "30",
        "--payload",
        "hello",
        "--json",
    ]))
    .await;
    assert!(output.status.success(), "{}", describe(&output));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 31, "{}", describe(&output));
    let mut offsets = BTreeMap::<String, Vec<i64>>::new();
    let mut numbers = Vec::new();
    for line in &lines[..30] {
        let partition = line["partition"].as_str().expect("a partition").to_owned();
        assert!(line["id"].is_i64(), "{line}");
        // The id again as a string, exact where JSON numbers are doubles.
        assert_eq!(
            line["id_str"].as_str().map(str::parse::<i64>),
            Some(Ok(line["id"].as_i64().unwrap())),
            "{line}"
        );
        numbers.push(line["line"].as_u64().expect("a message number"));
        offsets
            .entry(partition)
            .or_default()
            .push(line["offset"].as_i64().expect("an offset"));
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=30).collect::<Vec<u64>>());
    let summary = &lines[30];
    assert_eq!(summary["sent"], 30, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert!(
        summary["elapsed_ms"].is_u64() && summary["msgs_per_sec"].is_number(),
        "{summary}"
    );
    let per_partition = summary["per_partition"].as_object().expect("per_partition");
    assert_eq!(per_partition.len(), 6, "{summary}");
    for (partition, count) in per_partition {
        assert_eq!(count, 5, "{summary}");
        assert_eq!(offsets[partition].len(), 5);
    }
    let stored = [bodies(&b0, TOPIC), bodies(&b1, TOPIC)].concat();
    assert_eq!(stored, vec![b"hello".to_vec(); 30]);
}

/// Without `--json`: a human summary; `--key` with the key-hash selector
/// puts everything on one partition; `--size` sets the payload size;
/// `--attribute` is stored in front of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_with_key_size_and_attribute() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 4)]).await;
    let zk = zk().connect_string();
    let output = run(metaq(&[
        "produce",
        "--zk",
        &zk,
        "--root",
        &root,
        "--topic",
        TOPIC,
        "--count",
        "12",
        "--size",
        "100",
        "--selector",
        "key-hash",
        "--key",
        "customer-7",
        "--attribute",
        "tag",
    ]))
    .await;
    assert!(output.status.success(), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("sent 12 failed 0 in "), "{stdout}");
    let records = b0.records(Some(TOPIC));
    assert_eq!(records.len(), 12);
    let partition = records[0].partition;
    assert!(records.iter().all(|r| r.partition == partition));
    let mut body = b"\0\0\0\x03tag".to_vec();
    body.extend(vec![b'x'; 100]);
    assert!(records
        .iter()
        .all(|r| r.flag & 1 == 1 && r.body[..] == body[..]));
}

/// `--stdin` sends one message per line, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_stdin_sends_one_message_per_line() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let zk = zk().connect_string();
    let mut command = metaq(&[
        "produce",
        "--zk",
        &zk,
        "--root",
        &root,
        "--topic",
        TOPIC,
        "--stdin",
        "--json",
        "--concurrency",
        "1",
    ]);
    command.stdin(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"first line\nsecond\n\nthird {json}\n")
        .await
        .unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 5, "{}", describe(&output));
    assert_eq!(lines[4]["sent"], 4);
    let stored: Vec<String> = bodies(&b0, TOPIC)
        .into_iter()
        .map(|b| String::from_utf8(b).unwrap())
        .collect();
    assert_eq!(stored, ["first line", "second", "", "third {json}"]);
}

/// A topic no broker serves: an error on stderr, a non-zero exit, no panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_to_an_unserved_topic_fails() {
    init_tracing();
    let root = unique_root();
    let _b0 = broker(&root, 0, &[("other", 1)]).await;
    let zk = zk().connect_string();
    let output = run(metaq(&[
        "produce", "--zk", &zk, "--root", &root, "--topic", "nobody", "--count", "3", "--json",
    ]))
    .await;
    assert!(!output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("nobody") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

/// A failed message is reported as a JSON line with its kind, and the exit
/// status is non-zero; `--stats` adds the producer's counters to the summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_reports_failures_and_exits_non_zero() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    b0.faults()
        .fail_next_puts(2, metaq::protocol::StatusCode(500));
    let zk = zk().connect_string();
    let output = run(metaq(&[
        "produce",
        "--zk",
        &zk,
        "--root",
        &root,
        "--topic",
        TOPIC,
        "--count",
        "5",
        "--json",
        "--concurrency",
        "1",
        "--stats",
    ]))
    .await;
    assert!(!output.status.success(), "{}", describe(&output));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 6, "{}", describe(&output));
    let rejected: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "rejected").collect();
    assert_eq!(rejected.len(), 2, "{}", describe(&output));
    assert!(rejected[0]["error"].as_str().unwrap().contains("500"));
    assert_eq!(lines[5]["sent"], 3);
    assert_eq!(lines[5]["failed"], 2);
    let stats = &lines[5]["stats"];
    assert_eq!(stats["sent"], 3, "{stats}");
    assert_eq!(stats["failed_rejected"], 2, "{stats}");
    assert_eq!(stats["failed_maybe_sent"], 0, "{stats}");
    assert_eq!(stats["in_flight"], 0, "{stats}");
    assert_eq!(stats["latency_us"]["count"], 3, "{stats}");
    let brokers = stats["brokers"].as_array().expect("brokers");
    assert_eq!(brokers.len(), 1, "{stats}");
    assert_eq!(brokers[0]["uri"], b0.uri().to_string(), "{stats}");
    assert_eq!(brokers[0]["sent"], 3, "{stats}");
    assert_eq!(brokers[0]["failed"], 2, "{stats}");
}

/// With stderr not a terminal, `produce` prints a progress line each
/// interval, from the producer's own counters; `--progress-ms 0` prints none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_prints_progress_lines_when_stderr_is_not_a_terminal() {
    init_tracing();
    let root = unique_root();
    let _b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let zk = zk().connect_string();
    // 40 messages at 50 a second: about 0.8 s, several 100 ms intervals.
    let paced = |progress: &'static str| {
        let args = [
            "produce",
            "--zk",
            &zk,
            "--root",
            &root,
            "--topic",
            TOPIC,
            "--count",
            "40",
            "--rate",
            "50",
            "--progress-ms",
            progress,
        ];
        metaq(&args)
    };
    let output = run(paced("100")).await;
    assert!(output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let progress: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("metaq produce: "))
        .collect();
    assert!(progress.len() >= 2, "{stderr}");
    assert!(
        progress[0].contains(" sent (") && progress[0].contains("in flight"),
        "{stderr}"
    );
    // The counts come from the producer: they never go down.
    let sent: Vec<u64> = progress
        .iter()
        .map(|l| {
            let after = l.split(": ").nth(2).expect("a count");
            after.split(' ').next().unwrap().parse().expect("a number")
        })
        .collect();
    assert!(sent.windows(2).all(|w| w[0] <= w[1]), "{stderr}");
    assert!(*sent.last().unwrap() <= 40, "{stderr}");

    let output = run(paced("0")).await;
    assert!(output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("metaq produce: "), "{stderr}");
}

/// Without `--zk` and `--root`, the cluster comes from `METAQ_ZK` and
/// `METAQ_ROOT`; with neither, `--zk` is asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_can_come_from_the_environment() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 2)]).await;
    let zk = zk().connect_string();
    let mut command = metaq(&["routes", "--topic", TOPIC, "--json"]);
    command.env("METAQ_ZK", &zk).env("METAQ_ROOT", &root);
    let output = run(command).await;
    assert!(output.status.success(), "{}", describe(&output));
    let lines = json_lines(&output);
    assert_eq!(lines[0]["brokers"]["0"], b0.uri().to_string());

    // A flag wins over the environment.
    let mut command = metaq(&["routes", "--topic", TOPIC, "--json", "--root", &root]);
    command.env("METAQ_ZK", &zk).env("METAQ_ROOT", "/elsewhere");
    let output = run(command).await;
    assert!(output.status.success(), "{}", describe(&output));

    let output = run(metaq(&["routes", "--topic", TOPIC])).await;
    assert!(!output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--zk"), "{stderr}");
}

/// `produce --server meta://host:port` sends to that broker without
/// ZooKeeper, the broker choosing partitions; `--server` and `--zk` exclude
/// each other, and one of them (or `METAQ_ZK`) is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_to_a_fixed_server_without_zookeeper() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 4, &[(TOPIC, 3)]).await;
    let server = b0.uri().to_string();
    let output = run(metaq(&[
        "produce",
        "--server",
        &server,
        "--topic",
        TOPIC,
        "--count",
        "30",
        "--payload",
        "fixed",
        "--json",
    ]))
    .await;
    assert!(output.status.success(), "{}", describe(&output));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 31, "{}", describe(&output));
    let partitions: std::collections::BTreeSet<&str> = lines[..30]
        .iter()
        .map(|line| line["partition"].as_str().expect("a partition"))
        .collect();
    // Broker id 0 (unknown without ZooKeeper), the index the broker chose.
    assert!(
        partitions.iter().all(|p| ["0-0", "0-1", "0-2"].contains(p)),
        "{partitions:?}"
    );
    assert_eq!(lines[30]["sent"], 30, "{}", lines[30]);
    assert_eq!(bodies(&b0, TOPIC).len(), 30);

    // Both: refused before anything is sent.
    let zk = zk().connect_string();
    let output = run(metaq(&[
        "produce", "--server", &server, "--zk", &zk, "--topic", TOPIC,
    ]))
    .await;
    assert!(!output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--server") && stderr.contains("--zk"),
        "{stderr}"
    );
    assert_eq!(bodies(&b0, TOPIC).len(), 30);

    // METAQ_ZK in the environment does not stand in the way of --server.
    let mut command = metaq(&["produce", "--server", &server, "--topic", TOPIC]);
    command.env("METAQ_ZK", "127.0.0.1:1");
    let output = run(command).await;
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(bodies(&b0, TOPIC).len(), 31);

    // Neither: --zk is asked for; METAQ_ZK stands for it.
    let output = run(metaq(&["produce", "--topic", TOPIC])).await;
    assert!(!output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--zk"), "{stderr}");
    let mut command = metaq(&["produce", "--root", &root, "--topic", TOPIC]);
    command.env("METAQ_ZK", &zk);
    let output = run(command).await;
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(bodies(&b0, TOPIC).len(), 32);

    // An address that is not meta://host:port.
    let output = run(metaq(&[
        "produce",
        "--server",
        "127.0.0.1:8123",
        "--topic",
        TOPIC,
    ]))
    .await;
    assert!(!output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("meta://host:port"), "{stderr}");
}

/// `routes --json` prints the brokers and partitions; the text form names
/// each broker with its partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_prints_brokers_and_partitions() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 2)]).await;
    let b1 = broker(&root, 1, &[(TOPIC, 3)]).await;
    let zk = zk().connect_string();
    let output = run(metaq(&[
        "routes", "--zk", &zk, "--root", &root, "--topic", TOPIC, "--json",
    ]))
    .await;
    assert!(output.status.success(), "{}", describe(&output));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 1, "{}", describe(&output));
    let route = &lines[0];
    assert_eq!(route["topic"], TOPIC);
    assert_eq!(route["brokers"]["0"], b0.uri().to_string());
    assert_eq!(route["brokers"]["1"], b1.uri().to_string());
    assert_eq!(
        route["partitions"],
        serde_json::json!(["0-0", "0-1", "1-0", "1-1", "1-2"])
    );

    let output = run(metaq(&[
        "routes", "--zk", &zk, "--root", &root, "--topic", TOPIC,
    ]))
    .await;
    assert!(output.status.success(), "{}", describe(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(&format!("broker 0 {}: 0-0 0-1", b0.uri())),
        "{text}"
    );
    assert!(
        text.contains(&format!("broker 1 {}: 1-0 1-1 1-2", b1.uri())),
        "{text}"
    );
}

/// `routes --watch` prints a new snapshot at every change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_watch_prints_each_change() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    init_tracing();
    let root = unique_root();
    let _b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let zk = zk().connect_string();
    let mut child = metaq(&[
        "routes", "--zk", &zk, "--root", &root, "--topic", TOPIC, "--json", "--watch",
    ])
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    async fn next<R: tokio::io::AsyncBufRead + Unpin>(lines: &mut tokio::io::Lines<R>) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("a snapshot within 20 s")
            .unwrap()
            .expect("a line");
        serde_json::from_str(&line).unwrap()
    }
    assert_eq!(
        next(&mut lines).await["partitions"],
        serde_json::json!(["0-0"])
    );
    let _b1 = broker(&root, 1, &[(TOPIC, 1)]).await;
    assert_eq!(
        next(&mut lines).await["partitions"],
        serde_json::json!(["0-0", "1-0"])
    );
    child.kill().await.unwrap();
}

/// `produce --oneway`: no line per message, one summary from the one-way
/// producer's counters; every message stored. With a broker rejecting
/// puts, the failures are counted by kind and the exit status is non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_oneway_prints_the_one_way_summary() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 2)]).await;
    let zk = zk().connect_string();
    let produce = |count: &'static str| {
        metaq(&[
            "produce",
            "--zk",
            &zk,
            "--root",
            &root,
            "--topic",
            TOPIC,
            "--count",
            count,
            "--payload",
            "fire",
            "--oneway",
            "--retries",
            "0",
            "--json",
        ])
    };
    let output = run(produce("2000")).await;
    assert!(output.status.success(), "{}", describe(&output));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 1, "only the summary: {}", describe(&output));
    let summary = &lines[0];
    assert_eq!(summary["sent"], 2000, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(summary["one_way"]["accepted"], 2000, "{summary}");
    assert_eq!(summary["one_way"]["sent"], 2000, "{summary}");
    assert_eq!(summary["one_way"]["pending"], 0, "{summary}");
    assert_eq!(bodies(&b0, TOPIC), vec![b"fire".to_vec(); 2000]);

    b0.faults()
        .fail_next_puts(3, metaq::protocol::StatusCode(500));
    let output = run(produce("10")).await;
    assert!(!output.status.success(), "{}", describe(&output));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 1, "{}", describe(&output));
    let summary = &lines[0];
    assert_eq!(summary["sent"], 7, "{summary}");
    assert_eq!(summary["failed"], 3, "{summary}");
    assert_eq!(summary["one_way"]["failed_rejected"], 3, "{summary}");
    assert_eq!(bodies(&b0, TOPIC).len(), 2007);
}
