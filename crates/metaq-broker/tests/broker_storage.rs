//! What the development broker acknowledges is on disk in MetaQ's record
//! format (docs/protocol.md §5.4, 5.5): across a graceful restart, across SIGKILL of
//! the `metaq-broker` process, as `metaq-broker dump` prints it, and after a
//! torn tail is cut at startup.

mod broker_common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

use broker_common::*;
use metaq_testkit::{
    test_broker_config, unique_root, BrokerProcess, RawClient, TestBroker, ZkServer,
};
use serde_json::{json, Value};

/// (topic, partition, offset, id) of acknowledged puts.
type Acked = BTreeSet<(String, u32, i64, i64)>;

/// Sends the frames in one write, reads every answer, and returns what the
/// 200s acknowledged (the frames must all be plain puts with distinct opaques).
async fn put_all(client: &mut RawClient, frames: &[(String, Vec<u8>)]) -> Acked {
    let batch: Vec<u8> = frames.iter().flat_map(|(_, f)| f.clone()).collect();
    client.send(&batch).await;
    let answers = responses(client, frames.len()).await;
    let mut acked = BTreeSet::new();
    for (opaque, (topic, _)) in frames.iter().enumerate() {
        let (id, partition, offset) = put_result(&answers[&(opaque as i32)]);
        acked.insert((topic.clone(), partition as u32, offset, id));
    }
    acked
}

/// `count` puts with opaques 0.., spread over `partitions` of `topic`, some
/// with an attribute.
fn frames(topic: &str, partitions: i32, count: i32) -> Vec<(String, Vec<u8>)> {
    (0..count)
        .map(|i| {
            let payload = format!("message {i} {}", "z".repeat((i % 13) as usize));
            let frame = if i % 3 == 0 {
                let mut body = 4u32.to_be_bytes().to_vec();
                body.extend(b"attr");
                body.extend(payload.as_bytes());
                frame(
                    format!(
                        "put {topic} {} {} 1 {} {i}",
                        i % partitions,
                        body.len(),
                        crc(&body)
                    ),
                    &body,
                )
            } else {
                put(topic, i % partitions, payload.as_bytes(), i)
            };
            (topic.to_owned(), frame)
        })
        .collect()
}

fn stored(records: &[metaq_broker::store::StoredRecord]) -> Acked {
    records
        .iter()
        .map(|r| {
            assert!(r.checksum_valid, "{r:?}");
            (r.topic.clone(), r.partition, r.offset, r.id)
        })
        .collect()
}

