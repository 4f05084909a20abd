//! Small file-system helpers shared by the store's parts.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Maps an I/O error on `path` during `operation` to [`Error::LocalStore`].
pub(crate) fn io_error(
    path: &Path,
    operation: &'static str,
) -> impl FnOnce(std::io::Error) -> Error {
    let path: PathBuf = path.to_owned();
    move |e| Error::LocalStore {
        path,
        operation,
        cause: e.to_string(),
    }
}

/// Flushes a directory's entries (a created, renamed or removed file) to disk.
///
/// Only Unix can open a directory to sync it; elsewhere this does nothing.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    if cfg!(not(unix)) {
        return Ok(());
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir, "fsync directory"))
}
