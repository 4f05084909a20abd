//! The raw baseline: the same servers driven by a plain socket writer of
//! puts encoded once up front with `metaq::protocol`, so a run shows what
//! the wire and the server allow, and metaq's cost beside it.
//!
//! Throughput: one connection per broker of the topic's route (read from
//! ZooKeeper, as the producer does), the window and the count split evenly
//! between them; a writer task writes blocks of pre-encoded puts while the
//! window has room, a reader task decodes the answers and gives the room
//! back. Latency: ping-pong, one put and its answer at a time, on the first
//! broker. Latencies are attributed to answers in the order they arrive.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use indicatif::ProgressBar;
use metaq::discovery::{Discovery, ZkSettings};
use metaq::protocol::{encode_put, ClientCodec, PutHeader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::codec::Decoder;

use super::measure::{Measurement, Meter, Tally};
use super::workload::{Mode, Workload, PROGRESS_STEP};

/// Longest wait for the topic's route in ZooKeeper.
const ROUTE_WAIT: Duration = Duration::from_secs(30);
/// Puts per pre-encoded block: one write covers this many.
const BLOCK: usize = 64;

/// One broker of the route: where it listens and its partitions there.
struct BrokerTarget {
    addr: String,
    partitions: Vec<u32>,
}

pub(crate) async fn run(
    zk: &str,
    root: &str,
    work: &Workload,
    servers: &[u32],
    progress: &ProgressBar,
) -> Result<Measurement, String> {
    let brokers = route(zk, root, &work.topic).await?;
    match work.mode {
        Mode::Throughput | Mode::Batch => pipelined_all(brokers, work, servers, progress).await,
        Mode::Latency => ping_pong(&brokers[0], work, servers, progress).await,
        Mode::Transaction => Err("the raw baseline has no transaction mode".into()),
    }
}

/// The topic's brokers and partitions, through discovery like a producer.
async fn route(zk: &str, root: &str, topic: &str) -> Result<Vec<BrokerTarget>, String> {
    let discovery = Discovery::connect(ZkSettings::new(zk).with_root(root))
        .await
        .map_err(|e| format!("raw baseline: {e}"))?;
    let mut routes = discovery.watch(topic);
    let found = tokio::time::timeout(ROUTE_WAIT, async {
        loop {
            if let Some(route) = routes.borrow_and_update().clone() {
                if !route.is_empty() {
                    return Some(route);
                }
            }
            if routes.changed().await.is_err() {
                return None;
            }
        }
    })
    .await;
    discovery.close().await;
    let route = found.ok().flatten().ok_or_else(|| {
        format!("raw baseline: no broker serves topic {topic} under {root} (waited {ROUTE_WAIT:?})")
    })?;
    Ok(route
        .brokers
        .iter()
        .map(|(id, uri)| BrokerTarget {
            addr: uri.socket_addr_text(),
            partitions: route
                .partitions
                .iter()
                .filter(|p| p.broker_id == *id)
                .map(|p| p.index)
                .collect(),
        })
        .filter(|b| !b.partitions.is_empty())
        .collect())
}

async fn connect(addr: &str) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("raw baseline: cannot connect to {addr}: {e}"))?;
    // As the producer does: frames leave at once.
    stream
        .set_nodelay(true)
        .map_err(|e| format!("raw baseline: {e}"))?;
    Ok(stream)
}

/// `count` puts encoded back to back, cycling over `partitions`, with the
/// end of each frame, so that any prefix of whole frames can be written.
struct Block {
    bytes: Bytes,
    ends: Vec<usize>,
}

impl Block {
    fn encode(work: &Workload, partitions: &[u32], count: usize) -> Result<Block, String> {
        let mut bytes = BytesMut::new();
        let mut ends = Vec::with_capacity(count);
        for i in 0..count {
            let header = PutHeader {
                topic: &work.topic,
                partition: partitions[i % partitions.len()] as i32,
                tx_key: None,
                opaque: i as i32 + 1,
            };
            encode_put(&mut bytes, &header, None, &work.payload)
                .map_err(|e| format!("raw baseline: cannot encode a put: {e}"))?;
            ends.push(bytes.len());
        }
        Ok(Block {
            bytes: bytes.freeze(),
            ends,
        })
    }

    /// The first `frames` frames.
    fn prefix(&self, frames: usize) -> &[u8] {
        &self.bytes[..self.ends[frames - 1]]
    }
}

async fn pipelined_all(
    brokers: Vec<BrokerTarget>,
    work: &Workload,
    servers: &[u32],
    progress: &ProgressBar,
) -> Result<Measurement, String> {
    let n = brokers.len() as u64;
    let window = (work.window / brokers.len()).max(1);
    let mut connections = Vec::with_capacity(brokers.len());
    for (i, broker) in brokers.iter().enumerate() {
        let count = work.count / n + u64::from((i as u64) < work.count % n);
        let block = Block::encode(work, &broker.partitions, BLOCK.min(window))?;
        connections.push((connect(&broker.addr).await?, block, count));
    }
    let meter = Meter::start(servers);
    let runs = connections.into_iter().map(|(stream, block, count)| {
        let progress = progress.clone();
        tokio::spawn(pipelined(stream, block, count, window, progress))
    });
    let mut tally = Tally::default();
    for outcome in futures::future::join_all(runs).await {
        let part = outcome.map_err(|e| format!("raw baseline task failed: {e}"))??;
        tally.merge(part);
    }
    Ok(meter.finish(tally))
}

