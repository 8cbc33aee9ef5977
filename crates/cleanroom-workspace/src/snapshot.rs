//! Copying a project into a workspace: every file but `.git` and what the
//! user excludes, with modes, modification times, symlinks (as symlinks)
//! and binaries as they are, so the host's later edits never show through.
//!
//! Each file is read once: the same bytes are written to the copy, hashed
//! for git and packed into the shadow history (a pack per worker), and
//! the copy's stat data goes into the stat cache, so the first diff reads
//! nothing that did not change. Files are spread over the CPUs, each
//! worker writing its own pack. Where the file system can clone (FICLONE,
//! copy-on-write) the copy is cloned and read back for the hash instead.
//! A root caller can give the copy to the sandbox's user, for engines
//! whose containers see host ids as they are.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::SystemTime;

use cleanroom::User;
use git2::{ObjectType, Oid};
use serde::Serialize;

use crate::error::{io, Result};
use crate::excludes::Excludes;
use crate::objects::{object_id, PackWriter};
use crate::statcache::{Cached, StatCache};
use crate::tree::{file_mode, PathEntry, MODE_LINK, READ_WHOLE_LIMIT};

/// Files a worker takes at a time: neighbours in one directory stay with
/// one worker (creating files in one directory serialises on it).
const BATCH: usize = 32;

/// What a snapshot copied and what it left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SnapshotReport {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    /// Files cloned copy-on-write (the rest were copied).
    pub cloned: u64,
    /// Left out, each with why: excluded, `.git`, or a kind of file a
    /// workspace cannot hold (socket, fifo, device).
    pub skipped: Vec<(PathBuf, String)>,
}

/// A snapshot's copy, with what the shadow history needs to record it.
pub struct Snapshot {
    pub report: SnapshotReport,
    /// Every file and symlink copied, with its id (its blob is packed).
    pub(crate) entries: Vec<PathEntry>,
    /// The copies' stat data.
    pub(crate) cache: StatCache,
    /// Files too big to read whole: relative path and copy, for the
    /// history to store from the copy.
    pub(crate) big: Vec<(Vec<u8>, PathBuf, i32)>,
}

/// Copies `project` into `dest` (which must not exist yet), every copy
/// owned by `owner` when given (else by the caller), each file's blob
/// packed into the object directory `objects`.
pub fn snapshot(
    project: &Path,
    dest: &Path,
    excludes: &Excludes,
    owner: Option<User>,
    objects: &Path,
) -> Result<Snapshot> {
    let meta =
        fs::metadata(project).map_err(|e| io(format!("reading {}", project.display()), e))?;
    fs::create_dir(dest).map_err(|e| io(format!("creating {}", dest.display()), e))?;
    let mut plan = Plan {
        excludes,
        owner,
        report: SnapshotReport::default(),
        files: Vec::new(),
        dirs: Vec::new(),
        entries: Vec::new(),
        links: PackWriter::new(objects),
    };
    plan.walk(project, dest, Path::new(""))?;
    let Plan {
        mut report,
        files,
        dirs,
        mut entries,
        links,
        ..
    } = plan;
    links.finish()?;
    let copied = copy_files(&files, owner, objects)?;
    let mut cache = StatCache::default();
    let mut big = Vec::new();
    for (job, done) in files.iter().zip(copied.results) {
        report.files += 1;
        report.bytes += job.size;
        let mode = file_mode(job.mode);
        match done {
            Some((oid, cached)) => {
                cache.insert(String::from_utf8_lossy(&job.rel).into_owned(), cached);
                entries.push(PathEntry {
                    path: job.rel.clone(),
                    mode,
                    oid,
                });
            }
            None => big.push((job.rel.clone(), job.to.clone(), mode)),
        }
    }
    report.cloned = copied.cloned as u64;
    // After their contents: a read-only directory is still filled.
    for (dir, mode) in dirs.iter().rev() {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode & 0o7777))
            .map_err(|e| io(format!("setting the mode of {}", dir.display()), e))?;
    }
    chown(owner, dest)?;
    fs::set_permissions(dest, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(|e| io(format!("setting the mode of {}", dest.display()), e))?;
    Ok(Snapshot {
        report,
        entries,
        cache,
        big,
    })
}

