//! The XA journal: one file per prepared branch under `<data_dir>/xa/`, so
//! that a prepared branch outlives the broker process (docs/protocol.md §4.3).
//!
//! A file is written to `<seq>.xa.tmp`, fsynced, renamed to `<seq>.xa`, and
//! the directory fsynced, so after a crash a branch's file is either whole or
//! absent. It is removed (and the directory fsynced) only once the commit's
//! appends are done or the rollback is decided. Sequence numbers keep files
//! apart even when a key is begun again while its earlier branch is still
//! being committed.
//!
//! Format (integers big-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `MQXA` |
//! | 1 | version, 1 |
//! | 4 | payload length N |
//! | 4 | CRC32 (IEEE) of the payload |
//! | N | payload: key, put count, puts |
//!
//! The key is its wire text (u16 length + bytes); each put is its topic (u16
//! length + bytes), partition (u32), message id (i64), flag (i32) and body
//! (u32 length + bytes).

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, BufMut, Bytes};
use metaq::protocol::{TxKey, XaTxId};
use tracing::warn;

use crate::store::Record;

const MAGIC: &[u8; 4] = b"MQXA";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 4 + 1 + 4 + 4;
const SUFFIX: &str = ".xa";
const TMP_SUFFIX: &str = ".xa.tmp";

/// A put held by an XA branch until it commits.
#[derive(Debug, Clone)]
pub(crate) struct HeldPut {
    pub(crate) topic: String,
    pub(crate) partition: u32,
    pub(crate) record: Record,
}

/// A prepared branch read back at start.
pub(crate) struct Loaded {
    pub(crate) key: XaTxId,
    pub(crate) puts: Vec<HeldPut>,
    pub(crate) file: PathBuf,
}

pub(crate) struct Journal {
    dir: PathBuf,
    next_seq: AtomicU64,
}

impl Journal {
    /// Opens (creating) `<data_dir>/xa` and reads every branch in it, oldest
    /// first. A torn or corrupt file is logged and skipped; a leftover
    /// temporary file (a crash mid-PREPARE, never answered) is deleted.
    pub(crate) fn open(data_dir: &Path) -> io::Result<(Journal, Vec<Loaded>)> {
        let dir = data_dir.join("xa");
        fs::create_dir_all(&dir)?;
        let mut found = Vec::new();
        let mut max_seq = 0;
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.ends_with(TMP_SUFFIX) {
                if let Err(e) = fs::remove_file(&path) {
                    warn!(file = %path.display(), error = %e, "cannot remove a partial XA journal file");
                }
                continue;
            }
            let Some(seq) = name
                .strip_suffix(SUFFIX)
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            max_seq = max_seq.max(seq);
            match fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| decode(&b))
            {
                Ok((key, puts)) => found.push((
                    seq,
                    Loaded {
                        key,
                        puts,
                        file: path,
                    },
                )),
                Err(reason) => {
                    warn!(file = %path.display(), %reason, "skipping an unreadable XA journal file")
                }
            }
        }
        found.sort_by_key(|(seq, _)| *seq);
        let journal = Journal {
            dir,
            next_seq: AtomicU64::new(max_seq + 1),
        };
        Ok((journal, found.into_iter().map(|(_, l)| l).collect()))
    }

    /// Writes a branch durably; returns its file. Blocking.
    pub(crate) fn write(&self, key: &XaTxId, puts: &[HeldPut]) -> io::Result<PathBuf> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!("{seq:020}{TMP_SUFFIX}"));
        let file = self.dir.join(format!("{seq:020}{SUFFIX}"));
        let bytes = encode(key, puts)?;
        let written = (|| {
            let mut out = File::create(&tmp)?;
            out.write_all(&bytes)?;
            out.sync_all()?;
            fs::rename(&tmp, &file)?;
            sync_dir(&self.dir)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written.map(|()| file)
    }

    /// Removes a branch's file for good. Blocking.
    pub(crate) fn remove(&self, file: &Path) -> io::Result<()> {
        fs::remove_file(file)?;
        sync_dir(&self.dir)
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn too_long(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what} too long for the XA journal"),
    )
}

pub(crate) fn encode(key: &XaTxId, puts: &[HeldPut]) -> io::Result<Vec<u8>> {
    let mut payload = Vec::new();
    put_str(&mut payload, &TxKey::Xa(key.clone()).to_string())?;
    payload.put_u32(u32::try_from(puts.len()).map_err(|_| too_long("put count"))?);
    for put in puts {
        put_str(&mut payload, &put.topic)?;
        payload.put_u32(put.partition);
        payload.put_i64(put.record.id);
        payload.put_i32(put.record.flag);
        let len = u32::try_from(put.record.body.len()).map_err(|_| too_long("body"))?;
        payload.put_u32(len);
        payload.put_slice(&put.record.body);
    }
    let len = u32::try_from(payload.len()).map_err(|_| too_long("branch"))?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.put_slice(MAGIC);
    out.put_u8(VERSION);
    out.put_u32(len);
    out.put_u32(crc32fast::hash(&payload));
    out.extend_from_slice(&payload);
    Ok(out)
}

