//! Writing to the host without surprises: every file lands whole (temp file
//! in the same directory, fsync, rename), and nothing is written through a
//! symlink or outside the directory it is meant for.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::error::{io, Result};

/// The temporary name a file gets while it is written next to `target`:
/// fixed, so that a sync killed half-way can find and remove it.
pub(crate) fn temp_for(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.cleanroom-tmp"))
}

/// Replaces `path` with `bytes`, atomically and durably.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file_atomic(path, bytes, 0o600)
}

/// Replaces `path` with a regular file holding `bytes` with permission
/// bits `mode`: written to a temp file beside it, synced, then renamed over
/// it, so a reader (or a crash) sees the old file or the new one.
pub(crate) fn write_file_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let (tmp, file) = write_temp_file(path, bytes, mode)?;
    file.sync_all()
        .map_err(|e| io(format!("syncing {}", tmp.display()), e))?;
    rename_into(&tmp, path)?;
    sync_parent(path);
    Ok(())
}

/// Writes the temp file that will replace `path` (see [`temp_for`]), not
/// yet synced: a caller replacing many files writes them all, then syncs
/// each (the kernel has written most back by then), then renames them.
pub(crate) fn write_temp_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(PathBuf, File)> {
    let tmp = temp_for(path);
    let ctx = |what: &str| format!("{what} {}", tmp.display());
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&tmp)
        .map_err(|e| io(ctx("creating"), e))?;
    file.write_all(bytes).map_err(|e| io(ctx("writing"), e))?;
    if let Some((uid, gid)) = owner_for(path) {
        rustix::fs::fchown(&file, Some(uid), Some(gid))
            .map_err(|e| io(ctx("giving the owner of the file it replaces to"), e.into()))?;
    }
    // The umask may have cut `mode` (and a chown cleared set-id bits);
    // the project's file gets exactly it.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| io(ctx("setting the mode of"), e))?;
    Ok((tmp, file))
}

/// Makes the symlink that will replace `path`, pointing at `target`.
pub(crate) fn write_temp_symlink(path: &Path, target: &Path) -> Result<PathBuf> {
    let tmp = temp_for(path);
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .map_err(|e| io(format!("creating symlink {}", tmp.display()), e))?;
    if let Some((uid, gid)) = owner_for(path) {
        chown_nofollow(&tmp, uid, gid)?;
    }
    Ok(tmp)
}

/// Whom a file sync writes at `path` must belong to, when the caller is
/// root (anyone else's files are their own already): the owner of what it
/// replaces, else of the directory it lands in, so that syncing as root
/// never hands the user's project to root.
fn owner_for(path: &Path) -> Option<(rustix::fs::Uid, rustix::fs::Gid)> {
    use std::os::unix::fs::MetadataExt;
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let meta = fs::symlink_metadata(path)
        .ok()
        .filter(|m| !m.is_dir())
        .or_else(|| fs::symlink_metadata(path.parent()?).ok())?;
    Some((
        rustix::fs::Uid::from_raw(meta.uid()),
        rustix::fs::Gid::from_raw(meta.gid()),
    ))
}

fn chown_nofollow(path: &Path, uid: rustix::fs::Uid, gid: rustix::fs::Gid) -> Result<()> {
    rustix::fs::chownat(
        rustix::fs::CWD,
        path,
        Some(uid),
        Some(gid),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| io(format!("giving {} its owner", path.display()), e.into()))
}

/// Renames the temp file `tmp` over `path`: the atomic step.
pub(crate) fn rename_into(tmp: &Path, path: &Path) -> Result<()> {
    fs::rename(tmp, path).map_err(|e| {
        io(
            format!("renaming {} over {}", tmp.display(), path.display()),
            e,
        )
    })
}

/// Makes a rename or unlink in `path`'s directory durable.
pub(crate) fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        sync_dir(parent);
    }
}

/// Makes renames and unlinks in `dir` durable. Best effort: on a file
/// system without directory fsync the renames were still atomic.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

