//! Removing the cgroups a dead caller left behind.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::files::{remove_empty_tree, remove_tree, subdirs};
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
            if owner.alive() || !path.parent().is_some_and(writable) {
                continue;
            }
            let owner = owner.pid;
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
                    // Never 0 (that would be our own process group).
                    let pid = libc::pid_t::try_from(p)
                        .ok()
                        .and_then(rustix::process::Pid::from_raw);
                    if let Some(pid) = pid {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
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

/// The directories [`reap_dead_once`] has looked at in this process.
static SCANNED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Whether [`reap_dead_once`] would still look at one of `bases`: a
/// process making many sandboxes sweeps once, and hands no work to a
/// clean-up thread after that.
pub(crate) fn reap_dead_pending(bases: &[PathBuf]) -> bool {
    let scanned = SCANNED.lock().unwrap_or_else(|p| p.into_inner());
    bases.iter().any(|b| !scanned.contains(b))
}

/// Once per process and directory: removes the empty cgroups whose owner
/// is gone from `bases`, the directories this process creates sandbox
/// cgroups in (one it may not write to is skipped). A caller killed with
/// SIGKILL cannot remove its cgroups and there is no daemon to do it, so
/// the next caller does, at the cost of one `readdir` per directory.
/// Cgroups still holding processes are left to [`gc`]. Returns the
/// directories removed.
pub(crate) fn reap_dead_once(bases: &[PathBuf]) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for base in bases {
        {
            let mut scanned = SCANNED.lock().unwrap_or_else(|p| p.into_inner());
            if scanned.iter().any(|b| b == base) {
                continue;
            }
            scanned.push(base.to_path_buf());
        }
        if !writable(base) {
            continue;
        }
        // Only our own names are looked at further: the caller's cgroup
        // may hold dozens of others, each a path to build otherwise.
        let Ok(entries) = std::fs::read_dir(base) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            let Some(owner) = name.to_str().and_then(parse_name) else {
                continue;
            };
            let sub = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && !owner.alive() && remove_empty_tree(&sub).is_ok() {
                removed.push(sub);
            }
        }
    }
    removed
}

/// Collects (path, owner, is leaf) of Cleanroom cgroups below `dir`.
fn find(dir: &Path, depth: usize, out: &mut Vec<(PathBuf, Owner, bool)>) {
    if depth > MAX_DEPTH {
        return;
    }
    for sub in subdirs(dir) {
        let name = sub.file_name().and_then(|n| n.to_str()).unwrap_or("");
        match parse_name(name) {
            Some(owner) => out.push((sub, owner, owner.leaf)),
            None => find(&sub, depth + 1, out),
        }
    }
}

/// The process a cgroup's name says created it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    pub pid: u32,
    /// Its start time (see [`read_start_time`]), when the name carries it.
    pub start: Option<u64>,
    /// The `-self` leaf the owner moved itself into.
    pub leaf: bool,
}

impl Owner {
    /// Whether the owner still runs (in our pid namespace); unsure means
    /// alive. With a start time, a reused pid does not count.
    pub fn alive(&self) -> bool {
        if self.pid == std::process::id() {
            return true;
        }
        match self.start {
            Some(start) => match read_start_time(self.pid) {
                Ok(now) => now == start,
                Err(e) => e.kind() != io::ErrorKind::NotFound,
            },
            None => alive(self.pid),
        }
    }
}

/// The name of this process's `n`th sandbox cgroup:
/// `cleanroom-<pid>-<n>-<start time>`. The start time tells a later
/// process whether this pid still names this process.
pub(crate) fn cgroup_name(n: u64) -> String {
    let pid = std::process::id();
    match own_start_time() {
        Some(start) => format!("cleanroom-{pid}-{n}-{start}"),
        None => format!("cleanroom-{pid}-{n}"),
    }
}

/// This process's start time, read once.
fn own_start_time() -> Option<u64> {
    static START: OnceLock<Option<u64>> = OnceLock::new();
    *START.get_or_init(|| read_start_time(std::process::id()).ok())
}

/// When process `pid` started, in clock ticks after boot (field 22 of
/// `/proc/<pid>/stat`): with the pid it names one process for all time.
fn read_start_time(pid: u32) -> io::Result<u64> {
    let stat = crate::proc_stat::read(pid)?;
    crate::proc_stat::start_time(&stat)
        .ok_or_else(|| io::Error::other(format!("/proc/{pid}/stat has no start time")))
}

/// `cleanroom-<pid>-<n>[-<start>]` → a sandbox cgroup's owner;
/// `cleanroom-<pid>-self` → the owner's own leaf.
pub(crate) fn parse_name(name: &str) -> Option<Owner> {
    let rest = name.strip_prefix("cleanroom-")?;
    let mut parts = rest.split('-');
    let pid: u32 = parts.next()?.parse().ok()?;
    let tail = parts.next()?;
    let start = match parts.next() {
        Some(s) => Some(number(s)?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    if tail == "self" && start.is_none() {
        return Some(Owner {
            pid,
            start,
            leaf: true,
        });
    }
    number(tail)?;
    Some(Owner {
        pid,
        start,
        leaf: false,
    })
}

/// A plain decimal number (no sign, no spaces).
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Whether process `pid` exists (in our pid namespace); unsure means alive.
fn alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let Some(p) = libc::pid_t::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .and_then(rustix::process::Pid::from_raw)
    else {
        return true;
    };
    // Signal 0: only checks for existence.
    rustix::process::test_kill_process(p) != Err(rustix::io::Errno::SRCH)
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
    use super::{cgroup_name, parse_name, read_start_time, Owner};

    fn owner(pid: u32, start: Option<u64>, leaf: bool) -> Option<Owner> {
        Some(Owner { pid, start, leaf })
    }

    #[test]
    fn names() {
        assert_eq!(parse_name("cleanroom-12-0"), owner(12, None, false));
        assert_eq!(parse_name("cleanroom-12-345"), owner(12, None, false));
        assert_eq!(
            parse_name("cleanroom-12-3-9876"),
            owner(12, Some(9876), false)
        );
        assert_eq!(parse_name("cleanroom-12-self"), owner(12, None, true));
        assert_eq!(parse_name("cleanroom-12-"), None);
        assert_eq!(parse_name("cleanroom-12-1a"), None);
        assert_eq!(parse_name("cleanroom-12-1-"), None);
        assert_eq!(parse_name("cleanroom-12-1-2-3"), None);
        assert_eq!(parse_name("cleanroom-12-self-5"), None);
        assert_eq!(parse_name("cleanroom-x-1"), None);
        assert_eq!(parse_name("other"), None);
    }

    #[test]
    fn own_name_carries_the_start_time_and_counts_as_alive() {
        let name = cgroup_name(7);
        let me = parse_name(&name).expect("parses");
        assert_eq!(me.pid, std::process::id());
        assert!(me.start.is_some(), "{name} carries no start time");
        assert!(me.alive());
    }

    #[test]
    fn a_pid_with_another_start_time_is_another_process() {
        let init_start = read_start_time(1).expect("pid 1's start time");
        let impostor = Owner {
            pid: 1,
            start: Some(init_start + 1),
            leaf: false,
        };
        assert!(!impostor.alive(), "pid 1 with the wrong start time");
        let real = Owner {
            start: Some(init_start),
            ..impostor
        };
        assert!(real.alive());
        let gone = Owner {
            pid: u32::MAX - 1,
            start: Some(1),
            leaf: false,
        };
        assert!(!gone.alive());
    }
}
