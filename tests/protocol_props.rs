//! Property tests of the wire protocol: encode/decode round trips, chunking
//! independence, robustness of both decoders against arbitrary input, and the
//! transaction key text form.
//!
//! The robustness properties (`*_arbitrary_*`, `*_mutated_*`) run
//! `METAQ_PROPTEST_CASES` cases when that variable is set (for long runs), 256
//! otherwise; the others run a fixed, moderate number.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::Config;
use tokio_util::codec::Decoder;

use metaq::protocol::{
    attribute_body, checksum, encode_put, split_body, ClientCodec, CodecError, DecodeLimits,
    LocalTxId, ProtocolError, PutHeader, PutRequest, Request, Response, ServerCodec, StatusCode,
    TransactionKind, TransactionRequest, TxKey, XaTxId, FLAG_ATTRIBUTE, MAX_NAME_LEN,
};

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

fn config(cases: u32) -> Config {
    Config {
        cases,
        // Shrinking a failure of these small inputs is quick; keep it bounded.
        max_shrink_iters: 4096,
        ..Config::default()
    }
}

/// Case count of the robustness properties: `METAQ_PROPTEST_CASES` or 256.
fn robustness_cases() -> u32 {
    std::env::var("METAQ_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

/// Printable ASCII without space and `/`.
fn topic() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-z][a-z0-9._-]{0,15}",
        4 => "[!-.0-~]{1,32}",
        1 => Just("t".repeat(MAX_NAME_LEN)),
    ]
    // `.` and `..` cannot name a ZooKeeper node: not topics.
    .prop_filter("a ZooKeeper node name", |t| t != "." && t != "..")
}

/// Printable ASCII without space and `:`.
fn session_id() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}-[0-9]{13}-[0-9]{1,3}",
        2 => "[!-9;-~]{1,40}",
    ]
}

/// Like a session id, and not all digits.
fn unique_qualifier() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => "XAMessageProducer-[a-z0-9.-]{1,20}",
        2 => "[!-9;-~]{0,12}[A-Za-z_-][!-9;-~]{0,12}",
    ]
}

fn local_key() -> impl Strategy<Value = TxKey> {
    (session_id(), any::<i32>()).prop_map(|(session_id, counter)| {
        TxKey::Local(LocalTxId {
            session_id,
            counter,
        })
    })
}

fn xa_key() -> impl Strategy<Value = TxKey> {
    (
        any::<i32>(),
        vec(any::<u8>(), 0..24),
        vec(any::<u8>(), 0..24),
        unique_qualifier(),
    )
        .prop_map(
            |(format_id, global_id, branch_qualifier, unique_qualifier)| {
                TxKey::Xa(XaTxId {
                    format_id,
                    global_id,
                    branch_qualifier,
                    unique_qualifier,
                })
            },
        )
}

/// Keys the encoders accept.
fn tx_key() -> impl Strategy<Value = TxKey> {
    prop_oneof![
        4 => local_key(),
        4 => xa_key(),
        1 => Just(TxKey::Null),
    ]
    .prop_filter("key must fit in 255 bytes", |k| k.validate().is_ok())
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => Just(Vec::new()),
        6 => vec(any::<u8>(), 0..200),
        // Bodies that look like frames.
        1 => Just(b"put t 0 0 0 1\r\n\r\nresult 200 0 1\r\n".to_vec()),
    ]
}

/// An attribute: any UTF-8 text, including empty.
fn attribute() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(".{0,12}")
}

/// A put in any of the four header forms, with or without an attribute block.
fn put_request() -> impl Strategy<Value = PutRequest> {
    (
        topic(),
        any::<i32>(),
        any::<i32>(),
        proptest::option::of(any::<i32>()),
        proptest::option::of(tx_key()),
        any::<i32>(),
        attribute(),
        payload(),
    )
        .prop_map(
            |(topic, partition, flag, checksum, tx_key, opaque, attr, payload)| {
                let (flag, body) = match &attr {
                    Some(a) => (flag | FLAG_ATTRIBUTE, attribute_body(Some(a), &payload)),
                    None => (flag & !FLAG_ATTRIBUTE, Bytes::from(payload)),
                };
                PutRequest {
                    topic,
                    partition,
                    flag,
                    checksum,
                    tx_key,
                    opaque,
                    body,
                }
            },
        )
}

