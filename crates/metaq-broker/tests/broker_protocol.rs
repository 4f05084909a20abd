//! Every answer of the development broker over real TCP, from raw bytes
//! (docs/protocol.md §3, 5.1): puts in every form, the 500 texts of docs/protocol.md §5.1, the size
//! limit, the refused consumer commands, `version`, `stats`, `quit`, injected
//! failures and pipelining.

mod broker_common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use broker_common::*;
use metaq::protocol::StatusCode;
use metaq_testkit::{test_broker_config, unique_root, RawClient, TestBroker, ZkServer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_answers_id_partition_and_byte_offset_exactly() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 7, &[("test", 4)]).await;
    assert_eq!(crc(b"hello"), 907_060_870, "docs/protocol.md §3.14");
    let mut stream = TcpStream::connect(broker.local_addr()).await.unwrap();

    // Example 1 of docs/protocol.md §3.14, byte for byte.
    let example1: &[u8] = b"put test 0 5 0 907060870 1\r\nhello";
    assert_eq!(example1.len(), 33);
    stream.write_all(example1).await.unwrap();
    let (header, body) = raw_result(&mut stream).await;
    assert_eq!(header[1], "200");
    assert_eq!(header[3], "1");
    let body = String::from_utf8(body).unwrap();
    assert_eq!(header[2], body.len().to_string());
    let parts: Vec<&str> = body.split(' ').collect();
    assert_eq!(parts.len(), 3, "{body:?}");
    assert_eq!(&parts[1..], ["0", "0"]);
    let first_id: i64 = parts[0].parse().unwrap();

    // Offsets are byte positions: 20-byte header + body.
    let mut ids = vec![first_id];
    let mut expected_offset = 25;
    for (opaque, payload) in [(2, &b"hello"[..]), (3, b"twelve bytes"), (4, b"")] {
        stream
            .write_all(&put("test", 0, payload, opaque))
            .await
            .unwrap();
        let (header, body) = raw_result(&mut stream).await;
        assert_eq!(
            (header[1].as_str(), header[3].as_str()),
            ("200", &*opaque.to_string())
        );
        let body = String::from_utf8(body).unwrap();
        let parts: Vec<&str> = body.split(' ').collect();
        assert_eq!(
            &parts[1..],
            ["0", &*expected_offset.to_string()],
            "{body:?}"
        );
        ids.push(parts[0].parse().unwrap());
        expected_offset += 20 + payload.len() as i64;
    }
    // Another partition starts at 0.
    stream.write_all(&put("test", 3, b"p3", 5)).await.unwrap();
    let (_, body) = raw_result(&mut stream).await;
    let body = String::from_utf8(body).unwrap();
    assert!(body.ends_with(" 3 0"), "{body:?}");

    // Ids: increasing, worker id = broker id (docs/protocol.md §5.3).
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert!(ids.iter().all(|id| (id >> 12) & 0x3ff == 7), "{ids:?}");

    let records = broker.records(Some("test"));
    let p0: Vec<_> = records.iter().filter(|r| r.partition == 0).collect();
    assert_eq!(
        p0.iter().map(|r| (r.offset, r.id)).collect::<Vec<_>>(),
        [(0, ids[0]), (25, ids[1]), (50, ids[2]), (82, ids[3])]
    );
    assert_eq!(p0[0].checksum, 907_060_870);
    assert_eq!(&p0[0].body[..], b"hello");
    assert!(records.iter().all(|r| r.checksum_valid && r.flag == 0));
    assert_eq!(records.len(), 5);
}

