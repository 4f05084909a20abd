//! The local message store on real files: order across reopening,
//! acknowledgements, segment rolling, the bounds, and recovery from torn
//! tails, damaged bytes and a killed process.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metaq::local_store::{FsyncPolicy, LocalStore, LocalStoreConfig, StoredMessage};
use metaq::{Error, Message};

const TOPIC: &str = "orders";
const PART: &str = "0-1";

fn fast() -> LocalStoreConfig {
    LocalStoreConfig::default().fsync(FsyncPolicy::Never)
}

fn message(i: usize) -> Message {
    let m = Message::new(TOPIC, format!("payload-{i}"));
    match i % 3 {
        0 => m,
        1 => m.with_attribute(format!("tag{i}")),
        _ => m.with_attribute("t").with_key(format!("key-{i}")),
    }
}

/// Takes every message out of the queue, acknowledging each.
fn drain(store: &LocalStore, topic: &str, partition: &str) -> Vec<StoredMessage> {
    let mut out = Vec::new();
    while let Some(front) = store.peek_front(topic, partition).unwrap() {
        assert!(store.ack_front(topic, partition, front.seq).unwrap());
        out.push(front);
    }
    out
}

fn payloads(stored: &[StoredMessage]) -> Vec<String> {
    stored
        .iter()
        .map(|s| String::from_utf8(s.message.payload().to_vec()).unwrap())
        .collect()
}

fn expected(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("payload-{i}")).collect()
}

fn queue_dir(root: &Path) -> PathBuf {
    root.join(format!("{TOPIC}@{PART}"))
}

fn segments(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = fs::read_dir(queue_dir(root))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

/// A tracing subscriber's output, kept for assertions.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

fn with_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    (out, text)
}

#[test]
fn messages_come_back_in_order_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path(), LocalStoreConfig::default()).unwrap();
    for i in 0..100 {
        assert_eq!(store.append(PART, &message(i)).unwrap(), i as u64);
    }
    drop(store);
    let store = LocalStore::open(dir.path(), LocalStoreConfig::default()).unwrap();
    assert_eq!(store.len(TOPIC, PART), 100);
    let got = drain(&store, TOPIC, PART);
    assert_eq!(
        got.iter().map(|s| s.seq).collect::<Vec<_>>(),
        (0..100).collect::<Vec<_>>()
    );
    for (i, stored) in got.iter().enumerate() {
        assert_eq!(stored.message, message(i), "message {i}");
    }
    assert!(store.is_empty());
    assert_eq!(store.total_bytes(), 0);
}

#[test]
fn acknowledged_messages_stay_gone_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path(), fast()).unwrap();
    for i in 0..50 {
        store.append(PART, &message(i)).unwrap();
    }
    for i in 0..20 {
        assert_eq!(store.pop_front(TOPIC, PART).unwrap().unwrap().seq, i);
    }
    // A stale or wrong sequence number acknowledges nothing.
    assert!(!store.ack_front(TOPIC, PART, 5).unwrap());
    assert!(!store.ack_front(TOPIC, PART, 21).unwrap());
    drop(store);
    let store = LocalStore::open(dir.path(), fast()).unwrap();
    assert_eq!(store.len(TOPIC, PART), 30);
    // Sequence numbers go on where they stopped.
    assert_eq!(store.append(PART, &message(50)).unwrap(), 50);
    assert_eq!(payloads(&drain(&store, TOPIC, PART)), expected(20..51));
    drop(store);
    // Everything acknowledged, nothing left on reopening; numbering goes on.
    let store = LocalStore::open(dir.path(), fast()).unwrap();
    assert!(store.is_empty());
    assert_eq!(store.append(PART, &message(51)).unwrap(), 51);
}

