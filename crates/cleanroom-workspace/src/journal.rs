//! The sync journal: the plan of a sync, written (atomically) before its
//! first change and removed after its last, so a sync killed at any point
//! can be finished by the next one. Every old version a forced sync
//! overwrites is stored in the shadow history first, so it can be undone
//! by hand too.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{input, io, Result};

/// What is at one path: on the host, in the base, or in the workspace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(crate) enum Entry {
    Absent,
    /// A regular file with this blob id.
    File {
        oid: String,
        exec: bool,
    },
    /// A symlink whose target is this blob.
    Link {
        oid: String,
    },
    Dir,
    /// A socket, fifo or device on the host.
    Special,
}

/// One change a sync makes to the project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Op {
    /// Relative to the project.
    pub path: PathBuf,
    /// What the host had when the sync planned (kept in the history).
    pub before: Entry,
    /// What it gets.
    pub after: Entry,
}

/// The journal file's content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Journal {
    /// Bumped when the format changes; an unknown version is refused.
    pub version: u32,
    pub ops: Vec<Op>,
}

pub(crate) const VERSION: u32 = 1;

pub(crate) fn write(path: &Path, journal: &Journal) -> Result<()> {
    let bytes = serde_json::to_vec(journal).expect("the journal serialises");
    crate::hostfs::write_atomic(path, &bytes)
}

/// The journal of an interrupted sync, if there is one.
pub(crate) fn read(path: &Path) -> Result<Option<Journal>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(format!("reading {}", path.display()), e)),
    };
    let journal: Journal = serde_json::from_slice(&bytes).map_err(|e| {
        input(
            path.display().to_string(),
            format!("is not a sync journal ({e}); it was written atomically, so this is not an interrupted sync: move it away and sync again"),
        )
    })?;
    if journal.version != VERSION {
        return Err(input(
            path.display().to_string(),
            format!(
                "journal version {} is not {VERSION}; finish it with the cleanroom that wrote it",
                journal.version
            ),
        ));
    }
    Ok(Some(journal))
}

pub(crate) fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            crate::hostfs::sync_parent(path);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("removing {}", path.display()), e)),
    }
}
