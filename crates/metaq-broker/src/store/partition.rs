//! One partition's log on disk: recovery of its last segment, appends that
//! roll to a new segment at the size limit, and forcing to disk.
//!
//! A [`Partition`] is owned by exactly one writer thread, so nothing here locks.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::record::{Next, Record, RecordReader};
use super::segment::{list_segments, segment_file_name, sync_dir};

/// Read buffer for recovery; also the checksum scratch size.
const SCAN_BUF: usize = 64 * 1024;

/// The write buffer is kept between appends, unless one huge request grew it
/// past this: then it is freed rather than held for ever.
const KEEP_BUF: usize = 4 * 1024 * 1024;

/// The segment being appended to.
#[derive(Debug)]
struct Segment {
    /// Logical offset of its first byte (its file name).
    start: u64,
    /// Bytes written to it; the file cursor is always here.
    len: u64,
    file: File,
}

/// Where an append started, to undo it on failure.
#[derive(Debug, Clone, Copy)]
struct Mark {
    start: u64,
    len: u64,
}

/// The writable end of one partition log.
#[derive(Debug)]
pub(crate) struct Partition {
    dir: PathBuf,
    max_segment_size: u64,
    active: Segment,
    /// Set once the file is in an unknown state (a failed fsync, or a failed
    /// undo of a failed write): every later append fails with this message
    /// instead of writing after bytes that may be garbage.
    broken: Option<String>,
    /// Successful fsyncs, for tests and diagnostics.
    fsyncs: Arc<AtomicU64>,
}

impl Partition {
    /// Opens the partition in `dir`, creating the directory (and syncing its
    /// parent) if needed, and recovers its last segment; an empty directory
    /// gets segment 0.
    pub fn open(dir: PathBuf, max_segment_size: u64, fsyncs: Arc<AtomicU64>) -> io::Result<Self> {
        if !dir.is_dir() {
            fs::create_dir_all(&dir)?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        let active = match list_segments(&dir)?.pop() {
            Some((start, path)) => recover_segment(start, &path)?,
            None => Segment {
                start: 0,
                len: 0,
                file: create_segment(&dir, 0)?,
            },
        };
        Ok(Partition {
            dir,
            max_segment_size,
            active,
            broken: None,
            fsyncs,
        })
    }

    /// The logical offset the next record will get: bytes in the log.
    pub fn next_offset(&self) -> u64 {
        self.active.start + self.active.len
    }

    /// Writes `records` contiguously and returns their offsets. All or
    /// nothing: on failure whatever was written is undone (if that fails too,
    /// the partition is marked broken). `buf` is scratch space.
    pub fn append(&mut self, records: &[Record], buf: &mut Vec<u8>) -> io::Result<Vec<i64>> {
        self.check_usable()?;
        let mark = Mark {
            start: self.active.start,
            len: self.active.len,
        };
        let mut created = Vec::new();
        let result = self.write_records(records, buf, &mut created);
        if buf.capacity() > KEEP_BUF {
            *buf = Vec::new();
        }
        if result.is_err() {
            if let Err(undo) = self.undo(mark, &created) {
                tracing::error!(
                    dir = %self.dir.display(),
                    error = %undo,
                    "could not undo a failed append; refusing further appends"
                );
                self.broken = Some(format!("undoing a failed append failed: {undo}"));
            }
        }
        result
    }

    /// Forces everything written so far to disk (fdatasync). A failure leaves
    /// the page cache in an unknown state, so it also marks the partition broken.
    pub fn sync(&mut self) -> io::Result<()> {
        self.check_usable()?;
        match self.active.file.sync_data() {
            Ok(()) => {
                self.fsyncs.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "fsync failed; refusing further appends");
                self.broken = Some(format!("an earlier fsync failed: {e}"));
                Err(e)
            }
        }
    }

    fn check_usable(&self) -> io::Result<()> {
        match &self.broken {
            None => Ok(()),
            Some(why) => Err(io::Error::other(format!(
                "partition {} is unusable: {why}",
                self.dir.display()
            ))),
        }
    }

    fn write_records(
        &mut self,
        records: &[Record],
        buf: &mut Vec<u8>,
        created: &mut Vec<u64>,
    ) -> io::Result<Vec<i64>> {
        buf.clear();
        let mut offsets = Vec::with_capacity(records.len());
        for record in records {
            let size = record.encoded_len() as u64;
            let used = self.active.len + buf.len() as u64;
            // A record never spans segments; an empty segment takes any record,
            // so one larger than the limit gets a segment of its own.
            if used > 0 && used + size > self.max_segment_size {
                self.write_buf(buf)?;
                self.roll(created)?;
            }
            offsets.push((self.next_offset() + buf.len() as u64) as i64);
            record.encode_into(buf);
        }
        self.write_buf(buf)?;
        Ok(offsets)
    }