#[test]
fn segments_roll_and_consumed_ones_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let config = fast().segment_bytes(300);
    let store = LocalStore::open(dir.path(), config.clone()).unwrap();
    for i in 0..60 {
        store.append(PART, &message(i)).unwrap();
    }
    let rolled = segments(dir.path());
    assert!(rolled.len() >= 10, "{} segments", rolled.len());
    for file in &rolled {
        assert!(fs::metadata(file).unwrap().len() <= 300);
    }
    assert_eq!(
        rolled[0].file_name().unwrap(),
        "00000000000000000000.seg",
        "named by first sequence number"
    );
    assert_eq!(payloads(&drain_n(&store, 30)), expected(0..30));
    let left = segments(dir.path());
    assert!(left.len() < rolled.len() && !left.is_empty());
    assert!(!left.contains(&rolled[0]));
    drop(store);
    let store = LocalStore::open(dir.path(), config).unwrap();
    assert_eq!(payloads(&drain(&store, TOPIC, PART)), expected(30..60));
    assert!(segments(dir.path()).is_empty(), "all consumed, all deleted");
}

fn drain_n(store: &LocalStore, n: usize) -> Vec<StoredMessage> {
    (0..n)
        .map(|_| store.pop_front(TOPIC, PART).unwrap().unwrap())
        .collect()
}

/// Record boundaries of the one segment written by appending `n` messages.
fn write_records(root: &Path, n: usize) -> Vec<u64> {
    let store = LocalStore::open(root, fast()).unwrap();
    let mut ends = vec![0];
    for i in 0..n {
        store.append(PART, &message(i)).unwrap();
        ends.push(fs::metadata(&segments(root)[0]).unwrap().len());
    }
    ends
}

#[test]
fn a_torn_tail_is_cut_at_every_offset_of_the_last_record() {
    let n = 5;
    let probe = tempfile::tempdir().unwrap();
    let ends = write_records(probe.path(), n);
    let (start, end) = (ends[n - 1], ends[n]);
    for cut in start..end {
        let dir = tempfile::tempdir().unwrap();
        write_records(dir.path(), n);
        let file = &segments(dir.path())[0];
        fs::OpenOptions::new()
            .write(true)
            .open(file)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let (store, logs) = with_logs(|| LocalStore::open(dir.path(), fast()).unwrap());
        assert_eq!(store.len(TOPIC, PART), n as u64 - 1, "cut at {cut}");
        if cut > start {
            assert!(logs.contains("torn"), "cut at {cut}: {logs}");
        }
        assert_eq!(
            fs::metadata(file).unwrap().len(),
            start,
            "the tail is cut off"
        );
        // The store goes on: the lost number is given again.
        assert_eq!(store.append(PART, &message(n - 1)).unwrap(), n as u64 - 1);
        assert_eq!(payloads(&drain(&store, TOPIC, PART)), expected(0..n));
    }
}

#[test]
fn a_flipped_byte_keeps_the_records_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let ends = write_records(dir.path(), 10);
    let file = segments(dir.path())[0].clone();
    let mut bytes = fs::read(&file).unwrap();
    let middle = (ends[5] + ends[6]) / 2;
    bytes[middle as usize] ^= 0x40;
    fs::write(&file, bytes).unwrap();
    let (store, logs) = with_logs(|| LocalStore::open(dir.path(), fast()).unwrap());
    assert!(logs.contains("WARN"), "{logs}");
    assert!(logs.contains(&file.display().to_string()), "{logs}");
    assert!(
        logs.contains(&format!("dropped_bytes={}", ends[10] - ends[5])),
        "{logs}"
    );
    assert_eq!(payloads(&drain(&store, TOPIC, PART)), expected(0..5));
}