/// One file to copy.
struct FileJob {
    from: PathBuf,
    to: PathBuf,
    /// Relative to the project, `/`-separated.
    rel: Vec<u8>,
    mode: u32,
    size: u64,
    mtime: Option<SystemTime>,
}

/// The walk: directories and symlinks made as it goes, files listed for
/// the workers.
struct Plan<'a> {
    excludes: &'a Excludes,
    owner: Option<User>,
    report: SnapshotReport,
    files: Vec<FileJob>,
    /// Each directory made and its mode, parents first.
    dirs: Vec<(PathBuf, u32)>,
    /// The symlinks' entries.
    entries: Vec<PathEntry>,
    /// The symlinks' targets.
    links: PackWriter,
}

impl Plan<'_> {
    fn walk(&mut self, src: &Path, dst: &Path, rel: &Path) -> Result<()> {
        let entries = fs::read_dir(src).map_err(|e| io(format!("listing {}", src.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io(format!("listing {}", src.display()), e))?;
            let name = entry.file_name();
            let rel_child = rel.join(&name);
            if name == ".git" {
                self.report
                    .skipped
                    .push((rel_child, "`.git` is never copied".into()));
                continue;
            }
            let from = entry.path();
            let to = dst.join(&name);
            let meta = fs::symlink_metadata(&from)
                .map_err(|e| io(format!("reading {}", from.display()), e))?;
            let kind = meta.file_type();
            if self.excludes.excluded(&rel_child, kind.is_dir()) {
                self.report.skipped.push((rel_child, "excluded".into()));
                continue;
            }
            if kind.is_symlink() {
                let target = fs::read_link(&from)
                    .map_err(|e| io(format!("reading link {}", from.display()), e))?;
                std::os::unix::fs::symlink(&target, &to)
                    .map_err(|e| io(format!("creating symlink {}", to.display()), e))?;
                chown(self.owner, &to)?;
                let bytes = target.as_os_str().as_bytes();
                let oid = object_id(ObjectType::Blob, bytes);
                self.links.add(ObjectType::Blob, oid, bytes)?;
                self.entries.push(PathEntry {
                    path: rel_child.as_os_str().as_bytes().to_vec(),
                    mode: MODE_LINK,
                    oid,
                });
                self.report.symlinks += 1;
            } else if kind.is_dir() {
                fs::create_dir(&to).map_err(|e| io(format!("creating {}", to.display()), e))?;
                chown(self.owner, &to)?;
                self.dirs.push((to.clone(), meta.mode()));
                self.walk(&from, &to, &rel_child)?;
                self.report.dirs += 1;
            } else if kind.is_file() {
                self.files.push(FileJob {
                    from,
                    to,
                    rel: rel_child.as_os_str().as_bytes().to_vec(),
                    mode: meta.mode(),
                    size: meta.len(),
                    mtime: meta.modified().ok(),
                });
            } else {
                self.report.skipped.push((
                    rel_child,
                    "not a file, directory or symlink (socket, fifo or device)".into(),
                ));
            }
        }
        Ok(())
    }
}

/// What the workers did: per file (in `files`' order) its id and the copy's
/// stat data, `None` for a file too big to read whole.
struct Copied {
    results: Vec<Option<(Oid, Cached)>>,
    cloned: usize,
}

/// A file's place in the list, and its id and stat data (`None`: too big).
type Done = (usize, Option<(Oid, Cached)>);

