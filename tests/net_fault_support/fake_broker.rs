//! A broker of the test's own: a plain TCP listener, registered in
//! ZooKeeper by hand as a MetaQ master with one partition of a topic (the
//! nodes a broker writes, see `metaq::discovery::ZkPaths`). Its first
//! connection answers one put properly, reads a batch of puts without
//! answering, then misbehaves. Later connections answer every put
//! properly, so a producer that reconnects gets through.
//!
//! The put answered first lets a test wait until the producer's connection
//! is up (a send made while it comes up waits and is written after sends
//! made a moment later). Misbehaving only once the whole batch was read
//! makes every put of the batch one the producer wrote before the socket
//! failed, however the test's thread is scheduled.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use metaq::discovery::{TopicBroker, ZkPaths};
use metaq::protocol::{Request, Response, ServerCodec, StatusCode};
use metaq::BrokerUri;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use zookeeper_client::{Acls, CreateMode};

/// What the first connection does once it has read the batch of puts.
/// After that it keeps the socket open and reads on, answering nothing, so
/// any close is the producer's own doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Random bytes (a fixed seed), ending in CRLF so they form lines.
    Garbage,
    /// `result 200 2147483648 <opaque>`: a header announcing a 2 GiB body,
    /// then a little of it.
    HugeBody,
    /// A well-formed put result for an opaque the producer never used.
    UnknownOpaque,
    /// 100 KB with no CRLF: a header line longer than any allowed.
    EndlessLine,
    /// Nothing at all once its first put was answered, heartbeats
    /// included.
    Silence,
    /// A TCP reset (SO_LINGER 0, then close).
    Reset,
}

