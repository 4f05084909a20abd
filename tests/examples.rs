//! Runs every example (`examples/*.rs`) as its own process against a
//! cluster each test starts: the shared ZooKeeper, in-process brokers under
//! a root of the test's own, and `METAQ_ZK`, `METAQ_ROOT` and `METAQ_TOPIC`
//! pointing there. Each must exit 0, say what it did, and the brokers must
//! hold what it says it sent, so an example that stops compiling, hangs,
//! fails or lies breaks this test.
//!
//! The examples are the binaries cargo builds next to this test binary
//! (`<target>/debug/examples/<name>`): a plain `cargo test` builds them,
//! `cargo test --test examples` alone does not (run `cargo build --examples`
//! first; the test says so when one is missing or older than its source).

mod producer_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use metaq_testkit::TestBroker;
use producer_support::{bodies, broker, unique_root, zk};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;

const TOPIC: &str = "demo";

/// Guards every wait on an example: a hang fails the test instead of
/// blocking it. Not a timing assertion: each example needs seconds at most.
const HANG: Duration = Duration::from_secs(120);

/// The compiled example `name`, next to this test binary.
fn example_binary(name: &str) -> PathBuf {
    // This test runs as <target>/<profile>/deps/examples-<hash>.
    let test_binary = std::env::current_exe().expect("the test binary's path");
    let profile_dir = test_binary
        .parent()
        .and_then(Path::parent)
        .expect("the test binary is in <target>/<profile>/deps");
    let binary = profile_dir.join("examples").join(name);
    let hint = "run `cargo build --examples` (a plain `cargo test` builds them too)";
    let built = modified(&binary).unwrap_or_else(|| {
        panic!(
            "example {name} is not built at {}: {hint}",
            binary.display()
        )
    });
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.rs"));
    let edited = modified(&source).expect("the example's source");
    // Running an old build would test code that is no longer there.
    assert!(
        built >= edited,
        "example {name} at {} is older than {}: {hint}",
        binary.display(),
        source.display()
    );
    binary
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// An example running as a child process. Dropping it (a finished test or
/// a panic) kills the child by its pid.
struct Running {
    name: &'static str,
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: JoinHandle<String>,
    /// Every stdout line read so far.
    lines: Vec<String>,
}

/// What a finished example printed, and how it ended.
struct Finished {
    name: &'static str,
    status: ExitStatus,
    lines: Vec<String>,
    stderr: String,
}

impl Running {
    /// Starts example `name` for `root` and `topic` with `args`.
    fn start(name: &'static str, root: &str, topic: &str, args: &[&str]) -> Running {
        let mut child = Command::new(example_binary(name))
            .args(args)
            .env("METAQ_ZK", zk().connect_string())
            .env("METAQ_ROOT", root)
            .env("METAQ_TOPIC", topic)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("example {name} did not start: {e}"));
        let stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
        // Read all along, so a full stderr pipe never stalls the example.
        let mut stderr = child.stderr.take().expect("piped");
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        Running {
            name,
            child,
            stdout,
            stderr,
            lines: Vec::new(),
        }
    }

    /// Reads stdout up to and including the first line for which `wanted`
    /// holds; fails if the example ends first.
    async fn read_until(&mut self, what: &str, wanted: impl Fn(&str) -> bool) {
        loop {
            let line = tokio::time::timeout(HANG, self.stdout.next_line())
                .await
                .unwrap_or_else(|_| panic!("{}: no line within {HANG:?}", self.name))
                .expect("stdout is readable");
            let Some(line) = line else {
                panic!(
                    "{} ended before printing {what}:\n{}",
                    self.name,
                    self.lines.join("\n")
                );
            };
            self.lines.push(line);
            if wanted(self.lines.last().unwrap()) {
                return;
            }
        }
    }

    /// Reads the rest of the output and waits for the exit.
    async fn finish(mut self) -> Finished {
        let rest = async {
            while let Some(line) = self.stdout.next_line().await.expect("stdout is readable") {
                self.lines.push(line);
            }
            let status = self.child.wait().await.expect("wait for the example");
            let stderr = (&mut self.stderr).await.expect("stderr reader");
            (status, stderr)
        };
        let (status, stderr) = tokio::time::timeout(HANG, rest)
            .await
            .unwrap_or_else(|_| panic!("{} did not end within {HANG:?}", self.name));
        Finished {
            name: self.name,
            status,
            lines: std::mem::take(&mut self.lines),
            stderr,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // By the child's own pid; an error means it already ended.
        let _ = self.child.start_kill();
    }
}

impl Finished {
    /// Fails the test, with the example's output, unless it exited 0.
    fn succeeded(self) -> Finished {
        assert!(self.status.success(), "{} failed:\n{self}", self.name);
        self
    }

    /// The one stdout line starting with `prefix`.
    fn line(&self, prefix: &str) -> &str {
        let found: Vec<&String> = self
            .lines
            .iter()
            .filter(|l| l.starts_with(prefix))
            .collect();
        match found.as_slice() {
            [line] => line,
            _ => panic!("{}: want one line starting {prefix:?}:\n{self}", self.name),
        }
    }
}

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stdout = self.lines.join("\n");
        write!(
            f,
            "{}\nstdout:\n{stdout}\nstderr:\n{}",
            self.status, self.stderr
        )
    }
}

