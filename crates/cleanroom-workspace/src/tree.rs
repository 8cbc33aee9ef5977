//! The workspace directory as a git tree in the shadow history: a walk
//! that reads only the files whose stat data changed since they were last
//! recorded (see [`crate::statcache`]), and the trees themselves, made from
//! a flat list of paths, written beside the new blobs.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository};

use crate::error::{git, io, Result};
use crate::objects::{object_id, ObjectSink, LOOSE_LIMIT};
use crate::statcache::{self, Cached, StatCache};

/// Git's modes for what a tree holds.
pub(crate) const MODE_FILE: i32 = 0o100644;
pub(crate) const MODE_EXEC: i32 = 0o100755;
pub(crate) const MODE_LINK: i32 = 0o120000;
pub(crate) const MODE_TREE: i32 = 0o040000;

/// Files larger than this are hashed (and stored) by libgit2, which
/// streams them, rather than read whole into memory.
pub(crate) const READ_WHOLE_LIMIT: u64 = 32 << 20;

/// One path of a tree: `/`-separated, relative to the tree's root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PathEntry {
    pub path: Vec<u8>,
    pub mode: i32,
    pub oid: Oid,
}

/// Git's mode for a regular file with permission bits `mode`.
pub(crate) fn file_mode(mode: u32) -> i32 {
    if mode & 0o100 != 0 {
        MODE_EXEC
    } else {
        MODE_FILE
    }
}

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
    // Before anything is looked at: see `statcache`.
    let stamp = statcache::stamp(cache_path)?;
    let mut walker = Walker {
        repo,
        sink: ObjectSink::new(repo, LOOSE_LIMIT)?,
        old: StatCache::load(cache_path),
        new: StatCache::default(),
        entries: Vec::new(),
        skipped: Vec::new(),
    };
    walker.dir(root, Path::new(""))?;
    let Walker {
        mut sink,
        new,
        entries,
        skipped,
        ..
    } = walker;
    let tree = store_trees(entries, &mut |bytes| sink.put(ObjectType::Tree, bytes))?;
    sink.finish()?;
    new.save(cache_path, stamp)?;
    Ok(WrittenTree { tree, skipped })
}

struct Walker<'r> {
    repo: &'r Repository,
    sink: ObjectSink<'r>,
    old: StatCache,
    new: StatCache,
    entries: Vec<PathEntry>,
    skipped: Vec<(PathBuf, String)>,
}

impl Walker<'_> {
    fn dir(&mut self, abs: &Path, rel: &Path) -> Result<()> {
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
                self.dir(&path, &rel_child)?;
                continue;
            } else if kind.is_symlink() {
                let target = fs::read_link(&path)
                    .map_err(|e| io(format!("reading link {}", path.display()), e))?;
                let oid = self
                    .sink
                    .put(ObjectType::Blob, target.as_os_str().as_bytes())?;
                (oid, MODE_LINK)
            } else if kind.is_file() {
                (self.file(&path, &rel_child, &meta)?, file_mode(meta.mode()))
            } else {
                self.skipped.push((
                    rel_child,
                    "not a file, directory or symlink (socket, fifo or device)".into(),
                ));
                continue;
            };
            self.entries.push(PathEntry {
                path: rel_child.as_os_str().as_bytes().to_vec(),
                mode,
                oid,
            });
        }
        Ok(())
    }

    fn file(&mut self, path: &Path, rel: &Path, meta: &fs::Metadata) -> Result<Oid> {
        let key = rel.to_string_lossy().into_owned();
        let oid = match self.old.lookup(&key, meta) {
            Some(oid) => oid,
            None if meta.size() > READ_WHOLE_LIMIT => self
                .repo
                .blob_path(path)
                .map_err(|e| git(format!("storing {}", rel.display()), e))?,
            None => {
                let bytes =
                    fs::read(path).map_err(|e| io(format!("reading {}", path.display()), e))?;
                let oid = object_id(ObjectType::Blob, &bytes);
                self.sink.put_known(ObjectType::Blob, oid, &bytes)?;
                oid
            }
        };
        self.new.insert(key, Cached::new(meta, oid));
        Ok(oid)
    }
}