/// The fake broker; dropping it stops it (its ZooKeeper nodes go with the
/// session of its client).
pub struct FakeBroker {
    _zk: zookeeper_client::Client,
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    puts: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl FakeBroker {
    /// Listens on 127.0.0.1 port 0 and registers as broker `id` of `topic`
    /// under `root`; its first connection does `misbehaviour` once it has
    /// read `batch` puts after the first.
    pub async fn start(
        zk: &metaq_testkit::ZkServer,
        root: &str,
        id: u32,
        topic: &str,
        misbehaviour: Misbehaviour,
        batch: usize,
    ) -> FakeBroker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = FakeBroker {
            _zk: register(zk, root, id, topic, addr).await,
            addr,
            connections: Arc::default(),
            puts: Arc::default(),
            stop: CancellationToken::new(),
        };
        let (connections, puts, stop) = (
            fake.connections.clone(),
            fake.puts.clone(),
            fake.stop.clone(),
        );
        // Built now, so that misbehaving allocates nothing of note.
        let bad = BadAnswers::new();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                };
                let serial = connections.fetch_add(1, Ordering::SeqCst) + 1;
                let misbehaves = (serial == 1).then_some((misbehaviour, batch));
                let (bad, puts, stop) = (bad.clone(), puts.clone(), stop.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = serve(stream, misbehaves, bad, puts) => {}
                    }
                });
            }
        });
        fake
    }

    /// The URI it registered.
    pub fn uri(&self) -> BrokerUri {
        format!("meta://{}", self.addr).parse().unwrap()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Puts read so far, on every connection.
    pub fn puts(&self) -> usize {
        self.puts.load(Ordering::SeqCst)
    }
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The prepared bytes of the misbehaviours that need many.
#[derive(Clone)]
struct BadAnswers {
    garbage: Bytes,
    huge_body_start: Bytes,
    endless_line: Bytes,
}

impl BadAnswers {
    fn new() -> Self {
        let mut random = fastrand::Rng::with_seed(10);
        let mut garbage: Vec<u8> = (0..4096).map(|_| random.u8(..)).collect();
        garbage.extend_from_slice(b"\r\n");
        BadAnswers {
            garbage: garbage.into(),
            huge_body_start: vec![b'z'; 16 * 1024].into(),
            endless_line: vec![b'x'; 100 * 1000].into(),
        }
    }

    /// What `misbehaviour` writes for a put with `opaque`.
    fn for_put(&self, misbehaviour: Misbehaviour, opaque: i32) -> Vec<Bytes> {
        match misbehaviour {
            Misbehaviour::Garbage => vec![self.garbage.clone()],
            Misbehaviour::HugeBody => vec![
                format!("result 200 {} {opaque}\r\n", 2u64 << 30).into(),
                self.huge_body_start.clone(),
            ],
            // Far from any opaque in use or recently abandoned.
            Misbehaviour::UnknownOpaque => vec![put_result(opaque.wrapping_add(1 << 30), 0)],
            Misbehaviour::EndlessLine => vec![self.endless_line.clone()],
            // Not a matter of bytes: `serve` sees to them.
            Misbehaviour::Silence | Misbehaviour::Reset => Vec::new(),
        }
    }
}

/// A put's success answer: `<message id> <partition> <offset>`.
fn put_result(opaque: i32, offset: i64) -> Bytes {
    encode(Response::text(
        StatusCode(200),
        opaque,
        format!("{offset} 0 {offset}"),
    ))
}

fn encode(response: Response) -> Bytes {
    let mut out = BytesMut::new();
    response.encode(&mut out).unwrap();
    out.freeze()
}

/// What a connection does with a request.
enum Act {
    Answer(Vec<Bytes>),
    Ignore,
    Reset,
}

/// The misbehaving part of a first connection, once its first put was
/// answered: reads `batch` puts unanswered, then misbehaves on the first of
/// them, and answers nothing after that.
struct Misbehaving {
    how: Misbehaviour,
    batch: usize,
    first: Option<i32>,
    read: usize,
    done: bool,
}

impl Misbehaving {
    fn new(how: Misbehaviour, batch: usize) -> Self {
        Misbehaving {
            how,
            batch,
            first: None,
            read: 0,
            done: false,
        }
    }

    fn on_request(&mut self, opaque: i32, is_put: bool, bad: &BadAnswers) -> Act {
        if self.done {
            return Act::Ignore;
        }
        if !is_put {
            // Heartbeats are answered while the batch comes in, but in silence.
            return match self.how {
                Misbehaviour::Silence => Act::Ignore,
                _ => Act::Answer(vec![fine(opaque)]),
            };
        }
        let first = *self.first.get_or_insert(opaque);
        self.read += 1;
        if self.read < self.batch {
            return Act::Ignore;
        }
        self.done = true;
        match self.how {
            Misbehaviour::Silence => Act::Ignore,
            Misbehaviour::Reset => Act::Reset,
            how => Act::Answer(bad.for_put(how, first)),
        }
    }
}

/// A plain 200, the answer to a heartbeat (`version`) or anything else.
fn fine(opaque: i32) -> Bytes {
    encode(Response::text(StatusCode(200), opaque, "fake"))
}

/// Serves one connection: properly, or misbehaving as told (with the
/// number of puts to read first).
async fn serve(
    stream: TcpStream,
    misbehaviour: Option<(Misbehaviour, usize)>,
    bad: BadAnswers,
    puts: Arc<AtomicUsize>,
) {
    let (read, mut write) = stream.into_split();
    let mut frames = FramedRead::new(read, ServerCodec::default());
    let mut misbehaving = misbehaviour.map(|(how, batch)| Misbehaving::new(how, batch));
    // Puts answered properly, which is the next one's offset.
    let mut offset = 0i64;
    while let Some(Ok(request)) = frames.next().await {
        let Some(opaque) = request.opaque() else {
            break;
        };
        let is_put = matches!(request, Request::Put(_));
        if is_put {
            puts.fetch_add(1, Ordering::SeqCst);
        }
        let act = match &mut misbehaving {
            Some(misbehaving) if offset == 1 => misbehaving.on_request(opaque, is_put, &bad),
            _ if is_put => {
                offset += 1;
                Act::Answer(vec![put_result(opaque, offset - 1)])
            }
            _ => Act::Answer(vec![fine(opaque)]),
        };
        match act {
            Act::Ignore => {}
            Act::Reset => {
                reset(frames.into_inner(), write);
                return;
            }
            Act::Answer(answers) => {
                for answer in answers {
                    // The producer may close first (it read enough to give up).
                    if write.write_all(&answer).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
    // The producer closed the socket (or sent what is not a request).
}

/// Closes with a reset: SO_LINGER 0 on the whole socket, no FIN first.
fn reset(read: OwnedReadHalf, write: OwnedWriteHalf) {
    let stream = read.reunite(write).expect("halves of one socket");
    // Deprecated only because a non-zero linger blocks on close; zero does
    // not (`set_zero_linger` needs a newer tokio than the crate requires).
    #[allow(deprecated)]
    stream.set_linger(Some(Duration::ZERO)).unwrap();
    drop(stream);
}

/// Writes the nodes a master broker of `topic` (one partition) writes, from
/// a ZooKeeper session of its own.
async fn register(
    zk: &metaq_testkit::ZkServer,
    root: &str,
    id: u32,
    topic: &str,
    addr: SocketAddr,
) -> zookeeper_client::Client {
    let client = zk.client().await;
    let paths = ZkPaths::new(root);
    let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
    let ephemeral = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
    client.mkdir(&paths.broker(id), &persistent).await.unwrap();
    client
        .create(
            &paths.broker_master(id),
            format!("meta://{addr}").as_bytes(),
            &ephemeral,
        )
        .await
        .unwrap();
    client
        .mkdir(&paths.topic_pub(topic), &persistent)
        .await
        .unwrap();
    client
        .create(
            &paths.topic_pub_broker(topic, id),
            TopicBroker::master(id, 1).to_json().as_bytes(),
            &ephemeral,
        )
        .await
        .unwrap();
    client
}