#[tokio::test]
async fn put_with_an_attribute_is_stored_as_sent() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 4)]).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    // Example 2 of docs/protocol.md §3.14, byte for byte.
    let mut example2 = b"put test 1 13 1 1184113660 2\r\n".to_vec();
    example2.extend_from_slice(&[0, 0, 0, 4]);
    example2.extend_from_slice(b"tag1hello");
    assert_eq!(example2.len(), 43);
    assert_eq!(crc(&example2[30..]), 1_184_113_660);

    let answer = client.call(&example2).await.unwrap();
    assert_eq!(answer.opaque, 2);
    let (id, partition, offset) = put_result(&answer);
    assert_eq!((partition, offset), (1, 0));

    let records = broker.records(Some("test"));
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!((r.partition, r.offset, r.id, r.flag), (1, 0, id, 1));
    assert_eq!(
        (r.length, r.checksum, r.checksum_valid),
        (13, 1_184_113_660, true)
    );
    assert_eq!(&r.body[..], &example2[30..]);
}

#[tokio::test]
async fn legacy_six_token_put_without_checksum_is_accepted() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 4)]).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    // The Python/Ruby form of example 1.
    let answer = client.call(b"put test 0 5 0 1\r\nhello").await.unwrap();
    assert_eq!(answer.opaque, 1);
    let (id, partition, offset) = put_result(&answer);
    assert_eq!((partition, offset), (0, 0));
    // Checksum -1 is "not supplied" in the 7-token form too.
    let answer = client.call(b"put test 0 5 0 -1 2\r\nworld").await.unwrap();
    assert_eq!(put_result(&answer).2, 25);

    let records = broker.records(Some("test"));
    assert_eq!(records.len(), 2);
    // The broker computes the checksum it stores.
    assert_eq!((records[0].id, records[0].checksum), (id, 907_060_870));
    assert!(records.iter().all(|r| r.checksum_valid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_minus_one_lets_the_broker_choose_one_in_range() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 4)]).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    let mut batch = Vec::new();
    for opaque in 0..64 {
        batch.extend(put("test", -1, format!("m{opaque}").as_bytes(), opaque));
    }
    client.send(&batch).await;
    let answers = responses(&mut client, 64).await;
    let mut used = HashSet::new();
    let mut answered = HashSet::new();
    for answer in answers.values() {
        let (id, partition, offset) = put_result(answer);
        assert!((0..4).contains(&partition), "partition {partition}");
        used.insert(partition);
        answered.insert((id, partition as u32, offset));
    }
    // 64 uniform draws over 4 partitions all landing on one: 4^-63.
    assert!(used.len() > 1, "every put went to {used:?}");
    let stored: HashSet<_> = broker
        .records(Some("test"))
        .iter()
        .map(|r| (r.id, r.partition, r.offset))
        .collect();
    assert_eq!(stored, answered);
}