/// Writes the trees holding `entries` through `put` (which stores a tree's
/// bytes and returns its id), deepest first; returns the root's id.
/// Directories with nothing in them have no tree, as in git.
pub(crate) fn store_trees(
    entries: Vec<PathEntry>,
    put: &mut dyn FnMut(&[u8]) -> Result<Oid>,
) -> Result<Oid> {
    // Each directory's entries, keyed by (depth, path) so that the last
    // key is always a deepest directory.
    type Items = Vec<(Vec<u8>, i32, Oid)>;
    let mut dirs: BTreeMap<(usize, Vec<u8>), Items> = BTreeMap::new();
    dirs.insert((0, Vec::new()), Vec::new());
    for entry in entries {
        let (parent, name) = split(&entry.path);
        dirs.entry((depth_of(parent), parent.to_vec()))
            .or_default()
            .push((name.to_vec(), entry.mode, entry.oid));
        // Every ancestor gets a place, so each directory finds its parent.
        let mut dir = parent;
        while !dir.is_empty() {
            let (up, _) = split(dir);
            dirs.entry((depth_of(up), up.to_vec())).or_default();
            dir = up;
        }
    }
    loop {
        let ((d, path), mut items) = dirs.pop_last().expect("the root is always there");
        let oid = if items.is_empty() && d > 0 {
            None
        } else {
            Some(put(&tree_bytes(&mut items))?)
        };
        if path.is_empty() {
            return Ok(oid.expect("the root tree is always written"));
        }
        if let Some(oid) = oid {
            let (parent, name) = split(&path);
            dirs.get_mut(&(depth_of(parent), parent.to_vec()))
                .expect("every ancestor has a place")
                .push((name.to_vec(), MODE_TREE, oid));
        }
    }
}

/// `(parent, name)` of a `/`-separated path; the parent of a top-level
/// name is empty.
fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// How deep a directory is: 0 for the root, 1 for a top-level one.
fn depth_of(dir: &[u8]) -> usize {
    if dir.is_empty() {
        0
    } else {
        dir.iter().filter(|&&b| b == b'/').count() + 1
    }
}

/// A tree object's bytes: entries in git's order (names compared as bytes,
/// a directory's as if it ended in `/`), each `<octal mode> <name>\0<id>`.
fn tree_bytes(items: &mut [(Vec<u8>, i32, Oid)]) -> Vec<u8> {
    let key = |(name, mode, _): &(Vec<u8>, i32, Oid)| {
        let mut k = name.clone();
        if *mode == MODE_TREE {
            k.push(b'/');
        }
        k
    };
    items.sort_by_cached_key(key);
    let mut out = Vec::with_capacity(items.len() * 40);
    for (name, mode, oid) in items.iter() {
        out.extend_from_slice(format!("{mode:o} ").as_bytes());
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(oid.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_match_libgit2s() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(tmp.path()).unwrap();
        let blob = |s: &str| repo.blob(s.as_bytes()).unwrap();
        let entries = vec![
            PathEntry {
                path: b"a.txt".to_vec(),
                mode: MODE_FILE,
                oid: blob("a"),
            },
            PathEntry {
                path: b"a/b/c".to_vec(),
                mode: MODE_EXEC,
                oid: blob("c"),
            },
            PathEntry {
                path: b"a-b".to_vec(),
                mode: MODE_LINK,
                oid: blob("a"),
            },
            PathEntry {
                path: b"z".to_vec(),
                mode: MODE_FILE,
                oid: blob("z"),
            },
        ];
        let mut stored = Vec::new();
        let ours = store_trees(entries, &mut |bytes| {
            let oid = repo.odb().unwrap().write(ObjectType::Tree, bytes).unwrap();
            stored.push(oid);
            Ok(oid)
        })
        .unwrap();
        // The same tree made by libgit2's tree builder.
        let sub = |entries: &[(&str, Oid, i32)]| {
            let mut b = repo.treebuilder(None).unwrap();
            for (name, oid, mode) in entries {
                b.insert(name, *oid, *mode).unwrap();
            }
            b.write().unwrap()
        };
        let c = sub(&[("c", blob("c"), MODE_EXEC)]);
        let b = sub(&[("b", c, MODE_TREE)]);
        let theirs = sub(&[
            ("a.txt", blob("a"), MODE_FILE),
            ("a", b, MODE_TREE),
            ("a-b", blob("a"), MODE_LINK),
            ("z", blob("z"), MODE_FILE),
        ]);
        assert_eq!(ours, theirs);
        assert_eq!(stored.len(), 3);
        let empty = store_trees(Vec::new(), &mut |bytes| {
            Ok(repo.odb().unwrap().write(ObjectType::Tree, bytes).unwrap())
        })
        .unwrap();
        assert_eq!(
            empty.to_string(),
            "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
        );
    }
}