/// Runs example `name` to its end.
async fn run(name: &'static str, root: &str, args: &[&str]) -> Finished {
    Running::start(name, root, TOPIC, args).finish().await
}

/// `count` brokers (ids 0, 1, …) serving the topic with two partitions each.
async fn brokers(root: &str, count: u32) -> Vec<TestBroker> {
    let mut started = Vec::new();
    for id in 0..count {
        started.push(broker(root, id, &[(TOPIC, 2)]).await);
    }
    started
}

/// The text of every stored message of the topic, on every broker.
fn stored_texts(brokers: &[TestBroker]) -> Vec<String> {
    brokers
        .iter()
        .flat_map(|b| bodies(b, TOPIC))
        .map(|body| String::from_utf8(body).expect("the examples send text"))
        .collect()
}

/// Stored messages per partition (`<broker>-<index>`, as the examples print it).
fn stored_per_partition(brokers: &[TestBroker]) -> BTreeMap<String, Vec<String>> {
    let mut stored: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for broker in brokers {
        for record in broker.records(Some(TOPIC)) {
            let partition = format!("{}-{}", broker.config().id, record.partition);
            let text = String::from_utf8_lossy(&record.body).into_owned();
            stored.entry(partition).or_default().push(text);
        }
    }
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_sends_300_messages_that_the_brokers_store_where_it_says() {
    let root = unique_root();
    let brokers = brokers(&root, 2).await;
    let out = run("quickstart", &root, &[]).await.succeeded();
    assert_eq!(out.line("sent "), "sent 300 messages");
    assert_eq!(out.line("closed"), "closed cleanly");
    let printed: BTreeMap<String, usize> = out
        .lines
        .iter()
        .filter_map(|l| l.strip_prefix("partition "))
        .map(|l| {
            let (partition, count) = l.split_once(": ").expect("partition P: N messages");
            let count = count
                .trim_end_matches(" messages")
                .parse()
                .expect("a count");
            (partition.to_owned(), count)
        })
        .collect();
    let stored: BTreeMap<String, usize> = stored_per_partition(&brokers)
        .into_iter()
        .map(|(partition, texts)| (partition, texts.len()))
        .collect();
    assert_eq!(printed, stored, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_example_that_fails_exits_non_zero_with_the_error() {
    let root = unique_root();
    let out = Running::start("quickstart", &root, "no spaces", &[])
        .finish()
        .await;
    assert!(
        !out.status.success(),
        "an invalid topic was accepted:\n{out}"
    );
    assert!(
        out.stderr.contains("no spaces"),
        "the error names the topic:\n{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_sends_100000_messages_and_reports_the_rate() {
    let root = unique_root();
    let brokers = brokers(&root, 2).await;
    let out = run("pipelined", &root, &[]).await.succeeded();
    let summary = out.line("sent ");
    assert!(
        summary.starts_with("sent 100000 messages to demo in ") && summary.ends_with(" msgs/s"),
        "{out}"
    );
    // At-least-once: a retried message may be stored twice, none may be missing.
    let distinct: BTreeSet<String> = stored_texts(&brokers).into_iter().collect();
    let sent: BTreeSet<String> = (0..100_000).map(|i| format!("message {i}")).collect();
    let missing: Vec<&String> = sent.difference(&distinct).take(5).collect();
    let unknown: Vec<&String> = distinct.difference(&sent).take(5).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "stored differs from sent: missing {missing:?}…, never sent {unknown:?}…"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_commits_three_messages_on_one_broker_and_rolls_one_back() {
    let root = unique_root();
    let brokers = brokers(&root, 2).await;
    let out = run("transaction", &root, &[]).await.succeeded();
    let commit_line = out
        .lines
        .iter()
        .find(|l| l.contains(": committed 3 messages on "))
        .unwrap_or_else(|| panic!("no commit line:\n{out}"));
    let pinned = commit_line.rsplit(' ').next().unwrap();
    assert!(
        out.lines
            .iter()
            .any(|l| l.ends_with(": rolled back 1 message")),
        "{out}"
    );
    assert!(
        brokers.iter().any(|b| b.uri().to_string() == pinned),
        "pinned to none of the brokers:\n{out}"
    );
    for broker in &brokers {
        let mut texts = stored_texts(std::slice::from_ref(broker));
        texts.sort();
        if broker.uri().to_string() == pinned {
            assert_eq!(
                texts,
                ["committed 0", "committed 1", "committed 2"],
                "{out}"
            );
        } else {
            assert!(texts.is_empty(), "broker {} stored {texts:?}", broker.uri());
        }
    }
}

/// Two-phase commit over both brokers: each stores exactly its two branch
/// messages, and nothing of the transaction rolled back after prepare.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xa_commits_a_branch_on_each_broker_and_rolls_one_back() {
    let root = unique_root();
    let brokers = brokers(&root, 2).await;
    let out = run("xa", &root, &[]).await.succeeded();
    for broker in &brokers {
        let id = broker.config().id;
        let mut texts = stored_texts(std::slice::from_ref(broker));
        texts.sort();
        assert_eq!(
            texts,
            [
                format!("xa broker {id} message 0"),
                format!("xa broker {id} message 1")
            ],
            "{out}"
        );
        assert!(
            out.lines
                .iter()
                .any(|l| l.ends_with(&format!("committed on {}", broker.uri()))),
            "{out}"
        );
    }
    assert!(
        out.lines
            .iter()
            .any(|l| l.ends_with("rolled back after prepare")),
        "{out}"
    );
}

/// The ordered producer: each key's four steps are stored on one partition,
/// in order, and the store ends empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_store_keeps_each_key_on_one_partition_in_order() {
    let root = unique_root();
    let brokers = brokers(&root, 2).await;
    let store = tempfile::tempdir().unwrap();
    let dir = store.path().display().to_string();
    let out = run("ordered_store", &root, &[&dir]).await.succeeded();
    assert_eq!(
        out.line("sent "),
        "sent 12 stored 0 replayed 0 held 0",
        "{out}"
    );
    let stored = stored_per_partition(&brokers);
    for key in ["order-1", "order-2", "order-3"] {
        let holding: Vec<Vec<&str>> = stored
            .values()
            .map(|texts| {
                texts
                    .iter()
                    .filter_map(|t| t.strip_prefix(key)?.strip_prefix(' '))
                    .collect::<Vec<&str>>()
            })
            .filter(|steps| !steps.is_empty())
            .collect();
        assert_eq!(holding.len(), 1, "{key} on one partition: {stored:?}");
        assert_eq!(
            holding[0],
            ["created", "paid", "packed", "shipped"],
            "{key}"
        );
    }
}

/// The one-way example: every one of its 10,000 messages is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_stores_ten_thousand_messages() {
    let root = unique_root();
    let brokers = brokers(&root, 2).await;
    let store = tempfile::tempdir().unwrap();
    let dir = store.path().display().to_string();
    let out = run("one_way", &root, &[&dir]).await.succeeded();
    let texts: BTreeSet<String> = stored_texts(&brokers).into_iter().collect();
    let expected: BTreeSet<String> = (0..10_000).map(|i| format!("one-way {i}")).collect();
    assert_eq!(texts, expected, "{out}");
    assert_eq!(stored_texts(&brokers).len(), 10_000, "{out}");
    assert!(out.line("accepted ").contains(" failed 0"), "{out}");
}

/// The fixed-server example sends ten messages to the broker it is given,
/// without ZooKeeper, and the broker stores them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_server_sends_to_the_broker_it_is_given() {
    let root = unique_root();
    let brokers = brokers(&root, 1).await;
    let uri = brokers[0].uri().to_string();
    let out = run("fixed_server", &root, &[&uri]).await.succeeded();
    let mut texts = stored_texts(&brokers);
    texts.sort();
    let mut expected: Vec<String> = (0..10).map(|i| format!("fixed {i}")).collect();
    expected.sort();
    assert_eq!(texts, expected, "{out}");
    assert_eq!(
        out.lines.iter().filter(|l| l.contains(&uri)).count(),
        10,
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_by_key_keeps_each_key_on_one_partition_in_order() {
    let root = unique_root();
    let brokers = brokers(&root, 2).await;
    let out = run("ordered_by_key", &root, &[]).await.succeeded();
    let stored = stored_per_partition(&brokers);
    let keys: Vec<&String> = out
        .lines
        .iter()
        .filter(|l| l.contains(" -> partition "))
        .collect();
    assert_eq!(keys.len(), 5, "{out}");
    for line in keys {
        // customer-N -> partition P (offsets …)
        let (key, rest) = line.split_once(" -> partition ").unwrap();
        let (partition, _offsets) = rest.split_once(" (").unwrap();
        assert!(
            !partition.contains(' '),
            "{key} went to more than one partition: {line}"
        );
        let in_partition: Vec<&String> = stored[partition]
            .iter()
            .filter(|text| text.starts_with(&format!("{key} event ")))
            .collect();
        let expected: Vec<String> = (0..4).map(|n| format!("{key} event {n}")).collect();
        assert_eq!(
            in_partition,
            expected.iter().collect::<Vec<_>>(),
            "{key} in {partition}"
        );
    }
    // Every stored message is in its key's partition: none elsewhere.
    assert_eq!(stored.values().map(Vec::len).sum::<usize>(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_selector_keeps_the_first_partition_for_urgent_messages() {
    let root = unique_root();
    let brokers = brokers(&root, 2).await;
    let out = run("custom_selector", &root, &[]).await.succeeded();
    assert_eq!(
        out.line("partition 0-0:"),
        "partition 0-0: 10 urgent, 0 bulk"
    );
    let stored = stored_per_partition(&brokers);
    for (partition, texts) in &stored {
        let urgent = texts.iter().filter(|t| t.contains("urgent ")).count();
        let bulk = texts.iter().filter(|t| t.contains("bulk ")).count();
        if partition == "0-0" {
            assert_eq!((urgent, bulk), (10, 0), "{partition}: {texts:?}");
        } else {
            assert_eq!(urgent, 0, "{partition}: {texts:?}");
            assert!(bulk > 0, "round-robin gave {partition} nothing: {stored:?}");
        }
        // The example prints what the brokers hold.
        let line = format!("partition {partition}: {urgent} urgent, {bulk} bulk");
        assert!(out.lines.contains(&line), "{line} missing:\n{out}");
    }
    assert_eq!(stored.len(), 4, "{stored:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_prints_brokers_joining_and_leaving() {
    let root = unique_root();
    let first = broker(&root, 0, &[(TOPIC, 2)]).await;
    // The time limit only bounds a hang; the example ends after two changes.
    let mut routes = Running::start(
        "routes",
        &root,
        TOPIC,
        &["--changes", "2", "--seconds", "120"],
    );
    let first_uri = first.uri().to_string();
    let snapshot = format!("  broker 0 {first_uri}: partitions 0-0 0-1");
    routes
        .read_until("the first snapshot", |l| l == snapshot)
        .await;

    let second = broker(&root, 1, &[(TOPIC, 2)]).await;
    let second_uri = second.uri().to_string();
    let joined = format!("change 1: broker 1 joined at {second_uri}");
    routes.read_until("broker 1 joining", |l| l == joined).await;
    first.shutdown().await; // leaves ZooKeeper

    let out = routes.finish().await.succeeded();
    let left = format!("change 2: broker 0 at {first_uri} left");
    assert!(out.lines.contains(&left), "{left} missing:\n{out}");
    let last_route = format!("  broker 1 {second_uri}: partitions 1-0 1-1");
    assert_eq!(out.lines[out.lines.len() - 2], last_route, "{out}");
    assert_eq!(out.lines.last().unwrap(), "saw 2 changes of demo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_reports_the_sends_and_each_brokers_health() {
    let root = unique_root();
    let brokers = brokers(&root, 2).await;
    let out = run("stats", &root, &[]).await.succeeded();
    assert_eq!(out.line("sent "), "sent 1000 messages to demo, 0 failed");
    assert!(
        out.line("stats: ")
            .starts_with("stats: sent 1000, failed 0 "),
        "{out}"
    );
    for broker in &brokers {
        let id = broker.config().id;
        let health = out.line(&format!("health: broker {id} {}: ", broker.uri()));
        assert!(health.contains(": 2 partitions, connected"), "{health}");
    }
    assert_eq!(stored_texts(&brokers).len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_registration_prints_what_a_broker_registered() {
    let root = unique_root();
    let broker = broker(&root, 0, &[(TOPIC, 2)]).await;
    let out = run("show_registration", &root, &[]).await.succeeded();
    let master = out.line(&format!("{root}/brokers/ids/0/master "));
    assert!(master.contains(" ephemeral "), "{master}");
    assert!(master.ends_with(&broker.uri().to_string()), "{master}");
    let topic = out.line(&format!("{root}/brokers/topics-pub/{TOPIC}/0-m "));
    assert!(topic.contains(" ephemeral "), "{topic}");

    // The ensemble and root as arguments (scripts/demo.sh calls it so) win
    // over the environment.
    let zk_connect = zk().connect_string();
    let mut by_args = Running::start(
        "show_registration",
        "/elsewhere",
        TOPIC,
        &[&zk_connect, &root],
    );
    by_args.read_until("the master node", |l| l == master).await;
    by_args.finish().await.succeeded();
}