#[test]
fn damage_in_an_older_segment_drops_only_the_rest_of_that_segment() {
    let dir = tempfile::tempdir().unwrap();
    let config = fast().segment_bytes(200);
    let store = LocalStore::open(dir.path(), config.clone()).unwrap();
    for i in 0..30 {
        store.append(PART, &message(i)).unwrap();
    }
    drop(store);
    let files = segments(dir.path());
    assert!(files.len() >= 4);
    // One flipped byte in the last record of the second segment.
    let second = &files[1];
    let third_seq: usize = files[2]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut bytes = fs::read(second).unwrap();
    let at = bytes.len() - 3;
    bytes[at] ^= 0xFF;
    fs::write(second, &bytes).unwrap();
    let (store, logs) = with_logs(|| LocalStore::open(dir.path(), config).unwrap());
    assert!(logs.contains("damaged or torn record"), "{logs}");
    let got = payloads(&drain(&store, TOPIC, PART));
    let mut want = expected(0..third_seq - 1);
    want.extend(expected(third_seq..30));
    assert_eq!(
        got, want,
        "only the last record of the second segment is lost"
    );
}

#[test]
fn arbitrary_garbage_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let ends = write_records(dir.path(), 8);
    let file = segments(dir.path())[0].clone();
    let original = fs::read(&file).unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    for round in 0..200 {
        let mut bytes = original.clone();
        for _ in 0..rng.usize(1..8) {
            let at = rng.usize(..bytes.len());
            bytes[at] = rng.u8(..);
        }
        if round % 3 == 0 {
            bytes.truncate(rng.usize(..bytes.len()));
        }
        fs::write(&file, &bytes).unwrap();
        let store = LocalStore::open(dir.path(), fast()).unwrap();
        let got = drain(&store, TOPIC, PART);
        // Whatever survived is a prefix of what was written.
        assert_eq!(payloads(&got), expected(0..got.len()), "round {round}");
        assert!(got.len() < ends.len());
        drop(store);
        // The cursor now says "all acknowledged"; start over for the next round.
        fs::remove_dir_all(queue_dir(dir.path())).unwrap();
        fs::create_dir(queue_dir(dir.path())).unwrap();
        fs::write(&file, &original).unwrap();
    }
}

#[test]
fn a_full_store_refuses_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let one = {
        let probe = tempfile::tempdir().unwrap();
        let store = LocalStore::open(probe.path(), fast()).unwrap();
        store.append(PART, &message(0)).unwrap();
        store.total_bytes()
    };
    let config = fast().max_bytes(one * 3 + one / 2);
    let store = LocalStore::open(dir.path(), config.clone()).unwrap();
    for i in 0..3 {
        store.append(PART, &message(i * 3)).unwrap(); // same shape and size
    }
    let size = fs::metadata(&segments(dir.path())[0]).unwrap().len();
    match store.append(PART, &message(9)) {
        Err(Error::LocalStoreFull {
            topic,
            partition,
            held_bytes,
            limit_bytes,
        }) => {
            assert_eq!((topic.as_str(), partition.as_str()), (TOPIC, PART));
            assert_eq!((held_bytes, limit_bytes), (one * 3, one * 3 + one / 2));
        }
        other => panic!("{other:?}"),
    }
    // Another queue shares the bound.
    assert!(matches!(
        store.append("0-2", &message(9)),
        Err(Error::LocalStoreFull { .. })
    ));
    assert_eq!(fs::metadata(&segments(dir.path())[0]).unwrap().len(), size);
    assert_eq!(store.len(TOPIC, PART), 3);
    // Room again once one is acknowledged.
    store.pop_front(TOPIC, PART).unwrap().unwrap();
    store.append(PART, &message(9)).unwrap();
    drop(store);
    let store = LocalStore::open(dir.path(), config).unwrap();
    assert_eq!(store.total_bytes(), one * 3);
    assert_eq!(store.len(TOPIC, PART), 3);
}

#[test]
fn the_per_queue_message_bound_and_the_record_bound_hold() {
    let dir = tempfile::tempdir().unwrap();
    let config = fast().max_messages_per_queue(Some(2)).max_record_bytes(100);
    let store = LocalStore::open(dir.path(), config).unwrap();
    store.append(PART, &message(0)).unwrap();
    store.append(PART, &message(3)).unwrap();
    assert!(matches!(
        store.append(PART, &message(6)),
        Err(Error::LocalStoreFull { .. })
    ));
    store.append("0-2", &message(6)).unwrap(); // another queue
    let big = Message::new(TOPIC, vec![0u8; 100]);
    assert!(matches!(
        store.append("0-3", &big),
        Err(Error::MessageTooLarge { max: 100, .. })
    ));
    assert_eq!(store.len(TOPIC, PART), 2);
}