/// Where each partition's log ends, from stored records.
fn ends(records: &[metaq_broker::store::StoredRecord]) -> BTreeMap<(String, u32), i64> {
    let mut ends = BTreeMap::new();
    for r in records {
        ends.insert(
            (r.topic.clone(), r.partition),
            r.offset + 20 + i64::from(r.length),
        );
    }
    ends
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_a_restart_and_offsets_continue() {
    let zk = ZkServer::shared();
    let mut broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 3)]).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    let mut acked = put_all(&mut client, &frames("test", 3, 300)).await;
    // And a committed transaction.
    let key = "TX:127.0.0.1-1700000000000-1:1";
    let session = "127.0.0.1-1700000000000-1";
    assert_eq!(
        code(&mut client, &tx(key, session, "BEGIN", None, 1000)).await,
        200
    );
    let (tx_id, _, _) = put_result(
        &client
            .call(&tx_put("test", 2, b"in tx", key, 1001))
            .await
            .unwrap(),
    );
    assert_eq!(
        code(
            &mut client,
            &tx(key, session, "COMMIT_ONE_PHASE", None, 1002)
        )
        .await,
        200
    );
    let before = broker.records(None);
    let committed = before.iter().find(|r| r.id == tx_id).unwrap();
    acked.insert(("test".into(), 2, committed.offset, tx_id));
    assert_eq!(stored(&before), acked);

    broker.restart().await;
    let after = broker.records(None);
    assert_eq!(after, before, "records changed across the restart");

    // New puts continue each partition's log; ids stay unique.
    let ends = ends(&after);
    let mut client = RawClient::connect(broker.local_addr()).await;
    for partition in 0..3 {
        let (id, p, offset) = put_result(
            &client
                .call(&put("test", partition, b"after restart", 7))
                .await
                .unwrap(),
        );
        assert_eq!(p, partition);
        assert_eq!(offset, ends[&("test".to_owned(), partition as u32)]);
        assert!(!after.iter().any(|r| r.id == id), "id {id} reused");
    }
    assert_eq!(broker.records(None).len(), after.len() + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_topic_found_on_disk_is_registered_at_startup() {
    let zk = ZkServer::shared();
    let root = unique_root();
    let mut broker = TestBroker::start(zk, &root, 0, &[("test", 1), ("log-*", 2)]).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    put_result(&client.call(&put("log-app", 1, b"x", 1)).await.unwrap());
    let zk_client = zk.client().await;
    let topics = &[("test", 1), ("log-app", 2)];
    eventually(Duration::from_secs(10), "log-app to be registered", || {
        all_present(&zk_client, &root, 0, topics)
    })
    .await;

    broker.restart().await;
    // docs/protocol.md §1.3 step 4: topics found in the data directory are
    // registered at startup, not only on the next put (which a producer
    // could not send: it finds partitions in ZooKeeper).
    assert_registered(&zk_client, &root, 0, &broker.uri().to_string(), topics).await;
}

/// Fields of one `metaq-broker dump` line, checked to be exactly these.
fn dump_fields(line: &Value, bodies: bool) -> (String, u32, i64, i64, i32, u32, i32) {
    let object = line.as_object().expect("a JSON object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort();
    let mut expected = vec![
        "checksum",
        "checksum_valid",
        "flag",
        "id",
        "length",
        "offset",
        "partition",
        "topic",
    ];
    if bodies {
        expected.extend(["attribute", "payload"]);
        expected.sort();
    }
    assert_eq!(keys, expected, "{line}");
    assert_eq!(line["checksum_valid"], json!(true), "{line}");
    (
        line["topic"].as_str().unwrap().to_owned(),
        line["partition"].as_u64().unwrap() as u32,
        line["offset"].as_i64().unwrap(),
        line["id"].as_i64().unwrap(),
        line["flag"].as_i64().unwrap() as i32,
        line["length"].as_u64().unwrap() as u32,
        line["checksum"].as_i64().unwrap() as i32,
    )
}

fn dumped(data_dir: &Path) -> Acked {
    dump(data_dir, &[])
        .iter()
        .map(|line| {
            let (topic, partition, offset, id, ..) = dump_fields(line, false);
            (topic, partition, offset, id)
        })
        .collect()
}

fn dumped_ends(data_dir: &Path) -> BTreeMap<(String, u32), i64> {
    let mut ends = BTreeMap::new();
    for line in dump(data_dir, &[]) {
        let (topic, partition, offset, _, _, length, _) = dump_fields(&line, false);
        ends.insert((topic, partition), offset + 20 + i64::from(length));
    }
    ends
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_prints_every_field_of_what_was_acknowledged() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 2), ("other", 1)]).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    // docs/protocol.md §3.14 example 2 (attribute tag1) and example 1.
    let mut example2 = b"put test 1 13 1 1184113660 0\r\n".to_vec();
    example2.extend_from_slice(&[0, 0, 0, 4]);
    example2.extend_from_slice(b"tag1hello");
    let (id2, _, _) = put_result(&client.call(&example2).await.unwrap());
    let (id1, _, _) = put_result(
        &client
            .call(b"put test 0 5 0 907060870 1\r\nhello")
            .await
            .unwrap(),
    );
    let (id3, _, _) = put_result(&client.call(&put("other", 0, b"o", 2)).await.unwrap());

    let lines = dump(broker.data_dir(), &[]);
    let fields: Vec<_> = lines.iter().map(|l| dump_fields(l, false)).collect();
    assert_eq!(
        fields,
        [
            ("other".into(), 0, 0, id3, 0, 1, crc(b"o")),
            ("test".into(), 0, 0, id1, 0, 5, 907_060_870),
            ("test".into(), 1, 0, id2, 1, 13, 1_184_113_660),
        ]
    );

    let lines = dump(broker.data_dir(), &["--topic", "test", "--bodies"]);
    assert_eq!(lines.len(), 2);
    dump_fields(&lines[0], true);
    assert_eq!(
        (&lines[0]["attribute"], &lines[0]["payload"]),
        (&Value::Null, &json!("hello"))
    );
    assert_eq!(
        (&lines[1]["attribute"], &lines[1]["payload"]),
        (&json!("tag1"), &json!("hello"))
    );
    assert!(dump(broker.data_dir(), &["--topic", "none"]).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_nothing_acknowledged_and_the_restart_continues_the_logs() {
    let zk = ZkServer::shared();
    let root = unique_root();
    let data = tempfile::tempdir().unwrap();
    // Group commit is the default: a 200 means the record was forced to disk.
    let args = broker_args(
        zk,
        &root,
        0,
        data.path(),
        &["test:4"],
        &["--zk-session-timeout-ms", "2000"],
    );
    let mut process = BrokerProcess::spawn(BROKER_BIN, &args).unwrap();
    let mut client = RawClient::connect(process.addr()).await;
    let acked = put_all(&mut client, &frames("test", 4, 400)).await;

    // Kill it while a second batch is in flight: only some of it is answered.
    let more = frames("test", 4, 400);
    let batch: Vec<u8> = more.iter().flat_map(|(_, f)| f.clone()).collect();
    client.send(&batch).await;
    let mut in_flight_acked = BTreeSet::new();
    for _ in 0..100 {
        let answer = client.response().await.unwrap();
        let (id, partition, offset) = put_result(&answer);
        in_flight_acked.insert(("test".to_owned(), partition as u32, offset, id));
    }
    process.kill();

    let on_disk = dumped(data.path());
    assert!(acked.is_subset(&on_disk), "acknowledged records lost");
    assert!(
        in_flight_acked.is_subset(&on_disk),
        "acknowledged records lost"
    );
    // Offsets are contiguous from 0 in every partition.
    let mut next: BTreeMap<u32, i64> = BTreeMap::new();
    for line in dump(data.path(), &[]) {
        let (_, partition, offset, _, _, length, _) = dump_fields(&line, false);
        let expected = next.entry(partition).or_insert(0);
        assert_eq!(offset, *expected);
        *expected += 20 + i64::from(length);
    }

    // Same data dir, same id, same root: starts once the old session is gone.
    let ends = dumped_ends(data.path());
    let mut process = BrokerProcess::spawn(BROKER_BIN, &args).unwrap();
    // Registered under the new address once the killed session expired.
    let zk_client = zk.client().await;
    let uri = format!("meta://127.0.0.1:{}", process.addr().port());
    assert_registered(&zk_client, &root, 0, &uri, &[("test", 4)]).await;
    let mut client = RawClient::connect(process.addr()).await;
    for partition in 0..4 {
        let (_, _, offset) = put_result(
            &client
                .call(&put("test", partition, b"after", 1))
                .await
                .unwrap(),
        );
        assert_eq!(offset, ends[&("test".to_owned(), partition as u32)]);
    }
    assert!(process.terminate().unwrap().success());
    let after = dumped(data.path());
    assert_eq!(after.len(), on_disk.len() + 4);
    assert!(on_disk.is_subset(&after));
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_cut_at_restart_and_everything_before_it_stays() {
    // Cut inside the last body, inside the last header, and leave a few
    // bytes of a header that never finished.
    for (cut, junk) in [(3u64, &[][..]), (25 - 5, &[][..]), (0, &[0u8, 0, 0][..])] {
        let zk = ZkServer::shared();
        let root = unique_root();
        let mut broker = TestBroker::start(zk, &root, 0, &[("test", 2)]).await;
        let mut client = RawClient::connect(broker.local_addr()).await;
        let mut acked = Vec::new();
        for (i, body) in [&b"first"[..], b"second", b"third"].iter().enumerate() {
            acked.push(put_result(
                &client.call(&put("test", 0, body, i as i32)).await.unwrap(),
            ));
        }
        put_result(&client.call(&put("test", 1, b"other", 9)).await.unwrap());
        broker.shutdown().await;

        let segment = segment_files(&broker.data_dir().join("test-0"))
            .pop()
            .unwrap();
        let len = fs::metadata(&segment).unwrap().len();
        assert_eq!(len, 25 + 26 + 25);
        let file = OpenOptions::new().append(true).open(&segment).unwrap();
        file.set_len(len - cut).unwrap();
        use std::io::Write;
        (&file).write_all(junk).unwrap();
        drop(file);
        let torn_at = if cut > 0 { acked[2].2 } else { len as i64 };

        broker.restart().await;
        let records = broker.records(Some("test"));
        let p0: Vec<_> = records.iter().filter(|r| r.partition == 0).collect();
        let kept = if cut > 0 { 2 } else { 3 };
        assert_eq!(
            p0.iter().map(|r| (r.id, r.offset)).collect::<Vec<_>>(),
            acked[..kept].iter().map(|a| (a.0, a.2)).collect::<Vec<_>>(),
            "cut {cut} junk {junk:?}"
        );
        assert!(records.iter().all(|r| r.checksum_valid));
        assert_eq!(records.iter().filter(|r| r.partition == 1).count(), 1);
        // The file was cut where the torn record started.
        assert_eq!(fs::metadata(&segment).unwrap().len(), torn_at as u64);

        // The next put takes the torn record's place.
        let mut client = RawClient::connect(broker.local_addr()).await;
        let (id, _, offset) =
            put_result(&client.call(&put("test", 0, b"fourth", 1)).await.unwrap());
        assert_eq!(offset, torn_at);
        let records = broker.records(Some("test"));
        assert_eq!(
            records
                .iter()
                .filter(|r| r.partition == 0)
                .last()
                .unwrap()
                .id,
            id
        );
        assert!(records.iter().all(|r| r.checksum_valid));
        broker.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_roll_by_offset_and_continue_after_restart() {
    let zk = ZkServer::shared();
    let data = tempfile::tempdir().unwrap();
    // Three 30-byte records per 100-byte segment.
    let config = test_broker_config(zk, &unique_root(), 0, data.path(), &[("test", 1)])
        .with_max_segment_size(100);
    let mut broker = TestBroker::start_with(config, data).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    let frames: Vec<_> = (0..7)
        .map(|i| ("test".to_owned(), put("test", 0, b"0123456789", i)))
        .collect();
    let acked = put_all(&mut client, &frames).await;
    let offsets: Vec<i64> = acked.iter().map(|a| a.2).collect();
    assert_eq!(offsets, [0, 30, 60, 90, 120, 150, 180]);
    let names = |dir: &Path| -> Vec<String> {
        segment_files(dir)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    let dir = broker.data_dir().join("test-0");
    assert_eq!(
        names(&dir),
        [
            "00000000000000000000.meta",
            "00000000000000000090.meta",
            "00000000000000000180.meta"
        ]
    );

    broker.restart().await;
    assert_eq!(stored(&broker.records(None)), acked);
    let mut client = RawClient::connect(broker.local_addr()).await;
    for (opaque, expected) in [(1, 210), (2, 240), (3, 270)] {
        let (_, _, offset) = put_result(
            &client
                .call(&put("test", 0, b"0123456789", opaque))
                .await
                .unwrap(),
        );
        assert_eq!(offset, expected);
    }
    assert_eq!(names(&dir).last().unwrap(), "00000000000000000270.meta");
    assert_eq!(dump(broker.data_dir(), &[]).len(), 10);
}