#[tokio::test]
async fn refused_puts_get_the_reference_texts_and_store_nothing() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 4)]).await;
    let uri = format!("meta://127.0.0.1:{}", broker.local_addr().port());
    let mut client = RawClient::connect(broker.local_addr()).await;

    let mut bad_crc = b"put test 0 5 0 907060871 13\r\nhello".to_vec();
    bad_crc.extend(b"put test 1 5 0 0 14\r\nhello");
    let cases: Vec<(Vec<u8>, i32, String)> = vec![
        // Example 6 of docs/protocol.md §3.14.
        (
            b"put test 9 5 0 907060870 8\r\nhello".to_vec(),
            8,
            put_failure(&uri, "test", 9, "wrong partition 9"),
        ),
        (
            put("test", 4, b"hello", 9),
            9,
            put_failure(&uri, "test", 4, "wrong partition 4"),
        ),
        (
            put("test", -2, b"hello", 10),
            10,
            put_failure(&uri, "test", -2, "wrong partition -2"),
        ),
        (
            put("nope", 0, b"hello", 11),
            11,
            put_failure(&uri, "nope", 0, "The server do not accept topic nope"),
        ),
        // Even a partition that would be wrong: the topic is checked first.
        (
            put("nope", 7, b"hello", 12),
            12,
            put_failure(&uri, "nope", 7, "The server do not accept topic nope"),
        ),
    ];
    let checksum_failure =
        "Checksum failure,message may be corrupted when transfering on networking.";
    for (frame, opaque, expected) in &cases {
        let answer = client.call(frame).await.unwrap();
        assert_eq!((answer.code, answer.opaque), (StatusCode(500), *opaque));
        assert_eq!(text(&answer), expected);
    }
    // Wrong checksums, including 0 (a real value, not "absent").
    client.send(&bad_crc).await;
    let answers = responses(&mut client, 2).await;
    for (opaque, partition) in [(13, 0), (14, 1)] {
        assert_eq!(answers[&opaque].code.0, 500);
        assert_eq!(
            text(&answers[&opaque]),
            put_failure(&uri, "test", partition, checksum_failure)
        );
    }
    // The example-6 line is exactly 99 bytes in docs/protocol.md §3.14; here the
    // port has a different length, so check the formula instead.
    assert_eq!(
        cases[0].2.len(),
        99 - "10.0.0.5:8123".len() + format!("127.0.0.1:{}", broker.local_addr().port()).len()
    );

    assert!(broker.records(None).is_empty());
    // The connection is still fine.
    put_result(&client.call(&put("test", 0, b"ok", 15)).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_get_500_and_the_connection_stays_usable() {
    let zk = ZkServer::shared();
    let root = unique_root();
    let data = tempfile::tempdir().unwrap();
    let config =
        test_broker_config(zk, &root, 0, data.path(), &[("test", 2)]).with_max_message_size(1024);
    let broker = TestBroker::start_with(config, data).await;
    let uri = broker.uri().to_string();
    let prefix = put_failure(&uri, "test", 1, "");
    let mut client = RawClient::connect(broker.local_addr()).await;

    // Exactly at the limit: accepted.
    let (_, _, offset) = put_result(
        &client
            .call(&put("test", 1, &[b'a'; 1024], 1))
            .await
            .unwrap(),
    );
    assert_eq!(offset, 0);
    // One byte over: 500 with the put prefix, nothing stored.
    let answer = client
        .call(&put("test", 1, &[b'b'; 1025], 2))
        .await
        .unwrap();
    assert_eq!((answer.code.0, answer.opaque), (500, 2));
    assert!(text(&answer).starts_with(&prefix), "{}", text(&answer));
    assert!(text(&answer).len() > prefix.len(), "a detail follows");
    // Next request on the same connection.
    let (_, _, offset) = put_result(&client.call(&put("test", 1, b"next", 3)).await.unwrap());
    assert_eq!(offset, 1044);

    // A 5 MiB body streamed in 64 KiB pieces, then a small put.
    let big: Vec<u8> = (0..5 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    client
        .send(format!("put test 1 {} 0 {} 4\r\n", big.len(), crc(&big)).as_bytes())
        .await;
    for piece in big.chunks(64 * 1024) {
        client.send(piece).await;
        tokio::task::yield_now().await;
    }
    client.send(&put("test", 1, b"after", 5)).await;
    let answers = responses(&mut client, 2).await;
    assert_eq!(answers[&4].code.0, 500);
    assert!(text(&answers[&4]).starts_with(&prefix));
    assert_eq!(put_result(&answers[&5]).2, 1044 + 24);

    // And pipelined in one write: over-limit put between two good ones.
    let mut batch = put("test", 0, b"x", 6);
    batch.extend(put("test", 0, &vec![b'z'; 300_000], 7));
    batch.extend(put("test", 0, b"y", 8));
    client.send(&batch).await;
    let answers = responses(&mut client, 3).await;
    assert_eq!(put_result(&answers[&6]).2, 0);
    assert_eq!(answers[&7].code.0, 500);
    assert_eq!(put_result(&answers[&8]).2, 21);

    let stored: Vec<u32> = broker.records(None).iter().map(|r| r.length).collect();
    assert_eq!(stored, [1, 1, 1024, 4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_limit_is_two_mebibytes() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 1)]).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    let limit = 2 * 1024 * 1024;
    put_result(
        &client
            .call(&put("test", 0, &vec![7u8; limit], 1))
            .await
            .unwrap(),
    );
    let answer = client
        .call(&put("test", 0, &vec![7u8; limit + 1], 2))
        .await
        .unwrap();
    assert_eq!(answer.code.0, 500);
    assert_eq!(
        put_result(&client.call(&put("test", 0, b"ok", 3)).await.unwrap()).2,
        (limit + 20) as i64
    );
}

#[tokio::test]
async fn get_offset_and_sync_are_answered_503() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 1)]).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    let mut batch = b"get test group 0 0 1024 21\r\n".to_vec();
    batch.extend(b"offset test group 0 0 22\r\n");
    batch.extend(b"sync test 0 5 0 12345 907060870 23\r\nhello");
    batch.extend(b"sync test 0 5 0 12346 24\r\nhello");
    batch.extend(b"version 25\r\n");
    client.send(&batch).await;
    let answers = responses(&mut client, 5).await;
    for opaque in 21..=24 {
        assert_eq!(answers[&opaque].code.0, 503, "opaque {opaque}");
    }
    assert_eq!(answers[&25].code.0, 200);
    // sync never stores (this broker is no slave).
    assert!(broker.records(None).is_empty());
}