#[test]
fn holdings_report_each_queue() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path(), fast()).unwrap();
    for i in 0..4 {
        store.append("0-0", &message(i)).unwrap();
    }
    store.append("-1--1", &Message::new("audit", "x")).unwrap();
    let held = store.holdings();
    let summary: Vec<_> = held
        .iter()
        .map(|h| (h.topic.as_str(), h.partition.as_str(), h.messages))
        .collect();
    assert_eq!(summary, [("audit", "-1--1", 1), (TOPIC, "0-0", 4)]);
    assert_eq!(
        held.iter().map(|h| h.bytes).sum::<u64>(),
        store.total_bytes()
    );
    assert_eq!(
        held[1].bytes,
        fs::metadata(&segments_of(dir.path(), "orders@0-0")[0])
            .unwrap()
            .len()
    );
    assert_eq!(
        store
            .pop_front("audit", "-1--1")
            .unwrap()
            .unwrap()
            .message
            .topic(),
        "audit"
    );
    assert_eq!(store.queues(), [(TOPIC.to_string(), "0-0".to_string())]);
    drop(store);
    let store = LocalStore::open(dir.path(), fast()).unwrap();
    assert_eq!(store.holdings(), held[1..]);
}

fn segments_of(root: &Path, queue: &str) -> Vec<PathBuf> {
    let mut files: Vec<_> = fs::read_dir(root.join(queue))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "seg"));
    files.sort();
    files
}

#[test]
fn many_queues_keep_their_own_order() {
    let dir = tempfile::tempdir().unwrap();
    let topics = ["a", "b.c", "d-e_f", "odd:name", "per%cent@at"];
    let partitions = ["0-0", "0-1", "3-7", "-1--1"];
    let store = LocalStore::open(dir.path(), fast().segment_bytes(500)).unwrap();
    for round in 0..20 {
        for topic in topics {
            for partition in partitions {
                let text = format!("{topic}/{partition}/{round}");
                store.append(partition, &Message::new(topic, text)).unwrap();
            }
        }
    }
    drop(store);
    assert!(dir.path().join("odd%3Aname@0-0").is_dir());
    assert!(dir.path().join("per%25cent%40at@-1--1").is_dir());
    let store = LocalStore::open(dir.path(), fast()).unwrap();
    assert_eq!(store.queues().len(), topics.len() * partitions.len());
    for topic in topics {
        for partition in partitions {
            let got = drain(&store, topic, partition);
            let want: Vec<_> = (0..20)
                .map(|r| format!("{topic}/{partition}/{r}"))
                .collect();
            assert_eq!(payloads(&got), want);
        }
    }
}

#[test]
fn threads_appending_at_once_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path(), fast().segment_bytes(1000)).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    let m = Message::new(TOPIC, format!("{t}-{i}"));
                    store
                        .append(if t % 2 == 0 { "0-0" } else { PART }, &m)
                        .unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    for partition in ["0-0", PART] {
        let got = payloads(&drain(&store, TOPIC, partition));
        assert_eq!(got.len(), 400);
        for t in 0..4 {
            let mine: Vec<_> = got
                .iter()
                .filter(|p| p.starts_with(&format!("{t}-")))
                .cloned()
                .collect();
            if !mine.is_empty() {
                assert_eq!(
                    mine,
                    (0..200).map(|i| format!("{t}-{i}")).collect::<Vec<_>>()
                );
            }
        }
    }
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path(), fast()).unwrap();
    assert!(matches!(
        LocalStore::open(dir.path(), fast()),
        Err(Error::LocalStore {
            operation: "open",
            ..
        })
    ));
    drop(store);
    LocalStore::open(dir.path(), fast()).unwrap();
}

