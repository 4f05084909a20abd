//! The worked byte examples of docs/protocol.md §3.14, byte-exact,
//! and the decoder rules of sections 3.1 and 3.4 – 3.8.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use metaq::protocol::{
    attribute_body, checksum, encode_put, split_body, ClientCodec, CodecError, DecodeLimits,
    LocalTxId, ProtocolError, PutHeader, PutRequest, Request, Response, ServerCodec, StatusCode,
    TransactionKind, TransactionRequest, TxKey, UnsupportedRequest, XaTxId, DEFAULT_MAX_BODY,
    DEFAULT_MAX_LINE, DEFAULT_OPAQUE, FLAG_ATTRIBUTE, MAX_NAME_LEN,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const SESSION: &str = "192.168.1.10-1367290000000-1";
const TX1: &str = "TX:192.168.1.10-1367290000000-1:1";
const XID: &str = "XID:1:010203:0a:XAMessageProducer-host1";
const UQ: &str = "XAMessageProducer-host1";

/// Parses a hex dump as printed in docs/protocol.md (`0000  70 75 ...  |put ...|`).
fn from_hex_dump(dump: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in dump.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (offset, rest) = line.split_once("  ").expect("offset column");
        assert_eq!(
            usize::from_str_radix(offset, 16).unwrap(),
            out.len(),
            "offset column of {line:?}"
        );
        let hex = rest.split('|').next().unwrap();
        out.extend(
            hex.split_whitespace()
                .map(|b| u8::from_str_radix(b, 16).unwrap()),
        );
    }
    out
}

fn local_key() -> TxKey {
    TxKey::Local(LocalTxId {
        session_id: SESSION.to_owned(),
        counter: 1,
    })
}

fn xa_key() -> TxKey {
    TxKey::Xa(XaTxId {
        format_id: 1,
        global_id: vec![1, 2, 3],
        branch_qualifier: vec![0x0a],
        unique_qualifier: UQ.to_owned(),
    })
}

fn tx(
    key: TxKey,
    kind: TransactionKind,
    timeout_secs: Option<i32>,
    unique_qualifier: Option<&str>,
    opaque: i32,
) -> TransactionRequest {
    TransactionRequest {
        key,
        session_id: SESSION.to_owned(),
        kind,
        timeout_secs,
        unique_qualifier: unique_qualifier.map(str::to_owned),
        opaque,
    }
}

fn put(
    topic: &str,
    partition: i32,
    flag: i32,
    checksum: Option<i32>,
    tx_key: Option<TxKey>,
    opaque: i32,
    body: &[u8],
) -> PutRequest {
    PutRequest {
        topic: topic.to_owned(),
        partition,
        flag,
        checksum,
        tx_key,
        opaque,
        body: Bytes::copy_from_slice(body),
    }
}

fn encode_request(request: &Request) -> Vec<u8> {
    let mut buf = BytesMut::new();
    request.encode(&mut buf).expect("encodes");
    // The codec's encoder writes the same bytes.
    let mut via_codec = BytesMut::new();
    ClientCodec::default()
        .encode(request.clone(), &mut via_codec)
        .expect("codec encodes");
    assert_eq!(buf, via_codec);
    buf.to_vec()
}

fn encode_response(response: &Response) -> Vec<u8> {
    let mut buf = BytesMut::new();
    response.encode(&mut buf).expect("encodes");
    let mut via_codec = BytesMut::new();
    ServerCodec::default()
        .encode(response.clone(), &mut via_codec)
        .expect("codec encodes");
    assert_eq!(buf, via_codec);
    buf.to_vec()
}

/// Decodes every request in `bytes` with a fresh server codec; all bytes must be used.
fn server_decode_all_with(limits: DecodeLimits, bytes: &[u8]) -> Vec<Request> {
    let mut codec = ServerCodec::new(limits);
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(request) = codec.decode(&mut buf).expect("decodes") {
        out.push(request);
    }
    assert!(buf.is_empty(), "left over: {:?}", &buf[..]);
    out
}

fn server_decode_all(bytes: &[u8]) -> Vec<Request> {
    server_decode_all_with(DecodeLimits::default(), bytes)
}

/// Decodes exactly one request from `bytes`.
fn server_decode(bytes: &[u8]) -> Request {
    let mut all = server_decode_all(bytes);
    assert_eq!(all.len(), 1, "expected one frame, got {all:?}");
    all.pop().unwrap()
}

fn client_decode(bytes: &[u8]) -> Response {
    let mut codec = ClientCodec::default();
    let mut buf = BytesMut::from(bytes);
    let response = codec.decode(&mut buf).expect("decodes").expect("a frame");
    assert!(buf.is_empty(), "left over: {:?}", &buf[..]);
    response
}

/// The protocol error the server codec raises on `bytes` (after any good frames).
fn server_error_with(limits: DecodeLimits, bytes: &[u8]) -> ProtocolError {
    let mut codec = ServerCodec::new(limits);
    let mut buf = BytesMut::from(bytes);
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("no error for {:?}", String::from_utf8_lossy(bytes)),
            Err(CodecError::Protocol(e)) => return e,
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
}

fn server_error(bytes: &[u8]) -> ProtocolError {
    server_error_with(DecodeLimits::default(), bytes)
}

fn client_error_with(limits: DecodeLimits, bytes: &[u8]) -> ProtocolError {
    let mut codec = ClientCodec::new(limits);
    let mut buf = BytesMut::from(bytes);
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("no error for {:?}", String::from_utf8_lossy(bytes)),
            Err(CodecError::Protocol(e)) => return e,
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
}

/// Encode and decode both ways: `request` writes `wire`, `wire` reads back `request`.
fn assert_request_wire(request: Request, wire: &[u8]) {
    assert_eq!(
        String::from_utf8_lossy(&encode_request(&request)),
        String::from_utf8_lossy(wire)
    );
    assert_eq!(server_decode(wire), request);
}

fn assert_response_wire(response: Response, wire: &[u8]) {
    assert_eq!(
        String::from_utf8_lossy(&encode_response(&response)),
        String::from_utf8_lossy(wire)
    );
    assert_eq!(client_decode(wire), response);
}

fn ok(opaque: i32, body: &str) -> Response {
    Response::text(StatusCode::SUCCESS, opaque, body)
}

// ---------------------------------------------------------------------------
// Example 1: plain put
// ---------------------------------------------------------------------------

const EXAMPLE1: &[u8] = b"put test 0 5 0 907060870 1\r\nhello";
const EXAMPLE1_DUMP: &str = "
0000  70 75 74 20 74 65 73 74 20 30 20 35 20 30 20 39  |put test 0 5 0 9|
0010  30 37 30 36 30 38 37 30 20 31 0d 0a 68 65 6c 6c  |07060870 1..hell|
0020  6f                                               |o|
";

#[test]
fn crc_of_hello() {
    assert_eq!(crc32fast::hash(b"hello"), 0x3610_A686);
    assert_eq!(checksum(b"hello"), 907_060_870);
}

#[test]
fn example1_plain_put_encode_put() {
    assert_eq!(from_hex_dump(EXAMPLE1_DUMP), EXAMPLE1);
    assert_eq!(EXAMPLE1.len(), 33);
    let mut buf = BytesMut::new();
    let header = PutHeader {
        topic: "test",
        partition: 0,
        tx_key: None,
        opaque: 1,
    };
    encode_put(&mut buf, &header, None, b"hello").unwrap();
    assert_eq!(&buf[..], EXAMPLE1);
}

#[test]
fn example1_plain_put_request_encode_and_decode() {
    let request = put("test", 0, 0, Some(907_060_870), None, 1, b"hello");
    let mut buf = BytesMut::new();
    request.encode(&mut buf).unwrap();
    assert_eq!(&buf[..], EXAMPLE1);
    assert_request_wire(Request::Put(request), EXAMPLE1);
}