fn put_str(out: &mut Vec<u8>, text: &str) -> io::Result<()> {
    out.put_u16(u16::try_from(text.len()).map_err(|_| too_long("name"))?);
    out.put_slice(text.as_bytes());
    Ok(())
}

/// Reads a file's bytes back; the reason it is unusable otherwise.
pub(crate) fn decode(bytes: &[u8]) -> Result<(XaTxId, Vec<HeldPut>), String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!("{} bytes, shorter than the header", bytes.len()));
    }
    let mut header = &bytes[..HEADER_LEN];
    if &header[..4] != MAGIC {
        return Err("bad magic".into());
    }
    header.advance(4);
    let version = header.get_u8();
    if version != VERSION {
        return Err(format!("unknown version {version}"));
    }
    let len = header.get_u32() as usize;
    let crc = header.get_u32();
    let payload = &bytes[HEADER_LEN..];
    if payload.len() != len {
        return Err(format!(
            "payload of {} bytes, header says {len}",
            payload.len()
        ));
    }
    if crc32fast::hash(payload) != crc {
        return Err("CRC mismatch".into());
    }
    let mut p = payload;
    let key = match get_str(&mut p)?.parse::<TxKey>() {
        Ok(TxKey::Xa(key)) => key,
        Ok(other) => return Err(format!("key {other} is not an XA key")),
        Err(e) => return Err(format!("bad key: {e}")),
    };
    let count = get_u32(&mut p)?;
    let mut puts = Vec::new();
    for _ in 0..count {
        let topic = get_str(&mut p)?.to_owned();
        let partition = get_u32(&mut p)?;
        let id = i64::from_be_bytes(take(&mut p, 8)?.try_into().map_err(|_| "short id")?);
        let flag = i32::from_be_bytes(take(&mut p, 4)?.try_into().map_err(|_| "short flag")?);
        let body_len = get_u32(&mut p)? as usize;
        let body = Bytes::copy_from_slice(take(&mut p, body_len)?);
        puts.push(HeldPut {
            topic,
            partition,
            record: Record { id, flag, body },
        });
    }
    if !p.is_empty() {
        return Err(format!("{} bytes after the last put", p.len()));
    }
    Ok((key, puts))
}

fn take<'a>(p: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if p.len() < n {
        return Err("payload ends early".into());
    }
    let (head, rest) = p.split_at(n);
    *p = rest;
    Ok(head)
}

fn get_u32(p: &mut &[u8]) -> Result<u32, String> {
    let b = take(p, 4)?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn get_str<'a>(p: &mut &'a [u8]) -> Result<&'a str, String> {
    let b = take(p, 2)?;
    let len = usize::from(u16::from_be_bytes([b[0], b[1]]));
    std::str::from_utf8(take(p, len)?).map_err(|_| "a name is not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (XaTxId, Vec<HeldPut>) {
        let key = XaTxId {
            format_id: 1,
            global_id: vec![1, 2, 3],
            branch_qualifier: vec![0x0a],
            unique_qualifier: "rm-1".into(),
        };
        let put = |topic: &str, partition, id, body: &'static str| HeldPut {
            topic: topic.into(),
            partition,
            record: Record::new(id, 0, body),
        };
        (
            key,
            vec![put("test", 0, 7, "hello"), put("other", 3, 8, "")],
        )
    }

    #[test]
    fn round_trips_and_refuses_every_damage() {
        let (key, puts) = sample();
        let bytes = encode(&key, &puts).unwrap();
        let (read_key, read_puts) = decode(&bytes).unwrap();
        assert_eq!(read_key, key);
        let pairs = read_puts.iter().zip(&puts);
        assert!(pairs
            .clone()
            .all(|(a, b)| a.record == b.record && a.topic == b.topic));
        assert!(pairs.clone().all(|(a, b)| a.partition == b.partition));
        // Every truncation and every single flipped bit is caught.
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "truncated to {len}");
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "byte {i} flipped");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }

    #[test]
    fn open_reads_whole_files_skips_bad_ones_and_continues_the_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, loaded) = Journal::open(dir.path()).unwrap();
        assert!(loaded.is_empty());
        let (key, puts) = sample();
        let first = journal.write(&key, &puts).unwrap();
        let second = journal.write(&key, &puts[..1]).unwrap();
        fs::write(
            dir.path().join("xa/00000000000000000009.xa"),
            b"MQXA\x01junk",
        )
        .unwrap();
        fs::write(
            dir.path().join("xa/00000000000000000010.xa.tmp"),
            b"partial",
        )
        .unwrap();
        journal.remove(&first).unwrap();
        let (journal, loaded) = Journal::open(dir.path()).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!((loaded[0].file.clone(), loaded[0].puts.len()), (second, 1));
        assert!(!dir.path().join("xa/00000000000000000010.xa.tmp").exists());
        let third = journal.write(&key, &[]).unwrap();
        assert!(third.ends_with("00000000000000000010.xa"), "{third:?}");
    }
}
