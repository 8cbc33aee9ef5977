//! Copying a project into a workspace: every file but `.git` and what the
//! user excludes, with modes, modification times, symlinks (as symlinks)
//! and binaries as they are. Files are cloned (FICLONE, copy-on-write)
//! where the file system can, else copied in the kernel (copy_file_range),
//! so the host's later edits never show through. A root caller can give
//! the copy to the sandbox's user, for engines whose containers see host
//! ids as they are.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cleanroom::User;
use serde::Serialize;

use crate::error::{io, Result};
use crate::excludes::Excludes;

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

/// Copies `project` into `dest` (which must not exist yet), every copy
/// owned by `owner` when given (else by the caller).
pub fn snapshot(
    project: &Path,
    dest: &Path,
    excludes: &Excludes,
    owner: Option<User>,
) -> Result<SnapshotReport> {
    let mut copier = Copier {
        excludes,
        report: SnapshotReport::default(),
        clone_works: true,
        owner,
    };
    let meta =
        fs::metadata(project).map_err(|e| io(format!("reading {}", project.display()), e))?;
    fs::create_dir(dest).map_err(|e| io(format!("creating {}", dest.display()), e))?;
    copier.copy_dir(project, dest, Path::new(""))?;
    copier.chown(dest)?;
    fs::set_permissions(dest, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(|e| io(format!("setting the mode of {}", dest.display()), e))?;
    Ok(copier.report)
}

struct Copier<'a> {
    excludes: &'a Excludes,
    report: SnapshotReport,
    /// Cleared after the first clone the file system refuses.
    clone_works: bool,
    owner: Option<User>,
}

impl Copier<'_> {
    fn copy_dir(&mut self, src: &Path, dst: &Path, rel: &Path) -> Result<()> {
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
                self.chown(&to)?;
                self.report.symlinks += 1;
            } else if kind.is_dir() {
                fs::create_dir(&to).map_err(|e| io(format!("creating {}", to.display()), e))?;
                self.copy_dir(&from, &to, &rel_child)?;
                // After its contents: a read-only directory is still filled.
                self.chown(&to)?;
                fs::set_permissions(&to, fs::Permissions::from_mode(meta.mode() & 0o7777))
                    .map_err(|e| io(format!("setting the mode of {}", to.display()), e))?;
                self.report.dirs += 1;
            } else if kind.is_file() {
                self.copy_file(&from, &to, &meta)?;
                self.report.files += 1;
                self.report.bytes += meta.len();
            } else {
                self.report.skipped.push((
                    rel_child,
                    "not a file, directory or symlink (socket, fifo or device)".into(),
                ));
            }
        }
        Ok(())
    }

    fn copy_file(&mut self, from: &Path, to: &Path, meta: &fs::Metadata) -> Result<()> {
        let src = File::open(from).map_err(|e| io(format!("opening {}", from.display()), e))?;
        let mut dst = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(to)
            .map_err(|e| io(format!("creating {}", to.display()), e))?;
        let cloned = self.clone_works && rustix::fs::ioctl_ficlone(&dst, &src).is_ok();
        if cloned {
            self.report.cloned += 1;
        } else {
            self.clone_works = false;
            // std's File-to-File copy uses copy_file_range (the kernel moves
            // the bytes, sharing extents where the file system can).
            let mut src = src;
            std::io::copy(&mut src, &mut dst)
                .map_err(|e| io(format!("copying {} to {}", from.display(), to.display()), e))?;
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
        dst.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(|e| io(format!("setting the mode of {}", to.display()), e))?;
        if let Ok(mtime) = meta.modified() {
            // Build tools compare times; a copy that looks brand new would
            // make them redo everything.
            let _ = dst.set_times(fs::FileTimes::new().set_modified(mtime));
        }
        Ok(())
    }
}

impl Copier<'_> {
    /// Gives `path` (not what a symlink points at) to the owner, if any.
    fn chown(&self, path: &Path) -> Result<()> {
        let Some(owner) = self.owner else {
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
        let ex = Excludes::load(&p, &["*.log".into()]).unwrap();
        let r = snapshot(&p, &dest, &ex, None).unwrap();
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
    }
}
