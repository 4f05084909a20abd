//! File and directory names (docs/protocol.md §5.5): `<data_dir>/<topic>-<partition>/`
//! holding segments named by the logical offset of their first byte.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use metaq::protocol::validate_topic;

/// Suffix of a segment file.
const SEGMENT_SUFFIX: &str = ".meta";

/// Digits in a segment file name, zero-padded.
const SEGMENT_DIGITS: usize = 20;

/// `00000000000000000025.meta` for offset 25.
pub(crate) fn segment_file_name(start: u64) -> String {
    format!("{start:0width$}{SEGMENT_SUFFIX}", width = SEGMENT_DIGITS)
}

/// The start offset named by a segment file name, if it is one.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Offsets are Java longs on the wire, so a larger name is not ours.
    digits.parse::<u64>().ok().filter(|&v| v <= i64::MAX as u64)
}

/// `orders-created-3` for topic `orders-created`, partition 3.
pub(crate) fn partition_dir_name(topic: &str, partition: u32) -> String {
    format!("{topic}-{partition}")
}

/// Splits a partition directory name on its last `-` (topics may contain `-`,
/// partitions cannot). Only names this store would have written are taken: a
/// valid topic and a partition number in canonical form, so that `x-07` and
/// `x-7` can never both claim partition 7.
pub(crate) fn parse_partition_dir_name(name: &str) -> Option<(&str, u32)> {
    let (topic, number) = name.rsplit_once('-')?;
    check_topic(topic).ok()?;
    let partition: u32 = number.parse().ok()?;
    (partition.to_string() == number).then_some((topic, partition))
}

/// Refuses topics that cannot safely become a directory name. The broker
/// validates topics already; this keeps the store safe on its own, since a
/// topic such as `../x` would otherwise escape the data directory.
pub(crate) fn check_topic(topic: &str) -> io::Result<()> {
    validate_topic(topic).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    if topic.contains('\\') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid topic {topic:?}: contains '\\'"),
        ));
    }
    Ok(())
}

/// A partition directory found on disk.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PartitionDir {
    pub topic: String,
    pub partition: u32,
    pub path: PathBuf,
}

/// Every partition directory under `data_dir`, sorted by (topic, partition).
/// Other entries are skipped.
pub(crate) fn list_partitions(data_dir: &Path) -> io::Result<Vec<PartitionDir>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(data_dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some((topic, partition)) = parse_partition_dir_name(&name) else {
            continue;
        };
        let path = entry.path();
        // Follows symlinks, so a partition moved to another disk still counts.
        if !path.is_dir() {
            continue;
        }
        found.push(PartitionDir {
            topic: topic.to_owned(),
            partition,
            path,
        });
    }
    found.sort();
    Ok(found)
}

/// Every segment file in a partition directory as (start offset, path),
/// sorted by start offset.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let start = entry.file_name().to_str().and_then(parse_segment_file_name);
        if let Some(start) = start {
            found.push((start, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Makes a created or removed file name durable: on Linux a new file's
/// directory entry survives a crash only once the directory itself is synced.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Directories cannot be opened as files here; NTFS journals metadata.
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names() {
        assert_eq!(segment_file_name(0), "00000000000000000000.meta");
        assert_eq!(segment_file_name(25), "00000000000000000025.meta");
        assert_eq!(
            parse_segment_file_name("00000000000000000025.meta"),
            Some(25)
        );
        assert_eq!(parse_segment_file_name("0000000000000000025.meta"), None);
        assert_eq!(parse_segment_file_name("00000000000000000025.log"), None);
        assert_eq!(parse_segment_file_name("+0000000000000000025.meta"), None);
        assert_eq!(parse_segment_file_name("99999999999999999999.meta"), None);
    }

    #[test]
    fn partition_dir_names_split_on_the_last_dash() {
        assert_eq!(partition_dir_name("a-b", 3), "a-b-3");
        assert_eq!(parse_partition_dir_name("a-b-3"), Some(("a-b", 3)));
        assert_eq!(parse_partition_dir_name("topic-0"), Some(("topic", 0)));
        // Topic "topic-", partition 1: the last dash separates.
        assert_eq!(parse_partition_dir_name("topic--1"), Some(("topic-", 1)));
        assert_eq!(parse_partition_dir_name("topic-07"), None);
        assert_eq!(parse_partition_dir_name("topic-+7"), None);
        assert_eq!(parse_partition_dir_name("topic"), None);
        assert_eq!(parse_partition_dir_name("-1"), None);
        assert_eq!(parse_partition_dir_name("a b-1"), None);
    }

    #[test]
    fn unsafe_topics_are_refused() {
        assert!(check_topic("orders.created").is_ok());
        for bad in ["", "../x", "a/b", "a\\b", "a b", "a\0b"] {
            assert_eq!(
                check_topic(bad).unwrap_err().kind(),
                io::ErrorKind::InvalidInput,
                "{bad:?}"
            );
        }
    }
}
