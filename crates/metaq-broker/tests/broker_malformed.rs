//! Malformed input closes only the connection that sent it, without an
//! answer for the bad frame, after answering every request decoded before it
//! (docs/protocol.md §3.1); other connections keep working.

mod broker_common;

use broker_common::*;
use metaq_testkit::{unique_root, RawClient, TestBroker, ZkServer};

/// Sends a good put and a `version` followed by `bad` in one write; checks
/// that both are answered, nothing else is, and the connection closes.
async fn closes_after_earlier_answers(broker: &TestBroker, bad: &[u8], what: &str) {
    let mut client = RawClient::connect(broker.local_addr()).await;
    let mut bytes = put("test", 0, b"before", 1);
    bytes.extend(b"version 2\r\n");
    bytes.extend_from_slice(bad);
    // Anything after the bad frame is never read.
    bytes.extend(b"version 3\r\n");
    client.send(&bytes).await;
    let answers = responses(&mut client, 2).await;
    put_result(&answers[&1]);
    assert_eq!(answers[&2].code.0, 200, "{what}");
    if let Some(extra) = client.response().await {
        panic!("{what}: unexpected answer {extra:?}");
    }
    assert!(client.is_closed().await, "{what}: connection still open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_malformed_frame_closes_only_its_connection() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 2)]).await;
    let mut bystander = RawClient::connect(broker.local_addr()).await;
    assert_eq!(code(&mut bystander, b"version 100\r\n").await, 200);

    let cases: &[(&[u8], &str)] = &[
        (b"hello 1\r\n", "unknown command"),
        (b"pxt test 0 5 0 9\r\nhello", "unknown word starting with p"),
        (b"get test group 0 0 10\r\n", "wrong token count for get"),
        (b"\r\n", "blank line"),
        (b" version 5\r\n", "line starting with a space"),
        (b"put test 0 5 1\r\nhello", "put with 5 tokens"),
        (
            b"put test zero 5 0 907060870 4\r\nhello",
            "non-numeric partition",
        ),
        (
            b"put test 0 five 0 907060870 4\r\nhello",
            "non-numeric length",
        ),
        (
            b"put test 0 5 0 907060870 four\r\nhello",
            "non-numeric opaque",
        ),
        (b"put test 0 -5 0 907060870 4\r\n", "negative length"),
        (b"version seven\r\n", "non-numeric version opaque"),
        (b"result 200 0 4\r\n", "a response sent to the broker"),
        (b"value 0 4\r\n", "a data response sent to the broker"),
        (
            b"put test 0 5 0 907060870 TX:only-two 4\r\nhello",
            "TX key with two parts",
        ),
        (
            b"put test 0 5 0 TX:s:1:extra 4\r\nhello",
            "7-token put with a bad key",
        ),
        (
            b"transaction TX:s:notanumber s BEGIN 4\r\n",
            "TX counter not a number",
        ),
        (
            b"transaction TX:s:99999999999 s BEGIN 4\r\n",
            "TX counter over an int",
        ),
        (b"transaction BAD:key s BEGIN 4\r\n", "unknown key kind"),
        (
            b"transaction XID:1:0g:0a:q s BEGIN q 4\r\n",
            "bad hex in XID",
        ),
        (
            b"transaction TX:s:1 s LAUNCH 4\r\n",
            "unknown transaction type",
        ),
        (b"transaction TX:s:1 s 4\r\n", "transaction with 4 tokens"),
    ];
    for (bad, what) in cases {
        closes_after_earlier_answers(&broker, bad, what).await;
        let answer = bystander.call(b"version 101\r\n").await;
        assert_eq!(
            answer.map(|a| a.opaque),
            Some(101),
            "bystander after {what}"
        );
    }
    // Only the good puts were stored.
    assert_eq!(broker.records(None).len(), cases.len());
    put_result(
        &bystander
            .call(&put("test", 1, b"still", 102))
            .await
            .unwrap(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_lines_are_capped_at_64_kib() {
    let zk = ZkServer::shared();
    let broker = TestBroker::start(zk, &unique_root(), 0, &[("test", 2)]).await;
    let mut bystander = RawClient::connect(broker.local_addr()).await;

    // `stats <item> <opaque>` is valid with any item, so only the length matters.
    let line = |len: usize, opaque: i32| {
        let fixed = format!("stats  {opaque}").len();
        let mut line = format!("stats {} {opaque}", "x".repeat(len - fixed)).into_bytes();
        assert_eq!(line.len(), len);
        line.extend(b"\r\n");
        line
    };

    // Exactly 64 KiB (CRLF excluded) is still a header.
    let mut client = RawClient::connect(broker.local_addr()).await;
    let answer = client.call(&line(64 * 1024, 7)).await.unwrap();
    assert_eq!((answer.code.0, answer.opaque), (200, 7));
    assert_eq!(client.call(b"version 8\r\n").await.unwrap().opaque, 8);

    // One byte more, with its CRLF.
    closes_after_earlier_answers(&broker, &line(64 * 1024 + 1, 9), "64 KiB + 1 with CRLF").await;
    // Far more, with CRLF.
    closes_after_earlier_answers(&broker, &line(100 * 1024, 10), "100 KiB with CRLF").await;

    // No CRLF at all: the broker does not wait for one past the cap. 64 KiB
    // + 2 bytes without CRLF can no longer be a header (64 KiB + CR could).
    // Exactly that much, so the test never writes to a closed socket.
    let endless = vec![b'v'; 64 * 1024 + 2];
    let mut client = RawClient::connect(broker.local_addr()).await;
    let mut bytes = put("test", 0, b"before", 1);
    bytes.extend(b"version 2\r\n");
    bytes.extend(&endless);
    client.send(&bytes).await;
    let answers = responses(&mut client, 2).await;
    put_result(&answers[&1]);
    assert!(
        client.is_closed().await,
        "a header without CRLF is not capped"
    );

    // The same, arriving in small pieces.
    let mut client = RawClient::connect(broker.local_addr()).await;
    for piece in endless.chunks(1000) {
        client.send(piece).await;
    }
    assert!(
        client.is_closed().await,
        "a header without CRLF is not capped"
    );

    assert_eq!(bystander.call(b"version 11\r\n").await.unwrap().opaque, 11);
    assert_eq!(broker.records(None).len(), 3);
}