/// When each written block left, and how many of its answers are still due.
type SentAt = Arc<Mutex<VecDeque<(Instant, u32)>>>;

async fn pipelined(
    stream: TcpStream,
    block: Block,
    count: u64,
    window: usize,
    progress: ProgressBar,
) -> Result<Tally, String> {
    let (read_half, write_half) = stream.into_split();
    let room = Arc::new(Semaphore::new(window));
    let sent_at = SentAt::default();
    let writer = tokio::spawn(write_blocks(
        write_half,
        block,
        count,
        Arc::clone(&room),
        Arc::clone(&sent_at),
    ));
    match read_answers(read_half, count, &room, &sent_at, &progress).await {
        Ok(tally) => {
            // Done writing once every answer is in.
            let _write_half = writer
                .await
                .map_err(|e| format!("raw writer task failed: {e}"))??;
            Ok(tally)
        }
        Err(e) => {
            // The writer may be waiting for room that never comes back.
            writer.abort();
            Err(e)
        }
    }
}

async fn write_blocks(
    mut out: OwnedWriteHalf,
    block: Block,
    count: u64,
    room: Arc<Semaphore>,
    sent_at: SentAt,
) -> Result<OwnedWriteHalf, String> {
    let mut written = 0u64;
    while written < count {
        let frames = (block.ends.len() as u64).min(count - written) as usize;
        room.acquire_many(frames as u32)
            .await
            .map_err(|_| "raw baseline: stopped".to_owned())?
            .forget();
        lock(&sent_at).push_back((Instant::now(), frames as u32));
        out.write_all(block.prefix(frames))
            .await
            .map_err(|e| format!("raw baseline: write failed: {e}"))?;
        written += frames as u64;
    }
    // Kept open until the reader has every answer.
    Ok(out)
}

async fn read_answers(
    mut input: OwnedReadHalf,
    count: u64,
    room: &Semaphore,
    sent_at: &SentAt,
    progress: &ProgressBar,
) -> Result<Tally, String> {
    let mut tally = Tally::default();
    let mut codec = ClientCodec::default();
    let mut buffer = BytesMut::with_capacity(64 * 1024);
    let mut answered = 0u64;
    while answered < count {
        buffer.reserve(64 * 1024);
        let read = input
            .read_buf(&mut buffer)
            .await
            .map_err(|e| format!("raw baseline: read failed: {e}"))?;
        if read == 0 {
            return Err(format!(
                "raw baseline: the server closed the connection after {answered} of {count} answers"
            ));
        }
        let now = Instant::now();
        let before = answered;
        while let Some(answer) = codec
            .decode(&mut buffer)
            .map_err(|e| format!("raw baseline: bad answer: {e}"))?
        {
            answered += 1;
            let latency = oldest_due(sent_at).map_or(Duration::ZERO, |at| now - at);
            if answer.code.is_success() {
                tally.sent += 1;
                tally.latency.record(latency);
            } else {
                tally.fail(|| {
                    format!(
                        "answered {}: {}",
                        answer.code.0,
                        String::from_utf8_lossy(&answer.body)
                    )
                });
            }
        }
        let decoded = answered - before;
        room.add_permits(decoded as usize);
        if answered / PROGRESS_STEP != before / PROGRESS_STEP {
            progress.inc((answered / PROGRESS_STEP - before / PROGRESS_STEP) * PROGRESS_STEP);
        }
    }
    Ok(tally)
}

/// When the oldest unanswered block was written; counts one answer off it.
fn oldest_due(sent_at: &SentAt) -> Option<Instant> {
    let mut queue = lock(sent_at);
    let (at, due) = queue.front_mut()?;
    let at = *at;
    *due -= 1;
    if *due == 0 {
        queue.pop_front();
    }
    Some(at)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// One put, then its answer, then the next.
async fn ping_pong(
    broker: &BrokerTarget,
    work: &Workload,
    servers: &[u32],
    progress: &ProgressBar,
) -> Result<Measurement, String> {
    let block = Block::encode(work, &broker.partitions, broker.partitions.len())?;
    let frames: Vec<&[u8]> = (0..block.ends.len())
        .map(|i| &block.bytes[i.checked_sub(1).map_or(0, |p| block.ends[p])..block.ends[i]])
        .collect();
    let mut stream = connect(&broker.addr).await?;
    let mut codec = ClientCodec::default();
    let mut buffer = BytesMut::with_capacity(4096);
    let meter = Meter::start(servers);
    let mut tally = Tally::default();
    for done in 1..=work.count {
        let started = Instant::now();
        stream
            .write_all(frames[done as usize % frames.len()])
            .await
            .map_err(|e| format!("raw baseline: write failed: {e}"))?;
        let answer = loop {
            if let Some(answer) = codec
                .decode(&mut buffer)
                .map_err(|e| format!("raw baseline: bad answer: {e}"))?
            {
                break answer;
            }
            let read = stream
                .read_buf(&mut buffer)
                .await
                .map_err(|e| format!("raw baseline: read failed: {e}"))?;
            if read == 0 {
                return Err("raw baseline: the server closed the connection".into());
            }
        };
        if answer.code.is_success() {
            tally.sent += 1;
            tally.latency.record(started.elapsed());
        } else {
            tally.fail(|| format!("answered {}", answer.code.0));
        }
        if done % PROGRESS_STEP == 0 {
            progress.inc(PROGRESS_STEP);
        }
    }
    Ok(meter.finish(tally))
}
