//! Removing the cgroups a dead caller left behind.

use std::io;
use std::path::{Path, PathBuf};

use super::files::{remove_tree, subdirs};
use super::hierarchy::writable;
use super::layout;

/// How deep below a hierarchy's mount point [`gc`] looks (systemd puts
/// users' processes about six levels down).
const MAX_DEPTH: usize = 12;

/// What [`gc`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// The cgroup directories removed.
    pub removed: Vec<String>,
    /// Dead owners' cgroups left in place, each with the reason (still
    /// holds processes outside our subtree, or the removal failed).
    pub kept: Vec<String>,
}

/// Removes every `cleanroom-<pid>-<n>` cgroup (and `cleanroom-<pid>-self`
/// leaf) whose owner `pid` is dead, in every hierarchy this process can
/// see, killing the processes still in it. Never touches a cgroup whose
/// owner is alive (this process included), nor one this user may not
/// remove.
///
/// A pid number names a process only in one pid namespace, so outside this
/// process's own cgroup subtree a dead-looking owner's cgroup is removed
/// only if it is empty (its processes are not killed): there the owner may
/// live in another pid namespace. Fails only if the cgroup layout cannot be
/// read; what could not be removed is in [`GcReport::kept`].
pub fn gc() -> io::Result<GcReport> {
    let layout = layout()?;
    let mut report = GcReport::default();
    for h in layout.all() {
        let mut found = Vec::new();
        find(&h.mount, 0, &mut found);
        for (path, owner, leaf) in found {
            if alive(owner) || !path.parent().is_some_and(writable) {
                continue;
            }
            let ours = path.starts_with(&h.base);
            let procs = procs_below(&path);
            if !procs.is_empty() {
                if leaf || !ours {
                    report.kept.push(format!(
                        "{}: owner pid {owner} is gone but it still holds pid(s) {procs:?}",
                        path.display()
                    ));
                    continue;
                }
                for p in procs {
                    if let Ok(p) = libc::pid_t::try_from(p) {
                        // SAFETY: kill(2) of a process in a cgroup whose
                        // owner is dead; touches no memory.
                        unsafe { libc::kill(p, libc::SIGKILL) };
                    }
                }
            }
            match remove_tree(&path) {
                Ok(()) => report.removed.push(path.display().to_string()),
                Err(e) => report.kept.push(e.to_string()),
            }
        }
    }
    Ok(report)
}

/// Collects (path, owner pid, is leaf) of Cleanroom cgroups below `dir`.
fn find(dir: &Path, depth: usize, out: &mut Vec<(PathBuf, u32, bool)>) {
    if depth > MAX_DEPTH {
        return;
    }
    for sub in subdirs(dir) {
        let name = sub.file_name().and_then(|n| n.to_str()).unwrap_or("");
        match parse_name(name) {
            Some((owner, leaf)) => out.push((sub, owner, leaf)),
            None => find(&sub, depth + 1, out),
        }
    }
}

/// `cleanroom-<pid>-<n>` → (pid, false); `cleanroom-<pid>-self` → (pid, true).
pub(crate) fn parse_name(name: &str) -> Option<(u32, bool)> {
    let rest = name.strip_prefix("cleanroom-")?;
    let (pid, tail) = rest.split_once('-')?;
    let pid: u32 = pid.parse().ok()?;
    if tail == "self" {
        return Some((pid, true));
    }
    if !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()) {
        return Some((pid, false));
    }
    None
}

/// Whether process `pid` exists (in our pid namespace); unsure means alive.
fn alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return true;
    };
    if p <= 0 {
        return true;
    }
    // SAFETY: signal 0 only checks for existence; touches no memory.
    let rc = unsafe { libc::kill(p, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Every pid in `dir` and below.
fn procs_below(dir: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = super::read_words(&dir.join("cgroup.procs"))
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect();
    for sub in subdirs(dir) {
        pids.extend(procs_below(&sub));
    }
    pids
}

#[cfg(test)]
mod tests {
    use super::parse_name;

    #[test]
    fn names() {
        assert_eq!(parse_name("cleanroom-12-0"), Some((12, false)));
        assert_eq!(parse_name("cleanroom-12-345"), Some((12, false)));
        assert_eq!(parse_name("cleanroom-12-self"), Some((12, true)));
        assert_eq!(parse_name("cleanroom-12-"), None);
        assert_eq!(parse_name("cleanroom-x-1"), None);
        assert_eq!(parse_name("cleanroom-12-1a"), None);
        assert_eq!(parse_name("other"), None);
    }
}
