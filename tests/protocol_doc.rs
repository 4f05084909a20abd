//! Keeps `docs/protocol.md` honest: every example of the document is checked
//! against the crate.
//!
//! An example is a ```` ```text ```` block right after a line
//! `<!-- example: NAME -->`. In it, `C:` lines (client to broker) and `S:`
//! lines (broker to client) are frames, with the escapes `\r`, `\n`, `\\` and
//! `\xNN`; hex-dump lines repeat the same bytes. Each frame is decoded with
//! the crate's codecs and compared with the value this file expects, and that
//! value is encoded again and compared byte for byte. The exchanges the
//! development broker serves are also replayed against one, the stored
//! record is compared with a file the store wrote, and the ZooKeeper tree
//! with what two development brokers register and what `read_route` reads
//! from it (these need the test ZooKeeper, as the other integration tests).
//!
//! Every example of the document must be checked here, and every example
//! checked here must be in the document.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

use metaq::discovery::{read_route, ZkPaths, ZkSettings};
use metaq::protocol::{
    attribute_body, checksum, encode_put, split_body, ClientCodec, LocalTxId, PutHeader,
    PutRequest, Request, Response, ServerCodec, StatusCode, TransactionKind, TransactionRequest,
    TxKey, UnsupportedRequest, XaTxId, DEFAULT_OPAQUE, FLAG_ATTRIBUTE,
};
use metaq_broker::store::{MessageStore, Record, StoreConfig};
use metaq_testkit::{unique_root, RawClient, TestBroker, ZkServer};

const DOC: &str = include_str!("../docs/protocol.md");

/// Every example the document must hold, each checked by a test below.
const CHECKED: &[&str] = &[
    "get",
    "put",
    "put-attribute",
    "put-bad-checksum",
    "put-error",
    "put-legacy",
    "put-legacy-transactional",
    "put-result",
    "put-transactional",
    "quit",
    "record",
    "stats",
    "tx-local",
    "tx-local-rollback",
    "tx-unknown",
    "tx-xa",
    "version",
    "version-bare",
    "zk-tree",
];

const SESSION: &str = "192.168.1.10-1367290000000-1";
const QUALIFIER: &str = "XAMessageProducer-host1";
/// The address the document gives broker 0.
const DOC_URI: &str = "meta://10.0.0.5:8123";

// ---------------------------------------------------------------------------
// Reading the document
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

/// A frame line: who sends it and its bytes.
type Frame = (Side, Vec<u8>);

/// One example block.
#[derive(Debug, Clone)]
struct Example {
    name: String,
    /// Line number of the marker (1-based), for messages.
    line: usize,
    lines: Vec<String>,
}

/// Every example of the document, in order.
fn examples() -> Vec<Example> {
    let lines: Vec<&str> = DOC.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim();
        if !(trimmed.starts_with("<!--") && trimmed.contains("example")) {
            i += 1;
            continue;
        }
        let name = trimmed
            .strip_prefix("<!-- example: ")
            .and_then(|rest| rest.strip_suffix(" -->"))
            .filter(|name| !name.is_empty() && !name.contains(char::is_whitespace))
            .unwrap_or_else(|| {
                panic!(
                    "line {}: write example markers as `<!-- example: NAME -->`",
                    i + 1
                )
            });
        assert_eq!(
            lines.get(i + 1).copied(),
            Some("```text"),
            "line {}: example {name} must be followed by a ```text block",
            i + 2
        );
        let body: Vec<String> = lines[i + 2..]
            .iter()
            .take_while(|line| **line != "```")
            .map(|line| (*line).to_owned())
            .collect();
        let end = i + 2 + body.len();
        assert!(end < lines.len(), "example {name}: unterminated block");
        found.push(Example {
            name: name.to_owned(),
            line: i + 1,
            lines: body,
        });
        i = end + 1;
    }
    found
}

fn example(name: &str) -> Example {
    examples()
        .into_iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("docs/protocol.md has no example {name:?}"))
}

