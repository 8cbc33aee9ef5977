//! What changed in a workspace since its base: a [`ChangeSummary`] (the
//! `--json` of `workspace diff`), a `--stat` view and a unified diff.
//! Binary files are listed with their sizes, never dropped.

use std::fmt::Write as _;
use std::path::PathBuf;

use git2::{Delta, Diff, DiffFindOptions, DiffFormat, DiffOptions, Oid, Repository};
use serde::Serialize;

use crate::error::{git, Result};
use crate::history::History;
use crate::tree::{MODE_EXEC, MODE_LINK};

/// How one path changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
    Renamed,
    /// Same content, executable bit flipped.
    ModeChanged,
    /// A file became a symlink or the other way round.
    TypeChanged,
}

/// One changed path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileChange {
    pub path: String,
    /// The path before, for a rename.
    pub old_path: Option<String>,
    pub status: ChangeKind,
    /// Git's mode before (`100644`, `100755`, `120000` for a symlink);
    /// `None` when added.
    pub old_mode: Option<String>,
    /// `None` when deleted.
    pub new_mode: Option<String>,
    /// Whether either side is a symlink.
    pub symlink: bool,
    pub binary: bool,
    /// Bytes before and after (a symlink's are its target's length).
    pub old_size: Option<u64>,
    pub new_size: Option<u64>,
    /// Text lines added and removed; 0 for binary files.
    pub lines_added: usize,
    pub lines_removed: usize,
}

/// A path the history could not hold, and why (it is never synced either).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// Everything that changed from one commit (the base) to the workspace now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ChangeSummary {
    /// The commit compared against.
    pub base: String,
    pub files: Vec<FileChange>,
    pub lines_added: usize,
    pub lines_removed: usize,
    pub skipped: Vec<Skipped>,
}

impl ChangeSummary {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// `git diff --stat`-style lines and a total.
    pub fn stat(&self) -> String {
        let width = self
            .files
            .iter()
            .map(|f| display_path(f).len())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for f in &self.files {
            let what = if f.binary {
                format!(
                    "Bin {} -> {} bytes",
                    f.old_size.unwrap_or(0),
                    f.new_size.unwrap_or(0)
                )
            } else {
                let n = f.lines_added + f.lines_removed;
                let plus = "+".repeat(f.lines_added.min(40));
                let minus = "-".repeat(f.lines_removed.min(40));
                format!("{n:>5} {plus}{minus}")
            };
            let note = match f.status {
                ChangeKind::Added => " (new)",
                ChangeKind::Deleted => " (gone)",
                ChangeKind::ModeChanged => " (mode)",
                ChangeKind::TypeChanged => " (type)",
                ChangeKind::Renamed | ChangeKind::Modified => "",
            };
            let link = if f.symlink { " (symlink)" } else { "" };
            let _ = writeln!(out, " {:<width$} | {what}{note}{link}", display_path(f));
        }
        let _ = writeln!(
            out,
            " {} file(s) changed, {} insertion(s)(+), {} deletion(s)(-)",
            self.files.len(),
            self.lines_added,
            self.lines_removed
        );
        for s in &self.skipped {
            let _ = writeln!(out, " skipped {}: {}", s.path, s.reason);
        }
        out
    }
}

fn display_path(f: &FileChange) -> String {
    match &f.old_path {
        Some(old) => format!("{old} => {}", f.path),
        None => f.path.clone(),
    }
}

/// The change from commit `from` to the workspace now, limited to
/// `paths` (relative to the project; empty for all), with the unified
/// diff when `patch` is asked for.
pub fn changes(
    history: &History,
    from: Oid,
    paths: &[PathBuf],
    patch: bool,
) -> Result<(ChangeSummary, Option<Vec<u8>>)> {
    let written = history.write_tree()?;
    let repo = history.repo();
    let diff = diff_trees(repo, from, written.tree, paths, true)?;
    let mut summary = summarise(repo, &diff)?;
    summary.base = from.to_string();
    summary.skipped = written
        .skipped
        .into_iter()
        .map(|(path, reason)| Skipped {
            path: path.to_string_lossy().into_owned(),
            reason,
        })
        .collect();
    let text = if patch { Some(unified(&diff)?) } else { None };
    Ok((summary, text))
}

