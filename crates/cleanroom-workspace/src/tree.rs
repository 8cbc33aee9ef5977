//! The workspace directory as a git tree in the shadow history, rehashing
//! only files whose stat data changed since the last time (as git's index
//! does), and saying what a tree cannot hold.

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use git2::{Oid, Repository};
use serde::{Deserialize, Serialize};

use crate::error::{git, io, Result};

/// Git's modes for what a tree holds.
pub(crate) const MODE_FILE: i32 = 0o100644;
pub(crate) const MODE_EXEC: i32 = 0o100755;
pub(crate) const MODE_LINK: i32 = 0o120000;
pub(crate) const MODE_TREE: i32 = 0o040000;

/// Stat data that, unchanged, means the file's hash is unchanged. The
/// change time is in it because no process can set it: a sandbox that puts
/// an old modification time back is still seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Cached {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    mode: u32,
    oid: String,
}

type StatCache = HashMap<String, Cached>;

/// A tree written from the workspace, and what it could not hold.
#[derive(Clone, Debug)]
pub(crate) struct WrittenTree {
    pub tree: Oid,
    /// Each with why: `.git` directories (sync never writes them), sockets,
    /// fifos, devices.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Writes the tree of `root` into `repo`, using and refreshing the stat
/// cache at `cache_path`.
pub(crate) fn write_tree(repo: &Repository, root: &Path, cache_path: &Path) -> Result<WrittenTree> {
    let meta =
        fs::symlink_metadata(root).map_err(|e| io(format!("reading {}", root.display()), e))?;
    if !meta.is_dir() {
        return Err(crate::error::input(
            root.display().to_string(),
            "the workspace directory is not a directory (replaced by a symlink?); its history up to now is intact: export it with `cleanroom workspace export`",
        ));
    }
    let old: StatCache = fs::read(cache_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or_default();
    let mut writer = Writer {
        repo,
        old,
        new: StatCache::new(),
        skipped: Vec::new(),
        // A file changed just before now may change again within the
        // same (coarse, a few ms) timestamp: hash it next time too
        // ("racy git").
        racy_after: started - RACY_NANOS,
    };
    let tree = match writer.dir(root, Path::new(""))? {
        Some(oid) => oid,
        None => repo
            .treebuilder(None)
            .and_then(|b| b.write())
            .map_err(|e| git("writing the empty tree", e))?,
    };
    let cache = serde_json::to_vec(&writer.new).expect("the stat cache serialises");
    crate::hostfs::write_atomic(cache_path, &cache)?;
    Ok(WrittenTree {
        tree,
        skipped: writer.skipped,
    })
}

struct Writer<'r> {
    repo: &'r Repository,
    old: StatCache,
    new: StatCache,
    skipped: Vec<(PathBuf, String)>,
    /// Nanoseconds since the epoch.
    racy_after: i128,
}

/// How close to the tree's writing a change must be to stay uncached:
/// far above the kernel's timestamp granularity.
const RACY_NANOS: i128 = 200_000_000;

fn nanos((secs, nsec): (i64, i64)) -> i128 {
    secs as i128 * 1_000_000_000 + nsec as i128
}

impl Writer<'_> {
    /// The tree of directory `abs`, or `None` when it holds nothing a
    /// tree can (git keeps no empty directories).
    fn dir(&mut self, abs: &Path, rel: &Path) -> Result<Option<Oid>> {
        let mut builder = self
            .repo
            .treebuilder(None)
            .map_err(|e| git("starting a tree", e))?;
        let entries = fs::read_dir(abs).map_err(|e| io(format!("listing {}", abs.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io(format!("listing {}", abs.display()), e))?;
            let name = entry.file_name();
            let rel_child = rel.join(&name);
            let path = entry.path();
            if name == ".git" {
                self.skipped.push((
                    rel_child,
                    "`.git` in the workspace: never recorded, never synced".into(),
                ));
                continue;
            }
            let meta = fs::symlink_metadata(&path)
                .map_err(|e| io(format!("reading {}", path.display()), e))?;
            let kind = meta.file_type();
            let (oid, mode) = if kind.is_dir() {
                match self.dir(&path, &rel_child)? {
                    Some(oid) => (oid, MODE_TREE),
                    None => continue,
                }
            } else if kind.is_symlink() {
                let target = fs::read_link(&path)
                    .map_err(|e| io(format!("reading link {}", path.display()), e))?;
                let oid = self
                    .repo
                    .blob(target.as_os_str().as_bytes())
                    .map_err(|e| git(format!("storing symlink {}", rel_child.display()), e))?;
                (oid, MODE_LINK)
            } else if kind.is_file() {
                let mode = if meta.mode() & 0o100 != 0 {
                    MODE_EXEC
                } else {
                    MODE_FILE
                };
                (self.file(&path, &rel_child, &meta)?, mode)
            } else {
                self.skipped.push((
                    rel_child,
                    "not a file, directory or symlink (socket, fifo or device)".into(),
                ));
                continue;
            };
            builder
                .insert(name.as_bytes(), oid, mode)
                .map_err(|e| git(format!("adding {}", rel_child.display()), e))?;
        }
        if builder.is_empty() {
            return Ok(None);
        }
        builder
            .write()
            .map(Some)
            .map_err(|e| git(format!("writing tree {}", rel.display()), e))
    }

    fn file(&mut self, path: &Path, rel: &Path, meta: &fs::Metadata) -> Result<Oid> {
        let key = rel.to_string_lossy().into_owned();
        let stat = Cached {
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            ino: meta.ino(),
            mode: meta.mode(),
            oid: String::new(),
        };
        let known = self.old.get(&key).filter(|c| {
            Cached {
                oid: c.oid.clone(),
                ..stat.clone()
            } == **c
        });
        let oid = match known.and_then(|c| Oid::from_str(&c.oid).ok()) {
            Some(oid) => oid,
            None => self
                .repo
                .blob_path(path)
                .map_err(|e| git(format!("storing {}", rel.display()), e))?,
        };
        if nanos(stat.mtime) < self.racy_after && nanos(stat.ctime) < self.racy_after {
            self.new.insert(
                key,
                Cached {
                    oid: oid.to_string(),
                    ..stat
                },
            );
        }
        Ok(oid)
    }
}