/// The bytes a frame line spells, after `C: ` or `S: `.
fn unescape(text: &str, at: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let digits = [bytes.next(), bytes.next()];
                let hex: String = digits.iter().flatten().map(|&d| d as char).collect();
                let value = u8::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 2)
                    .unwrap_or_else(|| panic!("{at}: bad escape \\x{hex}"));
                out.push(value);
            }
            other => panic!("{at}: unknown escape \\{:?}", other.map(char::from)),
        }
    }
    out
}

/// `0000  70 75 74 ...  |put...|`: offset, bytes and the printable column.
fn hex_line(line: &str) -> Option<(usize, Vec<u8>, &str)> {
    let (offset, rest) = line.split_once("  ")?;
    if offset.len() != 4 || !offset.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (hex, shown) = rest.split_once('|')?;
    let shown = shown.strip_suffix('|')?;
    let bytes = hex
        .split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).ok().filter(|_| h.len() == 2))
        .collect::<Option<Vec<u8>>>()?;
    Some((usize::from_str_radix(offset, 16).ok()?, bytes, shown))
}

/// How a hex dump shows bytes in its last column.
fn printable(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            }
        })
        .collect()
}

impl Example {
    fn at(&self, index: usize) -> String {
        format!(
            "docs/protocol.md line {} (example {})",
            self.line + 2 + index,
            self.name
        )
    }

    fn is_zookeeper(&self) -> bool {
        self.name.starts_with("zk-")
    }

    /// The frames, in order, and the hex dump if there is one. Panics on a
    /// line that is neither.
    fn parse(&self) -> (Vec<Frame>, Option<Vec<u8>>) {
        assert!(!self.is_zookeeper(), "{} holds no frames", self.name);
        let mut frames = Vec::new();
        let mut hex: Option<Vec<u8>> = None;
        for (index, line) in self.lines.iter().enumerate() {
            let at = self.at(index);
            if line.trim().is_empty() {
                continue;
            }
            if let Some(text) = line.strip_prefix("C: ") {
                frames.push((Side::Client, unescape(text, &at)));
            } else if let Some(text) = line.strip_prefix("S: ") {
                frames.push((Side::Server, unescape(text, &at)));
            } else if let Some((offset, bytes, shown)) = hex_line(line) {
                let dump = hex.get_or_insert_with(Vec::new);
                assert_eq!(offset, dump.len(), "{at}: offset column");
                assert!(
                    (1..=16).contains(&bytes.len()),
                    "{at}: 1 to 16 bytes a line"
                );
                assert_eq!(shown, printable(&bytes), "{at}: printable column");
                dump.extend(bytes);
            } else {
                panic!("{at}: neither a C:/S: frame nor a hex-dump line: {line:?}");
            }
        }
        (frames, hex)
    }

    fn frames(&self) -> Vec<Frame> {
        self.parse().0
    }

    /// The only frame of the example.
    fn frame(&self) -> Vec<u8> {
        let mut frames = self.frames();
        assert_eq!(frames.len(), 1, "example {} has one frame", self.name);
        frames.pop().expect("one frame").1
    }

    fn hex(&self) -> Vec<u8> {
        self.parse()
            .1
            .unwrap_or_else(|| panic!("example {} has no hex dump", self.name))
    }
}

fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

// ---------------------------------------------------------------------------
// The crate's side
// ---------------------------------------------------------------------------

/// Decodes exactly one request from `bytes`, using all of them.
fn decode_request(bytes: &[u8]) -> Request {
    let mut buf = BytesMut::from(bytes);
    let request = ServerCodec::default()
        .decode(&mut buf)
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", show(bytes)))
        .unwrap_or_else(|| panic!("{} is not a whole frame", show(bytes)));
    assert!(buf.is_empty(), "{} is more than one frame", show(bytes));
    request
}

/// Decodes exactly one response from `bytes`, using all of them.
fn decode_response(bytes: &[u8]) -> Response {
    let mut buf = BytesMut::from(bytes);
    let response = ClientCodec::default()
        .decode(&mut buf)
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", show(bytes)))
        .unwrap_or_else(|| panic!("{} is not a whole frame", show(bytes)));
    assert!(buf.is_empty(), "{} is more than one frame", show(bytes));
    response
}