fn transaction_kind() -> impl Strategy<Value = TransactionKind> {
    proptest::sample::select(TransactionKind::ALL.to_vec())
}

fn transaction_request() -> impl Strategy<Value = TransactionRequest> {
    (
        tx_key(),
        session_id(),
        transaction_kind(),
        prop_oneof![
            2 => Just(None),
            3 => (1..=i32::MAX).prop_map(Some),
            // Not written: decodes as no timeout.
            1 => (i32::MIN..=0).prop_map(Some),
        ],
        proptest::option::of(unique_qualifier()),
        any::<i32>(),
    )
        .prop_map(
            |(key, session_id, kind, timeout_secs, unique_qualifier, opaque)| TransactionRequest {
                key,
                session_id,
                kind,
                timeout_secs,
                unique_qualifier,
                opaque,
            },
        )
}

fn stats_item() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("topics".to_owned()),
        Just("offsets".to_owned()),
        topic(),
    ]
}

/// Every request kind a producer can encode.
fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        6 => put_request().prop_map(Request::Put),
        4 => transaction_request().prop_map(Request::Transaction),
        1 => any::<i32>().prop_map(|opaque| Request::Version { opaque }),
        1 => (stats_item(), any::<i32>()).prop_map(|(item, opaque)| Request::Stats { item, opaque }),
        1 => Just(Request::Quit),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    (
        prop_oneof![
            4 => Just(StatusCode::SUCCESS),
            1 => Just(StatusCode::INTERNAL_SERVER_ERROR),
            1 => any::<u16>().prop_map(StatusCode),
        ],
        any::<i32>(),
        prop_oneof![
            (any::<i64>(), any::<i32>(), any::<i64>())
                .prop_map(|(id, p, o)| Bytes::from(format!("{id} {p} {o}"))),
            payload().prop_map(Bytes::from),
        ],
    )
        .prop_map(|(code, opaque, body)| Response { code, opaque, body })
}

/// Chunk sizes for splitting a stream; empty means "all at once".
fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    vec(1usize..48, 0..64)
}

fn limits() -> impl Strategy<Value = DecodeLimits> {
    prop_oneof![
        1 => Just(DecodeLimits::default()),
        3 => (0usize..96, 0usize..256).prop_map(|(max_line, max_body)| DecodeLimits {
            max_line,
            max_body,
        }),
    ]
}

/// Bytes that often look like protocol lines: a soup of command words,
/// numbers, keys, separators and random bytes.
fn soup() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        3 => proptest::sample::select(vec![
            "put", "result", "transaction", "version", "value", "stats", "sync", "get",
            "offset", "quit", "v", "q", "p", "BEGIN", "END", "PREPARE", "COMMIT_ONE_PHASE",
            "ROLLBACK", "RECOVER", "null", "TX:s:1", "XID:1:0102:0a:q", "TX:", "XID:",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        4 => Just(b" ".to_vec()),
        3 => Just(b"\r\n".to_vec()),
        1 => Just(b"\r".to_vec()),
        1 => Just(b"\n".to_vec()),
        3 => (-3i64..300).prop_map(|n| n.to_string().into_bytes()),
        1 => any::<i64>().prop_map(|n| n.to_string().into_bytes()),
        2 => vec(any::<u8>(), 1..8),
    ];
    vec(piece, 0..120).prop_map(|pieces| pieces.concat())
}