#[tokio::test]
async fn version_answers_200_with_the_opaque_or_the_default() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 1)]).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    let answer = client.call(b"version 7\r\n").await.unwrap();
    assert_eq!((answer.code.0, answer.opaque), (200, 7));
    assert!(!answer.body.is_empty());
    let answer = client.call(b"version\r\n").await.unwrap();
    assert_eq!((answer.code.0, answer.opaque), (200, 2_147_483_647));
    let answer = client.call(b"version -2147483648\r\n").await.unwrap();
    assert_eq!((answer.code.0, answer.opaque), (200, i32::MIN));
    // Any word starting with `v` but `value` is read as version (docs/protocol.md §3.1).
    let answer = client.call(b"vxyz 8\r\n").await.unwrap();
    assert_eq!((answer.code.0, answer.opaque), (200, 8));
    // Trailing empty tokens are dropped (Java split), inner ones kept.
    let answer = client.call(b"version 9 \r\n").await.unwrap();
    assert_eq!((answer.code.0, answer.opaque), (200, 9));
    let answer = client.call(b"version 10   \r\n").await.unwrap();
    assert_eq!((answer.code.0, answer.opaque), (200, 10));
    let answer = client.call(&put("test", 0, b"x", 11)[..]).await.unwrap();
    put_result(&answer);
    let answer = client.call(b"put test 0 1 0 -1 12 \r\nx").await.unwrap();
    assert_eq!((answer.code.0, answer.opaque), (200, 12));
}

#[tokio::test]
async fn stats_answers_the_summary() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 9, &[("test", 1)]).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    put_result(&client.call(&put("test", 0, b"a", 1)).await.unwrap());
    assert_eq!(code(&mut client, &put("test", 5, b"a", 2)).await, 500);

    // The Java encoding without an item: two spaces.
    let answer = client.call(b"stats  3\r\n").await.unwrap();
    assert_eq!((answer.code.0, answer.opaque), (200, 3));
    let stats = stats_lines(text(&answer));
    for key in [
        "pid",
        "broker_id",
        "port",
        "uptime",
        "version",
        "slave",
        "curr_connections",
        "threads",
        "cmd_put",
        "cmd_get",
        "cmd_offset",
        "tx_begin",
        "tx_xa_begin",
        "tx_commit",
        "tx_rollback",
        "get_miss",
        "put_failed",
        "total_messages",
        "topics",
        "config_checksum",
    ] {
        assert!(stats.contains_key(key), "no {key} in {stats:?}");
    }
    assert_eq!(stats["broker_id"], "9");
    assert_eq!(stats["port"], broker.local_addr().port().to_string());
    assert_eq!(stats["cmd_put"], "2");
    assert_eq!(stats["put_failed"], "1");
    assert_eq!(stats["total_messages"], "1");
    assert_eq!(stats["curr_connections"], "1");

    // Without an opaque, and with an item.
    let answer = client.call(b"stats\r\n").await.unwrap();
    assert_eq!((answer.code.0, answer.opaque), (200, 2_147_483_647));
    stats_lines(text(&answer));
    let answer = client.call(b"stats topics 4\r\n").await.unwrap();
    assert_eq!((answer.code.0, answer.opaque), (200, 4));
    stats_lines(text(&answer));
}

