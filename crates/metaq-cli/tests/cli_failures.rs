//! How `metaq` fails, against a real ZooKeeper and development brokers:
//! bad arguments refused before connecting, an oversized payload refused
//! once, unserved topics and wrong roots told apart (exit 2), and Ctrl-C
//! (exit 130 with a summary).

mod cli_support;
#[path = "../../../tests/producer_support/mod.rs"]
mod producer_support;

use std::process::Output;

use cli_support::*;
use producer_support::*;
use serde_json::Value;

const TOPIC: &str = "failures";

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Exit status 1 and exactly one line on stderr containing `reason`.
fn assert_refused(output: &Output, reason: &str) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(1), "{}", describe(output));
    assert_eq!(text.lines().count(), 1, "{}", describe(output));
    assert!(
        text.contains(reason),
        "want {reason:?}: {}",
        describe(output)
    );
    assert!(!text.contains("panicked"), "{}", describe(output));
}

/// Each bad combination is refused with one line naming it, before
/// ZooKeeper is contacted: the connect string points at a closed port,
/// which would otherwise fail with a ZooKeeper error after 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_refused_before_connecting() {
    let cases: &[(&[&str], &str)] = &[
        (&["--concurrency", "0"], "--concurrency must be at least 1"),
        (&["--rate", "0"], "--rate must be a positive number"),
        (&["--rate", "-5"], "--rate must be a positive number"),
        (&["--rate", "NaN"], "--rate must be a positive number"),
        (&["--rate", "inf"], "--rate must be a positive number"),
        (&["--transaction", "0"], "--transaction must be at least 1"),
        (&["--key", "k"], "--key needs --selector key-hash"),
        (
            &["--selector", "key-hash"],
            "--selector key-hash needs --key or --key-delimiter",
        ),
        (
            &["--stdin", "--key-delimiter", ":"],
            "--key-delimiter needs --selector key-hash",
        ),
        (
            &["--stdin", "--delimiter", "ab"],
            "--delimiter must be one byte",
        ),
        (&["--stdin", "--delimiter", "\\q"], "unknown escape"),
    ];
    for (extra, reason) in cases {
        let mut args = vec!["produce", "--zk", "127.0.0.1:1", "--topic", TOPIC];
        args.extend_from_slice(extra);
        let output = run(metaq(&args)).await;
        assert_refused(&output, reason);
        assert!(
            !stderr(&output).contains("ZooKeeper"),
            "{}",
            describe(&output)
        );
    }
}

/// `--size` over the maximum message size: one refusal, not one error per
/// message, and nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_payload_is_refused_once() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let zk = zk().connect_string();
    let output = run(metaq(&[
        "produce", "--zk", &zk, "--root", &root, "--topic", TOPIC, "--size", "3000000", "--count",
        "100",
    ]))
    .await;
    assert_refused(&output, "over the 2097152-byte maximum message size");
    assert!(b0.records(Some(TOPIC)).is_empty());
}

/// `routes` with a topic that cannot exist: exit 1, the reason, no output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_refuses_an_invalid_topic() {
    let zk = zk().connect_string();
    let output = run(metaq(&["routes", "--zk", &zk, "--topic", "my topic"])).await;
    assert_refused(&output, "invalid topic \"my topic\"");
    assert!(output.stdout.is_empty(), "{}", describe(&output));
}

/// `routes` of an unserved topic exits 2 naming the node searched under an
/// existing root; a wrong root exits 2 saying that the root does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_tells_an_unserved_topic_from_a_wrong_root() {
    init_tracing();
    let root = unique_root();
    let _b0 = broker(&root, 0, &[("other", 1)]).await;
    let zk = zk().connect_string();
    let output = run(metaq(&[
        "routes", "--zk", &zk, "--root", &root, "--topic", "nobody", "--json",
    ]))
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(output.stdout.is_empty(), "{}", describe(&output));
    assert_eq!(
        stderr(&output),
        format!(
            "metaq: topic \"nobody\" is not served: no broker under {root}/brokers/topics-pub/nobody (root {root} exists)\n"
        )
    );

    let wrong = unique_root();
    let output = run(metaq(&[
        "routes", "--zk", &zk, "--root", &wrong, "--topic", "other",
    ]))
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let text = stderr(&output);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with(&format!("metaq: root {wrong} does not exist in ZooKeeper")),
        "{text}"
    );
}