/// Header lines with the right shape (a command word and up to nine tokens
/// from a small vocabulary, single spaces, CRLF), each followed by a few body
/// bytes: reaches the per-command token rules far more often than [`soup`].
fn lines() -> impl Strategy<Value = Vec<u8>> {
    let word = proptest::sample::select(vec![
        "put",
        "result",
        "transaction",
        "version",
        "vx",
        "value",
        "stats",
        "sync",
        "get",
        "offset",
        "quit",
        "qx",
        "p",
        "r",
        "t",
        "s",
        "o",
        "",
    ]);
    let token = prop_oneof![
        4 => (-2i64..20).prop_map(|n| n.to_string()),
        1 => any::<i32>().prop_map(|n| n.to_string()),
        1 => Just("2147483648".to_owned()),
        1 => Just("9223372036854775807".to_owned()),
        2 => proptest::sample::select(vec![
            "t", "TX:s:1", "TX:s:x", "TX::1", "XID:1:0102:0a:q", "XID:1:0:0a:q", "null",
            "BEGIN", "END", "PREPARE", "COMMIT_ONE_PHASE", "COMMIT_TWO_PHASE", "ROLLBACK",
            "RECOVER", "FORGET", "q1", "", "-", "+1",
        ])
        .prop_map(str::to_owned),
    ];
    let line = (word, vec(token, 0..10), vec(any::<u8>(), 0..24)).prop_map(|(w, t, body)| {
        let mut out = w.as_bytes().to_vec();
        for token in t {
            out.push(b' ');
            out.extend_from_slice(token.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body);
        out
    });
    vec(line, 1..6).prop_map(|lines| lines.concat())
}

/// A valid stream of requests, then damaged.
fn mutated(stream: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    #[derive(Debug, Clone)]
    enum Edit {
        Flip(usize, u8),
        Insert(usize, Vec<u8>),
        Delete(usize, usize),
        Truncate(usize),
    }
    let edit = prop_oneof![
        3 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        2 => (any::<usize>(), prop_oneof![
            Just(b" ".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"-".to_vec()),
            Just(b"9999999999".to_vec()),
            vec(any::<u8>(), 1..6),
        ])
            .prop_map(|(i, bytes)| Edit::Insert(i, bytes)),
        2 => (any::<usize>(), 1usize..8).prop_map(|(i, n)| Edit::Delete(i, n)),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ];
    (stream, vec(edit, 1..6)).prop_map(|(mut bytes, edits)| {
        for edit in edits {
            let len = bytes.len();
            match edit {
                Edit::Flip(i, b) if len > 0 => bytes[i % len] = b,
                Edit::Insert(i, ins) => {
                    let at = i % (len + 1);
                    bytes.splice(at..at, ins);
                }
                Edit::Delete(i, n) if len > 0 => {
                    let at = i % len;
                    bytes.drain(at..(at + n).min(len));
                }
                Edit::Truncate(i) => bytes.truncate(i % (len + 1)),
                _ => {}
            }
        }
        bytes
    })
}

fn encoded_requests() -> impl Strategy<Value = Vec<u8>> {
    vec(request(), 1..6).prop_map(|requests| {
        let mut buf = BytesMut::new();
        for r in &requests {
            r.encode(&mut buf).unwrap();
        }
        buf.to_vec()
    })
}

fn encoded_responses() -> impl Strategy<Value = Vec<u8>> {
    vec(response(), 1..6).prop_map(|responses| {
        let mut buf = BytesMut::new();
        for r in &responses {
            r.encode(&mut buf).unwrap();
        }
        buf.to_vec()
    })
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// What a caller does to the read buffer between two `decode` calls.
#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    Clear,
    Advance(usize),
}

/// What decoding a request is expected to give back.
fn normalized(request: &Request) -> Request {
    match request {
        Request::Transaction(t) => Request::Transaction(TransactionRequest {
            timeout_secs: t.timeout_secs.filter(|t| *t > 0),
            ..t.clone()
        }),
        other => other.clone(),
    }
}

/// The outcome of feeding `bytes` to a decoder: the frames, and the protocol
/// error that stopped it (if any).
#[derive(Debug, PartialEq)]
struct Outcome<T> {
    frames: Vec<T>,
    error: Option<ProtocolError>,
    /// Bytes left in the buffer at the end (an incomplete frame); 0 after an error.
    left: usize,
}

/// Feeds `bytes` in chunks of `sizes` (cycled; all at once when empty),
/// decoding until `None` or an error after each chunk, and checks that the
/// decoder never leaves more than `bound` bytes buffered while it waits.
fn feed<D>(mut codec: D, bytes: &[u8], sizes: &[usize], bound: usize) -> Outcome<D::Item>
where
    D: Decoder<Error = CodecError>,
{
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut rest = bytes;
    let mut sizes_iter = sizes.iter().copied().cycle();
    let largest_chunk = sizes.iter().copied().max().unwrap_or(bytes.len());
    loop {
        let n = sizes_iter.next().unwrap_or(rest.len()).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(CodecError::Protocol(error)) => {
                    // What is left after an error depends on how much had
                    // arrived; the stream is dead anyway.
                    return Outcome {
                        frames,
                        error: Some(error),
                        left: 0,
                    };
                }
                Err(other) => panic!("decode gave a non-protocol error: {other:?}"),
            }
        }
        assert!(
            buf.len() <= bound,
            "{} bytes buffered while waiting, bound {bound}",
            buf.len()
        );
        // The decoder's own reservations stay within the caps too.
        let cap_bound = 2 * (bound + largest_chunk) + 64;
        assert!(
            buf.capacity() <= cap_bound,
            "capacity {} over {cap_bound}",
            buf.capacity()
        );
        if rest.is_empty() {
            return Outcome {
                frames,
                error: None,
                left: buf.len(),
            };
        }
    }
}

