//! The store lock: `flock(2)` on `<store>/lock`, shared for readers that must
//! not see blobs vanish (unpack), exclusive for writers (import, remove, gc).
//! Each [`StoreLock`] opens its own file description, so it excludes other
//! threads of the same process as well as other processes.

use std::fs::File;
use std::path::Path;

use cleanroom_core::{Error, IoContext, Result};
use rustix::fs::{flock, FlockOperation};

/// A held store lock; released when dropped (closing the file).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Blocks until the exclusive lock on `path` is held.
    pub fn exclusive(path: &Path) -> Result<StoreLock> {
        Self::take(path, FlockOperation::LockExclusive)
    }

    /// Blocks until a shared lock on `path` is held.
    pub fn shared(path: &Path) -> Result<StoreLock> {
        Self::take(path, FlockOperation::LockShared)
    }

    fn take(path: &Path, op: FlockOperation) -> Result<StoreLock> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .context(|| format!("opening the image store lock {}", path.display()))?;
        flock(&file, op).map_err(|e| {
            Error::io(
                format!("locking the image store ({})", path.display()),
                e.into(),
            )
        })?;
        Ok(StoreLock { _file: file })
    }
}
