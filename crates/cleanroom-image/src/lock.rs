//! The store locks, all `flock(2)`: `<store>/lock` is held shared by
//! whatever writes or reads blobs (import, pull, unpack) and exclusive by what
//! deletes them (remove, verify --repair, gc), so blobs never vanish under an
//! import; `<store>/refs.lock` is held exclusive around each read-modify-write
//! of `refs.json` by an import, so concurrent imports run in parallel.
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

    /// The exclusive lock on `path` if nobody holds any lock on it now.
    pub fn try_exclusive(path: &Path) -> Result<Option<StoreLock>> {
        match Self::take(path, FlockOperation::NonBlockingLockExclusive) {
            Ok(l) => Ok(Some(l)),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::WouldBlock => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
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

/// Keeps one image's blobs, unpacked layers and merged rootfs from being
/// collected while it is in use (a running sandbox), even if the image is
/// removed meanwhile. A shared `flock` on `<store>/leases/<manifest hex>`;
/// released when dropped or when the holding process dies.
#[derive(Debug)]
pub struct ImageLease {
    _file: File,
}

impl ImageLease {
    pub(crate) fn take(path: &Path) -> Result<ImageLease> {
        let StoreLock { _file } = StoreLock::shared(path)?;
        Ok(ImageLease { _file })
    }
}

/// Whether someone holds a lease on `path` (an exclusive lock would block).
pub(crate) fn is_leased(path: &Path) -> bool {
    let Ok(file) = File::options().write(true).open(path) else {
        return false;
    };
    flock(&file, FlockOperation::NonBlockingLockExclusive).is_err()
}