/// `produce` to an unserved topic, or under a wrong root, says which after
/// `--wait-ms`, and exits 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_tells_an_unserved_topic_from_a_wrong_root() {
    init_tracing();
    let root = unique_root();
    let _b0 = broker(&root, 0, &[("other", 1)]).await;
    let zk = zk().connect_string();
    let wrong = unique_root();
    for (root, topic, reason) in [
        (
            &root,
            "nobody",
            format!("no broker under {root}/brokers/topics-pub/nobody (root {root} exists)"),
        ),
        (
            &wrong,
            "other",
            format!("root {wrong} does not exist in ZooKeeper"),
        ),
    ] {
        let output = run(metaq(&[
            "produce",
            "--zk",
            &zk,
            "--root",
            root,
            "--topic",
            topic,
            "--wait-ms",
            "300",
        ]))
        .await;
        assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
        let text = stderr(&output);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains(&reason), "want {reason:?}: {text}");
    }
}

/// Ctrl-C while standard input is still open: reading stops, the sends in
/// flight finish, the summary is printed, and the exit status is 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_stops_reading_and_prints_the_summary() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let zk = zk().connect_string();
    let mut child = Running::start(metaq(&[
        "produce", "--zk", &zk, "--root", &root, "--topic", TOPIC, "--stdin", "--json",
    ]));
    child.write(b"a\nb\n").await;
    child.next_json().await;
    child.next_json().await;
    interrupt(child.pid());
    // stdin stays open: only the interrupt can end the command.
    let (rest, status, stderr) = child.finish_keeping_stdin().await;
    assert_eq!(status.code(), Some(130), "{status}: {stderr}");
    assert_eq!(rest.len(), 1, "{rest:?}");
    let summary: Value = serde_json::from_str(&rest[0]).unwrap();
    assert_eq!(summary["interrupted"], true, "{summary}");
    assert_eq!(summary["sent"], 2, "{summary}");
    assert_eq!(summary["unanswered"], 0, "{summary}");
    assert_eq!(bodies(&b0, TOPIC).len(), 2);
}

/// Ctrl-C during a rate-limited `--count`: it stops generating, and the
/// summary counts exactly what the broker stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_stops_a_rate_limited_count() {
    init_tracing();
    let root = unique_root();
    let b0 = broker(&root, 0, &[(TOPIC, 2)]).await;
    let zk = zk().connect_string();
    let mut child = Running::start(metaq(&[
        "produce", "--zk", &zk, "--root", &root, "--topic", TOPIC, "--count", "1000", "--rate",
        "20", "--json",
    ]));
    child.next_json().await;
    interrupt(child.pid());
    let (rest, status, stderr) = child.finish().await;
    assert_eq!(status.code(), Some(130), "{status}: {stderr}");
    let summary: Value = serde_json::from_str(rest.last().expect("a summary")).unwrap();
    assert_eq!(summary["interrupted"], true, "{summary}");
    let sent = summary["sent"].as_u64().unwrap();
    assert!((1..1000).contains(&sent), "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(bodies(&b0, TOPIC).len() as u64, sent, "{summary}");
}

/// A reader of `--json` that goes away (`metaq produce --json | head -1`)
/// ends the command quietly with 141 (128 + SIGPIPE), as a shell tool the
/// signal ended, not with a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_the_command_without_a_panic() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    init_tracing();
    let root = unique_root();
    let _b0 = broker(&root, 0, &[(TOPIC, 1)]).await;
    let zk = zk().connect_string();
    let mut command = metaq(&[
        "produce", "--zk", &zk, "--root", &root, "--topic", TOPIC, "--count", "5000", "--json",
    ]);
    command.stdin(std::process::Stdio::null());
    let mut child = command.spawn().expect("metaq starts");
    let mut stderr = child.stderr.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = stdout.next_line().await.unwrap().expect("a first line");
    assert!(first.contains("\"line\""), "{first}");
    drop(stdout); // as `head -1` exits
    let mut text = String::new();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        stderr.read_to_string(&mut text).await.unwrap();
        child.wait().await.unwrap()
    })
    .await
    .expect("metaq ended within 60 s of losing its reader");
    assert_eq!(ended.code(), Some(141), "{ended}: {text}");
    assert!(!text.contains("panicked"), "{text}");
}
