//! Opening a queue's directory after a clean stop or a crash.
//!
//! Segments are scanned oldest first. A segment stops at its first record
//! that is cut short or fails its magic, length, CRC or numbering check: the
//! rest of that file is cut off (with a warning naming the file, the offset
//! and the bytes dropped) and the scan goes on with the next segment, since
//! nothing after damage can be framed again. Segments with nothing left to
//! give out are deleted. A damaged or missing cursor counts as "nothing
//! acknowledged", which can give duplicates but never loses a message.

use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use super::config::{FsyncPolicy, LocalStoreConfig};
use super::cursor::{self, Cursor};
use super::fsio::io_error;
use super::queue::Queue;
use super::segment::{self, Segment};
use crate::error::Error;

/// An empty queue in `dir` (created if missing).
pub(crate) fn create(
    dir: PathBuf,
    topic: String,
    partition: String,
    config: &LocalStoreConfig,
) -> Result<Queue, Error> {
    fs::create_dir_all(&dir).map_err(io_error(&dir, "create queue directory"))?;
    let cursor_file = Cursor::new(&dir);
    Ok(Queue {
        topic,
        partition,
        dir,
        fsync: config.fsync,
        max_record: config.max_record_bytes,
        segments: VecDeque::new(),
        writer: None,
        roll_next: false,
        reader: None,
        next_seq: 0,
        cursor: 0,
        cursor_file,
        front_offset: 0,
        front: None,
        messages: 0,
        bytes: 0,
        unsynced_appends: 0,
        unsynced_acks: 0,
    })
}

/// The queue stored in `dir`, repaired as described above.
pub(crate) fn recover(
    dir: PathBuf,
    topic: String,
    partition: String,
    config: &LocalStoreConfig,
) -> Result<Queue, Error> {
    let (cursor_file, cursor) = Cursor::open(&dir)?;
    let cursor = cursor.unwrap_or(0);
    let mut queue = create(dir, topic, partition, config)?;
    queue.cursor = cursor;
    queue.cursor_file = cursor_file;
    let mut next_seq = cursor;
    // One past the last record of the segment before.
    let mut prev_end: Option<u64> = None;
    for (first_seq, path) in segment_files(&queue.dir)? {
        if prev_end.is_some_and(|end| first_seq < end) {
            tracing::warn!(path = %path.display(), "local store: segment overlaps the one before it; deleted");
            remove(&path);
            continue;
        }
        let scan = segment::scan(&path, first_seq, cursor, config.max_record_bytes)
            .map_err(io_error(&path, "scan segment"))?;
        if let Some((offset, reason)) = &scan.damage {
            cut(&path, *offset, reason, config.fsync)?;
        }
        if let Some(last) = scan.last_seq {
            next_seq = next_seq.max(last + 1);
            prev_end = Some(last + 1);
        }
        if scan.live == 0 {
            remove(&path); // consumed, or empty
            continue;
        }
        if queue.segments.is_empty() {
            queue.front_offset = scan.front_offset.unwrap_or(0);
        }
        queue.messages += scan.live;
        queue.bytes += scan.valid_len;
        queue.segments.push_back(Segment {
            path,
            len: scan.valid_len,
            live: scan.live,
        });
    }
    queue.bytes -= queue.front_offset;
    queue.next_seq = next_seq;
    Ok(queue)
}

/// Segment files of `dir`, oldest first.
fn segment_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, Error> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir, "list queue directory"))? {
        let entry = entry.map_err(io_error(dir, "list queue directory"))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(seq) = segment::parse_file_name(&name) {
            found.push((seq, entry.path()));
        } else if name != cursor::FILE {
            tracing::warn!(path = %entry.path().display(), "local store: unknown file in a queue directory left alone");
        }
    }
    found.sort();
    Ok(found)
}

/// Cuts `path` off at `offset`, where a bad record begins.
fn cut(path: &Path, offset: u64, reason: &str, fsync: FsyncPolicy) -> Result<(), Error> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error(path, "open segment"))?;
    let size = file
        .metadata()
        .map_err(io_error(path, "stat segment"))?
        .len();
    tracing::warn!(path = %path.display(), offset, dropped_bytes = size.saturating_sub(offset), reason,
        "local store: damaged or torn record; the rest of the segment is dropped");
    file.set_len(offset)
        .map_err(io_error(path, "truncate segment"))?;
    if fsync != FsyncPolicy::Never {
        file.sync_all().map_err(io_error(path, "fsync segment"))?;
    }
    Ok(())
}

fn remove(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "local store: could not delete a segment");
    }
}