#[test]
fn example1_legacy_six_token_put() {
    let wire = b"put test 0 5 0 1\r\nhello";
    let request = put("test", 0, 0, None, None, 1, b"hello");
    assert_request_wire(Request::Put(request), wire);
}

// ---------------------------------------------------------------------------
// Example 2: put with attribute
// ---------------------------------------------------------------------------

const EXAMPLE2: &[u8] = b"put test 1 13 1 1184113660 2\r\n\x00\x00\x00\x04tag1hello";
const EXAMPLE2_DUMP: &str = "
0000  70 75 74 20 74 65 73 74 20 31 20 31 33 20 31 20  |put test 1 13 1 |
0010  31 31 38 34 31 31 33 36 36 30 20 32 0d 0a 00 00  |1184113660 2....|
0020  00 04 74 61 67 31 68 65 6c 6c 6f                 |..tag1hello|
";

#[test]
fn example2_attribute_put() {
    assert_eq!(from_hex_dump(EXAMPLE2_DUMP), EXAMPLE2);
    assert_eq!(EXAMPLE2.len(), 43);

    let body = attribute_body(Some("tag1"), b"hello");
    assert_eq!(&body[..], b"\x00\x00\x00\x04tag1hello");
    assert_eq!(body.len(), 13);
    assert_eq!(crc32fast::hash(&body), 3_331_597_308);
    assert_eq!(checksum(&body), 1_184_113_660);

    let mut buf = BytesMut::new();
    let header = PutHeader {
        topic: "test",
        partition: 1,
        tx_key: None,
        opaque: 2,
    };
    encode_put(&mut buf, &header, Some("tag1"), b"hello").unwrap();
    assert_eq!(&buf[..], EXAMPLE2);

    let request = put(
        "test",
        1,
        FLAG_ATTRIBUTE,
        Some(1_184_113_660),
        None,
        2,
        &body,
    );
    assert_request_wire(Request::Put(request), EXAMPLE2);

    let Request::Put(decoded) = server_decode(EXAMPLE2) else {
        panic!("not a put")
    };
    assert_eq!(
        split_body(decoded.flag, &decoded.body).unwrap(),
        (Some(&b"tag1"[..]), &b"hello"[..])
    );
}

// ---------------------------------------------------------------------------
// Example 3: success response
// ---------------------------------------------------------------------------

const EXAMPLE3: &[u8] = b"result 200 24 1\r\n-5468572396564774912 0 0";
const EXAMPLE3_DUMP: &str = "
0000  72 65 73 75 6c 74 20 32 30 30 20 32 34 20 31 0d  |result 200 24 1.|
0010  0a 2d 35 34 36 38 35 37 32 33 39 36 35 36 34 37  |.-54685723965647|
0020  37 34 39 31 32 20 30 20 30                       |74912 0 0|
";

#[test]
fn example3_success_response() {
    assert_eq!(from_hex_dump(EXAMPLE3_DUMP), EXAMPLE3);
    let response = client_decode(EXAMPLE3);
    assert_eq!(response.code, StatusCode::SUCCESS);
    assert!(response.code.is_success());
    assert_eq!(response.opaque, 1);
    assert_eq!(response.body.len(), 24);
    assert_eq!(
        response.put_result(),
        Some((-5_468_572_396_564_774_912, 0, 0))
    );
    assert_response_wire(ok(1, "-5468572396564774912 0 0"), EXAMPLE3);
}

#[test]
fn put_result_rejects_other_bodies() {
    for body in [
        "",
        "1 2",
        "1 2 3 4",
        "1  2 3",
        "a 0 0",
        "1 0 0 ",
        "1 2147483648 0",
    ] {
        assert_eq!(ok(1, body).put_result(), None, "{body:?}");
    }
    let binary = Response {
        code: StatusCode::SUCCESS,
        opaque: 1,
        body: Bytes::from_static(b"\xff 0 0"),
    };
    assert_eq!(binary.put_result(), None);
}

// ---------------------------------------------------------------------------
// Example 4: local transaction
// ---------------------------------------------------------------------------

const EXAMPLE4_PUT: &[u8] =
    b"put test 0 5 0 907060870 TX:192.168.1.10-1367290000000-1:1 4\r\nhello";
const EXAMPLE4_PUT_DUMP: &str = "
0000  70 75 74 20 74 65 73 74 20 30 20 35 20 30 20 39  |put test 0 5 0 9|
0010  30 37 30 36 30 38 37 30 20 54 58 3a 31 39 32 2e  |07060870 TX:192.|
0020  31 36 38 2e 31 2e 31 30 2d 31 33 36 37 32 39 30  |168.1.10-1367290|
0030  30 30 30 30 30 30 2d 31 3a 31 20 34 0d 0a 68 65  |000000-1:1 4..he|
0040  6c 6c 6f                                         |llo|
";

#[test]
fn example4_local_key() {
    assert_eq!(local_key().to_string(), TX1);
    assert_eq!(TX1.parse::<TxKey>().unwrap(), local_key());
}

#[test]
fn example4_begin_with_timeout() {
    let wire = b"transaction TX:192.168.1.10-1367290000000-1:1 192.168.1.10-1367290000000-1 BEGIN 10 3\r\n";
    assert_eq!(wire.len(), 87);
    let begin = tx(local_key(), TransactionKind::Begin, Some(10), None, 3);
    assert_request_wire(Request::Transaction(begin), wire);
    assert_response_wire(ok(3, ""), b"result 200 0 3\r\n");
}

#[test]
fn example4_transactional_put() {
    assert_eq!(from_hex_dump(EXAMPLE4_PUT_DUMP), EXAMPLE4_PUT);
    assert_eq!(EXAMPLE4_PUT.len(), 67);
    let key = local_key();
    let mut buf = BytesMut::new();
    let header = PutHeader {
        topic: "test",
        partition: 0,
        tx_key: Some(&key),
        opaque: 4,
    };
    encode_put(&mut buf, &header, None, b"hello").unwrap();
    assert_eq!(&buf[..], EXAMPLE4_PUT);

    let request = put("test", 0, 0, Some(907_060_870), Some(key), 4, b"hello");
    assert_request_wire(Request::Put(request), EXAMPLE4_PUT);
}

#[test]
fn example4_transactional_put_answer() {
    let wire = b"result 200 25 4\r\n-5468572396564774911 0 -1";
    let response = client_decode(wire);
    assert_eq!(response.code, StatusCode::SUCCESS);
    assert_eq!(response.opaque, 4);
    assert_eq!(response.body.len(), 25);
    assert_eq!(
        response.put_result(),
        Some((-5_468_572_396_564_774_911, 0, -1))
    );
    assert_response_wire(ok(4, "-5468572396564774911 0 -1"), wire);
}

#[test]
fn example4_commit_one_phase() {
    let wire = b"transaction TX:192.168.1.10-1367290000000-1:1 192.168.1.10-1367290000000-1 COMMIT_ONE_PHASE 5\r\n";
    assert_eq!(wire.len(), 95);
    let commit = tx(local_key(), TransactionKind::CommitOnePhase, None, None, 5);
    assert_request_wire(Request::Transaction(commit), wire);
    assert_response_wire(ok(5, ""), b"result 200 0 5\r\n");
}

#[test]
fn example4_rollback() {
    let wire = b"transaction TX:192.168.1.10-1367290000000-1:1 192.168.1.10-1367290000000-1 ROLLBACK 6\r\n";
    let rollback = tx(local_key(), TransactionKind::Rollback, None, None, 6);
    assert_request_wire(Request::Transaction(rollback), wire);
    assert_response_wire(ok(6, ""), b"result 200 0 6\r\n");
}

