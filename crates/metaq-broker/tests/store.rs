//! The broker's message store against its on-disk format: offsets, segment
//! rolling, recovery from torn writes, group commit, flush policies, close.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use metaq_broker::store::{read_records, FlushPolicy, MessageStore, Record, StoreConfig};

fn hello(id: i64) -> Record {
    Record::new(id, 0, &b"hello"[..])
}

fn config(dir: &Path, flush: FlushPolicy, max_segment_size: u64) -> StoreConfig {
    let mut config = StoreConfig::new(dir);
    config.flush = flush;
    config.max_segment_size = max_segment_size;
    config
}

fn segment_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn last_segment(dir: &Path) -> PathBuf {
    dir.join(segment_names(dir).pop().unwrap())
}

/// Polls `check` until it holds, failing after `limit`.
async fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn offsets_are_byte_positions_and_segments_roll_by_start_offset() {
    let tmp = tempfile::tempdir().unwrap();
    // Two 25-byte records fit in 60 bytes, a third would not.
    let store = MessageStore::open(config(tmp.path(), FlushPolicy::Group, 60)).unwrap();
    let mut offsets = Vec::new();
    for id in 0..5 {
        offsets.extend(store.append("t", 0, vec![hello(id)]).await.unwrap());
    }
    offsets.extend(
        store
            .append("t", 0, vec![hello(5), hello(6), hello(7)])
            .await
            .unwrap(),
    );
    assert_eq!(offsets, [0, 25, 50, 75, 100, 125, 150, 175]);
    assert_eq!(store.next_offset("t", 0), Some(200));
    store.close().await;

    assert_eq!(
        segment_names(&tmp.path().join("t-0")),
        [
            "00000000000000000000.meta",
            "00000000000000000050.meta",
            "00000000000000000100.meta",
            "00000000000000000150.meta",
        ]
    );
    let first = fs::read(tmp.path().join("t-0/00000000000000000000.meta")).unwrap();
    assert_eq!(first.len(), 50);
    assert_eq!(
        &first[..25],
        [
            0x00, 0x00, 0x00, 0x05, 0x36, 0x10, 0xa6, 0x86, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            b'h', b'e', b'l', b'l', b'o'
        ]
    );

    let records = read_records(tmp.path(), None).unwrap();
    assert_eq!(records.len(), 8);
    for (i, r) in records.iter().enumerate() {
        assert_eq!((r.topic.as_str(), r.partition), ("t", 0));
        assert_eq!(r.offset, 25 * i as i64);
        assert_eq!(r.id, i as i64);
        assert_eq!((r.length, r.flag), (5, 0));
        assert_eq!(r.checksum, 0x3610_a686);
        assert!(r.checksum_valid);
        assert_eq!(&r.body[..], b"hello");
    }
}

#[tokio::test]
async fn a_record_larger_than_a_segment_gets_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(tmp.path(), FlushPolicy::Group, 40)).unwrap();
    let big = Record::new(9, 1, vec![b'x'; 100]);
    let offsets = store
        .append("t", 0, vec![hello(1), big, hello(2)])
        .await
        .unwrap();
    assert_eq!(offsets, [0, 25, 145]);
    store.close().await;
    assert_eq!(
        segment_names(&tmp.path().join("t-0")),
        [
            "00000000000000000000.meta",
            "00000000000000000025.meta",
            "00000000000000000145.meta",
        ]
    );
    let records = read_records(tmp.path(), Some("t")).unwrap();
    let offsets: Vec<_> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [0, 25, 145]);
    assert_eq!((records[1].length, records[1].flag), (100, 1));
}

