//! What the null server answers, written straight into the connection's
//! output buffer.
//!
//! The answer to a `put` is the hot path: it is written with `itoa` into the
//! buffer, with no `Response` and no body allocation per message. Every
//! other request is rare and goes through [`Response::encode`].

use bytes::{BufMut, BytesMut};

use metaq::protocol::{Request, Response, StatusCode, TransactionKind};

/// The version string the null server answers to `version` (a heartbeat
/// needs only the 200); it tells a null server from a broker.
///
/// # Examples
///
/// ```
/// use metaq_broker::null::NULL_SERVER_VERSION;
/// assert!(NULL_SERVER_VERSION.starts_with("metaq-null-server-"));
/// ```
pub const NULL_SERVER_VERSION: &str = concat!("metaq-null-server-", env!("CARGO_PKG_VERSION"));

/// Per-connection state the answers need.
#[derive(Debug, Default)]
pub(crate) struct Answerer {
    /// Offset given to the next put: the null server stores nothing, but a
    /// producer reads `<id> <partition> <offset>` from every success, and
    /// one that cannot read it treats the broker as suspect.
    next_offset: i64,
    /// Puts answered since the last [`take_puts`](Self::take_puts).
    puts: u64,
}

/// What the connection does after answering a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    /// Go on reading.
    Continue,
    /// The client said `quit`: write what is pending and close.
    Close,
}

impl Answerer {
    /// Appends the answer to `request` (if it gets one) to `out`.
    pub(crate) fn answer(&mut self, request: Request, out: &mut BytesMut) -> After {
        match request {
            Request::Put(put) => {
                self.put(put.opaque, put.partition, out);
            }
            Request::PutTooLarge { len, opaque, .. } => {
                let text = format!("message body of {len} bytes is over the limit");
                encode(
                    Response::text(StatusCode::INTERNAL_SERVER_ERROR, opaque, text),
                    out,
                );
            }
            // `END` is never answered, by the Java broker either.
            Request::Transaction(tx) if tx.kind == TransactionKind::End => {}
            // Every other transaction command succeeds: nothing is held, so
            // there is nothing to commit or roll back.
            Request::Transaction(tx) => {
                encode(Response::text(StatusCode::SUCCESS, tx.opaque, ""), out);
            }
            Request::Version { opaque } => {
                encode(
                    Response::text(StatusCode::SUCCESS, opaque, NULL_SERVER_VERSION),
                    out,
                );
            }
            Request::Stats { opaque, .. } => {
                let text = format!(
                    "STATS\r\npid {}\r\nversion {NULL_SERVER_VERSION}\r\nEND\r\n",
                    std::process::id()
                );
                encode(Response::text(StatusCode::SUCCESS, opaque, text), out);
            }
            Request::Unsupported(u) => {
                let text = format!(
                    "no processor registered for {} on the null server",
                    u.command
                );
                encode(
                    Response::text(StatusCode::SERVICE_UNAVAILABLE, u.opaque, text),
                    out,
                );
            }
            Request::Quit => return After::Close,
            // A request kind newer than this server: refused, not dropped.
            other => {
                if let Some(opaque) = other.opaque() {
                    let text = "not served by the null server";
                    encode(
                        Response::text(StatusCode::SERVICE_UNAVAILABLE, opaque, text),
                        out,
                    );
                }
            }
        }
        After::Continue
    }

    /// Puts answered since the last call.
    pub(crate) fn take_puts(&mut self) -> u64 {
        std::mem::take(&mut self.puts)
    }

    /// `result 200 <len> <opaque>\r\n<id> <partition> <offset>`, the id being
    /// the offset (unique per connection, which is all a producer checks).
    fn put(&mut self, opaque: i32, partition: i32, out: &mut BytesMut) {
        let offset = self.next_offset;
        self.next_offset += 1;
        self.puts += 1;
        // `-1` ("broker chooses") is answered as partition 0.
        let partition = partition.max(0);
        let mut id_text = itoa::Buffer::new();
        let id_text = id_text.format(offset);
        let mut partition_text = itoa::Buffer::new();
        let partition_text = partition_text.format(partition);
        // The id and the offset are the same number.
        let body_len = id_text.len() * 2 + partition_text.len() + 2;
        let mut number = itoa::Buffer::new();
        out.reserve(40 + body_len);
        out.put_slice(b"result 200 ");
        out.put_slice(number.format(body_len).as_bytes());
        out.put_u8(b' ');
        out.put_slice(number.format(opaque).as_bytes());
        out.put_slice(b"\r\n");
        out.put_slice(id_text.as_bytes());
        out.put_u8(b' ');
        out.put_slice(partition_text.as_bytes());
        out.put_u8(b' ');
        out.put_slice(id_text.as_bytes());
    }
}

