//! Applying a workspace's changes to the real project, three-way against
//! the base: the sandbox's change lands where the user left the file as it
//! was; the user's own edits stay; where both changed a path nothing at all
//! is applied (unless `force`: the sandbox wins). `.git` is never written,
//! nothing is written through a symlink or outside the project, every file
//! lands whole, and the journal lets the next sync finish an interrupted one.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use git2::{Delta, ObjectType, Oid};
use serde::Serialize;

use crate::changes::{diff_trees, is_exec, Skipped};
use crate::error::{git, io, Result};
use crate::history::History;
use crate::hostfs;
use crate::journal::{self, Entry, Journal, Op};
use crate::layout::{Layout, Meta};
use crate::objects::object_id;
use crate::tree::{MODE_EXEC, MODE_FILE, MODE_LINK, MODE_TREE, READ_WHOLE_LIMIT};

/// Ref of the last commit fully synced: later syncs compare against it, so
/// a file synced once and changed again is not a conflict with itself.
const SYNCED_REF: &str = "refs/cleanroom/synced";

/// Files written (as temp files, each kept open until synced) between two
/// rounds of syncs: as many as half the open-file limit allows, at most
/// this many. Each round waits for the journal twice (files, then their
/// directories), so fewer rounds are faster.
const WRITE_BATCH_MAX: usize = 1024;

fn write_batch() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1024) as usize;
    (limit / 2).clamp(64, WRITE_BATCH_MAX)
}

/// How to sync.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncOptions {
    /// Where both sides changed a path, the sandbox's version wins.
    pub force: bool,
    /// Plan and report, change nothing.
    pub dry_run: bool,
    /// Only these paths (relative to the project); empty for all.
    pub paths: Vec<PathBuf>,
}

/// What a sync does to one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Write,
    Symlink,
    Delete,
}

/// One change a sync makes (or, dry, would make).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Planned {
    pub path: String,
    pub action: Action,
    /// Set when this overwrites a change the user made (`--force`).
    pub overwrites_user_change: bool,
}

/// A path both sides changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub path: String,
    /// What the user did to it since `start`.
    pub host: String,
}

/// The outcome of a sync.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Done, or with `dry_run` to be done. Empty when conflicts stopped it.
    pub applied: Vec<Planned>,
    pub conflicts: Vec<Conflict>,
    /// Changes sync refuses to make, each with why.
    pub skipped: Vec<Skipped>,
    /// Paths whose host version already is the workspace's.
    pub already_in_sync: usize,
    pub dry_run: bool,
    /// Changes of an interrupted sync this one finished first.
    pub resumed: usize,
}

impl SyncReport {
    /// Whether the sync stopped on conflicts (nothing was applied).
    pub fn blocked(&self) -> bool {
        !self.conflicts.is_empty() && self.applied.is_empty()
    }
}

