//! Segment files: `<first sequence number, 20 digits>.seg`, records back to
//! back (see `record`). Reading one record, and scanning a whole file.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::record::{self, RecordError, HEADER_LEN};
use crate::Message;

/// One segment of a queue, as the queue keeps it in memory.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) path: PathBuf,
    /// Bytes of complete records in it.
    pub(crate) len: u64,
    /// Its records not yet acknowledged.
    pub(crate) live: u64,
}

/// `00000000000000000042.seg` for 42.
pub(crate) fn file_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

/// The sequence number a segment file name stands for.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Reads into `buf` until it is full or the file ends; returns bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A decoded record: sequence number, message, bytes it takes.
pub(crate) type Decoded = (u64, Message, u64);

/// Reads the next record; `Ok(None)` at a clean end of the file, `Ok(Some(Err))`
/// for a damaged or torn record.
pub(crate) fn read_next(
    reader: &mut impl Read,
    max_record: usize,
) -> io::Result<Option<Result<Decoded, RecordError>>> {
    let mut header = [0; HEADER_LEN];
    let got = read_full(reader, &mut header)?;
    if got == 0 {
        return Ok(None);
    }
    let body_len = match record::decode_header(&header[..got], max_record) {
        Ok(n) => n,
        Err(e) => return Ok(Some(Err(e))),
    };
    // Bounded by `max_record` through `decode_header`.
    let mut body = vec![0; body_len];
    let got = read_full(reader, &mut body)?;
    if got < body_len {
        return Ok(Some(Err(RecordError::Short {
            have: HEADER_LEN + got,
            need: HEADER_LEN + body_len,
        })));
    }
    Ok(Some(record::decode_body(&header, &body).map(
        |(seq, message)| (seq, message, (HEADER_LEN + body_len) as u64),
    )))
}

/// Reads the record at `offset` of `file`.
pub(crate) fn read_at(
    file: &mut File,
    offset: u64,
    max_record: usize,
) -> io::Result<Result<Decoded, RecordError>> {
    file.seek(SeekFrom::Start(offset))?;
    Ok(
        read_next(file, max_record)?.unwrap_or(Err(RecordError::Short {
            have: 0,
            need: HEADER_LEN,
        })),
    )
}

/// What a scan of one segment found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Bytes of complete, consecutive records from the start.
    pub(crate) valid_len: u64,
    /// Sequence number of the last of them.
    pub(crate) last_seq: Option<u64>,
    /// How many of them are at or after the cursor.
    pub(crate) live: u64,
    /// Offset of the first of those.
    pub(crate) front_offset: Option<u64>,
    /// Where and why the records stopped before the end of the file.
    pub(crate) damage: Option<(u64, String)>,
}

/// Scans `path`, whose records must be numbered from `first_seq` on, one
/// after another; `cursor` is the first sequence number not acknowledged.
pub(crate) fn scan(
    path: &Path,
    first_seq: u64,
    cursor: u64,
    max_record: usize,
) -> io::Result<Scan> {
    let mut reader = BufReader::with_capacity(1 << 16, File::open(path)?);
    let mut scan = Scan::default();
    let mut expected = first_seq;
    loop {
        let offset = scan.valid_len;
        let (seq, len) = match read_next(&mut reader, max_record)? {
            None => return Ok(scan),
            Some(Err(e)) => {
                scan.damage = Some((offset, e.to_string()));
                return Ok(scan);
            }
            Some(Ok((seq, _, len))) if seq == expected => (seq, len),
            Some(Ok((seq, _, _))) => {
                let why = format!("sequence number {seq} where {expected} was due");
                scan.damage = Some((offset, why));
                return Ok(scan);
            }
        };
        if seq >= cursor {
            scan.live += 1;
            scan.front_offset.get_or_insert(offset);
        }
        scan.last_seq = Some(seq);
        scan.valid_len += len;
        expected = seq.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_foreign_names_are_skipped() {
        assert_eq!(file_name(42), "00000000000000000042.seg");
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        for foreign in [
            "42.seg",
            "0000000000000000004x.seg",
            "00000000000000000042.tmp",
            "cursor",
        ] {
            assert_eq!(parse_file_name(foreign), None, "{foreign}");
        }
        // 20 digits above u64::MAX
        assert_eq!(parse_file_name("99999999999999999999.seg"), None);
    }

    #[test]
    fn read_next_tells_a_clean_end_from_a_torn_record() {
        let mut bytes = Vec::new();
        record::encode(5, &Message::new("t", "p"), &mut bytes);
        let full = bytes.len();
        let mut reader = &bytes[..];
        let (seq, message, len) = read_next(&mut reader, 1 << 20).unwrap().unwrap().unwrap();
        assert_eq!(
            (seq, message.payload().as_ref(), len),
            (5, &b"p"[..], full as u64)
        );
        assert!(read_next(&mut reader, 1 << 20).unwrap().is_none());
        for cut in 1..full {
            let mut reader = &bytes[..cut];
            let got = read_next(&mut reader, 1 << 20).unwrap().unwrap();
            assert!(
                matches!(got, Err(RecordError::Short { .. })),
                "cut {cut}: {got:?}"
            );
        }
    }
}
