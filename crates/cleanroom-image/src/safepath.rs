//! Paths from untrusted archives, confined to a target directory: no `..`,
//! no absolute paths, and no parent that is a symlink (so nothing written
//! below the target can land outside it).

use std::fs;
use std::path::{Path, PathBuf};

use cleanroom_core::{Error, Result};

/// An archive path checked to be relative and free of `..`: its normal
/// components, in order. Empty for the archive root (`./`).
pub(crate) fn clean(raw: &[u8], what: &str) -> Result<Vec<String>> {
    let s = String::from_utf8_lossy(raw);
    if s.starts_with('/') {
        return Err(unsafe_entry(what, &s, "is an absolute path"));
    }
    let mut out = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(unsafe_entry(what, &s, "contains a `..` component")),
            c => out.push(c.to_owned()),
        }
    }
    Ok(out)
}

pub(crate) fn unsafe_entry(what: &str, path: &str, why: &str) -> Error {
    Error::Image {
        reference: what.to_owned(),
        message: format!(
            "refusing to unpack entry `{path}`: it {why}, which could write outside the image; \
             the archive is malicious or broken, do not use it"
        ),
    }
}

/// Finds `parts` below `root` without following any symlink on the way
/// (the last component itself may be anything). `None` if a parent is
/// missing, a symlink or not a directory.
pub(crate) fn lookup(root: &Path, parts: &[String]) -> Option<PathBuf> {
    let mut cur = root.to_path_buf();
    let (last, parents) = parts.split_last()?;
    for p in parents {
        cur.push(p);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            _ => return None,
        }
    }
    cur.push(last);
    Some(cur)
}

/// Removes whatever is at `path` (file, symlink, tree) if anything is.
pub(crate) fn remove_existing(path: &Path) -> Result<()> {
    crate::fsutil::remove_all(path)
}