#[tokio::test]
async fn reopening_continues_offsets_in_every_partition() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = MessageStore::open(config(tmp.path(), FlushPolicy::Group, 60)).unwrap();
        store
            .append("t", 0, vec![hello(1), hello(2), hello(3)])
            .await
            .unwrap();
        store.append("t", 1, vec![hello(4)]).await.unwrap();
        store.close().await;
    }
    let store = MessageStore::open(config(tmp.path(), FlushPolicy::Group, 60)).unwrap();
    assert_eq!(store.next_offset("t", 0), Some(75));
    assert_eq!(store.next_offset("t", 1), Some(25));
    assert_eq!(store.next_offset("t", 2), None);
    assert_eq!(
        store.partitions(),
        [("t".to_owned(), 0), ("t".to_owned(), 1)]
    );
    assert_eq!(store.append("t", 0, vec![hello(5)]).await.unwrap(), [75]);
    assert_eq!(store.append("t", 1, vec![hello(6)]).await.unwrap(), [25]);
    store.close().await;
    let ids: Vec<_> = read_records(tmp.path(), None)
        .unwrap()
        .iter()
        .map(|r| (r.partition, r.offset, r.id))
        .collect();
    assert_eq!(
        ids,
        [
            (0, 0, 1),
            (0, 25, 2),
            (0, 50, 3),
            (0, 75, 5),
            (1, 0, 4),
            (1, 25, 6)
        ]
    );
}

/// Writes three acknowledged records (the last segment starts at 50), damages
/// the tail with `damage`, reopens, and checks the cut and what follows.
async fn recovers_from(damage: impl FnOnce(&Path)) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("torn-topic-3");
    {
        let store = MessageStore::open(config(tmp.path(), FlushPolicy::Group, 60)).unwrap();
        for id in 1..=3 {
            store
                .append("torn-topic", 3, vec![hello(id)])
                .await
                .unwrap();
        }
        store.close().await;
    }
    damage(&last_segment(&dir));

    let store = MessageStore::open(config(tmp.path(), FlushPolicy::Group, 60)).unwrap();
    assert_eq!(store.next_offset("torn-topic", 3), Some(75));
    assert_eq!(fs::metadata(last_segment(&dir)).unwrap().len(), 25);
    assert_eq!(
        store.append("torn-topic", 3, vec![hello(4)]).await.unwrap(),
        [75]
    );
    store.close().await;

    let records = read_records(tmp.path(), None).unwrap();
    let seen: Vec<_> = records.iter().map(|r| (r.offset, r.id)).collect();
    assert_eq!(seen, [(0, 1), (25, 2), (50, 3), (75, 4)]);
    assert!(records.iter().all(|r| r.checksum_valid));
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

fn encoded(id: i64, checksum: i32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(&checksum.to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[tokio::test]
async fn recovery_cuts_a_truncated_last_record() {
    recovers_from(|segment| {
        // A fourth record of which only 12 bytes reached the disk.
        append_bytes(
            segment,
            &encoded(9, metaq::protocol::checksum(b"hello"), b"hello")[..12],
        );
    })
    .await;
}

#[tokio::test]
async fn recovery_cuts_a_truncated_body() {
    recovers_from(|segment| {
        append_bytes(
            segment,
            &encoded(9, metaq::protocol::checksum(b"hello"), b"hello")[..23],
        );
    })
    .await;
}

#[tokio::test]
async fn recovery_cuts_garbage() {
    recovers_from(|segment| append_bytes(segment, &[0xff; 64])).await;
}

#[tokio::test]
async fn recovery_cuts_a_record_with_a_bad_checksum_and_everything_after_it() {
    recovers_from(|segment| {
        append_bytes(segment, &encoded(9, 12345, b"hello"));
        append_bytes(
            segment,
            &encoded(10, metaq::protocol::checksum(b"hi"), b"hi"),
        );
    })
    .await;
}

#[tokio::test]
async fn read_records_stops_at_a_torn_tail_and_flags_bad_checksums() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    fs::create_dir(&dir).unwrap();
    let segment = dir.join("00000000000000000000.meta");
    fs::write(&segment, encoded(1, 12345, b"hello")).unwrap();
    append_bytes(
        &segment,
        &encoded(2, metaq::protocol::checksum(b"ok"), b"ok"),
    );
    append_bytes(&segment, &encoded(3, 0, b"torn")[..10]);
    let records = read_records(tmp.path(), None).unwrap();
    let seen: Vec<_> = records
        .iter()
        .map(|r| (r.offset, r.id, r.checksum_valid))
        .collect();
    assert_eq!(seen, [(0, 1, false), (25, 2, true)]);
    assert!(read_records(&tmp.path().join("missing"), None).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_serves_concurrent_appenders() {
    let tmp = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(tmp.path(), FlushPolicy::Group, 16 * 1024)).unwrap();
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut offsets = Vec::new();
                for i in 0..500 {
                    let partition = (task % 2) as u32;
                    let id = task * 1000 + i;
                    let got = store.append("g", partition, vec![hello(id)]).await.unwrap();
                    offsets.push((partition, got[0]));
                }
                offsets
            })
        })
        .collect();
    let mut offsets = Vec::new();
    for task in tasks {
        offsets.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    assert_eq!(offsets.len(), 4000);
    for partition in 0..2u32 {
        let mut mine: Vec<i64> = offsets
            .iter()
            .filter(|(p, _)| *p == partition)
            .map(|&(_, o)| o)
            .collect();
        mine.sort_unstable();
        let expected: Vec<i64> = (0..2000).map(|i| i * 25).collect();
        assert_eq!(mine, expected, "partition {partition}");
        assert_eq!(store.next_offset("g", partition), Some(2000 * 25));
    }
    let fsyncs = store.fsync_count("g", 0).unwrap() + store.fsync_count("g", 1).unwrap();
    eprintln!("4000 group-committed appends in {elapsed:?} with {fsyncs} fsyncs");
    assert!(fsyncs >= 1);
    store.close().await;

    let records = read_records(tmp.path(), Some("g")).unwrap();
    assert_eq!(records.len(), 4000);
    assert!(records.iter().all(|r| r.checksum_valid));
    let mut ids: Vec<_> = records.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4000);
}