    fn write_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        self.active.file.write_all(buf)?;
        self.active.len += buf.len() as u64;
        buf.clear();
        Ok(())
    }

    /// Closes the active segment and starts the next one, named by the next
    /// offset. The closed segment is forced to disk first, whatever the flush
    /// policy, so that only the last segment can have a torn tail.
    fn roll(&mut self, created: &mut Vec<u64>) -> io::Result<()> {
        self.sync()?;
        let start = self.next_offset();
        let file = create_segment(&self.dir, start)?;
        created.push(start);
        self.active = Segment {
            start,
            len: 0,
            file,
        };
        Ok(())
    }

    /// Puts the log back to `mark`: removes segments created since, cuts the
    /// marked segment to its old length.
    fn undo(&mut self, mark: Mark, created: &[u64]) -> io::Result<()> {
        if self.active.start != mark.start {
            let path = self.dir.join(segment_file_name(mark.start));
            let file = OpenOptions::new().read(true).write(true).open(path)?;
            self.active = Segment {
                start: mark.start,
                len: mark.len,
                file,
            };
            for &start in created {
                fs::remove_file(self.dir.join(segment_file_name(start)))?;
            }
            sync_dir(&self.dir)?;
        }
        self.active.file.set_len(mark.len)?;
        self.active.file.seek(SeekFrom::Start(mark.len))?;
        self.active.len = mark.len;
        Ok(())
    }
}

/// Creates an empty segment file and makes its name durable. An existing
/// empty file is reused (a crash right after creating it); one with data is an
/// error, since appending after unknown bytes would corrupt the log.
fn create_segment(dir: &Path, start: u64) -> io::Result<File> {
    let path = dir.join(segment_file_name(start));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    if file.metadata()?.len() != 0 {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("segment {} already exists and is not empty", path.display()),
        ));
    }
    sync_dir(dir)?;
    Ok(file)
}

/// Scans a segment record by record and cuts it at the first incomplete or
/// checksum-invalid record (a torn write), leaving the cursor at the end.
fn recover_segment(start: u64, path: &Path) -> io::Result<Segment> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let file_len = file.metadata()?.len();
    let mut reader = RecordReader::new(BufReader::with_capacity(SCAN_BUF, &file), file_len);
    let mut scratch = vec![0u8; SCAN_BUF];
    let (good, problem) = loop {
        let at = reader.position();
        match reader.next_header()? {
            Next::End => break (at, None),
            Next::Torn(torn) => break (at, Some(torn.to_string())),
            Next::Record(header) => {
                let actual = reader.checksum_body(&header, &mut scratch)?;
                if actual != header.checksum {
                    break (
                        at,
                        Some(format!(
                            "checksum mismatch (stored {}, computed {actual})",
                            header.checksum
                        )),
                    );
                }
            }
        }
    };
    drop(reader);
    if let Some(reason) = problem {
        tracing::warn!(
            segment = %path.display(),
            offset = start + good,
            cut_bytes = file_len - good,
            %reason,
            "truncating torn tail of segment"
        );
        file.set_len(good)?;
        file.sync_all()?;
    }
    file.seek(SeekFrom::Start(good))?;
    Ok(Segment {
        start,
        len: good,
        file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(id: i64) -> Record {
        Record::new(id, 0, &b"hello"[..])
    }

    fn open(dir: &Path, max: u64) -> Partition {
        Partition::open(dir.join("t-0"), max, Arc::default()).unwrap()
    }

    #[test]
    fn rolls_before_the_limit_and_continues_after_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = open(tmp.path(), 60);
        let mut buf = Vec::new();
        let offsets = p.append(&[hello(1), hello(2), hello(3)], &mut buf).unwrap();
        assert_eq!(offsets, [0, 25, 50]);
        let names: Vec<_> = list_segments(&tmp.path().join("t-0"))
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(names, [0, 50]);
        drop(p);
        let mut p = open(tmp.path(), 60);
        assert_eq!(p.next_offset(), 75);
        assert_eq!(p.append(&[hello(4)], &mut buf).unwrap(), [75]);
    }

    #[test]
    fn an_oversized_record_gets_its_own_segment() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = open(tmp.path(), 10);
        let mut buf = Vec::new();
        assert_eq!(p.append(&[hello(1), hello(2)], &mut buf).unwrap(), [0, 25]);
        let starts: Vec<_> = list_segments(&tmp.path().join("t-0"))
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(starts, [0, 25]);
    }

    #[test]
    fn undo_removes_segments_created_by_a_failed_append() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = open(tmp.path(), 30);
        let mut buf = Vec::new();
        p.append(&[hello(1)], &mut buf).unwrap();
        let mark = Mark { start: 0, len: 25 };
        let mut created = Vec::new();
        p.write_records(&[hello(2), hello(3)], &mut buf, &mut created)
            .unwrap();
        assert_eq!(created, [25, 50]);
        p.undo(mark, &created).unwrap();
        assert_eq!(p.next_offset(), 25);
        assert_eq!(list_segments(&tmp.path().join("t-0")).unwrap().len(), 1);
        assert_eq!(p.append(&[hello(4)], &mut buf).unwrap(), [25]);
    }
}
