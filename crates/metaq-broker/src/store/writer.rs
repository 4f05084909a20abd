//! The writer thread of one partition.
//!
//! File I/O blocks, so it runs on a plain thread rather than a tokio worker.
//! The thread waits for a request, then takes every other request already
//! queued, writes them all, and (with [`FlushPolicy::Group`]) forces the file
//! once before answering them all: that single fsync is the group commit.
//!
//! The thread ends once every sender of its channel is gone (store closed or
//! dropped), after writing what was queued and forcing anything unflushed.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use futures::future::{FutureExt, Shared};
use tokio::sync::oneshot;

use super::config::FlushPolicy;
use super::partition::Partition;
use super::record::Record;
use super::segment::partition_dir_name;

/// What an append waits for.
pub(crate) type Reply = oneshot::Sender<io::Result<Vec<i64>>>;

/// One append: its records and where to send their offsets.
pub(crate) struct Request {
    pub records: Vec<Record>,
    pub reply: Reply,
}

/// The store's side of a writer thread.
pub(crate) struct WriterHandle {
    /// Requests; `None` once the store is closed, which lets the thread end.
    pub requests: Option<mpsc::Sender<Request>>,
    /// Resolves when the thread has ended (awaited by `close`).
    pub exited: Shared<oneshot::Receiver<()>>,
    /// Disconnects when the thread has ended (waited for with a timeout on drop,
    /// where nothing can be awaited).
    pub exited_blocking: mpsc::Receiver<()>,
    /// Bytes in the log, updated after every successful append.
    pub next_offset: Arc<AtomicI64>,
    /// Successful fsyncs.
    pub fsyncs: Arc<AtomicU64>,
}

/// Dropped when the thread ends, however it ends, which signals both waiters.
struct ExitGuard {
    _exited: oneshot::Sender<()>,
    _exited_blocking: mpsc::Sender<()>,
}

/// Starts the writer of `<data_dir>/<topic>-<partition>`. `recovered` is the
/// partition as [`Partition::open`] left it; without one the partition is
/// created on the first request (and again on the next if that fails).
pub(crate) fn spawn(
    data_dir: PathBuf,
    topic: &str,
    partition: u32,
    max_segment_size: u64,
    policy: FlushPolicy,
    recovered: Option<(Partition, Arc<AtomicU64>)>,
) -> io::Result<WriterHandle> {
    let name = partition_dir_name(topic, partition);
    let (fsyncs, partition, start) = match recovered {
        Some((p, fsyncs)) => {
            let next = p.next_offset() as i64;
            (fsyncs, Some(p), next)
        }
        None => (Arc::default(), None, 0),
    };
    let next_offset = Arc::new(AtomicI64::new(start));
    let (requests, rx) = mpsc::channel();
    let (exited_tx, exited_rx) = oneshot::channel();
    let (blocking_tx, blocking_rx) = mpsc::channel();
    let writer = Writer {
        dir: data_dir.join(&name),
        max_segment_size,
        policy,
        partition,
        next_offset: Arc::clone(&next_offset),
        fsyncs: Arc::clone(&fsyncs),
        unflushed: 0,
        last_sync: Instant::now(),
        buf: Vec::new(),
    };
    let guard = ExitGuard {
        _exited: exited_tx,
        _exited_blocking: blocking_tx,
    };
    thread::Builder::new()
        // Linux keeps only the first 15 bytes; enough to spot in `top -H`.
        .name(format!("metaq-store {name}"))
        .spawn(move || {
            let _guard = guard;
            writer.run(rx);
        })?;
    Ok(WriterHandle {
        requests: Some(requests),
        exited: exited_rx.shared(),
        exited_blocking: blocking_rx,
        next_offset,
        fsyncs,
    })
}

struct Writer {
    dir: PathBuf,
    max_segment_size: u64,
    policy: FlushPolicy,
    partition: Option<Partition>,
    next_offset: Arc<AtomicI64>,
    fsyncs: Arc<AtomicU64>,
    /// Records written since the last fsync.
    unflushed: u64,
    last_sync: Instant,
    /// Encoding buffer reused across appends.
    buf: Vec<u8>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Request>) {
        let mut batch = Vec::new();
        loop {
            let first = match self.timer_deadline() {
                Some(deadline) => {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(wait) {
                        Ok(request) => request,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            self.sync_if_due();
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
                None => match rx.recv() {
                    Ok(request) => request,
                    Err(mpsc::RecvError) => break,
                },
            };
            batch.push(first);
            batch.extend(rx.try_iter());
            self.handle_batch(&mut batch);
        }
        // Closed or dropped: everything queued has been handled above.
        if self.unflushed > 0 {
            let _ = self.sync();
        }
    }

    /// When the periodic policy's timer should next look at the unflushed records.
    fn timer_deadline(&self) -> Option<Instant> {
        match self.policy {
            FlushPolicy::Periodic { interval, .. } if self.unflushed > 0 => {
                Some(self.last_sync + interval)
            }
            _ => None,
        }
    }

    fn handle_batch(&mut self, batch: &mut Vec<Request>) {
        let mut answers = Vec::with_capacity(batch.len());
        for request in batch.drain(..) {
            let result = self.append(&request.records);
            if self.policy == FlushPolicy::Group {
                answers.push((request.reply, result));
            } else {
                // The caller may have given up waiting; the records stay written.
                let _ = request.reply.send(result);
            }
        }
        match self.policy {
            FlushPolicy::Group => {
                if self.unflushed > 0 {
                    if let Err(e) = self.sync() {
                        for (_, result) in &mut answers {
                            if result.is_ok() {
                                *result = Err(io::Error::new(
                                    e.kind(),
                                    format!("written but fsync failed: {e}"),
                                ));
                            }
                        }
                    }
                }
                for (reply, result) in answers {
                    let _ = reply.send(result);
                }
            }
            FlushPolicy::Periodic { .. } => self.sync_if_due(),
            FlushPolicy::Os => {}
        }
    }

    fn append(&mut self, records: &[Record]) -> io::Result<Vec<i64>> {
        if self.partition.is_none() {
            let created = Partition::open(
                self.dir.clone(),
                self.max_segment_size,
                Arc::clone(&self.fsyncs),
            )?;
            self.partition = Some(created);
        }
        let partition = self.partition.as_mut().expect("opened above");
        let result = partition.append(records, &mut self.buf);
        if result.is_ok() {
            self.unflushed += records.len() as u64;
            self.next_offset
                .store(partition.next_offset() as i64, Ordering::Release);
        }
        result
    }

    /// MetaQ's rule: force when more than `max_messages` are unflushed or
    /// `interval` has passed since the last force.
    fn sync_if_due(&mut self) {
        if let FlushPolicy::Periodic {
            max_messages,
            interval,
        } = self.policy
        {
            let due = self.unflushed > u64::from(max_messages)
                || (self.unflushed > 0 && self.last_sync.elapsed() >= interval);
            if due {
                // A failure is logged and marks the partition broken, so the
                // next append reports it; nobody is waiting for this one.
                let _ = self.sync();
            }
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        let Some(partition) = self.partition.as_mut() else {
            return Ok(());
        };
        let result = partition.sync();
        // Also after a failure: the partition is broken then, and retrying
        // every interval would only repeat the error.
        self.unflushed = 0;
        self.last_sync = Instant::now();
        result
    }
}

/// How long dropping the last store handle waits for writers to finish.
pub(crate) const DROP_WAIT: Duration = Duration::from_secs(5);