/// Copies `files` on every CPU, each worker packing its own blobs.
fn copy_files(files: &[FileJob], owner: Option<User>, objects: &Path) -> Result<Copied> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
        .min(files.len().div_ceil(BATCH).max(1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let clone_works = AtomicBool::new(true);
    let cloned = AtomicUsize::new(0);
    let done: Vec<Result<Vec<Done>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut worker = Worker {
                        owner,
                        buf: Vec::new(),
                        pack: PackWriter::new(objects),
                        clone_works: &clone_works,
                        cloned: &cloned,
                    };
                    let mut out = Vec::new();
                    while !failed.load(Ordering::Relaxed) {
                        let start = next.fetch_add(BATCH, Ordering::Relaxed);
                        if start >= files.len() {
                            break;
                        }
                        for (i, job) in files.iter().enumerate().skip(start).take(BATCH) {
                            match worker.copy(job) {
                                Ok(r) => out.push((i, r)),
                                Err(e) => {
                                    failed.store(true, Ordering::Relaxed);
                                    return Err(e);
                                }
                            }
                        }
                    }
                    worker.pack.finish()?;
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a copy worker does not panic"))
            .collect()
    });
    let mut results = vec![None; files.len()];
    for part in done {
        for (i, r) in part? {
            results[i] = r;
        }
    }
    Ok(Copied {
        results,
        cloned: cloned.into_inner(),
    })
}

struct Worker<'a> {
    owner: Option<User>,
    /// The file being copied, reused.
    buf: Vec<u8>,
    pack: PackWriter,
    /// Cleared after the first clone the file system refuses.
    clone_works: &'a AtomicBool,
    cloned: &'a AtomicUsize,
}

impl Worker<'_> {
    fn copy(&mut self, job: &FileJob) -> Result<Option<(Oid, Cached)>> {
        let (from, to) = (&job.from, &job.to);
        let mut src = OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(from)
            .map_err(|e| io(format!("opening {}", from.display()), e))?;
        let mut dst = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(to)
            .map_err(|e| io(format!("creating {}", to.display()), e))?;
        // Too big to hold whole: copied in the kernel, hashed later from the copy.
        let big = job.size > READ_WHOLE_LIMIT;
        self.buf.clear();
        if self.clone_works.load(Ordering::Relaxed) && rustix::fs::ioctl_ficlone(&dst, &src).is_ok()
        {
            // The hash is of the copy, read back: the project's file may
            // change meanwhile, the copy does not.
            self.cloned.fetch_add(1, Ordering::Relaxed);
            if !big {
                dst.read_to_end(&mut self.buf)
                    .map_err(|e| io(format!("reading {}", to.display()), e))?;
            }
        } else {
            self.clone_works.store(false, Ordering::Relaxed);
            if big {
                // std's File-to-File copy uses copy_file_range.
                std::io::copy(&mut src, &mut dst).map_err(|e| {
                    io(format!("copying {} to {}", from.display(), to.display()), e)
                })?;
            } else {
                read_all(&mut src, job.size as usize, &mut self.buf)
                    .map_err(|e| io(format!("reading {}", from.display()), e))?;
                dst.write_all(&self.buf)
                    .map_err(|e| io(format!("writing {}", to.display()), e))?;
            }
        }
        if let Some(owner) = self.owner {
            // Before the mode: a chown clears set-id bits.
            rustix::fs::fchown(
                &dst,
                Some(rustix::fs::Uid::from_raw(owner.uid)),
                Some(rustix::fs::Gid::from_raw(owner.gid)),
            )
            .map_err(|e| io(format!("giving {} to {owner}", to.display()), e.into()))?;
        }
        dst.set_permissions(fs::Permissions::from_mode(job.mode & 0o7777))
            .map_err(|e| io(format!("setting the mode of {}", to.display()), e))?;
        if let Some(mtime) = job.mtime {
            // Build tools compare times; a copy that looks brand new would
            // make them redo everything.
            let _ = dst.set_times(fs::FileTimes::new().set_modified(mtime));
        }
        if big {
            return Ok(None);
        }
        let meta = dst
            .metadata()
            .map_err(|e| io(format!("reading {}", to.display()), e))?;
        let oid = object_id(ObjectType::Blob, &self.buf);
        self.pack.add(ObjectType::Blob, oid, &self.buf)?;
        Ok(Some((oid, Cached::new(&meta, oid))))
    }
}

