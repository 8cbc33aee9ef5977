//! The shadow history: a bare git repository beside the workspace (never
//! inside the sandbox's mount), holding the snapshot as its base commit and
//! one commit per recorded change. Written with libgit2, no `git` binary.

use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository, Signature};
use serde::Serialize;

use crate::error::{git, input, io, Result};
use crate::objects::{object_id, ObjectSink};
use crate::snapshot::Snapshot;
use crate::statcache::{self, Cached};
use crate::tree::{store_trees, write_tree, PathEntry, WrittenTree};

/// The branch the commits go on.
const BRANCH: &str = "refs/heads/main";
/// Points at the base commit (the snapshot).
const BASE_REF: &str = "refs/cleanroom/base";

/// One recorded commit, as `workspace log` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogEntry {
    pub id: String,
    /// Seconds since the Unix epoch.
    pub time: i64,
    pub message: String,
}

/// The shadow history of one workspace.
pub struct History {
    repo: Repository,
    /// The workspace directory it records.
    tree_dir: PathBuf,
    stat_cache: PathBuf,
}

impl History {
    /// Creates an empty repository at `git_dir`, for [`History::record_base`].
    pub fn init(git_dir: &Path, tree_dir: &Path, stat_cache: &Path) -> Result<History> {
        fast_reads();
        let repo = Repository::init_bare(git_dir)
            .map_err(|e| git(format!("creating {}", git_dir.display()), e))?;
        Ok(History {
            repo,
            tree_dir: tree_dir.to_path_buf(),
            stat_cache: stat_cache.to_path_buf(),
        })
    }

    /// Where [`crate::snapshot::snapshot`] packs the blobs of the base.
    pub fn objects_dir(&self) -> PathBuf {
        self.repo.path().join("objects")
    }

    /// Records `snapshot` (of the workspace directory, its blobs already
    /// packed) as the base commit, and its stat data as the stat cache.
    pub fn record_base(&self, snapshot: Snapshot) -> Result<Oid> {
        let Snapshot {
            mut entries,
            mut cache,
            big,
            ..
        } = snapshot;
        for (rel, copy, mode) in big {
            let meta = std::fs::symlink_metadata(&copy)
                .map_err(|e| io(format!("reading {}", copy.display()), e))?;
            let oid = self
                .repo
                .blob_path(&copy)
                .map_err(|e| git(format!("storing {}", copy.display()), e))?;
            cache.insert(
                String::from_utf8_lossy(&rel).into_owned(),
                Cached::new(&meta, oid),
            );
            entries.push(PathEntry {
                path: rel,
                mode,
                oid,
            });
        }
        let mut sink = ObjectSink::new(&self.repo, 0)?;
        let tree = store_trees(entries, &mut |bytes| sink.put(ObjectType::Tree, bytes))?;
        sink.finish()?;
        // Taken after every copy was written (and no one else writes the
        // workspace before start returns): see `statcache`.
        let stamp = statcache::stamp(&self.stat_cache)?;
        cache.save(&self.stat_cache, stamp)?;
        let base = self.commit_tree(tree, "snapshot (base)")?;
        self.repo
            .reference(BASE_REF, base, true, "base")
            .map_err(|e| git("recording the base", e))?;
        Ok(base)
    }

    /// Opens the repository at `git_dir`.
    pub fn open(git_dir: &Path, tree_dir: &Path, stat_cache: &Path) -> Result<History> {
        fast_reads();
        let repo = Repository::open_bare(git_dir)
            .map_err(|e| git(format!("opening {}", git_dir.display()), e))?;
        Ok(History {
            repo,
            tree_dir: tree_dir.to_path_buf(),
            stat_cache: stat_cache.to_path_buf(),
        })
    }