/// Syncs workspace `layout` into its project.
pub fn sync(layout: &Layout, meta: &Meta, options: &SyncOptions) -> Result<SyncReport> {
    let _lock = hostfs::lock(&layout.lock_file())?;
    let project = &meta.project;
    check_project(project)?;
    let history = History::open(&layout.history(), &layout.tree(), &layout.stat_cache())?;
    history.remove_stale_locks()?;
    let mut report = SyncReport {
        dry_run: options.dry_run,
        ..SyncReport::default()
    };
    if let Some(pending) = journal::read(&layout.journal())? {
        if options.dry_run {
            return Err(crate::error::input(
                format!("workspace `{}`", meta.name),
                "an interrupted sync is pending; run `cleanroom workspace sync` (without --dry-run) to finish it first",
            ));
        }
        report.resumed = resume(&history, project, &pending)?;
        journal::remove(&layout.journal())?;
    }

    let written = history.write_tree()?;
    report
        .skipped
        .extend(written.skipped.iter().map(|(p, r)| Skipped {
            path: p.to_string_lossy().into_owned(),
            reason: r.clone(),
        }));
    let base = history
        .repo()
        .refname_to_id(SYNCED_REF)
        .or_else(|_| history.base())?;
    let base_tree = history
        .repo()
        .find_commit(base)
        .and_then(|c| c.tree())
        .map_err(|e| git("reading the base tree", e))?;
    let diff = diff_trees(history.repo(), base, written.tree, &options.paths, false)?;

    let mut ops = Vec::new();
    for delta in diff.deltas() {
        let new = delta.new_file();
        let rel = new
            .path()
            .or_else(|| delta.old_file().path())
            .expect("a tree diff names its paths")
            .to_path_buf();
        let shown = rel.to_string_lossy().into_owned();
        let after = if delta.status() == Delta::Deleted {
            Entry::Absent
        } else {
            entry_of_mode(i32::from(new.mode()), new.id())
        };
        if let Some(reason) = hostfs::unsafe_reason(project, &rel) {
            report.skipped.push(Skipped {
                path: shown,
                reason,
            });
            continue;
        }
        if let Entry::Link { oid } = &after {
            let target = history.blob(parse_oid(oid)?)?;
            let target = Path::new(std::ffi::OsStr::from_bytes(&target));
            if !hostfs::symlink_stays_inside(&rel, target) {
                report.skipped.push(Skipped {
                    path: shown,
                    reason: format!(
                        "symlink to `{}` points outside the project; sync never makes one",
                        target.display()
                    ),
                });
                continue;
            }
        }
        let base_entry = match base_tree.get_path(&rel) {
            Ok(e) => entry_of_mode(e.filemode(), e.id()),
            Err(_) => Entry::Absent,
        };
        let host = host_entry(project, &rel)?;
        if host == after {
            report.already_in_sync += 1;
            continue;
        }
        let user_changed = host != base_entry;
        if user_changed {
            report.conflicts.push(Conflict {
                path: shown.clone(),
                host: describe_host_change(&base_entry, &host),
            });
        }
        ops.push((
            Op {
                path: rel,
                before: host,
                after,
            },
            user_changed,
        ));
    }

    if !report.conflicts.is_empty() && !options.force {
        return Ok(report);
    }
    report.applied = ops
        .iter()
        .map(|(op, user_changed)| Planned {
            path: op.path.to_string_lossy().into_owned(),
            action: match op.after {
                Entry::Absent => Action::Delete,
                Entry::Link { .. } => Action::Symlink,
                _ => Action::Write,
            },
            overwrites_user_change: *user_changed,
        })
        .collect();
    if options.dry_run {
        return Ok(report);
    }

    // Keep every version the user had that this overwrites.
    for (op, user_changed) in &ops {
        if *user_changed {
            if let Entry::File { .. } = op.before {
                history
                    .repo()
                    .blob_path(&project.join(&op.path))
                    .map_err(|e| git(format!("keeping the host's {}", op.path.display()), e))?;
            }
        }
    }
    let journal = Journal {
        version: journal::VERSION,
        ops: ops.into_iter().map(|(op, _)| op).collect(),
    };
    if !journal.ops.is_empty() {
        journal::write(&layout.journal(), &journal)?;
        apply(&history, project, &journal.ops, &written.tree)?;
        journal::remove(&layout.journal())?;
    }
    if options.paths.is_empty() {
        // The tree this sync applied, not a fresh walk: the sandbox may
        // have changed more since.
        let head = match history.commit_if_changed(written.tree, "sync")? {
            Some(id) => id,
            None => history.head()?,
        };
        history
            .repo()
            .reference(SYNCED_REF, head, true, "synced")
            .map_err(|e| git("recording the sync", e))?;
    }
    Ok(report)
}

/// The project must be a directory, not a symlink to one somewhere else.
fn check_project(project: &Path) -> Result<()> {
    match fs::symlink_metadata(project) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(crate::error::input(
            project.display().to_string(),
            "the project is no longer a directory (replaced by a file or symlink); nothing was synced",
        )),
        Err(e) => Err(io(format!("reading project {}", project.display()), e)),
    }
}