#[test]
fn example4_begin_without_timeout() {
    let wire =
        b"transaction TX:192.168.1.10-1367290000000-1:1 192.168.1.10-1367290000000-1 BEGIN 3\r\n";
    let begin = tx(local_key(), TransactionKind::Begin, None, None, 3);
    assert_request_wire(Request::Transaction(begin.clone()), wire);
    // A zero or negative timeout is not written at all.
    for timeout in [0, -1, i32::MIN] {
        let zero = TransactionRequest {
            timeout_secs: Some(timeout),
            ..begin.clone()
        };
        assert_eq!(
            encode_request(&Request::Transaction(zero)),
            wire,
            "{timeout}"
        );
    }
}

// ---------------------------------------------------------------------------
// Example 5: XA
// ---------------------------------------------------------------------------

#[test]
fn example5_xa_key() {
    assert_eq!(xa_key().to_string(), XID);
    assert_eq!(XID.parse::<TxKey>().unwrap(), xa_key());
    // Upper-case hex is read too.
    assert_eq!(
        "XID:1:010203:0A:XAMessageProducer-host1"
            .parse::<TxKey>()
            .unwrap(),
        xa_key()
    );
}

#[test]
fn example5_xa_commands() {
    let cases: [(TransactionKind, i32, &[u8]); 4] = [
        (
            TransactionKind::Begin,
            10,
            b"transaction XID:1:010203:0a:XAMessageProducer-host1 192.168.1.10-1367290000000-1 BEGIN XAMessageProducer-host1 10\r\n",
        ),
        (
            TransactionKind::End,
            12,
            b"transaction XID:1:010203:0a:XAMessageProducer-host1 192.168.1.10-1367290000000-1 END XAMessageProducer-host1 12\r\n",
        ),
        (
            TransactionKind::Prepare,
            13,
            b"transaction XID:1:010203:0a:XAMessageProducer-host1 192.168.1.10-1367290000000-1 PREPARE XAMessageProducer-host1 13\r\n",
        ),
        (
            TransactionKind::CommitTwoPhase,
            14,
            b"transaction XID:1:010203:0a:XAMessageProducer-host1 192.168.1.10-1367290000000-1 COMMIT_TWO_PHASE XAMessageProducer-host1 14\r\n",
        ),
    ];
    for (kind, opaque, wire) in cases {
        let request = tx(xa_key(), kind, None, Some(UQ), opaque);
        assert_request_wire(Request::Transaction(request), wire);
    }
    // RECOVER with the key `null`.
    let wire =
        b"transaction null 192.168.1.10-1367290000000-1 RECOVER XAMessageProducer-host1 15\r\n";
    let recover = tx(TxKey::Null, TransactionKind::Recover, None, Some(UQ), 15);
    assert_request_wire(Request::Transaction(recover), wire);
}

#[test]
fn example5_xa_put() {
    let wire = b"put test 0 5 0 907060870 XID:1:010203:0a:XAMessageProducer-host1 11\r\nhello";
    let key = xa_key();
    let mut buf = BytesMut::new();
    let header = PutHeader {
        topic: "test",
        partition: 0,
        tx_key: Some(&key),
        opaque: 11,
    };
    encode_put(&mut buf, &header, None, b"hello").unwrap();
    assert_eq!(&buf[..], wire);
    let request = put("test", 0, 0, Some(907_060_870), Some(key), 11, b"hello");
    assert_request_wire(Request::Put(request), wire);
}

#[test]
fn example5_xa_answers() {
    assert_response_wire(ok(10, ""), b"result 200 0 10\r\n");
    let put_answer = b"result 200 25 11\r\n-5468572396560580608 0 -1";
    assert_response_wire(ok(11, "-5468572396560580608 0 -1"), put_answer);
    assert_eq!(
        client_decode(put_answer).put_result(),
        Some((-5_468_572_396_560_580_608, 0, -1))
    );
    assert_response_wire(ok(13, "0"), b"result 200 1 13\r\n0");
    assert_response_wire(ok(14, ""), b"result 200 0 14\r\n");
    assert_response_wire(ok(15, ""), b"result 200 0 15\r\n");
}

// ---------------------------------------------------------------------------
// Example 6: heartbeat and an error
// ---------------------------------------------------------------------------

#[test]
fn example6_version() {
    assert_request_wire(Request::Version { opaque: 7 }, b"version 7\r\n");
    let answer = b"result 200 7 7\r\n1.4.6.2";
    assert_response_wire(ok(7, "1.4.6.2"), answer);
    assert_eq!(&client_decode(answer).body[..], b"1.4.6.2");
}

#[test]
fn example6_error_response() {
    let wire = b"put test 9 5 0 907060870 8\r\nhello";
    let request = put("test", 9, 0, Some(907_060_870), None, 8, b"hello");
    assert_request_wire(Request::Put(request), wire);

    let text = "Put message to [broker 'meta://10.0.0.5:8123'] [partition 'test-9'] failed.Detail:wrong partition 9";
    assert_eq!(text.len(), 99);
    let answer = format!("result 500 99 8\r\n{text}");
    let response = client_decode(answer.as_bytes());
    assert_eq!(response.code, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!response.code.is_success());
    assert_eq!(response.opaque, 8);
    assert_eq!(response.put_result(), None);
    assert_response_wire(
        Response::text(StatusCode::INTERNAL_SERVER_ERROR, 8, text),
        answer.as_bytes(),
    );
}

#[test]
fn examples_as_one_stream() {
    // The client half of examples 1, 4, 5 and 6 on one connection.
    let mut stream = Vec::new();
    stream.extend_from_slice(EXAMPLE1);
    stream.extend_from_slice(EXAMPLE2);
    stream.extend_from_slice(b"transaction TX:192.168.1.10-1367290000000-1:1 192.168.1.10-1367290000000-1 BEGIN 10 3\r\n");
    stream.extend_from_slice(EXAMPLE4_PUT);
    stream.extend_from_slice(b"transaction TX:192.168.1.10-1367290000000-1:1 192.168.1.10-1367290000000-1 COMMIT_ONE_PHASE 5\r\n");
    stream.extend_from_slice(b"version 7\r\nquit\r\n");
    let requests = server_decode_all(&stream);
    let opaques: Vec<_> = requests.iter().map(Request::opaque).collect();
    assert_eq!(
        opaques,
        [Some(1), Some(2), Some(3), Some(4), Some(5), Some(7), None]
    );
    assert_eq!(requests.last(), Some(&Request::Quit));
}

// ---------------------------------------------------------------------------
// Decoder rules: put (3.4)
// ---------------------------------------------------------------------------

fn decode_put(wire: &[u8]) -> PutRequest {
    match server_decode(wire) {
        Request::Put(p) => p,
        other => panic!("not a put: {other:?}"),
    }
}

#[test]
fn put_six_tokens_is_legacy_without_checksum() {
    let p = decode_put(b"put t 3 2 0 9\r\nab");
    assert_eq!(p, put("t", 3, 0, None, None, 9, b"ab"));
}

#[test]
fn put_seven_tokens_with_checksum() {
    let p = decode_put(b"put t 3 2 0 123 9\r\nab");
    assert_eq!(p, put("t", 3, 0, Some(123), None, 9, b"ab"));
    // `-` also marks a checksum: -1 is "not supplied".
    let p = decode_put(b"put t -1 2 0 -1 9\r\nab");
    assert_eq!(p, put("t", -1, 0, Some(-1), None, 9, b"ab"));
}