/// Why `rel` cannot be written under `root`, if it cannot: a component
/// that is `.git`, `..` or absolute, or an existing ancestor that is a
/// symlink or not a directory (writing there would land outside `root`, or
/// replace the user's file). Missing ancestors are fine: sync creates them.
pub(crate) fn unsafe_reason(root: &Path, rel: &Path) -> Option<String> {
    let parts: Vec<Component> = rel.components().collect();
    for part in &parts {
        let Component::Normal(name) = part else {
            return Some(format!("`{}` is not a plain relative path", rel.display()));
        };
        if *name == ".git" {
            return Some("inside a `.git` directory, which sync never writes".into());
        }
    }
    let mut here = root.to_path_buf();
    for part in parts.iter().take(parts.len().saturating_sub(1)) {
        here.push(part);
        match fs::symlink_metadata(&here) {
            Ok(m) if m.file_type().is_symlink() => {
                return Some(format!(
                    "its parent `{}` is a symlink on the host; sync never writes through one",
                    here.strip_prefix(root).unwrap_or(&here).display()
                ))
            }
            Ok(m) if !m.is_dir() => {
                return Some(format!(
                    "its parent `{}` is a file on the host, not a directory",
                    here.strip_prefix(root).unwrap_or(&here).display()
                ))
            }
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// Whether symlink `link` (relative to `root`) pointing at `target` stays
/// inside `root` when followed: relative, and never climbing above it.
pub(crate) fn symlink_stays_inside(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = link.components().count() as i64 - 1;
    for part in target.components() {
        match part {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// Creates the missing directories of `rel`'s parent under `root` (0755,
/// as a new directory in the sandbox would be), refusing symlinks.
pub(crate) fn create_parents(root: &Path, rel: &Path) -> Result<()> {
    let mut here = root.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    for part in parent.components() {
        here.push(part);
        match fs::symlink_metadata(&here) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => {
                return Err(io(
                    format!("creating directory {}", here.display()),
                    std::io::Error::other("a file or symlink is in the way"),
                ))
            }
            Err(_) => {
                fs::create_dir(&here)
                    .map_err(|e| io(format!("creating directory {}", here.display()), e))?;
                if let Some((uid, gid)) = owner_for(&here) {
                    chown_nofollow(&here, uid, gid)?;
                }
            }
        }
    }
    Ok(())
}

/// An exclusive lock on `path` (created), held until the file is dropped.
pub(crate) fn lock(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io(format!("opening lock {}", path.display()), e))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io(format!("locking {}", path.display()), e.into()))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_that_climb_out_are_caught() {
        let p = Path::new;
        assert!(symlink_stays_inside(p("a/x"), p("y")));
        assert!(symlink_stays_inside(p("a/x"), p("../y")));
        assert!(!symlink_stays_inside(p("a/x"), p("../../y")));
        assert!(!symlink_stays_inside(p("x"), p("/etc/passwd")));
        assert!(!symlink_stays_inside(p("x"), p("a/../../y")));
        assert!(symlink_stays_inside(p("x"), p("a/../y")));
    }

    #[test]
    fn paths_through_symlinks_or_git_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir(root.join("d")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        fs::write(root.join("f"), "x").unwrap();
        assert_eq!(unsafe_reason(root, Path::new("d/new/file")), None);
        assert!(unsafe_reason(root, Path::new("link/passwd"))
            .unwrap()
            .contains("symlink"));
        assert!(unsafe_reason(root, Path::new("f/x"))
            .unwrap()
            .contains("is a file"));
        assert!(unsafe_reason(root, Path::new(".git/hooks/post-commit"))
            .unwrap()
            .contains(".git"));
        assert!(unsafe_reason(root, Path::new("sub/.git/config"))
            .unwrap()
            .contains(".git"));
        assert!(unsafe_reason(root, Path::new("../x")).is_some());
    }

    #[test]
    fn atomic_write_leaves_no_temp_and_sets_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("f");
        fs::write(&f, "old").unwrap();
        write_file_atomic(&f, b"new", 0o755).unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert!(!temp_for(&f).exists());
    }
}
