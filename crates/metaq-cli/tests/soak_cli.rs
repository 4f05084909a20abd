//! `metaq soak`, the real binary in a short run: its own ZooKeeper and
//! three `metaq-broker` processes, brokers killed and restarted and
//! ZooKeeper frozen while a paced load runs, then every data directory
//! checked. Asserted through `--json`: nothing acknowledged was lost, no
//! transaction broke its promise, faults were injected, and every process
//! the soak started is gone once it exits.

use std::collections::HashMap;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// The soak's own length plus start-up (ZooKeeper's JVM, three brokers),
/// draining the sends in flight, a restart under way and the check, on a
/// loaded machine: a bound to detect a hang, not a speed assertion.
const LIMIT: Duration = Duration::from_secs(150);

async fn soak(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_metaq"));
    command
        .arg("soak")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    tokio::time::timeout(LIMIT, command.output())
        .await
        .expect("metaq soak finished within its limit")
        .expect("metaq soak ran")
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn count(document: &Value, pointer: &str) -> u64 {
    document
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} is a count in {document}"))
}

/// The processes the soak said it started, as `(pid, dir)`: ZooKeeper
/// with its dir, each broker with its data dir, every restart with the
/// data dir of the broker it restarted. From its stderr lines
/// `zookeeper: pid 12, 127.0.0.1:2181, DIR`, `broker 0: pid 34,
/// 127.0.0.1:8123, DIR` and `restarted broker 0 on port 8123 (pid 56) ...`.
fn started(stderr: &str) -> Vec<(u32, String)> {
    let mut data_dirs = HashMap::new();
    let mut started = Vec::new();
    for line in stderr.lines() {
        let Some((_, said)) = line.split_once("] ") else {
            continue;
        };
        if let Some(rest) = said.strip_prefix("zookeeper: pid ") {
            let fields: Vec<&str> = rest.split(", ").collect();
            started.push((number(fields[0]), fields[2].to_owned()));
        } else if let Some(rest) = said.strip_prefix("broker ") {
            let (id, rest) = rest.split_once(": pid ").expect("broker N: pid P, ...");
            let fields: Vec<&str> = rest.split(", ").collect();
            data_dirs.insert(id.to_owned(), fields[2].to_owned());
            started.push((number(fields[0]), fields[2].to_owned()));
        } else if let Some(rest) = said.strip_prefix("restarted broker ") {
            let id = rest.split(' ').next().expect("an id");
            let pid = rest.split("(pid ").nth(1).expect("(pid P)");
            started.push((number(pid), data_dirs[id].clone()));
        }
    }
    started
}

fn number(text: &str) -> u32 {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("a pid in {text:?}"))
}

/// Whether `pid` is still the process started with `dir` on its command
/// line (pids are reused: another process with that pid is not ours).
fn still_running(pid: u32, dir: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(dir))
}

/// Twenty seconds of chaos: the soak passes (exit 0) and says so in its
/// JSON, with messages acknowledged, none lost, every committed transaction
/// whole and faults injected; it stopped every process it started.
#[tokio::test]
async fn a_short_soak_loses_nothing_under_faults() {
    let output = soak(&["--seconds", "20", "--json"]).await;
    assert!(output.status.success(), "{}", describe(&output));
    let document: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", describe(&output)));
    assert_eq!(document["ok"], true, "{document}");
    assert!(count(&document, "/acked") > 0, "{document}");
    assert_eq!(count(&document, "/lost"), 0, "{document}");
    assert!(count(&document, "/faults/total") > 0, "{document}");
    assert_eq!(count(&document, "/violation_count"), 0, "{document}");
    assert_eq!(count(&document, "/unfinished"), 0, "{document}");
    let transactions = &document["transactions"];
    assert!(count(transactions, "/committed") > 0, "{document}");
    assert_eq!(
        count(transactions, "/committed_incomplete"),
        0,
        "{document}"
    );
    assert_eq!(
        count(transactions, "/visible_not_committed"),
        0,
        "{document}"
    );
    assert_eq!(count(transactions, "/in_doubt_partial"), 0, "{document}");
    // Everything the brokers stored is accounted for.
    assert_eq!(count(&document, "/stored/foreign"), 0, "{document}");
    assert_eq!(count(&document, "/stored/bad_checksums"), 0, "{document}");
    assert!(count(&document, "/stored/records") >= count(&document, "/acked"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let processes = started(&stderr);
    assert!(
        processes.len() >= 4,
        "ZooKeeper and three brokers: {stderr}"
    );
    for (pid, dir) in processes {
        assert!(!dir.is_empty() && pid > 0, "{stderr}");
        assert!(!still_running(pid, &dir), "pid {pid} ({dir}) still running");
    }
}

/// Ctrl-C a few seconds into a ten-minute soak: it stops the load and the
/// cluster, still checks what was stored and reports it (interrupted,
/// nothing lost), exits 130, and leaves no process it started behind.
#[tokio::test]
async fn an_interrupted_soak_stops_everything_and_still_checks() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_metaq"))
        .args(["soak", "--minutes", "10", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("metaq soak starts");
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    let (sending_tx, sending) = tokio::sync::oneshot::channel();
    let stderr = tokio::spawn(async move {
        let mut sending_tx = Some(sending_tx);
        let mut text = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("] sending ") {
                sending_tx.take().map(|tx| tx.send(()));
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    tokio::time::timeout(LIMIT, sending)
        .await
        .expect("the load began within the limit")
        .expect("the soak said it began sending");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = child.id().expect("still running").to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill runs");
    assert!(signalled.success());
    let output = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .expect("the interrupted soak ended within the limit")
        .expect("metaq soak ran");
    let stderr = stderr.await.expect("stderr was read");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let context = format!(
        "status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert_eq!(output.status.code(), Some(130), "{context}");
    let document: Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(document["interrupted"], true, "{context}");
    assert_eq!(document["ok"], true, "{context}");
    assert!(
        document["ran_secs"].as_f64().is_some_and(|s| s < 120.0),
        "{context}"
    );
    assert!(count(&document, "/acked") > 0, "{context}");
    assert_eq!(count(&document, "/lost"), 0, "{context}");
    assert!(
        stderr.contains("interrupted: stopping the load"),
        "{context}"
    );
    let processes = started(&stderr);
    assert!(
        processes.len() >= 4,
        "ZooKeeper and three brokers: {context}"
    );
    for (pid, dir) in processes {
        assert!(!still_running(pid, &dir), "pid {pid} ({dir}) still running");
    }
}

/// Arguments that cannot make a soak are refused before anything starts.
#[tokio::test]
async fn refuses_a_soak_that_cannot_keep_a_broker_up() {
    for (args, expected) in [
        (&["--brokers", "1"][..], "--brokers must be 2 to 16"),
        (&["--seconds", "0"], "must be positive"),
        (&["--rate", "0"], "--rate must be"),
        (&["--minutes", "1", "--seconds", "5"], "cannot be used with"),
    ] {
        let output = soak(args).await;
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            describe(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}: {}", describe(&output));
    }
}
