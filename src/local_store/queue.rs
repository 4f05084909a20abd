//! One (topic, partition) queue: its segments, its cursor, and the
//! operations on them. The store holds each queue behind its own mutex.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use super::config::FsyncPolicy;
use super::cursor::Cursor;
use super::fsio::io_error;
use super::segment::{self, Segment};
use super::StoredMessage;
use crate::error::Error;
use crate::Message;

/// The front record once read: sequence number, message, bytes.
type Front = (u64, Message, u64);

mod append;

#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) topic: String,
    pub(crate) partition: String,
    pub(crate) dir: PathBuf,
    pub(crate) fsync: FsyncPolicy,
    pub(crate) max_record: usize,
    /// Oldest first; only the first one holds acknowledged records.
    pub(crate) segments: VecDeque<Segment>,
    /// The last segment, opened for appending once needed.
    pub(crate) writer: Option<File>,
    /// The last segment ends in a failed append that could not be cut off:
    /// the next append begins a new segment.
    pub(crate) roll_next: bool,
    /// The first segment, opened for reading once needed.
    pub(crate) reader: Option<File>,
    pub(crate) next_seq: u64,
    /// The first sequence number not acknowledged.
    pub(crate) cursor: u64,
    pub(crate) cursor_file: Cursor,
    /// Where the first record not acknowledged starts in the first segment.
    pub(crate) front_offset: u64,
    pub(crate) front: Option<Front>,
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
    pub(crate) unsynced_appends: u32,
    pub(crate) unsynced_acks: u32,
}

impl Queue {
    /// The first message not acknowledged, read once and kept until acked.
    pub(crate) fn peek(&mut self, held: &AtomicU64) -> Result<Option<StoredMessage>, Error> {
        loop {
            if let Some((seq, message, _)) = &self.front {
                return Ok(Some(StoredMessage {
                    seq: *seq,
                    message: message.clone(),
                }));
            }
            let Some(first) = self.segments.front() else {
                return Ok(None);
            };
            if first.live == 0 {
                // An empty last segment (its only append failed).
                self.release_consumed();
                continue;
            }
            if self.reader.is_none() {
                let file =
                    File::open(&first.path).map_err(io_error(&first.path, "open segment"))?;
                self.reader = Some(file);
            }
            let reader = self.reader.as_mut().expect("opened above");
            let read = segment::read_at(reader, self.front_offset, self.max_record)
                .map_err(io_error(&first.path, "read segment"))?;
            match read {
                Ok((seq, message, len))
                    if seq >= self.cursor && self.front_offset + len <= first.len =>
                {
                    self.front = Some((seq, message, len));
                }
                Ok((seq, ..)) => self.drop_damaged_front(&format!("unexpected record {seq}"), held),
                Err(damage) => self.drop_damaged_front(&damage.to_string(), held),
            }
        }
    }

    /// The first segment went bad after it was scanned: what is left of it
    /// cannot be framed, so it is dropped, as recovery would.
    fn drop_damaged_front(&mut self, why: &str, held: &AtomicU64) {
        let Some(first) = self.segments.front_mut() else {
            return;
        };
        let dropped = first.len.saturating_sub(self.front_offset);
        tracing::warn!(path = %first.path.display(), offset = self.front_offset,
            bytes = dropped, messages = first.live, reason = why,
            "local store: damaged record; dropping the rest of the segment");
        self.messages -= first.live;
        self.bytes -= dropped;
        held.fetch_sub(dropped, Ordering::SeqCst);
        first.live = 0;
        self.release_consumed();
    }

    /// Acknowledges the first message if its sequence number is `seq`.
    pub(crate) fn ack(&mut self, seq: u64, held: &AtomicU64) -> Result<bool, Error> {
        if self.front.is_none() {
            self.peek(held)?;
        }
        let Some((front_seq, _, len)) = &self.front else {
            return Ok(false);
        };
        if *front_seq != seq {
            return Ok(false);
        }
        let len = *len;
        let durable = match self.fsync {
            FsyncPolicy::EveryAppend => true,
            FsyncPolicy::EveryN(n) => self.unsynced_acks + 1 >= n.get(),
            FsyncPolicy::Never => false,
        };
        self.cursor_file.write(seq + 1, durable, self.fsync)?;
        self.unsynced_acks = if durable { 0 } else { self.unsynced_acks + 1 };
        self.cursor = seq + 1;
        self.front = None;
        self.front_offset += len;
        if let Some(first) = self.segments.front_mut() {
            first.live -= 1;
        }
        self.messages -= 1;
        self.bytes -= len;
        held.fetch_sub(len, Ordering::SeqCst);
        self.release_consumed();
        Ok(true)
    }

    /// Deletes leading segments with nothing left to give out.
    fn release_consumed(&mut self) {
        while self.segments.front().is_some_and(|s| s.live == 0) {
            let first = self.segments.pop_front().expect("checked above");
            self.reader = None;
            if self.segments.is_empty() {
                self.writer = None;
            }
            self.front_offset = 0;
            if let Err(e) = fs::remove_file(&first.path) {
                // Recovery deletes it next time: its records are all acked.
                tracing::warn!(path = %first.path.display(), error = %e,
                    "local store: could not delete a consumed segment");
            }
        }
    }

    /// Flushes the last segment and the cursor (not under `Never`).
    pub(crate) fn sync(&mut self) -> Result<(), Error> {
        if self.fsync == FsyncPolicy::Never {
            return Ok(());
        }
        if let (Some(writer), Some(last)) = (&self.writer, self.segments.back()) {
            if self.unsynced_appends > 0 {
                writer
                    .sync_data()
                    .map_err(io_error(&last.path, "fsync segment"))?;
            }
        }
        self.unsynced_appends = 0;
        if self.unsynced_acks > 0 {
            self.cursor_file.sync()?;
            self.unsynced_acks = 0;
        }
        Ok(())
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            tracing::warn!(error = %e, "local store: sync on close failed");
        }
    }
}
