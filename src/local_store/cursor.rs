//! The cursor file: the sequence number of a queue's first message not yet
//! acknowledged, replaced atomically (write `cursor.tmp`, fsync, rename).
//!
//! Layout, little-endian: magic `0x4D51_4C43`, sequence number (u64), CRC32
//! of the first 12 bytes: 16 bytes.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::config::FsyncPolicy;
use super::fsio::{io_error, sync_dir};
use crate::error::Error;

const MAGIC: u32 = 0x4D51_4C43;
pub(crate) const FILE: &str = "cursor";
pub(crate) const TEMP: &str = "cursor.tmp";

fn encode(seq: u64) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(&MAGIC.to_le_bytes());
    out[4..12].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&out[..12]);
    out[12..].copy_from_slice(&crc.to_le_bytes());
    out
}

fn decode(bytes: &[u8]) -> Option<u64> {
    let ok = bytes.len() == 16
        && bytes[..4] == MAGIC.to_le_bytes()
        && bytes[12..] == crc32fast::hash(&bytes[..12]).to_le_bytes();
    ok.then(|| u64::from_le_bytes(bytes[4..12].try_into().unwrap_or_default()))
}

/// Reads the cursor of the queue in `dir`: `Ok(None)` when there is none or
/// it is damaged (warned; the caller then starts at its oldest record, so
/// damage gives duplicates, never loss).
pub(crate) fn read(dir: &Path) -> Result<Option<u64>, Error> {
    let path = dir.join(FILE);
    match fs::read(&path) {
        Ok(bytes) => {
            let seq = decode(&bytes);
            if seq.is_none() {
                tracing::warn!(
                    path = %path.display(),
                    bytes = bytes.len(),
                    "local store: damaged cursor file ignored; the queue is replayed from its oldest record"
                );
            }
            Ok(seq)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(&path, "read cursor")(e)),
    }
}

/// Replaces the cursor of the queue in `dir` with `seq`; `durable` asks for
/// the fsyncs (file before the rename, directory after).
pub(crate) fn write(dir: &Path, seq: u64, durable: bool, policy: FsyncPolicy) -> Result<(), Error> {
    let temp = dir.join(TEMP);
    let path = dir.join(FILE);
    let mut file = fs::File::create(&temp).map_err(io_error(&temp, "create cursor"))?;
    file.write_all(&encode(seq))
        .map_err(io_error(&temp, "write cursor"))?;
    if durable && policy != FsyncPolicy::Never {
        file.sync_data().map_err(io_error(&temp, "fsync cursor"))?;
    }
    drop(file);
    fs::rename(&temp, &path).map_err(io_error(&path, "rename cursor"))?;
    if durable && policy != FsyncPolicy::Never {
        sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        assert_eq!(decode(&encode(42)), Some(42));
        for at in 0..16 {
            let mut bytes = encode(42);
            bytes[at] ^= 1;
            assert_eq!(decode(&bytes), None, "byte {at}");
        }
        assert_eq!(decode(&encode(42)[..15]), None);
        assert_eq!(decode(&[]), None);
    }
}