/// What a frame of an example must be.
enum Step {
    /// A request; encoding it must give the example's bytes again.
    Request(Request),
    /// A request the crate reads but never writes in this form.
    ReadOnly(Request),
    /// A response; encoding it must give the example's bytes again.
    Response(Response),
}

/// Checks every frame of example `name`, in order, against `steps`.
fn check_frames(name: &str, steps: &[Step]) {
    let frames = example(name).frames();
    assert_eq!(frames.len(), steps.len(), "frames of example {name}");
    for ((side, bytes), step) in frames.iter().zip(steps) {
        let context = format!("example {name}, frame {}", show(bytes));
        match (side, step) {
            (Side::Client, Step::Request(expected) | Step::ReadOnly(expected)) => {
                assert_eq!(&decode_request(bytes), expected, "{context}");
                if let Step::Request(request) = step {
                    let mut encoded = BytesMut::new();
                    request.encode(&mut encoded).expect("encodes");
                    assert_eq!(show(&encoded), show(bytes), "{context}: encoding");
                }
            }
            (Side::Server, Step::Response(expected)) => {
                assert_eq!(&decode_response(bytes), expected, "{context}");
                let mut encoded = BytesMut::new();
                expected.encode(&mut encoded).expect("encodes");
                assert_eq!(show(&encoded), show(bytes), "{context}: encoding");
            }
            _ => panic!("{context}: sent by the wrong side"),
        }
    }
}

fn local_key(counter: i32) -> TxKey {
    TxKey::Local(LocalTxId {
        session_id: SESSION.to_owned(),
        counter,
    })
}

fn xa_key() -> TxKey {
    TxKey::Xa(XaTxId {
        format_id: 1,
        global_id: vec![1, 2, 3],
        branch_qualifier: vec![0x0a],
        unique_qualifier: QUALIFIER.to_owned(),
    })
}

struct Put<'a> {
    partition: i32,
    flag: i32,
    checksum: Option<i32>,
    tx_key: Option<TxKey>,
    opaque: i32,
    body: &'a [u8],
}

impl Put<'_> {
    /// `hello` to partition 0 of `test`, without attribute, with its checksum.
    fn hello(opaque: i32) -> Self {
        Put {
            partition: 0,
            flag: 0,
            checksum: Some(907_060_870),
            tx_key: None,
            opaque,
            body: b"hello",
        }
    }

    fn request(self) -> Request {
        Request::Put(PutRequest {
            topic: "test".to_owned(),
            partition: self.partition,
            flag: self.flag,
            checksum: self.checksum,
            tx_key: self.tx_key,
            opaque: self.opaque,
            body: Bytes::copy_from_slice(self.body),
        })
    }
}

fn transaction(
    key: TxKey,
    kind: TransactionKind,
    timeout_secs: Option<i32>,
    qualifier: Option<&str>,
    opaque: i32,
) -> Request {
    Request::Transaction(TransactionRequest {
        key,
        session_id: SESSION.to_owned(),
        kind,
        timeout_secs,
        unique_qualifier: qualifier.map(str::to_owned),
        opaque,
    })
}

fn ok(opaque: i32, body: &str) -> Response {
    Response::text(StatusCode::SUCCESS, opaque, body)
}

fn failed(opaque: i32, body: &str) -> Response {
    Response::text(StatusCode::INTERNAL_SERVER_ERROR, opaque, body)
}

/// What the producer's own encoder writes for a put of `payload` to `test`.
fn producer_put(
    partition: i32,
    attribute: Option<&str>,
    tx_key: Option<&TxKey>,
    opaque: i32,
    payload: &[u8],
) -> Vec<u8> {
    let header = PutHeader {
        topic: "test",
        partition,
        tx_key,
        opaque,
    };
    let mut buf = BytesMut::new();
    encode_put(&mut buf, &header, attribute, payload).expect("encodes");
    buf.to_vec()
}