fn encode(response: Response, out: &mut BytesMut) {
    // Bodies made here are far below the 2 GiB a frame can carry.
    let _ = response.encode(out);
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tokio_util::codec::Decoder;

    use super::*;
    use metaq::protocol::{ClientCodec, LocalTxId, PutRequest, TransactionRequest, TxKey};

    fn put(opaque: i32, partition: i32) -> Request {
        Request::Put(PutRequest {
            topic: "bench".into(),
            partition,
            flag: 0,
            checksum: None,
            tx_key: None,
            opaque,
            body: Bytes::from_static(b"payload"),
        })
    }

    fn decode_all(mut wire: BytesMut) -> Vec<Response> {
        let mut codec = ClientCodec::default();
        let mut answers = Vec::new();
        while let Some(answer) = codec.decode(&mut wire).expect("answers decode") {
            answers.push(answer);
        }
        assert!(wire.is_empty(), "trailing bytes: {wire:?}");
        answers
    }

    #[test]
    fn put_answers_are_what_the_client_codec_and_a_producer_read() {
        let mut answerer = Answerer::default();
        let mut out = BytesMut::new();
        for (opaque, partition) in [(1, 0), (i32::MAX, 3), (-7, -1)] {
            assert_eq!(
                answerer.answer(put(opaque, partition), &mut out),
                After::Continue
            );
        }
        let answers = decode_all(out);
        let read: Vec<_> = answers
            .iter()
            .map(|a| (a.code, a.opaque, a.put_result()))
            .collect();
        assert_eq!(
            read,
            [
                (StatusCode::SUCCESS, 1, Some((0, 0, 0))),
                (StatusCode::SUCCESS, i32::MAX, Some((1, 3, 1))),
                (StatusCode::SUCCESS, -7, Some((2, 0, 2))),
            ]
        );
        assert_eq!(answerer.take_puts(), 3);
        assert_eq!(answerer.take_puts(), 0);
    }

    #[test]
    fn transactions_succeed_except_end_which_gets_no_answer() {
        let session_id = "10.0.0.1-1-1".to_string();
        let tx = |kind, opaque| {
            Request::Transaction(TransactionRequest {
                key: TxKey::Local(LocalTxId {
                    session_id: session_id.clone(),
                    counter: 1,
                }),
                session_id: session_id.clone(),
                kind,
                timeout_secs: None,
                unique_qualifier: None,
                opaque,
            })
        };
        let mut answerer = Answerer::default();
        let mut out = BytesMut::new();
        answerer.answer(tx(TransactionKind::Begin, 1), &mut out);
        answerer.answer(tx(TransactionKind::End, 2), &mut out);
        answerer.answer(tx(TransactionKind::CommitOnePhase, 3), &mut out);
        let answers = decode_all(out);
        let seen: Vec<_> = answers.iter().map(|a| (a.code, a.opaque)).collect();
        assert_eq!(seen, [(StatusCode::SUCCESS, 1), (StatusCode::SUCCESS, 3)]);
    }

    #[test]
    fn version_stats_refusals_and_quit() {
        let mut answerer = Answerer::default();
        let mut out = BytesMut::new();
        answerer.answer(Request::Version { opaque: 5 }, &mut out);
        answerer.answer(
            Request::Stats {
                item: String::new(),
                opaque: 6,
            },
            &mut out,
        );
        let too_large = Request::PutTooLarge {
            topic: "bench".into(),
            partition: 0,
            len: 9,
            opaque: 7,
        };
        answerer.answer(too_large, &mut out);
        assert_eq!(answerer.answer(Request::Quit, &mut out), After::Close);
        let answers = decode_all(out);
        let seen: Vec<_> = answers.iter().map(|a| (a.code, a.opaque)).collect();
        assert_eq!(
            seen,
            [
                (StatusCode::SUCCESS, 5),
                (StatusCode::SUCCESS, 6),
                (StatusCode::INTERNAL_SERVER_ERROR, 7)
            ]
        );
        assert_eq!(&answers[0].body[..], NULL_SERVER_VERSION.as_bytes());
        assert!(answers[1].body.starts_with(b"STATS\r\n"));
        assert_eq!(answerer.take_puts(), 0, "refused puts are not counted");
    }
}