#[test]
fn put_seven_tokens_with_key() {
    let p = decode_put(b"put t 3 2 0 TX:s:5 9\r\nab");
    let key = TxKey::Local(LocalTxId {
        session_id: "s".into(),
        counter: 5,
    });
    assert_eq!(p, put("t", 3, 0, None, Some(key), 9, b"ab"));
    let p = decode_put(b"put t 3 2 0 XID:1:010203:0a:XAMessageProducer-host1 9\r\nab");
    assert_eq!(p.tx_key, Some(xa_key()));
    assert_eq!(p.checksum, None);
    let p = decode_put(b"put t 3 2 0 null 9\r\nab");
    assert_eq!(p.tx_key, Some(TxKey::Null));
}

#[test]
fn put_seven_tokens_neither_checksum_nor_key() {
    // Starts like a number but is not one: a bad checksum.
    assert!(matches!(
        server_error(b"put t 3 2 0 12x 9\r\nab"),
        ProtocolError::Malformed { command: "put", .. }
    ));
    // Does not start like a number: read as a key, and not a valid one.
    assert!(matches!(
        server_error(b"put t 3 2 0 abc 9\r\nab"),
        ProtocolError::InvalidName {
            field: "transaction key",
            ..
        }
    ));
}

#[test]
fn put_eight_tokens_checksum_and_key() {
    let p = decode_put(b"put t 3 2 1 77 TX:s:5 9\r\nab");
    let key = TxKey::Local(LocalTxId {
        session_id: "s".into(),
        counter: 5,
    });
    assert_eq!(p, put("t", 3, 1, Some(77), Some(key), 9, b"ab"));
}

#[test]
fn put_wrong_token_counts() {
    for wire in [
        &b"put\r\n"[..],
        b"put t\r\n",
        b"put t 0 0\r\n",
        b"put t 0 0 0\r\n",
    ] {
        assert!(
            matches!(
                server_error(wire),
                ProtocolError::Malformed { command: "put", .. }
            ),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
    // Nine tokens: more than any command has.
    assert!(matches!(
        server_error(b"put t 0 0 0 1 TX:s:1 2 3\r\n"),
        ProtocolError::Malformed {
            command: "header",
            ..
        }
    ));
}

#[test]
fn put_empty_body() {
    let p = decode_put(b"put t 0 0 0 0 1\r\n");
    assert_eq!(p, put("t", 0, 0, Some(0), None, 1, b""));
    // An empty body followed immediately by the next frame.
    let all = server_decode_all(b"put t 0 0 0 1\r\nversion 2\r\n");
    assert_eq!(all.len(), 2);
    assert_eq!(all[1], Request::Version { opaque: 2 });
}

#[test]
fn put_body_may_contain_crlf_and_command_words() {
    let body = b"\r\nput x 0 0 0 1\r\n\r\n";
    let mut wire = format!("put t 0 {} 0 1\r\n", body.len()).into_bytes();
    wire.extend_from_slice(body);
    wire.extend_from_slice(b"quit\r\n");
    let all = server_decode_all(&wire);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], Request::Put(put("t", 0, 0, None, None, 1, body)));
    assert_eq!(all[1], Request::Quit);
}