// ---------------------------------------------------------------------------
// The document as a whole
// ---------------------------------------------------------------------------

#[test]
fn every_example_is_well_formed_and_checked() {
    let all = examples();
    let names: Vec<&str> = all.iter().map(|e| e.name.as_str()).collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "example names repeat: {names:?}");
    let checked: BTreeSet<&str> = CHECKED.iter().copied().collect();
    assert_eq!(
        unique, checked,
        "examples in docs/protocol.md vs examples checked by tests/protocol_doc.rs"
    );
    for example in all.iter().filter(|e| !e.is_zookeeper()) {
        let (frames, hex) = example.parse();
        assert!(
            !frames.is_empty() || hex.is_some(),
            "example {} is empty",
            example.name
        );
        if let (false, Some(hex)) = (frames.is_empty(), hex) {
            let joined: Vec<u8> = frames.into_iter().flat_map(|(_, bytes)| bytes).collect();
            assert_eq!(
                show(&hex),
                show(&joined),
                "example {}: the hex dump differs from its frames",
                example.name
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Section 3: frames
// ---------------------------------------------------------------------------

#[test]
fn put() {
    assert_eq!(checksum(b"hello"), 907_060_870);
    assert_eq!(crc32fast::hash(b"hello"), 0x3610_A686);
    check_frames("put", &[Step::Request(Put::hello(1).request())]);
    let bytes = example("put").frame();
    assert_eq!(bytes.len(), 33);
    assert_eq!(
        show(&producer_put(0, None, None, 1, b"hello")),
        show(&bytes)
    );
}

#[test]
fn put_result() {
    let id = -5_468_572_396_564_774_912;
    let answer = ok(1, "-5468572396564774912 0 0");
    check_frames("put-result", &[Step::Response(answer.clone())]);
    assert_eq!(answer.body.len(), 24);
    assert_eq!(answer.put_result(), Some((id, 0, 0)));
    // Section 5.3: broker 0, sequence 0, monotonic millisecond 86,400,000.
    assert_eq!((id >> 22) + 1_303_895_660_503, 86_400_000);
    assert_eq!(((id >> 12) & 0x3FF, id & 0xFFF), (0, 0));
}

#[test]
fn put_attribute() {
    let body = attribute_body(Some("tag1"), b"hello");
    assert_eq!(&body[..], b"\x00\x00\x00\x04tag1hello");
    assert_eq!(crc32fast::hash(&body), 3_331_597_308);
    assert_eq!(checksum(&body), 1_184_113_660);
    assert_eq!(
        split_body(FLAG_ATTRIBUTE, &body).unwrap(),
        (Some(&b"tag1"[..]), &b"hello"[..])
    );
    let put = Put {
        partition: 1,
        flag: FLAG_ATTRIBUTE,
        checksum: Some(1_184_113_660),
        tx_key: None,
        opaque: 2,
        body: &body,
    };
    check_frames("put-attribute", &[Step::Request(put.request())]);
    let bytes = example("put-attribute").frame();
    assert_eq!(bytes.len(), 43);
    assert_eq!(
        show(&producer_put(1, Some("tag1"), None, 2, b"hello")),
        show(&bytes)
    );
}

#[test]
fn put_legacy() {
    let put = Put {
        checksum: None,
        ..Put::hello(1)
    };
    check_frames("put-legacy", &[Step::Request(put.request())]);
}

#[test]
fn put_legacy_transactional() {
    let put = Put {
        checksum: None,
        tx_key: Some(local_key(1)),
        ..Put::hello(4)
    };
    check_frames("put-legacy-transactional", &[Step::Request(put.request())]);
}

#[test]
fn put_transactional() {
    let put = Put {
        tx_key: Some(local_key(1)),
        ..Put::hello(4)
    };
    check_frames("put-transactional", &[Step::Request(put.request())]);
    let bytes = example("put-transactional").frame();
    assert_eq!(
        show(&producer_put(0, None, Some(&local_key(1)), 4, b"hello")),
        show(&bytes)
    );
}

#[test]
fn tx_local() {
    let put = Put {
        tx_key: Some(local_key(1)),
        ..Put::hello(4)
    };
    check_frames(
        "tx-local",
        &[
            Step::Request(transaction(
                local_key(1),
                TransactionKind::Begin,
                Some(10),
                None,
                3,
            )),
            Step::Response(ok(3, "")),
            Step::Request(put.request()),
            Step::Response(ok(4, "-5468572396564774911 0 -1")),
            Step::Request(transaction(
                local_key(1),
                TransactionKind::CommitOnePhase,
                None,
                None,
                5,
            )),
            Step::Response(ok(5, "")),
        ],
    );
    // The sizes section 3.14 gives for BEGIN, the put and COMMIT.
    let sizes: Vec<usize> = example("tx-local")
        .frames()
        .iter()
        .filter(|(side, _)| *side == Side::Client)
        .map(|(_, bytes)| bytes.len())
        .collect();
    assert_eq!(sizes, [87, 67, 95]);
}

#[test]
fn tx_local_rollback() {
    let put = Put {
        tx_key: Some(local_key(2)),
        ..Put::hello(7)
    };
    check_frames(
        "tx-local-rollback",
        &[
            Step::Request(transaction(
                local_key(2),
                TransactionKind::Begin,
                None,
                None,
                6,
            )),
            Step::Response(ok(6, "")),
            Step::Request(put.request()),
            Step::Response(ok(7, "-5468572396560580608 0 -1")),
            Step::Request(transaction(
                local_key(2),
                TransactionKind::Rollback,
                None,
                None,
                8,
            )),
            Step::Response(ok(8, "")),
        ],
    );
}

#[test]
fn tx_unknown() {
    let put = Put {
        tx_key: Some(local_key(3)),
        ..Put::hello(9)
    };
    check_frames(
        "tx-unknown",
        &[
            Step::Request(put.request()),
            Step::Response(failed(
                9,
                "Local transaction 'TX:192.168.1.10-1367290000000-1:3' has not been started.",
            )),
        ],
    );
}

#[test]
fn tx_xa() {
    let xa = |kind, timeout, opaque| transaction(xa_key(), kind, timeout, Some(QUALIFIER), opaque);
    let put = Put {
        tx_key: Some(xa_key()),
        ..Put::hello(11)
    };
    assert_eq!(
        xa_key().to_string(),
        "XID:1:010203:0a:XAMessageProducer-host1"
    );
    check_frames(
        "tx-xa",
        &[
            Step::Request(xa(TransactionKind::Begin, None, 10)),
            Step::Response(ok(10, "")),
            Step::Request(put.request()),
            Step::Response(ok(11, "-5468572396560580608 0 -1")),
            Step::Request(xa(TransactionKind::End, None, 12)),
            Step::Request(xa(TransactionKind::Prepare, None, 13)),
            Step::Response(ok(13, "0")),
            Step::Request(xa(TransactionKind::CommitTwoPhase, None, 14)),
            Step::Response(ok(14, "")),
            Step::Request(transaction(
                TxKey::Null,
                TransactionKind::Recover,
                None,
                Some(QUALIFIER),
                15,
            )),
            Step::Response(ok(15, "")),
        ],
    );
}

#[test]
fn put_error() {
    let put = Put {
        partition: 9,
        ..Put::hello(8)
    };
    let text = "Put message to [broker 'meta://10.0.0.5:8123'] [partition 'test-9'] \
                failed.Detail:wrong partition 9";
    check_frames(
        "put-error",
        &[
            Step::Request(put.request()),
            Step::Response(failed(8, text)),
        ],
    );
}

#[test]
fn put_bad_checksum() {
    let put = Put {
        checksum: Some(12345),
        ..Put::hello(10)
    };
    let text = "Put message to [broker 'meta://10.0.0.5:8123'] [partition 'test-0'] \
                failed.Detail:Checksum failure,message may be corrupted when transfering on networking.";
    check_frames(
        "put-bad-checksum",
        &[
            Step::Request(put.request()),
            Step::Response(failed(10, text)),
        ],
    );
}

#[test]
fn version() {
    check_frames(
        "version",
        &[
            Step::Request(Request::Version { opaque: 7 }),
            Step::Response(ok(7, "1.4.6.2")),
        ],
    );
    check_frames(
        "version-bare",
        &[
            Step::ReadOnly(Request::Version {
                opaque: DEFAULT_OPAQUE,
            }),
            Step::Response(ok(2_147_483_647, "1.4.6.2")),
        ],
    );
    assert_eq!(DEFAULT_OPAQUE, 2_147_483_647);
}

#[test]
fn stats() {
    check_frames(
        "stats",
        &[
            Step::Request(Request::Stats {
                item: String::new(),
                opaque: 3,
            }),
            Step::Response(ok(3, "STATS\r\npid 4242\r\nversion 1.4.6.2\r\nEND\r\n")),
        ],
    );
}

#[test]
fn quit() {
    check_frames("quit", &[Step::Request(Request::Quit)]);
}

#[test]
fn get() {
    let get = UnsupportedRequest {
        command: "get",
        opaque: 5,
    };
    check_frames("get", &[Step::ReadOnly(Request::Unsupported(get))]);
}

// ---------------------------------------------------------------------------
// Section 5.4: the stored record
// ---------------------------------------------------------------------------

#[tokio::test]
async fn record() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(StoreConfig::new(dir.path())).unwrap();
    let id = -5_468_572_396_564_774_912;
    let offsets = store
        .append(
            "test",
            0,
            vec![Record::new(id, 0, "hello"), Record::new(id + 1, 0, "hello")],
        )
        .await
        .unwrap();
    // The first record at 0, the next at 20 + N.
    assert_eq!(offsets, [0, 25]);
    store.close().await;
    let segment = dir.path().join("test-0").join("00000000000000000000.meta");
    let written = std::fs::read(&segment).unwrap();
    assert_eq!(written.len(), 50);
    assert_eq!(show(&written[..25]), show(&example("record").hex()));
}

// ---------------------------------------------------------------------------
// Against the development broker and a real ZooKeeper
// ---------------------------------------------------------------------------

/// Sends the `C:` frames of `frames` to a broker and checks each answer
/// against the `S:` frame that follows. Bodies are compared with the
/// document's broker address replaced by the broker's; in put answers the
/// message id (time-based) is not compared, partition and offset are.
async fn replay(broker: &TestBroker, name: &str, frames: &[Frame]) {
    let uri = broker.uri().to_string();
    let mut client = RawClient::connect(broker.local_addr()).await;
    for (side, bytes) in frames {
        if *side == Side::Client {
            client.send(bytes).await;
            continue;
        }
        let expected = decode_response(bytes);
        let got = client.response().await.unwrap_or_else(|| {
            panic!("{name}: no answer where the document shows {}", show(bytes))
        });
        let context = format!("{name}: answer {:?}", show(&got.body));
        assert_eq!(
            (got.code, got.opaque),
            (expected.code, expected.opaque),
            "{context}"
        );
        match (expected.put_result(), got.put_result()) {
            (Some((_, partition, offset)), Some((_, got_partition, got_offset))) => {
                assert_eq!(
                    (got_partition, got_offset),
                    (partition, offset),
                    "{context}"
                );
            }
            _ => {
                let text = String::from_utf8(expected.body.to_vec()).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&got.body),
                    text.replace(DOC_URI, &uri),
                    "{context}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_replayed_against_the_development_broker() {
    let broker = TestBroker::start(ZkServer::shared(), &unique_root(), 0, &[("test", 4)]).await;

    // A fresh broker stores the first put at offset 0 of partition 0,
    // as the answer of section 3.14 says.
    let mut first = example("put").frames();
    first.extend(example("put-result").frames());
    replay(&broker, "put, put-result", &first).await;

    for name in [
        "tx-local",
        "tx-local-rollback",
        "tx-unknown",
        "put-error",
        "put-bad-checksum",
    ] {
        replay(&broker, name, &example(name).frames()).await;
    }

    // `version`: any 200 with the request's opaque; the text is the broker's own.
    let mut client = RawClient::connect(broker.local_addr()).await;
    for name in ["version", "version-bare"] {
        let frames = example(name).frames();
        let expected = decode_response(&frames[1].1);
        let got = client.call(&frames[0].1).await.expect("an answer");
        assert_eq!((got.code, got.opaque), (expected.code, expected.opaque));
        assert!(got.body.starts_with(b"metaq-dev-broker-"), "{:?}", got.body);
    }
    // `quit` is not answered; the broker closes the connection.
    client.send(&example("quit").frame()).await;
    assert!(client.is_closed().await);
}

/// Every node under `root` that is ephemeral or holds data, as
/// `path -> (kind, data)` with `root` written as `/meta`.
async fn nodes(
    client: &zookeeper_client::Client,
    root: &str,
) -> BTreeMap<String, (&'static str, String)> {
    let mut found = BTreeMap::new();
    let mut pending = vec![root.to_owned()];
    while let Some(path) = pending.pop() {
        let (data, stat) = client.get_data(&path).await.unwrap();
        let ephemeral = stat.ephemeral_owner != 0;
        if ephemeral || !data.is_empty() {
            let kind = if ephemeral { "ephemeral" } else { "persistent" };
            let shown = format!("/meta{}", &path[root.len()..]);
            found.insert(shown, (kind, String::from_utf8(data).unwrap()));
        }
        for child in client.list_children(&path).await.unwrap() {
            pending.push(format!("{path}/{child}"));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_tree_as_brokers_write_it_and_producers_read_it() {
    let example = example("zk-tree");
    let mut expected = BTreeMap::new();
    let mut derived = BTreeMap::new();
    for (index, line) in example.lines.iter().enumerate() {
        let at = example.at(index);
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            [] => {}
            ["=>", what, ref values @ ..] => {
                derived.insert(what.to_owned(), values.join(" "));
            }
            [path, kind @ ("persistent" | "ephemeral"), data] => {
                expected.insert(path.to_owned(), (kind, data.to_owned()));
            }
            _ => panic!("{at}: expected `path kind data` or `=> what values`: {line:?}"),
        }
    }
    // The document's addresses, by broker id.
    let doc_uris: BTreeMap<u32, String> = derived["brokers"]
        .split(' ')
        .map(|pair| {
            let (id, uri) = pair.split_once('=').expect("id=uri");
            (id.parse().unwrap(), uri.to_owned())
        })
        .collect();

    let zk = ZkServer::shared();
    let root = unique_root();
    let brokers = [
        TestBroker::start(zk, &root, 0, &[("test", 4)]).await,
        TestBroker::start(zk, &root, 1, &[("test", 2)]).await,
    ];
    let as_documented = |text: &str| {
        brokers.iter().fold(text.to_owned(), |text, broker| {
            text.replace(&broker.uri().to_string(), &doc_uris[&broker.config().id])
        })
    };

    // What the two brokers registered.
    let client = zk.client().await;
    let written: BTreeMap<String, (&str, String)> = nodes(&client, &root)
        .await
        .into_iter()
        .map(|(path, (kind, data))| (path, (kind, as_documented(&data))))
        .collect();
    assert_eq!(
        written, expected,
        "nodes registered by two development brokers"
    );

    // What a producer reads from them.
    let settings = ZkSettings::new(zk.connect_string());
    let route = read_route(&client, &ZkPaths::new(&root), "test", &settings, None)
        .await
        .unwrap();
    let route_brokers: Vec<String> = route
        .brokers
        .iter()
        .map(|(id, uri)| format!("{id}={}", as_documented(&uri.to_string())))
        .collect();
    assert_eq!(route_brokers.join(" "), derived["brokers"]);
    let partitions: Vec<String> = route.partitions.iter().map(ToString::to_string).collect();
    assert_eq!(partitions.join(" "), derived["partitions"]);
}