    /// Removes the lock files a process killed while updating a ref left
    /// behind (libgit2 would refuse every later update). Only for a caller
    /// holding the workspace lock: no one else can be updating them.
    pub(crate) fn remove_stale_locks(&self) -> Result<()> {
        fn walk(dir: &Path) -> std::io::Result<()> {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let path = entry.path();
                if entry.file_type()?.is_dir() {
                    walk(&path)?;
                } else if path.extension().is_some_and(|e| e == "lock") {
                    tracing::warn!("removing {} left by a killed update", path.display());
                    std::fs::remove_file(&path)?;
                }
            }
            Ok(())
        }
        let dir = self.repo.path();
        for name in ["HEAD.lock", "packed-refs.lock"] {
            match std::fs::remove_file(dir.join(name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io(format!("removing {}", dir.join(name).display()), e))
                }
                _ => {}
            }
        }
        walk(&dir.join("refs"))
            .map_err(|e| io(format!("clearing stale locks in {}", dir.display()), e))
    }

    pub(crate) fn repo(&self) -> &Repository {
        &self.repo
    }

    /// The workspace as it is now, as a tree in the repository.
    pub(crate) fn write_tree(&self) -> Result<WrittenTree> {
        write_tree(&self.repo, &self.tree_dir, &self.stat_cache)
    }

    /// The base commit (the snapshot).
    pub fn base(&self) -> Result<Oid> {
        self.repo
            .refname_to_id(BASE_REF)
            .map_err(|e| git("finding the base commit", e))
    }

    /// The newest commit.
    pub fn head(&self) -> Result<Oid> {
        self.repo
            .refname_to_id(BRANCH)
            .map_err(|e| git("finding the newest commit", e))
    }

    /// Records the workspace as it is now with `message`, unless nothing
    /// changed since the newest commit; returns the new commit's id.
    pub fn commit(&self, message: &str) -> Result<Option<Oid>> {
        let written = self.write_tree()?;
        self.commit_if_changed(written.tree, message)
    }

    /// Records `written_tree` with `message` unless it is the newest commit's tree.
    pub(crate) fn commit_if_changed(
        &self,
        written_tree: Oid,
        message: &str,
    ) -> Result<Option<Oid>> {
        let head = self.head()?;
        let head_tree = self
            .repo
            .find_commit(head)
            .and_then(|c| c.tree())
            .map_err(|e| git("reading the newest commit", e))?;
        if head_tree.id() == written_tree {
            return Ok(None);
        }
        self.commit_tree(written_tree, message).map(Some)
    }

    fn commit_tree(&self, tree: Oid, message: &str) -> Result<Oid> {
        let sig = Signature::now("cleanroom", "cleanroom@localhost")
            .map_err(|e| git("making the commit signature", e))?;
        let tree = self
            .repo
            .find_tree(tree)
            .map_err(|e| git("reading a tree", e))?;
        let parent = match self.repo.refname_to_id(BRANCH) {
            Ok(id) => Some(
                self.repo
                    .find_commit(id)
                    .map_err(|e| git("reading the newest commit", e))?,
            ),
            Err(_) => None,
        };
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        self.repo
            .commit(Some(BRANCH), &sig, &sig, message, &tree, &parents)
            .map_err(|e| git("recording a commit", e))
    }

    /// Every commit, newest first.
    pub fn log(&self) -> Result<Vec<LogEntry>> {
        let mut walk = self
            .repo
            .revwalk()
            .map_err(|e| git("reading the history", e))?;
        walk.push(self.head()?)
            .map_err(|e| git("reading the history", e))?;
        let mut out = Vec::new();
        for id in walk {
            let id = id.map_err(|e| git("reading the history", e))?;
            let commit = self
                .repo
                .find_commit(id)
                .map_err(|e| git("reading a commit", e))?;
            out.push(LogEntry {
                id: id.to_string(),
                time: commit.time().seconds(),
                message: commit.message().unwrap_or_default().trim_end().to_string(),
            });
        }
        Ok(out)
    }

    /// Copies the history into a new ordinary git repository at `dir`
    /// (which must not exist or be empty), with `main` checked out, for
    /// `git log`, `git diff` and merging from.
    pub fn export(&self, dir: &Path) -> Result<()> {
        if dir.exists()
            && std::fs::read_dir(dir)
                .map(|mut d| d.next().is_some())
                .unwrap_or(true)
        {
            return Err(input(
                format!("--git {}", dir.display()),
                "exists and is not empty; name a new directory",
            ));
        }
        let source = self.repo.path().to_string_lossy().into_owned();
        git2::build::RepoBuilder::new()
            .branch("main")
            .clone(&source, dir)
            .map_err(|e| git(format!("exporting to {}", dir.display()), e))?;
        Ok(())
    }

    /// The bytes of blob `oid`, checked against their id (sync writes
    /// them into the project).
    pub(crate) fn blob(&self, oid: Oid) -> Result<Vec<u8>> {
        let bytes = self
            .repo
            .find_blob(oid)
            .map(|b| b.content().to_vec())
            .map_err(|e| git(format!("reading blob {oid}"), e))?;
        if object_id(ObjectType::Blob, &bytes) != oid {
            return Err(input(
                format!("blob {oid} in {}", self.repo.path().display()),
                "does not match its id: the shadow history is damaged; nothing more was written. Check the disk, then export what is readable with `cleanroom workspace export`",
            ));
        }
        Ok(bytes)
    }
}

/// libgit2 re-hashes every object it reads (with collision-detecting
/// SHA-1, slower than everything else a diff does); the history is our
/// own, and what sync writes out is checked by [`History::blob`].
fn fast_reads() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| git2::opts::strict_hash_verification(false));
}

/// The message of an automatic commit after `exec`: the command line and
/// how it ended.
pub fn exec_message(command_line: &str, exit_code: i32) -> String {
    format!("exec: {command_line} (exit {exit_code})")
}
