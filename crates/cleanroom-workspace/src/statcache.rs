//! The stat cache: for each workspace file whose content the history has,
//! the stat data it had then (size, times, inode, mode), as git's index
//! keeps them. A file whose stat data is unchanged is not read again.
//!
//! "Racy git": a file changed twice within one tick of the file system's
//! clock keeps the same times. So an entry is only kept when the file's
//! last change is strictly older than a stamp the same file system wrote
//! *before* the file was looked at (a write to `stat-cache.stamp`): any
//! later change then gets a newer change time than the one recorded.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use git2::Oid;
use serde::{Deserialize, Serialize};

use crate::error::{io, Result};

/// One file's stat data and id. The change time is in it because no
/// process can set it: a sandbox that puts an old modification time back
/// is still seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cached {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    mode: u32,
    oid: String,
}

impl Cached {
    pub(crate) fn new(meta: &fs::Metadata, oid: Oid) -> Cached {
        Cached {
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            ino: meta.ino(),
            mode: meta.mode(),
            oid: oid.to_string(),
        }
    }

    fn same_stat(&self, meta: &fs::Metadata) -> bool {
        self.size == meta.size()
            && self.mtime == (meta.mtime(), meta.mtime_nsec())
            && self.ctime == (meta.ctime(), meta.ctime_nsec())
            && self.ino == meta.ino()
            && self.mode == meta.mode()
    }

    /// Whether the file last changed strictly before `stamp`.
    fn settled_before(&self, stamp: i128) -> bool {
        nanos(self.mtime) < stamp && nanos(self.ctime) < stamp
    }
}

fn nanos((secs, nsec): (i64, i64)) -> i128 {
    secs as i128 * 1_000_000_000 + nsec as i128
}

/// Entries by path relative to the workspace.
#[derive(Debug, Default)]
pub(crate) struct StatCache {
    entries: HashMap<String, Cached>,
}

impl StatCache {
    /// The cache at `path`; empty when there is none or it is unreadable
    /// (then every file is hashed once more).
    pub(crate) fn load(path: &Path) -> StatCache {
        let entries = fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        StatCache { entries }
    }

    /// The id recorded for `rel`, if its stat data still is `meta`'s.
    pub(crate) fn lookup(&self, rel: &str, meta: &fs::Metadata) -> Option<Oid> {
        self.entries
            .get(rel)
            .filter(|c| c.same_stat(meta))
            .and_then(|c| Oid::from_str(&c.oid).ok())
    }

    pub(crate) fn insert(&mut self, rel: String, entry: Cached) {
        self.entries.insert(rel, entry);
    }

    /// Writes the entries that changed before `stamp` to `path`. No fsync:
    /// a cache lost in a crash only costs hashing again.
    pub(crate) fn save(mut self, path: &Path, stamp: i128) -> Result<()> {
        self.entries.retain(|_, c| c.settled_before(stamp));
        let bytes = serde_json::to_vec(&self.entries).expect("the stat cache serialises");
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, bytes).map_err(|e| io(format!("writing {}", tmp.display()), e))?;
        fs::rename(&tmp, path).map_err(|e| io(format!("replacing {}", path.display()), e))
    }
}

/// The file system's "now" beside `cache`, in nanoseconds: the change time
/// of a write to `<cache>.stamp`, made the way any write is.
pub(crate) fn stamp(cache: &Path) -> Result<i128> {
    let path = cache.with_extension("stamp");
    let mut file =
        fs::File::create(&path).map_err(|e| io(format!("creating {}", path.display()), e))?;
    file.write_all(b"\n")
        .map_err(|e| io(format!("writing {}", path.display()), e))?;
    let meta = file
        .metadata()
        .map_err(|e| io(format!("reading {}", path.display()), e))?;
    Ok(nanos((meta.ctime(), meta.ctime_nsec())))
}
