//! `cleanroom gc` says what it removed, item by item and in a summary by
//! kind and count (issue 12, point 6): here a dead caller's working
//! directory of the local backend and, as root, a dead caller's cgroup.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Above the kernel's pid limit: never a live process.
const DEAD_PID: u32 = 4_194_305;

/// A cgroup directory of a dead owner in the pids hierarchy (v1), beside
/// where this process's sandboxes would go; `None` where that cannot be
/// made (not root, no v1 pids hierarchy).
fn plant_dead_cgroup() -> Option<PathBuf> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = membership
        .lines()
        .find_map(|l| l.split_once(":pids:").map(|(_, p)| p.to_string()))?;
    let base = Path::new("/sys/fs/cgroup/pids").join(path.trim_start_matches('/'));
    let dir = base.join(format!("cleanroom-{DEAD_PID}-0-1"));
    std::fs::create_dir(&dir).ok()?;
    Some(dir)
}

#[test]
fn gc_lists_what_it_removed_and_counts_it_by_kind() {
    let scratch = tempfile::tempdir().unwrap();
    let tmp = scratch.path().join("tmp");
    let workdir = tmp.join(format!("cleanroom-local-{DEAD_PID}-gc"));
    std::fs::create_dir_all(workdir.join("sub")).unwrap();
    let cgroup = plant_dead_cgroup();

    let out = Command::new(env!("CARGO_BIN_EXE_cleanroom"))
        .arg("gc")
        .env("TMPDIR", &tmp)
        .env("CLEANROOM_HOME", scratch.path().join("home"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "gc failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!workdir.exists(), "gc left {}", workdir.display());
    assert!(
        stdout.contains(&workdir.display().to_string()),
        "gc did not name {}:\n{stdout}",
        workdir.display()
    );
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with("removed ") && summary.contains("1 temporary file or directory"),
        "summary by kind: {summary:?}"
    );
    if let Some(cgroup) = cgroup {
        assert!(!cgroup.exists(), "gc left {}", cgroup.display());
        assert!(
            stdout.contains(&cgroup.display().to_string()) && summary.contains("cgroup"),
            "gc did not report {}:\n{stdout}",
            cgroup.display()
        );
    }
}
