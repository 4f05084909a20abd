//! The store directory's `LOCK` file, held with an exclusive advisory lock
//! (`flock`) while a store is open: a second process opening the same
//! directory is refused instead of interleaving its appends and
//! acknowledgements with the first one's. The kernel drops the lock when
//! the process ends, however it ends, so a crash leaves nothing to clean
//! up. (`std`'s `File::try_lock` needs Rust 1.89; the crate supports 1.85,
//! hence `fs4`.)

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::time::{Duration, Instant};

use super::fsio::io_error;
use crate::error::{Error, Result};

/// The lock file's name in the store directory (never a queue directory).
pub(super) const LOCK_FILE: &str = "LOCK";

/// How long `open` waits for a lock that is held before it gives up.
const CONTENDED_WAIT: Duration = Duration::from_secs(1);

/// Takes the directory's lock; the returned file holds it until dropped.
pub(super) fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error(&path, "open lock file"))?;
    // A lock can be held for a moment by a child process this one is
    // starting (between fork and exec the child shares every open file,
    // even those closed on exec), so a store closed and opened again
    // retries for a while before it blames another process.
    let deadline = Instant::now() + CONTENDED_WAIT;
    loop {
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => return Ok(file),
            Err(fs4::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(fs4::TryLockError::WouldBlock) => {
                return Err(Error::LocalStore {
                    path,
                    operation: "open",
                    cause: "another process has this store open (its LOCK file is locked)".into(),
                })
            }
            Err(fs4::TryLockError::Error(e)) => return Err(io_error(&path, "lock")(e)),
        }
    }
}