#[test]
fn put_numbers_must_be_numbers() {
    for wire in [
        &b"put t x 0 0 0 1\r\n"[..],     // partition
        b"put t 0 x 0 0 1\r\n",          // length
        b"put t 0 0 x 0 1\r\n",          // flag
        b"put t 0 0 0 0 x\r\n",          // opaque
        b"put t 0 0 0 5 TX:s:1 x\r\n",   // opaque after key
        b"put t 0 0 0 x TX:s:1 1\r\n",   // checksum in 8 tokens
        b"put t 2147483648 0 0 0 1\r\n", // partition overflows an int
        b"put t 0 0 0 2147483648 1\r\n", // checksum overflows an int
        b"put t 0 0 0 0 2147483648\r\n", // opaque overflows an int
        b"put t 0 1.5 0 0 1\r\n",        // fraction
        b"put t 0  0 0 1\r\n",           // empty length
    ] {
        assert!(
            matches!(
                server_error(wire),
                ProtocolError::Malformed { command: "put", .. }
            ),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
}

#[test]
fn put_negative_length_is_an_error() {
    let e = server_error(b"put t 0 -5 0 0 1\r\nhello");
    assert!(
        matches!(
            e,
            ProtocolError::Malformed {
                command: "put",
                reason: "negative body length",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn put_bad_tx_key() {
    for wire in [
        &b"put t 0 0 0 0 TX:s 1\r\n"[..],
        b"put t 0 0 0 0 TX:s:1:2 1\r\n",
        b"put t 0 0 0 0 TX:s:x 1\r\n",
        b"put t 0 0 0 0 TX:s:2147483648 1\r\n",
        b"put t 0 0 0 0 XID:1:0102:0a 1\r\n",
        b"put t 0 0 0 0 XID:1:010:0a:q 1\r\n",
        b"put t 0 0 0 0 XID:1:zz:0a:q 1\r\n",
        b"put t 0 0 0 0 XID:x:01:0a:q 1\r\n",
        b"put t 0 0 0 0 NULL 1\r\n",
        b"put t 0 0 0 0 Tx:s:1 1\r\n",
        b"put t 0 0 0 TX:s:1 1\r\n\r\n",
    ] {
        let e = server_error(wire);
        if wire.ends_with(b"\r\n\r\n") {
            // Seven tokens with a good key, then a blank line.
            assert!(matches!(e, ProtocolError::Malformed { .. }), "{e:?}");
            continue;
        }
        assert!(
            matches!(
                e,
                ProtocolError::InvalidName {
                    field: "transaction key",
                    ..
                }
            ),
            "{:?}: {e:?}",
            String::from_utf8_lossy(wire)
        );
    }
}

// ---------------------------------------------------------------------------
// Decoder rules: transaction (3.5)
// ---------------------------------------------------------------------------

fn decode_tx(wire: &[u8]) -> TransactionRequest {
    match server_decode(wire) {
        Request::Transaction(t) => t,
        other => panic!("not a transaction: {other:?}"),
    }
}

#[test]
fn transaction_five_tokens() {
    let t = decode_tx(b"transaction TX:s:1 s ROLLBACK 4\r\n");
    assert_eq!(t.kind, TransactionKind::Rollback);
    assert_eq!(t.timeout_secs, None);
    assert_eq!(t.unique_qualifier, None);
    assert_eq!(t.session_id, "s");
    assert_eq!(t.opaque, 4);
}

#[test]
fn transaction_six_tokens_digits_are_a_timeout() {
    let t = decode_tx(b"transaction TX:s:1 s BEGIN 30 4\r\n");
    assert_eq!(t.timeout_secs, Some(30));
    assert_eq!(t.unique_qualifier, None);
    let t = decode_tx(b"transaction TX:s:1 s BEGIN 0 4\r\n");
    assert_eq!(t.timeout_secs, Some(0));
    // All digits but too big for an int: an error, not a qualifier.
    assert!(matches!(
        server_error(b"transaction TX:s:1 s BEGIN 99999999999 4\r\n"),
        ProtocolError::Malformed {
            command: "transaction",
            ..
        }
    ));
}

#[test]
fn transaction_six_tokens_anything_else_is_a_qualifier() {
    for q in [
        "q",
        "1a",
        "a1",
        "-1",
        "+5",
        "1.5",
        "XAMessageProducer-host1",
    ] {
        let t = decode_tx(format!("transaction TX:s:1 s BEGIN {q} 4\r\n").as_bytes());
        assert_eq!(t.timeout_secs, None, "{q}");
        assert_eq!(t.unique_qualifier.as_deref(), Some(q));
    }
}

#[test]
fn transaction_seven_tokens_timeout_then_qualifier() {
    let t = decode_tx(b"transaction XID:1:010203:0a:XAMessageProducer-host1 s BEGIN 10 XAMessageProducer-host1 4\r\n");
    assert_eq!(t.key, xa_key());
    assert_eq!(t.timeout_secs, Some(10));
    assert_eq!(t.unique_qualifier.as_deref(), Some(UQ));
    assert!(matches!(
        server_error(b"transaction TX:s:1 s BEGIN q 10 4\r\n"),
        ProtocolError::Malformed {
            command: "transaction",
            ..
        }
    ));
}

#[test]
fn transaction_every_kind_word() {
    for kind in TransactionKind::ALL {
        let wire = format!("transaction TX:s:1 s {} 4\r\n", kind.as_str());
        assert_eq!(decode_tx(wire.as_bytes()).kind, kind);
        assert_eq!(TransactionKind::from_word(kind.as_str()), Some(kind));
    }
}

#[test]
fn transaction_errors() {
    for wire in [
        &b"transaction TX:s:1 s BEGIN\r\n"[..],    // 4 tokens
        b"transaction TX:s:1 s BEGIN 1 q 2 3\r\n", // 8 tokens
        b"transaction TX:s:1 s begin 4\r\n",       // type is case sensitive
        b"transaction TX:s:1 s COMMIT 4\r\n",      // unknown type
        b"transaction TX:s:1 s BEGIN x\r\n",       // opaque
        b"transaction TX:s:1 s BEGIN 10 q x\r\n",  // opaque, 7 tokens
    ] {
        assert!(
            matches!(
                server_error(wire),
                ProtocolError::Malformed {
                    command: "transaction",
                    ..
                }
            ),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
    for wire in [
        &b"transaction TX:s s BEGIN 4\r\n"[..],
        b"transaction FOO s BEGIN 4\r\n",
        b"transaction Null s RECOVER 4\r\n",
        b"transaction  s BEGIN 4 5\r\n",
    ] {
        assert!(
            matches!(
                server_error(wire),
                ProtocolError::InvalidName {
                    field: "transaction key",
                    ..
                }
            ),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
}

#[test]
fn transaction_word_must_be_exact() {
    for wire in [&b"trans TX:s:1 s BEGIN 4\r\n"[..], b"t 1\r\n"] {
        assert!(matches!(
            server_error(wire),
            ProtocolError::UnexpectedCommand { .. }
        ));
    }
}

// ---------------------------------------------------------------------------
// Decoder rules: version, stats, quit, get, offset, sync (3.6 – 3.10)
// ---------------------------------------------------------------------------

#[test]
fn version_without_opaque() {
    assert_eq!(
        server_decode(b"version\r\n"),
        Request::Version {
            opaque: DEFAULT_OPAQUE
        }
    );
    assert_eq!(DEFAULT_OPAQUE, 2_147_483_647);
    // A trailing space leaves an empty trailing token, which is dropped.
    assert_eq!(
        server_decode(b"version \r\n"),
        Request::Version {
            opaque: DEFAULT_OPAQUE
        }
    );
}

#[test]
fn any_v_word_but_value_is_version() {
    for word in ["v", "ver", "vxyz", "version2", "valu", "values"] {
        assert_eq!(
            server_decode(format!("{word} 5\r\n").as_bytes()),
            Request::Version { opaque: 5 },
            "{word}"
        );
    }
    assert!(matches!(
        server_error(b"value 0 5\r\n"),
        ProtocolError::UnexpectedCommand { .. }
    ));
    assert!(matches!(
        server_error(b"version x\r\n"),
        ProtocolError::Malformed {
            command: "version",
            ..
        }
    ));
    assert!(matches!(
        server_error(b"version 1 2\r\n"),
        ProtocolError::Malformed {
            command: "version",
            ..
        }
    ));
}

#[test]
fn stats_forms() {
    assert_request_wire(
        Request::Stats {
            item: "topics".into(),
            opaque: 7,
        },
        b"stats topics 7\r\n",
    );
    // The Java encoding of "no item": two spaces, an empty item.
    assert_request_wire(
        Request::Stats {
            item: String::new(),
            opaque: 7,
        },
        b"stats  7\r\n",
    );
    assert_eq!(
        server_decode(b"stats\r\n"),
        Request::Stats {
            item: String::new(),
            opaque: DEFAULT_OPAQUE
        }
    );
    assert!(matches!(
        server_error(b"stats a 1 2\r\n"),
        ProtocolError::Malformed {
            command: "stats",
            ..
        }
    ));
    assert!(matches!(
        server_error(b"stats a x\r\n"),
        ProtocolError::Malformed {
            command: "stats",
            ..
        }
    ));
}

#[test]
fn other_s_words_are_errors() {
    for wire in [&b"stat 1\r\n"[..], b"s\r\n", b"synchronise 1\r\n"] {
        assert!(matches!(
            server_error(wire),
            ProtocolError::UnexpectedCommand { .. }
        ));
    }
}

#[test]
fn any_q_word_is_quit() {
    for wire in [
        &b"quit\r\n"[..],
        b"q\r\n",
        b"quitting now 1 2\r\n",
        b"qwerty x y z\r\n",
        b"q \r\n",
        // The Java decoder dispatches on the first character before it
        // looks at the tokens: even more tokens than any command has is quit.
        b"quit 1 2 3 4 5 6 7 8 9 10\r\n",
        b"q  x  y  z  \r\n",
        b"q\xff\xfe\r\n",
    ] {
        assert_eq!(
            server_decode(wire),
            Request::Quit,
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
    assert_request_wire(Request::Quit, b"quit\r\n");
    assert_eq!(Request::Quit.opaque(), None);
}

#[test]
fn get_and_offset_are_unsupported() {
    assert_eq!(
        server_decode(b"get test group 0 0 1024 9\r\n"),
        Request::Unsupported(UnsupportedRequest {
            command: "get",
            opaque: 9
        })
    );
    assert_eq!(
        server_decode(b"offset test group 0 0 10\r\n"),
        Request::Unsupported(UnsupportedRequest {
            command: "offset",
            opaque: 10
        })
    );
    assert!(matches!(
        server_error(b"get test group 0 0 9\r\n"),
        ProtocolError::Malformed { command: "get", .. }
    ));
    assert!(matches!(
        server_error(b"offset test group 0 9\r\n"),
        ProtocolError::Malformed {
            command: "offset",
            ..
        }
    ));
    assert!(matches!(
        server_error(b"gets test group 0 0 1024 9\r\n"),
        ProtocolError::UnexpectedCommand { .. }
    ));
    assert!(matches!(
        server_error(b"off test group 0 0 10\r\n"),
        ProtocolError::UnexpectedCommand { .. }
    ));
}

#[test]
fn sync_is_unsupported_and_its_body_consumed() {
    let sync8 = b"sync test 0 5 0 -5468572396564774912 907060870 11\r\nhello";
    let sync7 = b"sync test 0 5 0 -5468572396564774912 12\r\nhello";
    let mut wire = Vec::new();
    wire.extend_from_slice(sync8);
    wire.extend_from_slice(sync7);
    wire.extend_from_slice(b"version 13\r\n");
    assert_eq!(
        server_decode_all(&wire),
        [
            Request::Unsupported(UnsupportedRequest {
                command: "sync",
                opaque: 11
            }),
            Request::Unsupported(UnsupportedRequest {
                command: "sync",
                opaque: 12
            }),
            Request::Version { opaque: 13 },
        ]
    );
    // Incomplete body: nothing yet.
    let mut codec = ServerCodec::default();
    let mut buf = BytesMut::from(&sync8[..sync8.len() - 1]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(b"o");
    assert_eq!(
        codec.decode(&mut buf).unwrap().and_then(|r| r.opaque()),
        Some(11)
    );
    assert!(buf.is_empty());
    // An oversized sync body is skipped the same way.
    let limits = DecodeLimits {
        max_line: 1024,
        max_body: 4,
    };
    let all = server_decode_all_with(limits, &wire);
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].opaque(), Some(11));
    assert!(matches!(
        server_error(b"sync test 0 5 0 1\r\nhello"),
        ProtocolError::Malformed {
            command: "sync",
            ..
        }
    ));
}

// ---------------------------------------------------------------------------
// Decoder rules: malformed lines (3.1)
// ---------------------------------------------------------------------------

#[test]
fn unknown_first_character() {
    for wire in [
        &b"xyz 1\r\n"[..],
        b"PUT test 0 5 0 1\r\nhello",
        b"1 2 3\r\n",
        b"\x00\r\n",
        b"-\r\n",
    ] {
        assert!(
            matches!(server_error(wire), ProtocolError::UnexpectedCommand { .. }),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
}

#[test]
fn blank_line() {
    assert!(matches!(
        server_error(b"\r\n"),
        ProtocolError::Malformed {
            reason: "blank line",
            ..
        }
    ));
    assert!(matches!(
        server_error(b"   \r\n"),
        ProtocolError::Malformed {
            reason: "blank line",
            ..
        }
    ));
    assert!(matches!(
        client_error_with(DecodeLimits::default(), b"\r\n"),
        ProtocolError::Malformed {
            reason: "blank line",
            ..
        }
    ));
}

#[test]
fn leading_space() {
    for wire in [
        &b" put test 0 5 0 1\r\nhello"[..],
        b" quit\r\n",
        b" version 1\r\n",
    ] {
        assert!(
            matches!(
                server_error(wire),
                ProtocolError::UnexpectedCommand { .. } | ProtocolError::Malformed { .. }
            ),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
    assert!(matches!(
        client_error_with(DecodeLimits::default(), b" result 200 0 1\r\n"),
        ProtocolError::UnexpectedCommand { .. } | ProtocolError::Malformed { .. }
    ));
}

#[test]
fn double_space_inside_a_line_shifts_tokens() {
    // `put  t ...` has an empty topic token, so the counts are off by one.
    assert!(matches!(
        server_error(b"put test  0 5 0 1 2\r\nhello"),
        ProtocolError::Malformed { command: "put", .. }
    ));
}

#[test]
fn not_utf8() {
    assert!(matches!(
        server_error(b"put t\xff 0 0 0 1\r\n"),
        ProtocolError::Malformed {
            reason: "not UTF-8",
            ..
        }
    ));
}

#[test]
fn lone_cr_or_lf_does_not_end_a_line() {
    // Only CRLF ends the line; a lone LF makes the opaque non-numeric.
    assert!(matches!(
        server_error(b"version 1\nversion 2\r\n"),
        ProtocolError::Malformed {
            command: "version",
            ..
        }
    ));
    let mut codec = ServerCodec::default();
    let mut buf = BytesMut::from(&b"version 1\r"[..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(b"\n");
    assert_eq!(
        codec.decode(&mut buf).unwrap(),
        Some(Request::Version { opaque: 1 })
    );
}

#[test]
fn responses_on_the_server_side_and_requests_on_the_client_side() {
    assert!(matches!(
        server_error(b"result 200 0 1\r\n"),
        ProtocolError::UnexpectedCommand { .. }
    ));
    for wire in [
        &b"version 1\r\n"[..],
        b"quit\r\n",
        b"put t 0 0 0 1\r\n",
        b"value 0 1\r\n",
        b"get t g 0 0 1 1\r\n",
    ] {
        assert!(
            matches!(
                client_error_with(DecodeLimits::default(), wire),
                ProtocolError::UnexpectedCommand { .. }
            ),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
}

#[test]
fn result_line_errors() {
    for wire in [
        &b"result 200 0\r\n"[..],
        b"result 200 0 1 2\r\n",
        b"result x 0 1\r\n",
        b"result 200 -1 1\r\n",
        b"result 200 x 1\r\n",
        b"result 200 0 x\r\n",
        b"result 70000 0 1\r\n",
    ] {
        assert!(
            matches!(
                client_error_with(DecodeLimits::default(), wire),
                ProtocolError::Malformed {
                    command: "result",
                    ..
                }
            ),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
    assert!(matches!(
        client_error_with(DecodeLimits::default(), b"results 200 0 1\r\n"),
        ProtocolError::UnexpectedCommand { .. }
    ));
}

#[test]
fn error_values_are_shortened() {
    let long = format!("xyz{}\r\n", "a".repeat(1000));
    let ProtocolError::UnexpectedCommand { line } = server_error(long.as_bytes()) else {
        panic!("wrong error");
    };
    assert!(line.chars().count() <= 121, "{}", line.len());
}

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

#[test]
fn default_limits() {
    let limits = DecodeLimits::default();
    assert_eq!(limits.max_line, 64 * 1024);
    assert_eq!(limits.max_body, 2 * 1024 * 1024);
    assert_eq!(DEFAULT_MAX_LINE, limits.max_line);
    assert_eq!(DEFAULT_MAX_BODY, limits.max_body);
}

/// A `version` line of exactly `len` bytes (CRLF excluded).
fn version_line(len: usize) -> Vec<u8> {
    let mut line = b"version ".to_vec();
    line.resize(len, b'0');
    *line.last_mut().unwrap() = b'1';
    line
}

#[test]
fn line_at_the_cap_is_accepted() {
    let limits = DecodeLimits {
        max_line: 32,
        max_body: 16,
    };
    let mut wire = version_line(32);
    wire.extend_from_slice(b"\r\n");
    assert_eq!(
        server_decode_all_with(limits, &wire),
        [Request::Version { opaque: 1 }]
    );
}

#[test]
fn line_over_the_cap_with_crlf() {
    let limits = DecodeLimits {
        max_line: 32,
        max_body: 16,
    };
    let mut wire = version_line(33);
    wire.extend_from_slice(b"\r\n");
    assert_eq!(
        server_error_with(limits, &wire),
        ProtocolError::LineTooLong { max: 32 }
    );
    assert_eq!(
        client_error_with(limits, &wire),
        ProtocolError::LineTooLong { max: 32 }
    );
}

#[test]
fn line_over_the_cap_without_crlf() {
    let limits = DecodeLimits {
        max_line: 32,
        max_body: 16,
    };
    for side in ["server", "client"] {
        let decode = |buf: &mut BytesMut| -> Result<bool, CodecError> {
            // A fresh codec each time is fine here: nothing has been consumed.
            if side == "server" {
                ServerCodec::new(limits).decode(buf).map(|r| r.is_some())
            } else {
                ClientCodec::new(limits).decode(buf).map(|r| r.is_some())
            }
        };
        // 32 bytes then CR: the LF may still come.
        let mut buf = BytesMut::from(&version_line(32)[..]);
        buf.extend_from_slice(b"\r");
        assert!(!decode(&mut buf).unwrap());
        // 33 bytes and no CRLF: the line can only be too long.
        let mut buf = BytesMut::from(&version_line(33)[..]);
        buf.extend_from_slice(b"\r");
        assert!(matches!(
            decode(&mut buf),
            Err(CodecError::Protocol(ProtocolError::LineTooLong { max: 32 }))
        ));
        let mut buf = BytesMut::from(&b"x".repeat(34)[..]);
        assert!(matches!(
            decode(&mut buf),
            Err(CodecError::Protocol(ProtocolError::LineTooLong { max: 32 }))
        ));
    }
}

#[test]
fn line_over_the_default_cap_arriving_in_pieces() {
    let mut codec = ServerCodec::default();
    let mut buf = BytesMut::new();
    let chunk = [b'v'; 1000];
    let mut fed = 0;
    let err = loop {
        buf.extend_from_slice(&chunk);
        fed += chunk.len();
        match codec.decode(&mut buf) {
            Ok(None) => assert!(fed <= DEFAULT_MAX_LINE + 1, "fed {fed}"),
            Ok(Some(r)) => panic!("decoded {r:?}"),
            Err(e) => break e,
        }
    };
    assert!(matches!(
        err,
        CodecError::Protocol(ProtocolError::LineTooLong {
            max: DEFAULT_MAX_LINE
        })
    ));
    assert!(fed <= DEFAULT_MAX_LINE + 1 + chunk.len());
}

#[test]
fn crlf_split_across_reads_at_the_cap() {
    let limits = DecodeLimits {
        max_line: 32,
        max_body: 16,
    };
    let mut codec = ServerCodec::new(limits);
    let line = version_line(32);
    let mut buf = BytesMut::new();
    for &b in &line {
        buf.extend_from_slice(&[b]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
    }
    buf.extend_from_slice(b"\r");
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(b"\n");
    assert_eq!(
        codec.decode(&mut buf).unwrap(),
        Some(Request::Version { opaque: 1 })
    );
    assert!(buf.is_empty());
}

#[test]
fn body_at_the_cap_is_accepted() {
    let limits = DecodeLimits {
        max_line: 64,
        max_body: 8,
    };
    let all = server_decode_all_with(limits, b"put t 0 8 0 1\r\n12345678");
    assert_eq!(
        all,
        [Request::Put(put("t", 0, 0, None, None, 1, b"12345678"))]
    );
}

#[test]
fn oversized_put_body_is_skipped_on_the_server() {
    let limits = DecodeLimits {
        max_line: 64,
        max_body: 8,
    };
    let all = server_decode_all_with(limits, b"put t 3 9 0 5 7\r\n123456789version 8\r\n");
    assert_eq!(
        all,
        [
            Request::PutTooLarge {
                topic: "t".into(),
                partition: 3,
                len: 9,
                opaque: 7
            },
            Request::Version { opaque: 8 }
        ]
    );
    assert_eq!(all[0].opaque(), Some(7));
}

#[test]
fn oversized_put_body_in_small_chunks() {
    let limits = DecodeLimits {
        max_line: 64,
        max_body: 100,
    };
    let body_len = 10_000;
    let mut wire = format!("put big 1 {body_len} 0 123 TX:s:1 42\r\n").into_bytes();
    wire.extend((0..body_len).map(|i| (i % 251) as u8));
    wire.extend_from_slice(b"put t 0 5 0 907060870 43\r\nhello");

    let mut codec = ServerCodec::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for (i, chunk) in wire.chunks(7).enumerate() {
        buf.extend_from_slice(chunk);
        while let Some(r) = codec.decode(&mut buf).unwrap() {
            out.push(r);
        }
        // Never holds more than a line's worth plus one chunk.
        assert!(buf.len() <= 64 + 7, "chunk {i}: {} buffered", buf.len());
    }
    assert!(buf.is_empty());
    assert_eq!(
        out,
        [
            Request::PutTooLarge {
                topic: "big".into(),
                partition: 1,
                len: body_len as u64,
                opaque: 42
            },
            Request::Put(put("t", 0, 0, Some(907_060_870), None, 43, b"hello")),
        ]
    );
}

#[test]
fn oversized_put_body_in_one_byte_chunks_then_more_frames() {
    let limits = DecodeLimits {
        max_line: 64,
        max_body: 4,
    };
    let mut wire = b"put t 0 5 0 1\r\nhello".to_vec();
    wire.extend_from_slice(b"version 2\r\nput t 0 4 0 3\r\nabcd");
    let mut codec = ServerCodec::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for &b in &wire {
        buf.extend_from_slice(&[b]);
        while let Some(r) = codec.decode(&mut buf).unwrap() {
            out.push(r);
        }
    }
    assert_eq!(
        out,
        [
            Request::PutTooLarge {
                topic: "t".into(),
                partition: 0,
                len: 5,
                opaque: 1
            },
            Request::Version { opaque: 2 },
            Request::Put(put("t", 0, 0, None, None, 3, b"abcd")),
        ]
    );
}

#[test]
fn huge_announced_length_is_skipped_not_buffered() {
    let mut codec = ServerCodec::default();
    let mut buf = BytesMut::from(&b"put t 0 9223372036854775807 0 1\r\n"[..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    for _ in 0..100 {
        buf.extend_from_slice(&[0u8; 4096]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
    }
}

#[test]
fn oversized_body_on_the_client_is_an_error() {
    let limits = DecodeLimits {
        max_line: 64,
        max_body: 8,
    };
    assert_eq!(
        client_error_with(limits, b"result 200 9 1\r\n123456789"),
        ProtocolError::BodyTooLarge { len: 9, max: 8 }
    );
    // Raised on the header alone, before any body byte.
    assert_eq!(
        client_error_with(DecodeLimits::default(), b"result 200 2097153 1\r\n"),
        ProtocolError::BodyTooLarge {
            len: 2_097_153,
            max: DEFAULT_MAX_BODY
        }
    );
    let mut codec = ClientCodec::new(limits);
    let mut buf = BytesMut::from(&b"result 200 8 1\r\n1234567"[..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(b"8");
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(ok(1, "12345678")));
}

#[test]
fn decode_eof_with_a_partial_frame_is_an_error() {
    let mut codec = ServerCodec::default();
    let mut buf = BytesMut::from(&b"put t 0 5 0 1\r\nhel"[..]);
    assert!(codec.decode_eof(&mut buf).is_err());
    let mut codec = ClientCodec::default();
    let mut buf = BytesMut::from(&b"result 200 0"[..]);
    assert!(codec.decode_eof(&mut buf).is_err());
    let mut buf = BytesMut::new();
    assert!(ClientCodec::default()
        .decode_eof(&mut buf)
        .unwrap()
        .is_none());
}

// ---------------------------------------------------------------------------
// Encoding refusals
// ---------------------------------------------------------------------------

const PREFIX: &[u8] = b"already here\r\n";

fn assert_invalid(result: Result<(), ProtocolError>, buf: &BytesMut, expected_field: &str) {
    match result {
        Err(ProtocolError::InvalidName { field, .. }) => assert_eq!(field, expected_field),
        other => panic!("expected InvalidName({expected_field}), got {other:?}"),
    }
    assert_eq!(&buf[..], PREFIX, "the buffer was touched");
}

fn bad_topics() -> Vec<String> {
    vec![
        String::new(),
        "a b".into(),
        " ".into(),
        "a/b".into(),
        "/".into(),
        "a\rb".into(),
        "a\nb".into(),
        "a\r\n".into(),
        "a\tb".into(),
        "a\x00b".into(),
        "a\x7fb".into(),
        "tópico".into(),
        "日本".into(),
        "t".repeat(MAX_NAME_LEN + 1),
    ]
}

#[test]
fn topic_refused_by_every_encoder() {
    let key = local_key();
    for topic in bad_topics() {
        let mut buf = BytesMut::from(PREFIX);
        let header = PutHeader {
            topic: &topic,
            partition: 0,
            tx_key: None,
            opaque: 1,
        };
        assert_invalid(encode_put(&mut buf, &header, None, b"x"), &buf, "topic");
        let header = PutHeader {
            tx_key: Some(&key),
            ..header
        };
        assert_invalid(
            encode_put(&mut buf, &header, Some("a"), b"x"),
            &buf,
            "topic",
        );
        let request = put(&topic, 0, 0, Some(1), None, 1, b"x");
        assert_invalid(request.encode(&mut buf), &buf, "topic");
        assert_invalid(Request::Put(request).encode(&mut buf), &buf, "topic");
        let stats = Request::Stats {
            item: topic.clone(),
            opaque: 1,
        };
        if !topic.is_empty() {
            assert_invalid(stats.encode(&mut buf), &buf, "topic");
        }
        // Through the codec as well.
        let mut codec = ClientCodec::default();
        let r = codec.encode(
            Request::Put(put(&topic, 0, 0, None, None, 1, b"")),
            &mut buf,
        );
        assert!(matches!(
            r,
            Err(CodecError::Protocol(ProtocolError::InvalidName {
                field: "topic",
                ..
            }))
        ));
        assert_eq!(&buf[..], PREFIX);
    }
}

#[test]
fn longest_topic_is_accepted() {
    let topic = "t".repeat(MAX_NAME_LEN);
    let mut buf = BytesMut::new();
    let header = PutHeader {
        topic: &topic,
        partition: 0,
        tx_key: None,
        opaque: 1,
    };
    encode_put(&mut buf, &header, None, b"x").unwrap();
    let Request::Put(p) = server_decode(&buf) else {
        panic!()
    };
    assert_eq!(p.topic, topic);
}

#[test]
fn session_id_with_colon_is_refused() {
    for session_id in ["fe80::1-1-1", "a:b", ":", "a b", "", "a\r\n"] {
        // As the request's session id.
        let mut request = tx(local_key(), TransactionKind::Begin, None, None, 1);
        request.session_id = session_id.to_owned();
        let mut buf = BytesMut::from(PREFIX);
        assert_invalid(request.encode(&mut buf), &buf, "session id");
        // As the session id inside a TX key.
        let key = TxKey::Local(LocalTxId {
            session_id: session_id.to_owned(),
            counter: 1,
        });
        assert!(key.validate().is_err());
        let request = tx(key.clone(), TransactionKind::Begin, None, None, 1);
        assert_invalid(request.encode(&mut buf), &buf, "session id");
        let header = PutHeader {
            topic: "t",
            partition: 0,
            tx_key: Some(&key),
            opaque: 1,
        };
        assert_invalid(
            encode_put(&mut buf, &header, None, b"x"),
            &buf,
            "session id",
        );
        let request = put("t", 0, 0, None, Some(key), 1, b"x");
        assert_invalid(request.encode(&mut buf), &buf, "session id");
    }
}

#[test]
fn numeric_unique_qualifier_is_refused() {
    for q in ["42", "0", "007"] {
        let mut buf = BytesMut::from(PREFIX);
        let request = tx(xa_key(), TransactionKind::Begin, None, Some(q), 1);
        assert_invalid(request.encode(&mut buf), &buf, "unique qualifier");
        // Inside an XID key too.
        let key = TxKey::Xa(XaTxId {
            format_id: 1,
            global_id: vec![1],
            branch_qualifier: vec![2],
            unique_qualifier: q.to_owned(),
        });
        let request = tx(key, TransactionKind::Begin, None, None, 1);
        assert_invalid(request.encode(&mut buf), &buf, "unique qualifier");
    }
    for q in ["", "a b", "a:b", "é"] {
        let mut buf = BytesMut::from(PREFIX);
        let request = tx(xa_key(), TransactionKind::Begin, Some(5), Some(q), 1);
        assert_invalid(request.encode(&mut buf), &buf, "unique qualifier");
    }
}

#[test]
fn tx_key_over_255_bytes_is_refused() {
    // "TX:" + session + ":" + "1": 255 bytes is the most.
    let fits = TxKey::Local(LocalTxId {
        session_id: "s".repeat(MAX_NAME_LEN - 5),
        counter: 1,
    });
    assert_eq!(fits.to_string().len(), MAX_NAME_LEN);
    assert!(fits.validate().is_ok());
    assert_eq!(fits.to_string().parse::<TxKey>().unwrap(), fits);

    let too_long = TxKey::Local(LocalTxId {
        session_id: "s".repeat(MAX_NAME_LEN - 4),
        counter: 1,
    });
    assert_eq!(too_long.to_string().len(), MAX_NAME_LEN + 1);
    let xa_too_long = TxKey::Xa(XaTxId {
        format_id: 1,
        global_id: vec![0xab; 64],
        branch_qualifier: vec![0xcd; 64],
        unique_qualifier: "q".into(),
    });
    assert!(xa_too_long.to_string().len() > MAX_NAME_LEN);
    for key in [too_long, xa_too_long] {
        let mut buf = BytesMut::from(PREFIX);
        let request = tx(key.clone(), TransactionKind::Begin, None, None, 1);
        assert_invalid(request.encode(&mut buf), &buf, "transaction key");
        let header = PutHeader {
            topic: "t",
            partition: 0,
            tx_key: Some(&key),
            opaque: 1,
        };
        assert_invalid(
            encode_put(&mut buf, &header, None, b"x"),
            &buf,
            "transaction key",
        );
        let request = put("t", 0, 0, Some(1), Some(key.clone()), 1, b"x");
        assert_invalid(request.encode(&mut buf), &buf, "transaction key");
        // And the decoder refuses the same text.
        let wire = format!("put t 0 0 0 {key} 1\r\n");
        assert!(matches!(
            server_error(wire.as_bytes()),
            ProtocolError::InvalidName {
                field: "transaction key",
                ..
            }
        ));
    }
}

#[test]
fn decode_only_requests_are_not_encoded() {
    for request in [
        Request::PutTooLarge {
            topic: "t".into(),
            partition: 0,
            len: 1,
            opaque: 1,
        },
        Request::Unsupported(UnsupportedRequest {
            command: "get",
            opaque: 1,
        }),
    ] {
        let mut buf = BytesMut::from(PREFIX);
        assert!(matches!(
            request.encode(&mut buf),
            Err(ProtocolError::UnexpectedCommand { .. })
        ));
        assert_eq!(&buf[..], PREFIX);
    }
}

#[test]
fn split_body_rejects_short_attribute_blocks() {
    for body in [
        &b""[..],
        b"\x00\x00\x00",
        b"\x00\x00\x00\x05tag1",
        b"\xff\xff\xff\xff",
    ] {
        assert_eq!(
            split_body(FLAG_ATTRIBUTE, body),
            Err(ProtocolError::BadAttribute {
                body_len: body.len()
            })
        );
    }
    assert_eq!(
        split_body(FLAG_ATTRIBUTE, b"\x00\x00\x00\x00hello").unwrap(),
        (Some(&b""[..]), &b"hello"[..])
    );
    assert_eq!(
        split_body(0, b"\x00\x00\x00\x04tag1").unwrap(),
        (None, &b"\x00\x00\x00\x04tag1"[..])
    );
    // Other flag bits are reserved and do not matter.
    assert_eq!(split_body(2, b"abc").unwrap(), (None, &b"abc"[..]));
    assert_eq!(
        split_body(-1, b"\x00\x00\x00\x01xy").unwrap(),
        (Some(&b"x"[..]), &b"y"[..])
    );
}

#[test]
fn decoder_survives_the_caller_discarding_buffered_bytes() {
    // A caller may drop what it buffered (say, after a LineTooLong it chose to
    // answer) and go on with fresh bytes; the codec must neither panic nor
    // skip the CRLF of the next line.
    let limits = DecodeLimits {
        max_line: 8,
        max_body: 8,
    };
    let mut codec = ServerCodec::new(limits);
    let mut buf = BytesMut::from(&b"xxxxxxx"[..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(b"xxxxx");
    assert!(matches!(
        codec.decode(&mut buf),
        Err(CodecError::Protocol(ProtocolError::LineTooLong { max: 8 }))
    ));
    buf.clear();
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(b"v 1\r\n");
    assert_eq!(
        codec.decode(&mut buf).unwrap(),
        Some(Request::Version { opaque: 1 })
    );

    let mut codec = ClientCodec::default();
    let mut buf = BytesMut::from(&b"result 200 0"[..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    buf.clear();
    buf.extend_from_slice(b"result 200 0 1\r\n");
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(ok(1, "")));
}
