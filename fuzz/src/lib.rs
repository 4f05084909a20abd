//! Shared harness of the fuzz targets.
//!
//! Input layout of the codec targets:
//!
//! * byte 0: bits 0–2 = how many chunk-size bytes follow (0 = feed everything
//!   at once), bits 3–4 = which [`DecodeLimits`] to use;
//! * then that many bytes, each a chunk size (`b % 64 + 1`, cycled);
//! * then the stream itself.
//!
//! Each target decodes the stream twice, all at once and in chunks, until
//! `None` or an error, and panics if the two disagree, if a decoder ever
//! returns a non-protocol error, or if it is left holding more bytes than
//! its caps allow while it waits for more.

use bytes::BytesMut;
use metaq::protocol::{
    encode_put, validate_topic, ClientCodec, CodecError, DecodeLimits, ProtocolError, PutHeader,
    Request, ServerCodec, TransactionKind, TransactionRequest, TxKey,
};
use tokio_util::codec::Decoder;

/// Frames decoded and the error that ended decoding, if any.
#[derive(Debug, PartialEq)]
pub struct Outcome<T> {
    /// Every frame, in order.
    pub frames: Vec<T>,
    /// The protocol error that stopped decoding.
    pub error: Option<ProtocolError>,
}

/// The parsed fuzz input.
pub struct Input<'a> {
    /// Caps for the decoder.
    pub limits: DecodeLimits,
    /// Chunk sizes, cycled; empty = all at once.
    pub sizes: Vec<usize>,
    /// The bytes to decode.
    pub stream: &'a [u8],
}

impl<'a> Input<'a> {
    /// Splits raw fuzz data into configuration and stream.
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let (&config, rest) = data.split_first()?;
        let n = usize::from(config & 0b111).min(rest.len());
        let limits = match (config >> 3) & 0b11 {
            0 => DecodeLimits::default(),
            1 => DecodeLimits {
                max_line: 32,
                max_body: 64,
            },
            2 => DecodeLimits {
                max_line: 0,
                max_body: 0,
            },
            _ => DecodeLimits {
                max_line: 256,
                max_body: 1024,
            },
        };
        let sizes = rest[..n].iter().map(|b| usize::from(b % 64) + 1).collect();
        Some(Self {
            limits,
            sizes,
            stream: &rest[n..],
        })
    }

    /// Most bytes a decoder may hold while waiting for more.
    fn bound(&self) -> usize {
        (self.limits.max_line + 1).max(self.limits.max_body)
    }
}

/// Feeds `stream` in chunks of `sizes` (all at once when empty).
pub fn feed<D>(mut codec: D, stream: &[u8], sizes: &[usize], bound: usize) -> Outcome<D::Item>
where
    D: Decoder<Error = CodecError>,
{
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut rest = stream;
    let mut sizes = sizes.iter().copied().cycle();
    loop {
        let n = sizes.next().unwrap_or(rest.len()).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(CodecError::Protocol(error)) => {
                    return Outcome {
                        frames,
                        error: Some(error),
                    }
                }
                Err(other) => panic!("non-protocol error from decode: {other:?}"),
            }
        }
        assert!(
            buf.len() <= bound,
            "{} bytes buffered while waiting, bound {bound}",
            buf.len()
        );
        if rest.is_empty() {
            return Outcome {
                frames,
                error: None,
            };
        }
    }
}

fn check<D, F>(data: &[u8], make: F)
where
    D: Decoder<Error = CodecError>,
    D::Item: PartialEq + std::fmt::Debug,
    F: Fn(DecodeLimits) -> D,
{
    let Some(input) = Input::parse(data) else {
        return;
    };
    let whole = feed(make(input.limits), input.stream, &[], input.bound());
    if !input.sizes.is_empty() {
        let chunked = feed(
            make(input.limits),
            input.stream,
            &input.sizes,
            input.bound(),
        );
        assert_eq!(whole, chunked, "chunking changed the outcome");
    }
}

/// The `server_codec` target.
pub fn server_codec(data: &[u8]) {
    check(data, ServerCodec::new);
}

/// The `client_codec` target.
pub fn client_codec(data: &[u8]) {
    check(data, ClientCodec::new);
}

/// Decodes one request that must be complete and valid.
fn decode_one(buf: &[u8]) -> Request {
    let outcome = feed(ServerCodec::default(), buf, &[], usize::MAX);
    assert_eq!(outcome.error, None, "{:?}", String::from_utf8_lossy(buf));
    let [request] = <[Request; 1]>::try_from(outcome.frames).expect("one frame");
    request
}