/// Reads all of `file` into `buf`, expecting `size` bytes: one read of
/// that much (and one that finds the end), where `read_to_end` would
/// first ask the kernel for the size and position again.
fn read_all(file: &mut File, size: usize, buf: &mut Vec<u8>) -> std::io::Result<()> {
    // One byte more than expected, to notice a file that grew.
    buf.resize(size + 1, 0);
    let mut got = 0;
    loop {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if got == buf.len() {
            buf.truncate(got);
            file.read_to_end(buf)?;
            return Ok(());
        }
    }
    buf.truncate(got);
    Ok(())
}

/// Gives `path` (not what a symlink points at) to `owner`, if any.
fn chown(owner: Option<User>, path: &Path) -> Result<()> {
    let Some(owner) = owner else {
        return Ok(());
    };
    rustix::fs::chownat(
        rustix::fs::CWD,
        path,
        Some(rustix::fs::Uid::from_raw(owner.uid)),
        Some(rustix::fs::Gid::from_raw(owner.gid)),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| io(format!("giving {} to {owner}", path.display()), e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_everything_but_git_with_modes_and_links() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("p");
        fs::create_dir_all(p.join(".git/hooks")).unwrap();
        fs::write(p.join(".git/HEAD"), "ref").unwrap();
        fs::create_dir_all(p.join("a/b")).unwrap();
        fs::write(p.join("a/b/deep.txt"), "deep").unwrap();
        fs::write(p.join("bin.dat"), [0u8, 1, 2, 255]).unwrap();
        fs::write(p.join("run.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(p.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("a/b/deep.txt", p.join("link")).unwrap();
        fs::write(p.join("skip.log"), "x").unwrap();
        let dest = tmp.path().join("w");
        let repo = git2::Repository::init_bare(tmp.path().join("h.git")).unwrap();
        let ex = Excludes::load(&p, &["*.log".into()]).unwrap();
        let s = snapshot(&p, &dest, &ex, None, &repo.path().join("objects")).unwrap();
        let r = &s.report;
        assert!(!dest.join(".git").exists());
        assert_eq!(fs::read(dest.join("a/b/deep.txt")).unwrap(), b"deep");
        assert_eq!(fs::read(dest.join("bin.dat")).unwrap(), [0u8, 1, 2, 255]);
        assert_eq!(
            fs::metadata(dest.join("run.sh")).unwrap().mode() & 0o777,
            0o755
        );
        assert_eq!(
            fs::read_link(dest.join("link")).unwrap(),
            Path::new("a/b/deep.txt")
        );
        assert!(!dest.join("skip.log").exists());
        assert_eq!((r.files, r.symlinks, r.dirs), (3, 1, 2));
        assert!(r
            .skipped
            .iter()
            .any(|(p, why)| p == Path::new(".git") && why.contains(".git")));
        assert!(r
            .skipped
            .iter()
            .any(|(p, why)| p == Path::new("skip.log") && why == "excluded"));
        let m_src = fs::metadata(p.join("bin.dat")).unwrap().modified().unwrap();
        let m_dst = fs::metadata(dest.join("bin.dat"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(m_src, m_dst);
        // Every blob is in the history, with the copy's content.
        let odb = repo.odb().unwrap();
        odb.refresh().unwrap();
        for e in &s.entries {
            let blob = odb.read(e.oid).unwrap();
            let rel = Path::new(std::ffi::OsStr::from_bytes(&e.path));
            let expected = if e.mode == MODE_LINK {
                fs::read_link(dest.join(rel))
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec()
            } else {
                fs::read(dest.join(rel)).unwrap()
            };
            assert_eq!(blob.data(), &expected[..], "{}", rel.display());
        }
        assert_eq!(s.entries.len(), 4);
    }
}