/// The diff between commit `from`'s tree and tree `to`, renames found
/// when `renames` (sync wants plain adds and deletes).
pub(crate) fn diff_trees<'r>(
    repo: &'r Repository,
    from: Oid,
    to: Oid,
    paths: &[PathBuf],
    renames: bool,
) -> Result<Diff<'r>> {
    let old = repo
        .find_commit(from)
        .and_then(|c| c.tree())
        .map_err(|e| git("reading the base tree", e))?;
    let new = repo
        .find_tree(to)
        .map_err(|e| git("reading the workspace tree", e))?;
    let mut opts = DiffOptions::new();
    opts.include_typechange(true);
    for p in paths {
        opts.pathspec(p);
    }
    let mut diff = repo
        .diff_tree_to_tree(Some(&old), Some(&new), Some(&mut opts))
        .map_err(|e| git("comparing trees", e))?;
    if renames {
        diff.find_similar(Some(DiffFindOptions::new().renames(true)))
            .map_err(|e| git("finding renames", e))?;
    }
    Ok(diff)
}

fn summarise(repo: &Repository, diff: &Diff<'_>) -> Result<ChangeSummary> {
    let odb = repo.odb().map_err(|e| git("opening the object store", e))?;
    let size = |oid: Oid| -> Option<u64> {
        (!oid.is_zero())
            .then(|| odb.read_header(oid).ok().map(|(n, _)| n as u64))
            .flatten()
    };
    let mut summary = ChangeSummary::default();
    for idx in 0..diff.deltas().len() {
        let patch = git2::Patch::from_diff(diff, idx).map_err(|e| git("computing a patch", e))?;
        let delta = diff.get_delta(idx).expect("index within deltas");
        let (binary, added, removed) = match &patch {
            Some(p) if !p.delta().flags().is_binary() => {
                let (_, a, r) = p.line_stats().map_err(|e| git("counting lines", e))?;
                (false, a, r)
            }
            _ => (true, 0, 0),
        };
        let (old, new) = (delta.old_file(), delta.new_file());
        let mode = |m: git2::FileMode| format!("{:o}", i32::from(m));
        let status = match delta.status() {
            Delta::Added | Delta::Copied | Delta::Untracked => ChangeKind::Added,
            Delta::Deleted => ChangeKind::Deleted,
            Delta::Renamed => ChangeKind::Renamed,
            Delta::Typechange => ChangeKind::TypeChanged,
            _ if old.id() == new.id() => ChangeKind::ModeChanged,
            _ => ChangeKind::Modified,
        };
        let exists_old = status != ChangeKind::Added;
        let exists_new = status != ChangeKind::Deleted;
        let path = |f: &git2::DiffFile<'_>| {
            f.path()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        summary.lines_added += added;
        summary.lines_removed += removed;
        summary.files.push(FileChange {
            path: path(if exists_new { &new } else { &old }),
            old_path: (status == ChangeKind::Renamed).then(|| path(&old)),
            status,
            old_mode: exists_old.then(|| mode(old.mode())),
            new_mode: exists_new.then(|| mode(new.mode())),
            symlink: i32::from(old.mode()) == MODE_LINK || i32::from(new.mode()) == MODE_LINK,
            binary: binary && i32::from(new.mode()) != MODE_LINK,
            old_size: exists_old.then(|| size(old.id())).flatten(),
            new_size: exists_new.then(|| size(new.id())).flatten(),
            lines_added: added,
            lines_removed: removed,
        });
    }
    Ok(summary)
}

/// The unified diff, as `git diff` prints it (binary files as a line
/// saying they differ).
fn unified(diff: &Diff<'_>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    diff.print(DiffFormat::Patch, |_, _, line| {
        if matches!(line.origin(), '+' | '-' | ' ') {
            out.push(line.origin() as u8);
        }
        out.extend_from_slice(line.content());
        true
    })
    .map_err(|e| git("printing the diff", e))?;
    Ok(out)
}

/// Whether git mode `mode` is executable.
pub(crate) fn is_exec(mode: i32) -> bool {
    mode == MODE_EXEC
}