/// Most a decoder may hold while waiting: a line and its CR, or a body.
fn wait_bound(limits: DecodeLimits) -> usize {
    (limits.max_line + 1).max(limits.max_body)
}

fn server_outcome(bytes: &[u8], sizes: &[usize], limits: DecodeLimits) -> Outcome<Request> {
    feed(ServerCodec::new(limits), bytes, sizes, wait_bound(limits))
}

fn client_outcome(bytes: &[u8], sizes: &[usize], limits: DecodeLimits) -> Outcome<Response> {
    feed(ClientCodec::new(limits), bytes, sizes, wait_bound(limits))
}

/// Limits large enough for every generated frame.
fn roomy() -> DecodeLimits {
    DecodeLimits {
        max_line: 4096,
        max_body: 4096,
    }
}

// ---------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn request_round_trip(request in request()) {
        let mut buf = BytesMut::new();
        request.encode(&mut buf).unwrap();
        let outcome = server_outcome(&buf, &[], DecodeLimits::default());
        prop_assert_eq!(outcome.error, None);
        prop_assert_eq!(outcome.left, 0);
        prop_assert_eq!(outcome.frames, vec![normalized(&request)]);
    }

    #[test]
    fn put_round_trip_every_form(
        put in put_request(),
        with_checksum in any::<bool>(),
        with_key in proptest::option::of(tx_key()),
    ) {
        // Force each of the four header forms.
        let put = PutRequest {
            checksum: if with_checksum { Some(checksum(&put.body)) } else { None },
            tx_key: with_key,
            ..put
        };
        let mut buf = BytesMut::new();
        put.encode(&mut buf).unwrap();
        let line_end = buf.windows(2).position(|w| w == b"\r\n").unwrap();
        let tokens = buf[..line_end].split(|b| *b == b' ').count();
        let expected_tokens = 6 + usize::from(put.checksum.is_some()) + usize::from(put.tx_key.is_some());
        prop_assert_eq!(tokens, expected_tokens);
        let outcome = server_outcome(&buf, &[], DecodeLimits::default());
        prop_assert_eq!(outcome.error, None);
        prop_assert_eq!(outcome.frames, vec![Request::Put(put)]);
    }

    #[test]
    fn transaction_round_trip(tx in transaction_request()) {
        let mut buf = BytesMut::new();
        tx.encode(&mut buf).unwrap();
        let expected = normalized(&Request::Transaction(tx));
        let outcome = server_outcome(&buf, &[], DecodeLimits::default());
        prop_assert_eq!(outcome.error, None);
        prop_assert_eq!(outcome.frames, vec![expected]);
    }

    #[test]
    fn response_round_trip(response in response()) {
        let mut buf = BytesMut::new();
        response.encode(&mut buf).unwrap();
        let outcome = client_outcome(&buf, &[], DecodeLimits::default());
        prop_assert_eq!(outcome.error, None);
        prop_assert_eq!(outcome.left, 0);
        prop_assert_eq!(outcome.frames, vec![response]);
    }

    #[test]
    fn put_result_round_trip(id in any::<i64>(), partition in any::<i32>(), offset in any::<i64>()) {
        let response = Response::text(StatusCode::SUCCESS, 1, format!("{id} {partition} {offset}"));
        prop_assert_eq!(response.put_result(), Some((id, partition, offset)));
    }

    #[test]
    fn encode_put_decodes_with_its_checksum(
        topic in topic(),
        partition in any::<i32>(),
        tx_key in proptest::option::of(tx_key()),
        opaque in any::<i32>(),
        attr in attribute(),
        payload in payload(),
    ) {
        let header = PutHeader { topic: &topic, partition, tx_key: tx_key.as_ref(), opaque };
        let mut buf = BytesMut::new();
        encode_put(&mut buf, &header, attr.as_deref(), &payload).unwrap();
        let body = attribute_body(attr.as_deref(), &payload);
        let expected = PutRequest {
            topic: topic.clone(),
            partition,
            flag: if attr.is_some() { FLAG_ATTRIBUTE } else { 0 },
            checksum: Some(checksum(&body)),
            tx_key: tx_key.clone(),
            opaque,
            body: body.clone(),
        };
        // The fast path writes exactly what the general encoder writes.
        let mut general = BytesMut::new();
        expected.encode(&mut general).unwrap();
        prop_assert_eq!(&buf, &general);

        let outcome = server_outcome(&buf, &[], DecodeLimits::default());
        prop_assert_eq!(outcome.error, None);
        let [Request::Put(put)] = &outcome.frames[..] else {
            return Err(TestCaseError::fail(format!("not one put: {:?}", outcome.frames)));
        };
        prop_assert_eq!(put, &expected);
        prop_assert_eq!(put.checksum, Some(checksum(&put.body)));
        let (got_attr, got_payload) = split_body(put.flag, &put.body).unwrap();
        prop_assert_eq!(got_attr, attr.as_deref().map(str::as_bytes));
        prop_assert_eq!(got_payload, &payload[..]);
    }

    #[test]
    fn encoders_leave_the_buffer_alone_on_error(
        topic in "[ -~]{0,4}|.{0,4}",
        session in "[ -~]{0,4}",
        qualifier in "[ -~]{0,4}",
        prefix in vec(any::<u8>(), 0..16),
    ) {
        let mut buf = BytesMut::from(&prefix[..]);
        let header = PutHeader { topic: &topic, partition: 0, tx_key: None, opaque: 1 };
        if encode_put(&mut buf, &header, None, b"x").is_err() {
            prop_assert_eq!(&buf[..], &prefix[..]);
        }
        let mut buf = BytesMut::from(&prefix[..]);
        let tx = TransactionRequest {
            key: TxKey::Null,
            session_id: session.clone(),
            kind: TransactionKind::Recover,
            timeout_secs: None,
            unique_qualifier: Some(qualifier.clone()),
            opaque: 1,
        };
        match tx.encode(&mut buf) {
            Err(_) => prop_assert_eq!(&buf[..], &prefix[..]),
            Ok(()) => {
                // Accepted names always decode back.
                let outcome = server_outcome(&buf[prefix.len()..], &[], DecodeLimits::default());
                prop_assert_eq!(outcome.frames, vec![Request::Transaction(tx)]);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Streams and chunking
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn request_stream_is_independent_of_chunking(
        requests in vec(request(), 1..12),
        sizes in chunk_sizes(),
    ) {
        let mut buf = BytesMut::new();
        for r in &requests {
            r.encode(&mut buf).unwrap();
        }
        let expected: Vec<Request> = requests.iter().map(normalized).collect();
        let whole = server_outcome(&buf, &[], roomy());
        prop_assert_eq!(&whole.frames, &expected);
        prop_assert_eq!(whole.error.clone(), None);
        prop_assert_eq!(whole.left, 0);
        prop_assert_eq!(server_outcome(&buf, &sizes, roomy()), whole);
        // One byte at a time, too.
        prop_assert_eq!(&server_outcome(&buf, &[1], roomy()).frames, &expected);
    }

    #[test]
    fn response_stream_is_independent_of_chunking(
        responses in vec(response(), 1..12),
        sizes in chunk_sizes(),
    ) {
        let mut buf = BytesMut::new();
        for r in &responses {
            r.encode(&mut buf).unwrap();
        }
        let whole = client_outcome(&buf, &[], roomy());
        prop_assert_eq!(&whole.frames, &responses);
        prop_assert_eq!(whole.error.clone(), None);
        prop_assert_eq!(client_outcome(&buf, &sizes, roomy()), whole);
        prop_assert_eq!(&client_outcome(&buf, &[1], roomy()).frames, &responses);
    }

    #[test]
    fn oversized_puts_are_skipped_whatever_the_chunking(
        requests in vec(request(), 1..10),
        max_body in 0usize..64,
        sizes in chunk_sizes(),
    ) {
        let limits = DecodeLimits { max_line: 4096, max_body };
        let mut buf = BytesMut::new();
        for r in &requests {
            r.encode(&mut buf).unwrap();
        }
        let expected: Vec<Request> = requests
            .iter()
            .map(|r| match r {
                Request::Put(p) if p.body.len() > max_body => Request::PutTooLarge {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    len: p.body.len() as u64,
                    opaque: p.opaque,
                },
                other => normalized(other),
            })
            .collect();
        let whole = server_outcome(&buf, &[], limits);
        prop_assert_eq!(&whole.frames, &expected);
        prop_assert_eq!(whole.left, 0);
        prop_assert_eq!(server_outcome(&buf, &sizes, limits), whole);
    }
}

// ---------------------------------------------------------------------------
// Robustness: arbitrary and damaged input
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(robustness_cases()))]

    #[test]
    fn server_arbitrary_bytes(
        bytes in prop_oneof![vec(any::<u8>(), 0..512), soup(), lines()],
        sizes in chunk_sizes(),
        limits in limits(),
    ) {
        let whole = server_outcome(&bytes, &[], limits);
        prop_assert_eq!(server_outcome(&bytes, &sizes, limits), whole);
    }

    #[test]
    fn client_arbitrary_bytes(
        bytes in prop_oneof![vec(any::<u8>(), 0..512), soup(), lines()],
        sizes in chunk_sizes(),
        limits in limits(),
    ) {
        let whole = client_outcome(&bytes, &[], limits);
        prop_assert_eq!(client_outcome(&bytes, &sizes, limits), whole);
    }

    #[test]
    fn server_mutated_requests(
        bytes in mutated(encoded_requests()),
        sizes in chunk_sizes(),
        limits in limits(),
    ) {
        let whole = server_outcome(&bytes, &[], limits);
        prop_assert_eq!(server_outcome(&bytes, &sizes, limits), whole);
        // The client must refuse requests without panicking.
        let _ = client_outcome(&bytes, &sizes, limits);
    }

    #[test]
    fn client_mutated_responses(
        bytes in mutated(encoded_responses()),
        sizes in chunk_sizes(),
        limits in limits(),
    ) {
        let whole = client_outcome(&bytes, &[], limits);
        prop_assert_eq!(client_outcome(&bytes, &sizes, limits), whole);
        let _ = server_outcome(&bytes, &sizes, limits);
    }

    #[test]
    fn decoders_survive_arbitrary_call_sequences(
        ops in vec(prop_oneof![
            6 => prop_oneof![vec(any::<u8>(), 0..24), lines(), soup()].prop_map(Op::Append),
            1 => Just(Op::Clear),
            1 => (0usize..16).prop_map(Op::Advance),
        ], 0..24),
        limits in limits(),
    ) {
        // The caller owns the buffer and may drop bytes between calls (after
        // an error, say); the codecs must never panic, whatever it does.
        let mut server = ServerCodec::new(limits);
        let mut client = ClientCodec::new(limits);
        let mut server_buf = BytesMut::new();
        let mut client_buf = BytesMut::new();
        for op in ops {
            for buf in [&mut server_buf, &mut client_buf] {
                match &op {
                    Op::Append(bytes) => buf.extend_from_slice(bytes),
                    Op::Clear => buf.clear(),
                    Op::Advance(n) => {
                        let n = (*n).min(buf.len());
                        let _ = buf.split_to(n);
                    }
                }
            }
            while let Ok(Some(_)) = server.decode(&mut server_buf) {}
            while let Ok(Some(_)) = client.decode(&mut client_buf) {}
        }
    }

    #[test]
    fn tx_key_parse_arbitrary_text(text in prop_oneof![
        ".{0,40}",
        "(TX|XID|null|[a-z]{0,3})(:[!-~]{0,6}){0,6}",
        "XID:-?[0-9]{1,11}:[0-9a-fA-F]{0,8}:[0-9a-fA-F]{0,8}:[!-9;-~]{0,8}",
        "TX:[!-9;-~]{0,8}:[+-]?[0-9]{1,11}",
    ]) {
        // Whatever parses prints back to text that parses to the same key.
        if let Ok(key) = text.parse::<TxKey>() {
            let printed = key.to_string();
            prop_assert!(printed.len() <= text.len(), "{printed:?} longer than {text:?}");
            prop_assert_eq!(printed.parse::<TxKey>(), Ok(key));
        }
    }
}

