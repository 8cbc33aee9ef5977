//! Idle memory of long-lived sandboxes: the proportional set size of the
//! processes they add below this one.

use std::sync::Arc;
use std::time::Duration;

use cleanroom::{Backend, Result, SandboxSpec};

/// Proportional set size, in KiB, of every process below this one that was
/// not there before the sandboxes were created.
pub(super) async fn idle_memory(
    backend: &Arc<dyn Backend>,
    spec: &SandboxSpec,
    count: usize,
) -> Result<Option<f64>> {
    let before = descendants(std::process::id());
    let mut sandboxes = Vec::new();
    for _ in 0..count {
        sandboxes.push(backend.create(spec, None).await?);
    }
    // Let every sandbox settle into its idle state.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A sandbox's first child and its init share one address space
    // (clone with CLONE_VM): count each address space once.
    let mut counted: Vec<u32> = Vec::new();
    let mut total: u64 = 0;
    let mut unreadable = false;
    // The native fork server, made for the first of them, is not a sandbox.
    let server = cleanroom::native::fork_server::server_pid();
    for pid in descendants(std::process::id()) {
        if before.contains(&pid) || Some(pid) == server {
            continue;
        }
        if counted
            .iter()
            .any(|&c| cleanroom::native::clone::shares_memory(c, pid) == Some(true))
        {
            continue;
        }
        counted.push(pid);
        match pss_kib(pid) {
            Some(kib) => total += kib,
            None => unreadable = true,
        }
    }
    for s in sandboxes {
        s.remove().await?;
    }
    Ok((!unreadable).then(|| total as f64 / count as f64))
}

/// Every process below `root`, however deep.
pub(super) fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(ppid) = ppid(pid) {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

/// Reaps the zombies among this process's children: the orphans it adopts
/// as their subreaper (see `bench::main`), which no one else waits for.
/// A child that someone waits for is reaped by that wait the moment it
/// exits, so it is not left a zombie for this to take.
pub(super) fn reap_zombie_children() {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let zombie_child = stat_fields(pid).is_some_and(|(state, ppid)| state == 'Z' && ppid == me);
        let pid = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let (true, Some(pid)) = (zombie_child, pid) {
            let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG);
        }
    }
}

/// The state letter and parent pid of process `pid`.
fn stat_fields(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: parse after the last `)`.
    let mut rest = stat[stat.rfind(')')? + 2..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    Some((state, rest.next()?.parse().ok()?))
}

fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: parse after the last `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `None` when the maps are not ours to read (a non-dumpable process, as
/// a sandbox's init is, seen by an unprivileged user).
fn pss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_include_grandchildren() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 5 & wait"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let d = descendants(std::process::id());
        assert!(d.contains(&child.id()), "{d:?}");
        assert!(d.len() >= 2, "the sleep below sh is missing: {d:?}");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