/// Another holder of the directory's `LOCK` file (as another process's
/// store would be) makes `open` fail and write nothing; once it lets go,
/// `open` works.
#[test]
fn a_store_another_process_holds_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(LocalStore::open(dir.path(), fast()).unwrap());
    // A separate open file description conflicts as another process would.
    let other = fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("LOCK"))
        .expect("the store made its LOCK file");
    fs4::FileExt::try_lock(&other).expect("nobody holds it now");
    let refused = LocalStore::open(dir.path(), fast()).unwrap_err();
    assert!(
        matches!(&refused, Error::LocalStore { operation: "open", cause, .. } if cause.contains("another process")),
        "{refused}"
    );
    drop(other); // closing the file releases its lock
    let store = LocalStore::open(dir.path(), fast()).unwrap();
    assert!(store.is_empty(), "the LOCK file is not read as a queue");
}

/// Set to a directory, the test below appends until it is killed.
const CHILD_DIR: &str = "METAQ_LOCAL_STORE_CRASH_DIR";

/// Not a test on its own: the body of the child process of
/// `a_killed_process_loses_no_acknowledged_append` (does nothing unless
/// the variable is set). Appends message `n` as sequence number `n` and
/// prints `appended n` once `append` returned.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let config = LocalStoreConfig::default().segment_bytes(4096);
    let store = LocalStore::open(PathBuf::from(dir), config).unwrap();
    let first = store.len(TOPIC, PART) as usize; // nothing is acknowledged
    let mut out = std::io::stdout().lock();
    let started = Instant::now();
    // Bounded, in case the parent is gone.
    for i in first..first + 1_000_000 {
        assert_eq!(store.append(PART, &message(i)).unwrap(), i as u64);
        writeln!(out, "appended {i}").unwrap();
        out.flush().unwrap();
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
}

/// Starts `crash_child` on `dir`, lets it append at least `until`, then
/// SIGKILLs it at a random moment; returns the last append it reported.
fn append_and_kill(dir: &Path, until: usize, rng: &mut fastrand::Rng) -> usize {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads until the child is gone, so it never blocks on a full pipe.
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if let Some(i) = line.unwrap().strip_prefix("appended ") {
                let _ = tx.send(i.parse::<usize>().unwrap());
            }
        }
    });
    let mut last = 0;
    while last < until {
        last = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the child appends");
    }
    std::thread::sleep(Duration::from_millis(rng.u64(0..20)));
    child.kill().unwrap(); // SIGKILL, by this child's pid
    child.wait().unwrap();
    reader.join().unwrap();
    rx.try_iter().last().unwrap_or(last).max(last)
}

#[test]
fn a_killed_process_loses_no_acknowledged_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(12);
    let mut acknowledged = 0;
    for round in 1..=3 {
        acknowledged = append_and_kill(dir.path(), acknowledged + 100 * round, &mut rng);
    }
    let store = LocalStore::open(dir.path(), fast()).unwrap();
    let got = drain(&store, TOPIC, PART);
    assert!(got.len() > acknowledged, "{} of {acknowledged}", got.len());
    for (i, stored) in got.iter().enumerate() {
        assert_eq!((stored.seq, &stored.message), (i as u64, &message(i)));
    }
}

#[test]
fn the_store_is_send_and_sync() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<LocalStore>();
}

#[test]
fn damage_found_while_reading_drops_the_rest_of_the_segment_and_the_store_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path(), fast()).unwrap();
    let mut ends = vec![0];
    for i in 0..10 {
        store.append(PART, &message(i)).unwrap();
        ends.push(fs::metadata(&segments(dir.path())[0]).unwrap().len());
    }
    assert_eq!(payloads(&drain_n(&store, 2)), expected(0..2));
    // Damage behind the open store's back.
    let file = segments(dir.path())[0].clone();
    let mut bytes = fs::read(&file).unwrap();
    bytes[(ends[5] + 13) as usize] ^= 1;
    fs::write(&file, bytes).unwrap();
    let (got, logs) = with_logs(|| drain(&store, TOPIC, PART));
    assert_eq!(payloads(&got), expected(2..5));
    assert!(logs.contains("dropping the rest of the segment"), "{logs}");
    assert!(store.is_empty());
    assert_eq!(store.total_bytes(), 0);
    assert_eq!(store.append(PART, &message(10)).unwrap(), 10);
    drop(store);
    let store = LocalStore::open(dir.path(), fast()).unwrap();
    assert_eq!(payloads(&drain(&store, TOPIC, PART)), expected(10..11));
}

