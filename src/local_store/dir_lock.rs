//! The store directory's `LOCK` file, held with an exclusive advisory lock
//! (`flock`) while a store is open: a second process opening the same
//! directory is refused instead of interleaving its appends and
//! acknowledgements with the first one's. The kernel drops the lock when
//! the process ends, however it ends, so a crash leaves nothing to clean
//! up. (`std`'s `File::try_lock` needs Rust 1.89; the crate supports 1.85,
//! hence `fs4`.)

use std::fs::{File, OpenOptions};
use std::path::Path;

use super::fsio::io_error;
use crate::error::{Error, Result};

/// The lock file's name in the store directory (never a queue directory).
pub(super) const LOCK_FILE: &str = "LOCK";

/// Takes the directory's lock; the returned file holds it until dropped.
pub(super) fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error(&path, "open lock file"))?;
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => Ok(file),
        Err(fs4::TryLockError::WouldBlock) => Err(Error::LocalStore {
            path,
            operation: "open",
            cause: "another process has this store open (its LOCK file is locked)".into(),
        }),
        Err(fs4::TryLockError::Error(e)) => Err(io_error(&path, "lock")(e)),
    }
}
