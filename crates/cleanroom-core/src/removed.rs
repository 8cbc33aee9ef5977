//! What `gc` removed, item by item and of which kind, so that every part
//! (each backend, the image store) adds to one report counted by kind.

use std::collections::BTreeMap;
use std::fmt;

/// One leftover `gc` removed, or a number of like ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    /// What it was: one of the kind constants, e.g. [`Removed::CGROUP`].
    pub kind: &'static str,
    /// How many (1 for one named item).
    pub count: usize,
    /// Which, and why it could go: a path, a container id, a summary.
    pub what: String,
}

impl Removed {
    /// An engine container.
    pub const CONTAINER: &'static str = "container";
    /// A cgroup directory (one per hierarchy).
    pub const CGROUP: &'static str = "cgroup";
    /// A mount.
    pub const MOUNT: &'static str = "mount";
    /// A temporary file or directory (half-done unpacks, imports, workdirs).
    pub const TEMP: &'static str = "temporary file or directory";
    /// Image store content no image refers to (blobs, layers, root trees).
    pub const IMAGE_DATA: &'static str = "unreferenced image data";

    /// One named item of `kind`.
    pub fn one(kind: &'static str, what: impl Into<String>) -> Self {
        Removed {
            kind,
            count: 1,
            what: what.into(),
        }
    }

    /// `count` items of `kind`, summed up in `what`.
    pub fn many(kind: &'static str, count: usize, what: impl Into<String>) -> Self {
        Removed {
            kind,
            count,
            what: what.into(),
        }
    }
}

impl fmt::Display for Removed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

/// How many of each kind `removed` holds; kinds with none are left out.
pub fn count_by_kind(removed: &[Removed]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for r in removed.iter().filter(|r| r.count > 0) {
        *counts.entry(r.kind).or_insert(0) += r.count;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_by_kind() {
        let removed = [
            Removed::one(Removed::CGROUP, "/sys/fs/cgroup/pids/cleanroom-1-0"),
            Removed::one(Removed::CGROUP, "/sys/fs/cgroup/memory/cleanroom-1-0"),
            Removed::many(Removed::IMAGE_DATA, 3, "3 blobs"),
            Removed::many(Removed::TEMP, 0, "nothing"),
        ];
        let counts = count_by_kind(&removed);
        assert_eq!(counts.get(Removed::CGROUP), Some(&2));
        assert_eq!(counts.get(Removed::IMAGE_DATA), Some(&3));
        assert_eq!(counts.get(Removed::TEMP), None);
        assert_eq!(removed[0].to_string(), "/sys/fs/cgroup/pids/cleanroom-1-0");
    }
}
