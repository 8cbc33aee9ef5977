//! Copies in and out of a VM's sandbox travel as a tar of one entry (a
//! file or a directory tree), packed on one side and unpacked into a fresh
//! directory on the other.

use std::io;
use std::path::{Path, PathBuf};

/// The name the one entry travels under.
const ENTRY: &str = "entry";

/// A tar holding `path` (a file, or a directory with everything under it).
pub fn pack(path: &Path) -> io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        b.append_dir_all(ENTRY, path)?;
    } else {
        b.append_path_with_name(path, ENTRY)?;
    }
    b.into_inner()
}

/// Unpacks a tar from [`pack`] into `dir` (which must exist) and returns
/// the path of its entry.
pub fn unpack(bytes: &[u8], dir: &Path) -> io::Result<PathBuf> {
    let mut a = tar::Archive::new(bytes);
    a.set_preserve_permissions(true);
    a.unpack(dir)?;
    let entry = dir.join(ENTRY);
    if std::fs::symlink_metadata(&entry).is_err() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the copy's tar held no entry",
        ));
    }
    Ok(entry)
}

/// Unpacks a tar from [`pack`] to `host` (beside it first, then renamed
/// into place).
pub fn place(tar: &[u8], host: &Path) -> cleanroom_core::Result<()> {
    use cleanroom_core::Error;
    let parent = match host.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let scratch = tempfile::Builder::new()
        .prefix(".cleanroom-vm-copy-")
        .tempdir_in(parent)
        .map_err(|e| Error::io(format!("making a scratch dir in {}", parent.display()), e))?;
    let entry = unpack(tar, scratch.path()).map_err(|e| Error::io("unpacking the copy", e))?;
    std::fs::rename(&entry, host)
        .map_err(|e| Error::io(format!("moving the copy to {}", host.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_and_files_round_trip() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir(src.path().join("d")).unwrap();
        std::fs::write(src.path().join("d/f"), b"\xff data").unwrap();
        let out = tempfile::tempdir().unwrap();
        let e = unpack(&pack(&src.path().join("d")).unwrap(), out.path()).unwrap();
        assert_eq!(std::fs::read(e.join("f")).unwrap(), b"\xff data");
        let out = tempfile::tempdir().unwrap();
        let e = unpack(&pack(&src.path().join("d/f")).unwrap(), out.path()).unwrap();
        assert_eq!(std::fs::read(e).unwrap(), b"\xff data");
    }
}