// ---------------------------------------------------------------------------
// Transaction keys
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn tx_key_display_from_str_round_trip(key in tx_key()) {
        let text = key.to_string();
        prop_assert!(text.len() <= MAX_NAME_LEN);
        prop_assert!(!text.contains(' '));
        prop_assert_eq!(text.parse::<TxKey>(), Ok(key.clone()));
        match &key {
            TxKey::Local(l) => {
                prop_assert_eq!(text, format!("TX:{}:{}", l.session_id, l.counter));
            }
            TxKey::Xa(x) => {
                let prefix = format!("XID:{}:", x.format_id);
                prop_assert!(text.starts_with(&prefix), "{} does not start with {}", text, prefix);
                prop_assert_eq!(text.split(':').count(), 5);
            }
            TxKey::Null => prop_assert_eq!(text, "null"),
        }
    }

    #[test]
    fn tx_key_validate_matches_length(session in "[a-z]{200,260}", counter in any::<i32>()) {
        let key = TxKey::Local(LocalTxId { session_id: session, counter });
        let fits = key.to_string().len() <= MAX_NAME_LEN;
        prop_assert_eq!(key.validate().is_ok(), fits && match &key {
            TxKey::Local(l) => l.session_id.len() <= MAX_NAME_LEN,
            _ => unreachable!(),
        });
        prop_assert_eq!(key.to_string().parse::<TxKey>().is_ok(), fits);
    }
}