#[test]
fn a_damaged_cursor_gives_duplicates_never_a_loss() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path(), fast()).unwrap();
    for i in 0..10 {
        store.append(PART, &message(i)).unwrap();
    }
    drain_n(&store, 4);
    drop(store);
    let cursor = queue_dir(dir.path()).join("cursor");
    assert_eq!(fs::metadata(&cursor).unwrap().len(), 32, "two slots");
    fs::write(&cursor, [0xAB; 32]).unwrap();
    let (store, logs) = with_logs(|| LocalStore::open(dir.path(), fast()).unwrap());
    assert!(logs.contains("damaged cursor"), "{logs}");
    // The acknowledged four were still in the segment: given again.
    assert_eq!(payloads(&drain(&store, TOPIC, PART)), expected(0..10));
}

#[test]
fn a_random_workload_matches_a_model() {
    use std::collections::{BTreeMap, VecDeque};
    let dir = tempfile::tempdir().unwrap();
    let config = fast().segment_bytes(256);
    let queues = [("a", "0-0"), ("a", "-1--1"), ("b", "1-2")];
    let mut model: BTreeMap<(&str, &str), VecDeque<String>> = BTreeMap::new();
    let mut rng = fastrand::Rng::with_seed(2024);
    let mut store = LocalStore::open(dir.path(), config.clone()).unwrap();
    for step in 0..3000 {
        let (topic, partition) = queues[rng.usize(..queues.len())];
        let queue = model.entry((topic, partition)).or_default();
        match rng.u8(..100) {
            0..=54 => {
                let text = format!("{step}-{}", "x".repeat(rng.usize(..60)));
                store
                    .append(partition, &Message::new(topic, text.clone()))
                    .unwrap();
                queue.push_back(text);
            }
            55..=79 => {
                let got = store.pop_front(topic, partition).unwrap();
                let got = got.map(|s| String::from_utf8(s.message.payload().to_vec()).unwrap());
                assert_eq!(got, queue.pop_front(), "step {step}");
            }
            80..=97 => {
                // Peek, and acknowledge only sometimes (a failed send).
                let front = store.peek_front(topic, partition).unwrap();
                let text = front
                    .as_ref()
                    .map(|s| String::from_utf8(s.message.payload().to_vec()).unwrap());
                assert_eq!(text.as_ref(), queue.front(), "step {step}");
                if let (Some(front), true) = (front, rng.bool()) {
                    assert!(store.ack_front(topic, partition, front.seq).unwrap());
                    queue.pop_front();
                }
            }
            _ => {
                drop(store);
                store = LocalStore::open(dir.path(), config.clone()).unwrap();
            }
        }
        let held: Vec<_> = store
            .holdings()
            .into_iter()
            .map(|h| ((h.topic, h.partition), h.messages))
            .collect();
        let want: Vec<_> = model
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|((t, p), q)| ((t.to_string(), p.to_string()), q.len() as u64))
            .collect();
        assert_eq!(held, want, "step {step}");
    }
    let on_disk: u64 = fs::read_dir(dir.path())
        .unwrap()
        .map(|q| q.unwrap().path())
        .filter(|q| q.is_dir()) // not the LOCK file
        .flat_map(|q| fs::read_dir(q).unwrap())
        .map(|f| f.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    // Only acknowledged records of each queue's first segment are extra.
    assert!(on_disk >= store.total_bytes());
    assert!(on_disk <= store.total_bytes() + 256 * queues.len() as u64);
}