#[tokio::test]
async fn group_policy_fsyncs_before_answering() {
    let tmp = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(tmp.path(), FlushPolicy::Group, 1 << 20)).unwrap();
    store.append("t", 0, vec![hello(1)]).await.unwrap();
    assert_eq!(store.fsync_count("t", 0), Some(1));
    store
        .append("t", 0, vec![hello(2), hello(3)])
        .await
        .unwrap();
    assert_eq!(store.fsync_count("t", 0), Some(2));
    store.close().await;
    assert_eq!(
        store.fsync_count("t", 0),
        Some(2),
        "nothing left to force on close"
    );
    assert_eq!(read_records(tmp.path(), None).unwrap().len(), 3);
}

#[tokio::test]
async fn periodic_policy_fsyncs_past_the_message_threshold() {
    let tmp = tempfile::tempdir().unwrap();
    let policy = FlushPolicy::Periodic {
        max_messages: 3,
        interval: Duration::from_secs(3600),
    };
    let store = MessageStore::open(config(tmp.path(), policy, 1 << 20)).unwrap();
    for id in 0..3 {
        store.append("t", 0, vec![hello(id)]).await.unwrap();
    }
    // Three unflushed is not "more than three".
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.fsync_count("t", 0), Some(0));
    store.append("t", 0, vec![hello(3)]).await.unwrap();
    // The answer does not wait for the fsync.
    eventually(Duration::from_secs(10), "the threshold fsync", || {
        store.fsync_count("t", 0) == Some(1)
    })
    .await;
    store.append("t", 0, vec![hello(4)]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.fsync_count("t", 0), Some(1));
    store.close().await;
    assert_eq!(store.fsync_count("t", 0), Some(2), "close forces the rest");
    assert_eq!(read_records(tmp.path(), None).unwrap().len(), 5);
}

