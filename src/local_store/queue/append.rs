//! Appending to a queue: the bounds, the write, the fsync, rolling.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use super::super::config::{FsyncPolicy, LocalStoreConfig};
use super::super::fsio::{io_error, sync_dir};
use super::super::record;
use super::super::segment::{self, Segment};
use super::Queue;
use crate::error::Error;
use crate::Message;

impl Queue {
    /// Adds `message`; its bytes are reserved in `held` (the store's total)
    /// first, so the bound holds across queues.
    pub(crate) fn append(
        &mut self,
        message: &Message,
        config: &LocalStoreConfig,
        held: &AtomicU64,
    ) -> Result<u64, Error> {
        let len = record::encoded_len(message);
        if len > config.max_record_bytes {
            return Err(Error::MessageTooLarge {
                topic: self.topic.clone(),
                size: len,
                max: config.max_record_bytes,
            });
        }
        let len = len as u64;
        let full = || Error::LocalStoreFull {
            topic: self.topic.clone(),
            partition: self.partition.clone(),
            held_bytes: held.load(Ordering::SeqCst),
            limit_bytes: config.max_bytes,
        };
        if config
            .max_messages_per_queue
            .is_some_and(|max| self.messages >= max)
        {
            return Err(full());
        }
        let reserved = held.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
            now.checked_add(len)
                .filter(|&total| total <= config.max_bytes)
        });
        if reserved.is_err() {
            return Err(full());
        }
        self.write_record(message, len, config).inspect_err(|_| {
            held.fetch_sub(len, Ordering::SeqCst);
        })
    }

    fn write_record(
        &mut self,
        message: &Message,
        len: u64,
        config: &LocalStoreConfig,
    ) -> Result<u64, Error> {
        let seq = self.next_seq;
        let mut bytes = Vec::with_capacity(len as usize);
        record::encode(seq, message, &mut bytes);
        let roll = self.roll_next
            || self
                .segments
                .back()
                .is_none_or(|last| last.len > 0 && last.len + len > config.segment_bytes);
        if roll {
            self.roll(seq)?;
        }
        let last = self
            .segments
            .back_mut()
            .expect("a segment exists after rolling");
        if self.writer.is_none() {
            let file = OpenOptions::new().append(true).open(&last.path);
            self.writer = Some(file.map_err(io_error(&last.path, "open segment"))?);
        }
        let writer = self.writer.as_mut().expect("opened above");
        let mut written = writer
            .write_all(&bytes)
            .map_err(io_error(&last.path, "append"));
        let sync_now = match self.fsync {
            FsyncPolicy::EveryAppend => true,
            FsyncPolicy::EveryN(n) => self.unsynced_appends + 1 >= n.get(),
            FsyncPolicy::Never => false,
        };
        if written.is_ok() && sync_now {
            written = writer
                .sync_data()
                .map_err(io_error(&last.path, "fsync segment"));
        }
        if let Err(e) = written {
            // Take back whatever part was written: a later append must not
            // follow a torn record, and the caller was told it failed.
            if let Err(undo) = writer.set_len(last.len) {
                tracing::warn!(path = %last.path.display(), error = %undo,
                    "local store: could not cut a failed append off; recovery will drop it");
                self.writer = None;
                self.roll_next = true;
            }
            return Err(e);
        }
        self.unsynced_appends = if sync_now {
            0
        } else {
            self.unsynced_appends + 1
        };
        last.len += len;
        last.live += 1;
        self.messages += 1;
        self.bytes += len;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Closes the last segment (synced unless the policy is `Never`) and
    /// begins `<seq>.seg`.
    fn roll(&mut self, seq: u64) -> Result<(), Error> {
        if let (Some(writer), Some(last)) = (self.writer.take(), self.segments.back()) {
            if self.fsync != FsyncPolicy::Never {
                writer
                    .sync_data()
                    .map_err(io_error(&last.path, "fsync segment"))?;
                self.unsynced_appends = 0;
            }
        }
        self.roll_next = false;
        if self.segments.back().is_some_and(|last| last.len == 0) {
            // Nothing in it but perhaps a failed append: begin it afresh.
            let empty = self.segments.pop_back().expect("checked above");
            self.reader = None;
            match fs::remove_file(&empty.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_error(&empty.path, "delete segment")(e));
                }
                _ => {}
            }
        }
        let path = self.dir.join(segment::file_name(seq));
        let file = OpenOptions::new().create(true).append(true).open(&path);
        self.writer = Some(file.map_err(io_error(&path, "create segment"))?);
        if self.fsync != FsyncPolicy::Never {
            sync_dir(&self.dir)?;
        }
        if self.segments.is_empty() {
            self.front_offset = 0;
        }
        self.segments.push_back(Segment {
            path,
            len: 0,
            live: 0,
        });
        Ok(())
    }
}
