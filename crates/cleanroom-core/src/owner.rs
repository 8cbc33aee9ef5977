//! Temporary names that carry their owner process (pid and start time), so
//! that what a killed process left half-written is recognised and removed
//! by the next process that looks, with one `readdir` and no daemon.
//!
//! A tag reads `<pid>.<start>` where `<start>` is the process's start time in
//! clock ticks since boot (`/proc/PID/stat`, field 22): a pid reused by a
//! later process has another start time, so a live owner is never mistaken
//! for a dead one and a dead one is never kept alive by pid reuse.

use std::path::{Path, PathBuf};

/// This process's tag, `<pid>.<start>`.
pub fn tag() -> String {
    let pid = std::process::id();
    format!("{pid}.{}", start_time(pid).unwrap_or(0))
}

/// The owner `(pid, start)` of a name that begins with `prefix` followed by
/// a tag and `-` (`.unpacking-123.4567-...`), if it has that form.
pub fn parse(name: &str, prefix: &str) -> Option<(u32, u64)> {
    let rest = name.strip_prefix(prefix)?;
    let (tag, _) = rest.split_once('-')?;
    let (pid, start) = tag.split_once('.')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

/// Whether the process `pid` that started at `start` still runs.
pub fn alive(pid: u32, start: u64) -> bool {
    match start_time(pid) {
        Some(now) => start == 0 || now == start,
        None => false,
    }
}

/// Start time of `pid` in clock ticks since boot; `None` when it is gone.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `comm` (field 2) may hold spaces and parentheses: count after the last `)`.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Removes every entry of `dir` named `<prefix><tag>-...` whose owner is
/// dead, and returns what it removed. Entries without a tag, or whose owner
/// lives, are left alone. A missing `dir` is empty.
pub fn sweep(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(list) = std::fs::read_dir(dir) else {
        return removed;
    };
    for entry in list.flatten() {
        let name = entry.file_name();
        let Some((pid, start)) = name.to_str().and_then(|n| parse(n, prefix)) else {
            continue;
        };
        if alive(pid, start) {
            continue;
        }
        let path = entry.path();
        if crate::paths::remove_all(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_under_its_own_tag() {
        let t = tag();
        let (pid, start) = parse(&format!("x-{t}-rest"), "x-").unwrap();
        assert_eq!(pid, std::process::id());
        assert!(start > 0, "{t}");
        assert!(alive(pid, start));
        // The same pid with another start time is a different, dead, process.
        assert!(!alive(pid, start + 1));
    }

    #[test]
    fn sweep_removes_only_dead_owners_entries() {
        let dir = tempfile_dir();
        let mine = dir.join(format!("t-{}-a", tag()));
        let dead = dir.join(format!("t-{}.1-b", u32::MAX - 1));
        let untagged = dir.join("t-plain");
        std::fs::create_dir_all(dead.join("sub")).unwrap();
        std::fs::write(&mine, b"x").unwrap();
        std::fs::write(&untagged, b"x").unwrap();
        assert_eq!(sweep(&dir, "t-"), vec![dead.clone()]);
        assert!(mine.exists() && untagged.exists() && !dead.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("cleanroom-owner-test-{}", tag()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