#[tokio::test]
async fn periodic_policy_fsyncs_on_its_timer() {
    let tmp = tempfile::tempdir().unwrap();
    let policy = FlushPolicy::Periodic {
        max_messages: 1000,
        interval: Duration::from_millis(1500),
    };
    // Before open: the writer's interval starts when it does.
    let started = Instant::now();
    let store = MessageStore::open(config(tmp.path(), policy, 1 << 20)).unwrap();
    store.append("t", 0, vec![hello(1)]).await.unwrap();
    // Written and readable before any fsync.
    assert_eq!(read_records(tmp.path(), None).unwrap().len(), 1);
    if started.elapsed() < Duration::from_millis(1000) {
        assert_eq!(store.fsync_count("t", 0), Some(0));
    }
    // No further append: only the timer can force it.
    eventually(Duration::from_secs(10), "the timer fsync", || {
        store.fsync_count("t", 0) == Some(1)
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(1500));
    store.close().await;
    assert_eq!(store.fsync_count("t", 0), Some(1));
}

#[tokio::test]
async fn os_policy_fsyncs_only_on_close() {
    let tmp = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(tmp.path(), FlushPolicy::Os, 1 << 20)).unwrap();
    for id in 0..20 {
        store.append("t", 0, vec![hello(id)]).await.unwrap();
    }
    assert_eq!(store.fsync_count("t", 0), Some(0));
    assert_eq!(read_records(tmp.path(), None).unwrap().len(), 20);
    store.close().await;
    assert_eq!(store.fsync_count("t", 0), Some(1));
}

#[test]
fn flush_policies_parse() {
    assert_eq!("group".parse(), Ok(FlushPolicy::Group));
    assert_eq!("os".parse(), Ok(FlushPolicy::Os));
    assert_eq!(
        "500".parse(),
        Ok(FlushPolicy::Periodic {
            max_messages: 1000,
            interval: Duration::from_millis(500)
        })
    );
    assert_eq!(FlushPolicy::default(), FlushPolicy::Group);
    for bad in ["", "fast", "0", "-1", "1.5", "500ms"] {
        let err = bad.parse::<FlushPolicy>().unwrap_err();
        assert_eq!(err.input, bad);
    }
}

#[tokio::test]
async fn topics_with_dashes_round_trip_through_directory_names() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = MessageStore::open(config(tmp.path(), FlushPolicy::Group, 1 << 20)).unwrap();
        store.append("a-b-c", 12, vec![hello(1)]).await.unwrap();
        store.append("a-b", 0, vec![hello(2)]).await.unwrap();
        store
            .append("a", 1, vec![hello(3), hello(4)])
            .await
            .unwrap();
        store.close().await;
    }
    assert!(tmp
        .path()
        .join("a-b-c-12/00000000000000000000.meta")
        .is_file());
    // Not a partition directory: ignored by open and read_records.
    fs::create_dir(tmp.path().join("not-a-partition")).unwrap();
    fs::write(tmp.path().join("stray-0"), b"a file").unwrap();

    let store = MessageStore::open(config(tmp.path(), FlushPolicy::Group, 1 << 20)).unwrap();
    assert_eq!(store.next_offset("a-b-c", 12), Some(25));
    assert_eq!(store.next_offset("a-b", 0), Some(25));
    assert_eq!(store.next_offset("a", 1), Some(50));
    store.close().await;

    let all: Vec<_> = read_records(tmp.path(), None)
        .unwrap()
        .into_iter()
        .map(|r| (r.topic, r.partition, r.offset))
        .collect();
    assert_eq!(
        all,
        [
            ("a".to_owned(), 1, 0),
            ("a".to_owned(), 1, 25),
            ("a-b".to_owned(), 0, 0),
            ("a-b-c".to_owned(), 12, 0),
        ]
    );
    let only: Vec<_> = read_records(tmp.path(), Some("a-b"))
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(only, [2]);
}

#[tokio::test]
async fn close_then_append_fails_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(tmp.path(), FlushPolicy::Group, 1 << 20)).unwrap();
    store.append("t", 0, vec![hello(1)]).await.unwrap();
    let other = store.clone();
    store.close().await;
    other.close().await; // idempotent
    let err = other.append("t", 0, vec![hello(2)]).await.unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");
    let err = store.append("new", 0, vec![hello(3)]).await.unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");
    assert!(!tmp.path().join("new-0").exists());
    assert_eq!(store.next_offset("t", 0), Some(25));
    assert_eq!(read_records(tmp.path(), None).unwrap().len(), 1);
}