/// Finishes the changes of an interrupted sync: each path is either
/// already new (done), still old (applied now), or changed by someone else
/// since (an error: nothing more is done).
fn resume(history: &History, project: &Path, pending: &Journal) -> Result<usize> {
    let mut todo = Vec::new();
    for op in &pending.ops {
        let _ = fs::remove_file(hostfs::temp_for(&project.join(&op.path)));
        let host = host_entry(project, &op.path)?;
        if host == op.after {
            continue;
        }
        if host != op.before {
            return Err(crate::error::input(
                project.join(&op.path).display().to_string(),
                "changed since an interrupted sync planned it; nothing more was synced. Check the file, then remove the journal (`sync.journal` in the workspace directory) and sync again",
            ));
        }
        todo.push(op.clone());
    }
    let head_tree = history
        .repo()
        .find_commit(history.head()?)
        .and_then(|c| c.tree())
        .map_err(|e| git("reading the newest tree", e))?
        .id();
    apply(history, project, &todo, &head_tree)?;
    Ok(todo.len())
}

/// Makes `ops` on the host: deletions first (then directories they leave
/// empty that the workspace no longer has), then writes.
fn apply(history: &History, project: &Path, ops: &[Op], now_tree: &Oid) -> Result<()> {
    let now_tree = history
        .repo()
        .find_tree(*now_tree)
        .map_err(|e| git("reading the workspace tree", e))?;
    let mut emptied = std::collections::BTreeSet::new();
    for op in ops.iter().filter(|op| op.after == Entry::Absent) {
        let path = project.join(&op.path);
        emptied.insert(path.parent().map(Path::to_path_buf));
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => fs::remove_dir(&path)
                .map_err(|e| io(format!("removing directory {}", path.display()), e))?,
            Ok(_) => {
                fs::remove_file(&path).map_err(|e| io(format!("removing {}", path.display()), e))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("reading {}", path.display()), e)),
        }
        // Directories the deletion emptied, when the workspace has none there.
        let mut dir = op.path.parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            if now_tree.get_path(d).is_ok() || fs::remove_dir(project.join(d)).is_err() {
                break;
            }
            dir = d.parent();
        }
    }
    sync_dirs(emptied.into_iter().flatten());
    // Writes in batches: every temp file of a batch is written, then all
    // synced together (see `sync_all_at_once`), then each renamed over its
    // target, then their directories synced together. A kill leaves whole old files, whole new ones,
    // and temp files the next sync removes.
    let writes: Vec<&Op> = ops.iter().filter(|op| op.after != Entry::Absent).collect();
    for batch in writes.chunks(write_batch()) {
        let mut renames = Vec::with_capacity(batch.len());
        let mut written = Vec::with_capacity(batch.len());
        for op in batch {
            let path = project.join(&op.path);
            hostfs::create_parents(project, &op.path)?;
            if let Ok(m) = fs::symlink_metadata(&path) {
                if m.is_dir() {
                    // The workspace has a file where the host has a
                    // directory whose files this sync deleted.
                    fs::remove_dir(&path).map_err(|e| {
                        io(
                            format!("replacing directory {} (not empty)", path.display()),
                            e,
                        )
                    })?;
                }
            }
            let tmp = match &op.after {
                Entry::File { oid, exec } => {
                    let bytes = history.blob(parse_oid(oid)?)?;
                    let (tmp, file) =
                        hostfs::write_temp_file(&path, &bytes, file_mode(&path, *exec))?;
                    written.push(file);
                    tmp
                }
                Entry::Link { oid } => {
                    let target = history.blob(parse_oid(oid)?)?;
                    hostfs::write_temp_symlink(
                        &path,
                        Path::new(std::ffi::OsStr::from_bytes(&target)),
                    )?
                }
                Entry::Absent | Entry::Dir | Entry::Special => continue,
            };
            renames.push((tmp, path));
        }
        sync_all_at_once(&written)?;
        let mut dirs = std::collections::BTreeSet::new();
        for (tmp, path) in &renames {
            hostfs::rename_into(tmp, path)?;
            dirs.insert(path.parent().map(Path::to_path_buf));
        }
        sync_dirs(dirs.into_iter().flatten());
    }
    Ok(())
}

