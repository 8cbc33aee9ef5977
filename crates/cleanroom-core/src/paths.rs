//! Where cleanroom keeps files between runs, and removing them again.

use std::path::{Path, PathBuf};

/// A cache directory for `what`: `$CLEANROOM_HOME/cache/<what>`, else
/// `$XDG_CACHE_HOME/cleanroom/<what>`, else `~/.cache/cleanroom/<what>`
/// (the system temporary directory when no home is known). Not created.
pub fn cache_dir(what: &str) -> PathBuf {
    let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(h) = set("CLEANROOM_HOME") {
        return PathBuf::from(h).join("cache").join(what);
    }
    let base = set("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| set("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("cleanroom").join(what)
}

/// A stable file name for a cache entry keyed by `key`: its FNV-1a hash
/// ([`crate::hash::fnv1a`]) as 16 hex digits.
pub fn cache_key(key: &[u8]) -> String {
    format!("{:016x}", crate::hash::fnv1a(key))
}

/// Removes a file, symlink or whole tree. A tree unpacked without root may
/// hold directories without write permission; those are made writable and
/// the removal retried. A missing `path` is already removed.
pub fn remove_all(path: &Path) -> std::io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return std::fs::remove_file(path);
    }
    if std::fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    make_writable(path);
    std::fs::remove_dir_all(path)
}

fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(m) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !m.is_dir() {
        return;
    }
    let mode = m.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(list) = std::fs::read_dir(dir) {
        for e in list.flatten() {
            make_writable(&e.path());
        }
    }
}

/// Writes `dir/name` atomically, readable only by its owner: a temporary
/// file beside it, synced, then renamed over it, so a reader (or a crash)
/// sees the old content or the new, never half of it.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    std::fs::rename(&tmp, dir.join(name))
}