#[tokio::test]
async fn quit_closes_the_connection_after_the_answers_before_it() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 1)]).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    let mut batch = put("test", 0, b"a", 1);
    batch.extend(b"quit\r\n");
    batch.extend(b"version 2\r\n"); // never read
    client.send(&batch).await;
    let answer = client.response().await.unwrap();
    assert_eq!(answer.opaque, 1);
    put_result(&answer);
    assert!(client.response().await.is_none(), "nothing after quit");
    assert!(client.is_closed().await);

    // Any word starting with q is quit (docs/protocol.md §3.1).
    let mut client = RawClient::connect(broker.local_addr()).await;
    client.send(b"qwerty 5\r\n").await;
    assert!(client.is_closed().await);
    assert_eq!(broker.records(None).len(), 1);
}

#[tokio::test]
async fn injected_failures_answer_the_code_and_store_nothing() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 1)]).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    broker.faults().fail_next_puts(2, StatusCode::FORBIDDEN);
    for opaque in [1, 2] {
        let answer = client.call(&put("test", 0, b"x", opaque)).await.unwrap();
        assert_eq!((answer.code.0, answer.opaque), (403, opaque));
        assert_eq!(text(&answer), "injected failure");
    }
    // Other requests are not affected and do not count.
    broker
        .faults()
        .fail_next_puts(1, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(code(&mut client, b"version 3\r\n").await, 200);
    assert_eq!(code(&mut client, &put("test", 0, b"x", 4)).await, 500);
    let (id, _, offset) = put_result(&client.call(&put("test", 0, b"x", 5)).await.unwrap());
    assert_eq!(offset, 0);
    let records = broker.records(None);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].id, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_pipelined_puts_are_all_answered_in_send_order_per_partition() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 4), ("other", 2)]).await;
    let mut client = RawClient::connect(broker.local_addr()).await;
    let mut batch = Vec::new();
    // (topic, partition, body length) by opaque.
    let mut sent = Vec::new();
    for i in 0..1000i32 {
        let (topic, partition) = if i % 5 == 4 {
            ("other", i % 2)
        } else {
            ("test", (i * 7) % 4)
        };
        let body = vec![b'0' + (i % 10) as u8; (i % 37) as usize];
        batch.extend(put(topic, partition, &body, i));
        sent.push((topic, partition, body.len() as i64));
        // Requests of other kinds in between.
        if i % 100 == 0 {
            batch.extend(format!("version {}\r\n", 10_000 + i).into_bytes());
        }
    }
    client.send(&batch).await;
    let answers = responses(&mut client, 1010).await;

    let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    let mut ids = HashSet::new();
    let mut expected_records = Vec::new();
    for (i, (topic, partition, len)) in sent.iter().enumerate() {
        let (id, answered_partition, offset) = put_result(&answers[&(i as i32)]);
        assert_eq!(answered_partition, *partition);
        let expected = next.entry((*topic, *partition)).or_insert(0);
        assert_eq!(offset, *expected, "put {i} to {topic}-{partition}");
        *expected += 20 + len;
        assert!(ids.insert(id), "duplicate id {id}");
        expected_records.push((topic.to_string(), *partition as u32, offset, id));
    }
    for i in (0..1000).step_by(100) {
        assert_eq!(answers[&(10_000 + i)].code.0, 200);
    }
    let mut stored: Vec<_> = broker
        .records(None)
        .into_iter()
        .map(|r| {
            assert!(r.checksum_valid);
            (r.topic, r.partition, r.offset, r.id)
        })
        .collect();
    stored.sort();
    expected_records.sort();
    assert_eq!(stored, expected_records);
    // Still answering.
    let answer = client.response_within(Duration::from_millis(100)).await;
    assert!(answer.is_none(), "unexpected extra answer {answer:?}");
    assert_eq!(code(&mut client, b"version 1\r\n").await, 200);
}