/// Threads syncing a batch's files together.
const SYNC_THREADS: usize = 16;

/// Makes every file in `files` durable, many at a time: a file system
/// with a journal (ext4, xfs) commits the waiting syncs together, where
/// one after the other each waits for a commit of its own.
fn sync_all_at_once(files: &[fs::File]) -> Result<()> {
    let per_thread = files.len().div_ceil(SYNC_THREADS).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(per_thread)
            .map(|chunk| scope.spawn(move || chunk.iter().try_for_each(fs::File::sync_all)))
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("a sync thread does not panic"))
    })
    .map_err(|e| io("syncing a file written by sync", e))
}

/// Makes the renames and unlinks in `dirs` durable, all at once. Best
/// effort, as [`hostfs::sync_dir`]: on a file system without directory
/// fsync the renames were still atomic.
fn sync_dirs(dirs: impl Iterator<Item = PathBuf>) {
    let open: Vec<fs::File> = dirs.filter_map(|d| fs::File::open(d).ok()).collect();
    let _ = sync_all_at_once(&open);
}

fn parse_oid(oid: &str) -> Result<Oid> {
    Oid::from_str(oid).map_err(|e| git("reading a blob id", e))
}

/// The permission bits a synced file gets: the host file's own (the user's
/// umask and group bits kept) with the executable bits set or cleared as
/// the workspace has them; 0644 or 0755 for a new file.
fn file_mode(path: &Path, exec: bool) -> u32 {
    let current = fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.mode() & 0o7777);
    match (current, exec) {
        (Some(m), true) => m | ((m & 0o444) >> 2) | 0o100,
        (Some(m), false) => m & !0o111,
        (None, true) => 0o755,
        (None, false) => 0o644,
    }
}

fn entry_of_mode(mode: i32, oid: Oid) -> Entry {
    match mode {
        MODE_LINK => Entry::Link {
            oid: oid.to_string(),
        },
        MODE_TREE => Entry::Dir,
        MODE_EXEC | MODE_FILE => Entry::File {
            oid: oid.to_string(),
            exec: is_exec(mode),
        },
        _ => Entry::Special,
    }
}

/// What the host has at `rel`, hashed as git would.
fn host_entry(project: &Path, rel: &Path) -> Result<Entry> {
    let path = project.join(rel);
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Entry::Absent),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => return Ok(Entry::Absent),
        Err(e) => return Err(io(format!("reading {}", path.display()), e)),
    };
    let kind = meta.file_type();
    Ok(if kind.is_symlink() {
        let target =
            fs::read_link(&path).map_err(|e| io(format!("reading link {}", path.display()), e))?;
        let oid = object_id(ObjectType::Blob, target.as_os_str().as_bytes());
        Entry::Link {
            oid: oid.to_string(),
        }
    } else if kind.is_file() {
        let oid = if meta.len() > READ_WHOLE_LIMIT {
            // Streamed by libgit2 rather than held in memory.
            Oid::hash_file(ObjectType::Blob, &path)
                .map_err(|e| git(format!("hashing {}", path.display()), e))?
        } else {
            let bytes =
                fs::read(&path).map_err(|e| io(format!("reading {}", path.display()), e))?;
            object_id(ObjectType::Blob, &bytes)
        };
        Entry::File {
            oid: oid.to_string(),
            exec: meta.permissions().mode() & 0o100 != 0,
        }
    } else if kind.is_dir() {
        Entry::Dir
    } else {
        Entry::Special
    })
}

fn describe_host_change(base: &Entry, host: &Entry) -> String {
    match (base, host) {
        (Entry::Absent, _) => "created on the host since start".into(),
        (_, Entry::Absent) => "deleted on the host since start".into(),
        (Entry::File { oid: a, .. }, Entry::File { oid: b, .. }) if a == b => {
            "executable bit changed on the host since start".into()
        }
        _ => "changed on the host since start".into(),
    }
}