#[tokio::test]
async fn appends_queued_before_close_are_written() {
    let tmp = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(tmp.path(), FlushPolicy::Os, 1 << 20)).unwrap();
    // Queued at the call, answered after close has drained them.
    let pending: Vec<_> = (0..100)
        .map(|id| store.append("t", 0, vec![hello(id)]))
        .collect();
    store.close().await;
    for (i, append) in pending.into_iter().enumerate() {
        assert_eq!(append.await.unwrap(), [25 * i as i64]);
    }
    assert_eq!(read_records(tmp.path(), None).unwrap().len(), 100);
}

#[tokio::test]
async fn dropping_the_last_handle_flushes_and_stops_writers() {
    let tmp = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(tmp.path(), FlushPolicy::Os, 1 << 20)).unwrap();
    let pending = store.append("t", 0, vec![hello(1), hello(2)]);
    let started = Instant::now();
    drop(store);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(pending.await.unwrap(), [0, 25]);
    let store = MessageStore::open(config(tmp.path(), FlushPolicy::Os, 1 << 20)).unwrap();
    assert_eq!(store.next_offset("t", 0), Some(50));
}

#[tokio::test]
async fn empty_appends_and_bad_topics_touch_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(tmp.path(), FlushPolicy::Group, 1 << 20)).unwrap();
    assert_eq!(
        store.append("t", 0, Vec::new()).await.unwrap(),
        Vec::<i64>::new()
    );
    assert_eq!(store.next_offset("t", 0), None);
    for bad in ["", "../escape", "a/b", "with space"] {
        let err = store.append(bad, 0, vec![hello(1)]).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
    }
    store.close().await;
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn io_errors_reach_the_caller_and_the_writer_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(tmp.path(), FlushPolicy::Group, 50)).unwrap();

    // The partition directory cannot be created: a file is in the way.
    fs::write(tmp.path().join("t-0"), b"in the way").unwrap();
    assert!(store.append("t", 0, vec![hello(1)]).await.is_err());
    fs::remove_file(tmp.path().join("t-0")).unwrap();
    assert_eq!(store.append("t", 0, vec![hello(1)]).await.unwrap(), [0]);

    // The next segment cannot be created: a foreign file with data holds its
    // name. The whole append is undone, including the record that did fit.
    let blocker = tmp.path().join("t-0/00000000000000000050.meta");
    fs::write(&blocker, b"foreign").unwrap();
    let err = store
        .append("t", 0, vec![hello(2), hello(3)])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert_eq!(store.next_offset("t", 0), Some(25));
    assert_eq!(
        fs::metadata(tmp.path().join("t-0/00000000000000000000.meta"))
            .unwrap()
            .len(),
        25
    );
    fs::remove_file(&blocker).unwrap();
    assert_eq!(
        store
            .append("t", 0, vec![hello(2), hello(3)])
            .await
            .unwrap(),
        [25, 50]
    );
    store.close().await;
    let ids: Vec<_> = read_records(tmp.path(), None)
        .unwrap()
        .iter()
        .map(|r| (r.offset, r.id))
        .collect();
    assert_eq!(ids, [(0, 1), (25, 2), (50, 3)]);
}

