//! Reading every record back from disk, for `metaq-broker dump` and tests.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;

use bytes::Bytes;
use serde::Serialize;

use super::record::{Next, RecordReader};
use super::segment::{list_partitions, list_segments, partition_dir_name};
use metaq::protocol::checksum;

/// A record read back from disk, with what is needed to check it: where
/// it is and whether its checksum holds.
///
/// # Examples
///
/// ```
/// use metaq_broker::store::{read_records, MessageStore, Record, StoreConfig};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let dir = tempfile::tempdir()?;
/// let store = MessageStore::open(StoreConfig::new(dir.path()))?;
/// store.append("orders", 3, vec![Record::new(1, 0, "a"), Record::new(2, 0, "b")]).await?;
/// store.close().await;
/// let second = &read_records(dir.path(), None)?[1];
/// assert_eq!((second.topic.as_str(), second.partition, second.offset), ("orders", 3, 21));
/// assert!(second.checksum_valid);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredRecord {
    /// Topic, from the partition directory name.
    pub topic: String,
    /// Partition, from the partition directory name.
    pub partition: u32,
    /// Logical offset of the record's first byte in the partition log.
    pub offset: i64,
    /// Message id.
    pub id: i64,
    /// Message flag.
    pub flag: i32,
    /// Body length in bytes.
    pub length: u32,
    /// Checksum as stored.
    pub checksum: i32,
    /// Whether the stored checksum matches the body.
    pub checksum_valid: bool,
    /// The body (not serialized).
    #[serde(skip)]
    pub body: Bytes,
}

/// Reads every record of every partition (only `topic` if given) under
/// `data_dir`, sorted by (topic, partition, offset).
///
/// Works while a broker is running: it reads what is on disk, each segment
/// up to its length when opened. A torn tail (an incomplete record, or a
/// length that cannot be right) ends the partition's records there and is
/// not an error; a record whose checksum does not match is returned with
/// `checksum_valid: false` and reading goes on. A directory or file that
/// cannot be read is an error.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let dir = tempfile::tempdir()?;
/// let partition = dir.path().join("orders-0");
/// std::fs::create_dir(&partition)?;
/// std::fs::write(
///     partition.join("00000000000000000000.meta"),
///     [0, 0, 0, 1, 0x0c, 0xdc, 0x16, 0x83, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, b'x'],
/// )?;
/// let records = metaq_broker::store::read_records(dir.path(), Some("orders"))?;
/// assert_eq!(records[0].id, 7);
/// assert!(records[0].checksum_valid);
/// assert_eq!(&records[0].body[..], b"x");
/// # Ok(())
/// # }
/// ```
pub fn read_records(data_dir: &Path, topic: Option<&str>) -> io::Result<Vec<StoredRecord>> {
    let mut out = Vec::new();
    for found in list_partitions(data_dir)? {
        if topic.is_some_and(|t| t != found.topic) {
            continue;
        }
        let mut expected_start = None;
        for (start, path) in list_segments(&found.path)? {
            if expected_start.is_some_and(|e| e != start) {
                tracing::warn!(
                    segment = %path.display(),
                    expected = expected_start,
                    "segment does not start where the previous one ended"
                );
            }
            let end = read_segment(&path, start, &found.topic, found.partition, &mut out)?;
            match end {
                Some(end) => expected_start = Some(end),
                // Nothing after a torn record can be trusted.
                None => break,
            }
        }
    }
    Ok(out)
}

/// Appends a segment's records to `out`. Returns the logical offset just past
/// its last record, or `None` if it ends in a torn record.
fn read_segment(
    path: &Path,
    start: u64,
    topic: &str,
    partition: u32,
    out: &mut Vec<StoredRecord>,
) -> io::Result<Option<u64>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut reader = RecordReader::new(BufReader::new(file), len);
    loop {
        let at = reader.position();
        match reader.next_header()? {
            Next::End => return Ok(Some(start + at)),
            Next::Torn(torn) => {
                tracing::warn!(
                    segment = %path.display(),
                    offset = start + at,
                    reason = %torn,
                    "stopping at a torn record"
                );
                return Ok(None);
            }
            Next::Record(header) => {
                let body = reader.read_body(&header)?;
                out.push(StoredRecord {
                    topic: topic.to_owned(),
                    partition,
                    offset: (start + at) as i64,
                    id: header.id,
                    flag: header.flag,
                    length: header.length,
                    checksum: header.checksum,
                    checksum_valid: checksum(&body) == header.checksum,
                    body,
                });
            }
        }
    }
}

/// Which of `ids` the log of `topic`-`partition` under `data_dir` already
/// holds. An XA branch read back from its journal may have been appended
/// just before a crash that kept its file; its commit must not store it
/// twice. Bodies are streamed through a small buffer, never held.
pub(crate) fn find_ids(
    data_dir: &Path,
    topic: &str,
    partition: u32,
    ids: &HashSet<i64>,
) -> io::Result<HashSet<i64>> {
    let dir = data_dir.join(partition_dir_name(topic, partition));
    let mut found = HashSet::new();
    if !dir.is_dir() {
        return Ok(found);
    }
    let mut scratch = vec![0u8; 64 * 1024];
    for (_, path) in list_segments(&dir)? {
        let file = File::open(&path)?;
        let len = file.metadata()?.len();
        let mut reader = RecordReader::new(BufReader::new(file), len);
        loop {
            match reader.next_header()? {
                Next::Record(header) => {
                    if ids.contains(&header.id) {
                        found.insert(header.id);
                    }
                    reader.checksum_body(&header, &mut scratch)?;
                }
                Next::End => break,
                // Nothing after a torn record was ever acknowledged.
                Next::Torn(_) => return Ok(found),
            }
        }
    }
    Ok(found)
}