/// The `tx_key` target: any text that parses as a key prints back to text
/// that parses to the same key; any key the encoders accept survives a
/// `transaction` and a `put` round trip; any accepted topic too.
pub fn tx_key(text: &str) {
    if let Ok(key) = text.parse::<TxKey>() {
        let printed = key.to_string();
        assert!(printed.len() <= text.len(), "{printed:?} from {text:?}");
        assert_eq!(printed.parse::<TxKey>(), Ok(key.clone()));
        if key.validate().is_ok() {
            let tx = TransactionRequest {
                key: key.clone(),
                session_id: "s".to_owned(),
                kind: TransactionKind::Begin,
                timeout_secs: Some(5),
                unique_qualifier: Some("q".to_owned()),
                opaque: 1,
            };
            let mut buf = BytesMut::new();
            tx.encode(&mut buf).expect("a valid key encodes");
            assert_eq!(decode_one(&buf), Request::Transaction(tx));
            let mut buf = BytesMut::new();
            let header = PutHeader {
                topic: "t",
                partition: 0,
                tx_key: Some(&key),
                opaque: 2,
            };
            encode_put(&mut buf, &header, None, b"x").expect("a valid key encodes");
            match decode_one(&buf) {
                Request::Put(put) => assert_eq!(put.tx_key, Some(key)),
                other => panic!("not a put: {other:?}"),
            }
        }
    }
    if validate_topic(text).is_ok() {
        let mut buf = BytesMut::new();
        let header = PutHeader {
            topic: text,
            partition: 0,
            tx_key: None,
            opaque: 3,
        };
        encode_put(&mut buf, &header, Some(text), b"x").expect("a valid topic encodes");
        match decode_one(&buf) {
            Request::Put(put) => assert_eq!(put.topic, text),
            other => panic!("not a put: {other:?}"),
        }
    } else {
        // A refused topic leaves the buffer as it was.
        let mut buf = BytesMut::from(&b"x"[..]);
        let header = PutHeader {
            topic: text,
            partition: 0,
            tx_key: None,
            opaque: 3,
        };
        assert!(encode_put(&mut buf, &header, None, b"x").is_err());
        assert_eq!(&buf[..], b"x");
    }
}

/// Largest partition count the targets allow (the producer's default cap).
const MAX_PARTS: u32 = 1_024;

/// The `zk_topic_broker` target: any `topics-pub` entry data either fails
/// with a message or gives a count within `1..=MAX_PARTS`, and a count read
/// from valid JSON is the `numParts` written in it.
pub fn zk_topic_broker(data: &[u8]) {
    if let Ok(n) = metaq::discovery::fuzzing::partition_count(false, data, MAX_PARTS) {
        assert!((1..=MAX_PARTS).contains(&n), "{n} from {data:?}");
        let again = format!("{{\"numParts\":{n},\"broker\":\"0-m\"}}");
        assert_eq!(
            metaq::discovery::fuzzing::partition_count(false, again.as_bytes(), MAX_PARTS),
            Ok(n)
        );
    }
}

/// The `zk_legacy_count` target: legacy `topics` entry data (decimal text)
/// either fails or gives a count within `1..=MAX_PARTS` that prints back
/// to text giving the same count.
pub fn zk_legacy_count(data: &[u8]) {
    if let Ok(n) = metaq::discovery::fuzzing::partition_count(true, data, MAX_PARTS) {
        assert!((1..=MAX_PARTS).contains(&n), "{n} from {data:?}");
        let text = std::str::from_utf8(data).expect("a count from UTF-8 only");
        let digits = text.trim().trim_start_matches('+').trim_start_matches('0');
        assert_eq!(digits, n.to_string(), "{n} from {text:?}");
        assert_eq!(
            metaq::discovery::fuzzing::partition_count(true, n.to_string().as_bytes(), MAX_PARTS),
            Ok(n)
        );
    }
}

/// The `zk_broker_uri` target: a broker's `master` node data, the names of
/// `topics-pub` children and partition names never panic; an address that
/// parses prints to one that parses to the same address (so what the
/// producer logs and connects to is what ZooKeeper said); a master entry
/// id prints back to its name.
pub fn zk_broker_uri(data: &[u8]) {
    use metaq::discovery::{fuzzing, BrokerUri, Partition};
    if let Ok(Some(uri)) = fuzzing::master(data) {
        let printed = uri.to_string();
        assert_eq!(printed.parse::<BrokerUri>().as_ref(), Ok(&uri), "{printed}");
        assert!(uri.socket_addr_text().ends_with(&format!(":{}", uri.port)));
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(id) = fuzzing::master_entry_id(text) {
        assert_eq!(fuzzing::master_entry_id(&format!("{id}-m")), Some(id));
    }
    if let Ok(partition) = text.parse::<Partition>() {
        assert_eq!(partition.to_string().parse::<Partition>(), Ok(partition));
    }
}