#[tokio::test]
async fn bodies_are_stored_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(tmp.path(), FlushPolicy::Group, 1 << 20)).unwrap();
    let bodies: Vec<Bytes> = vec![
        Bytes::new(),
        Bytes::from_static(b"\0\r\n binary \xff"),
        Bytes::from(vec![0xab; 70_000]),
    ];
    let records = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| Record::new(-(i as i64), i as i32, b.clone()))
        .collect();
    let second = 20 + bodies[0].len() as i64;
    let third = second + 20 + bodies[1].len() as i64;
    assert_eq!(
        store.append("b", 0, records).await.unwrap(),
        [0, second, third]
    );
    store.close().await;
    let read: Vec<_> = read_records(tmp.path(), None)
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.flag, r.body, r.checksum_valid))
        .collect();
    let expected: Vec<_> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, b)| (-(i as i64), i as i32, b, true))
        .collect();
    assert_eq!(read, expected);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Offsets are prefix sums of record sizes, segments start at record
        /// boundaries and stay within the limit unless they hold one record,
        /// and cutting the last segment anywhere loses exactly the records
        /// that no longer fit in it.
        #[test]
        fn layout_and_recovery(
            bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 1..25),
            max_segment_size in 20u64..300,
            cut_fraction in 0.0f64..=1.0,
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let rt = runtime();
            let records: Vec<Record> = bodies
                .iter()
                .enumerate()
                .map(|(i, b)| Record::new(i as i64, 0, b.clone()))
                .collect();
            let offsets = rt.block_on(async {
                let store =
                    MessageStore::open(config(tmp.path(), FlushPolicy::Os, max_segment_size)).unwrap();
                // Half in one batch, the rest one by one.
                let half = records.len() / 2;
                let mut offsets = store.append("p", 0, records[..half].to_vec()).await.unwrap();
                for r in &records[half..] {
                    offsets.extend(store.append("p", 0, vec![r.clone()]).await.unwrap());
                }
                store.close().await;
                offsets
            });
            let mut expected = Vec::new();
            let mut at = 0i64;
            for b in &bodies {
                expected.push(at);
                at += 20 + b.len() as i64;
            }
            prop_assert_eq!(&offsets, &expected);

            let dir = tmp.path().join("p-0");
            let segments = metaq_segments(&dir);
            for (i, (start, len)) in segments.iter().enumerate() {
                prop_assert!(offsets.contains(&(*start as i64)));
                let records_in = offsets
                    .iter()
                    .filter(|&&o| o >= *start as i64 && o < (*start + *len) as i64)
                    .count();
                prop_assert!(*len <= max_segment_size || records_in == 1);
                if let Some((next, _)) = segments.get(i + 1) {
                    prop_assert_eq!(start + len, *next);
                    // It rolled only because the next record would not fit.
                    let next_size = offsets
                        .iter()
                        .position(|&o| o == *next as i64)
                        .map(|i| 20 + bodies[i].len() as u64)
                        .unwrap();
                    prop_assert!(len + next_size > max_segment_size);
                }
            }

            let read = read_records(tmp.path(), None).unwrap();
            prop_assert_eq!(read.len(), bodies.len());
            for (r, b) in read.iter().zip(&bodies) {
                prop_assert_eq!(&r.body[..], &b[..]);
                prop_assert!(r.checksum_valid);
            }

            // Cut the last segment somewhere and reopen.
            let (last_start, last_len) = *segments.last().unwrap();
            let keep = (last_len as f64 * cut_fraction) as u64;
            let last_path = dir.join(format!("{last_start:020}.meta"));
            OpenOptions::new().write(true).open(&last_path).unwrap().set_len(keep).unwrap();
            let survivors: Vec<i64> = offsets
                .iter()
                .zip(&bodies)
                .filter(|&(&o, b)| o + 20 + b.len() as i64 <= (last_start + keep) as i64)
                .map(|(&o, _)| o)
                .collect();
            let next = survivors
                .last()
                .map(|&o| {
                    let i = offsets.iter().position(|&x| x == o).unwrap();
                    o + 20 + bodies[i].len() as i64
                })
                .unwrap_or(0)
                .max(last_start as i64);
            let after = rt.block_on(async {
                let store =
                    MessageStore::open(config(tmp.path(), FlushPolicy::Os, max_segment_size)).unwrap();
                let got_next = store.next_offset("p", 0);
                let appended = store.append("p", 0, vec![Record::new(-1, 0, "z")]).await.unwrap();
                store.close().await;
                (got_next, appended)
            });
            prop_assert_eq!(after.0, Some(next));
            prop_assert_eq!(after.1, vec![next]);
            let read: Vec<i64> = read_records(tmp.path(), None)
                .unwrap()
                .iter()
                .map(|r| r.offset)
                .collect();
            let mut want = survivors;
            want.push(next);
            prop_assert_eq!(read, want);
        }
    }

    /// (start offset, length) of each segment, by start.
    fn metaq_segments(dir: &Path) -> Vec<(u64, u64)> {
        segment_names(dir)
            .iter()
            .map(|name| {
                let start = name.trim_end_matches(".meta").parse().unwrap();
                (start, fs::metadata(dir.join(name)).unwrap().len())
            })
            .collect()
    }
}
