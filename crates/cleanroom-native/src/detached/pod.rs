//! Joining a named sandbox's network from any process: `Network::Pod(id)`
//! where `id` is the sandbox's state directory (its `SandboxInfo::id`).
//!
//! A pid in a record is only a hint: the init may have died and its pid
//! been reused by a stranger. So the record must be the caller's own, the
//! sandbox must still hold its lock, and the process behind `/proc/PID`
//! must have the recorded start time; the namespaces are then opened
//! through that same `/proc/PID` directory descriptor, which the kernel
//! ties to that one process (a reused pid is a different directory).

use std::os::fd::OwnedFd;
use std::path::Path;

use cleanroom_core::detached::{current_uid, state_dir, validate_name};
use cleanroom_core::{Error, Result};

use super::state;
use crate::plan::Pod;

fn refuse(id: &str, why: impl std::fmt::Display) -> Error {
    Error::backend(
        "native",
        format!("network pod:{id}: cannot join that sandbox's network: {why}"),
    )
}

/// The pod of this user's running named sandbox whose state directory is
/// `id`; `Ok(None)` when `id` is not such a directory at all.
pub fn join(id: &str) -> Result<Option<Pod>> {
    let dir = Path::new(id);
    let root = state_dir()?;
    let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
        return Ok(None);
    };
    if dir.parent() != Some(root.as_path()) || validate_name(name).is_err() || !dir.is_dir() {
        return Ok(None);
    }
    let uid = current_uid();
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::symlink_metadata(dir).map_err(|e| Error::io(format!("reading {id}"), e))?,
    );
    if owner != uid {
        return Err(refuse(
            id,
            format!("its directory belongs to uid {owner}, not to you (uid {uid})"),
        ));
    }
    let record = state::read_record(dir).ok_or_else(|| {
        refuse(
            id,
            "it has no record (still being created, or dead); see `cleanroom ps -a`",
        )
    })?;
    if record.owner_uid != uid || record.backend != "native" {
        return Err(refuse(
            id,
            format!(
                "its record is of backend `{}` and uid {}, not a native sandbox of yours (uid {uid})",
                record.backend, record.owner_uid
            ),
        ));
    }
    if !state::lock_held(dir) || state::read_exit(dir).is_some() {
        return Err(refuse(
            id,
            format!(
                "sandbox `{}` is not running; start it again or `cleanroom rm` it",
                record.name
            ),
        ));
    }
    let (net, user) = open_namespaces(record.init_pid, record.init_start)
        .map_err(|why| refuse(id, format!("sandbox `{}`: {why}", record.name)))?;
    Ok(Some(Pod {
        net,
        user,
        uid: record.spec.user.uid,
        gid: record.spec.user.gid,
    }))
}

/// The network and user namespaces of process `pid`, provided it is the
/// one that started at `start` (clock ticks after boot).
fn open_namespaces(pid: u32, start: u64) -> std::result::Result<(OwnedFd, OwnedFd), String> {
    use rustix::fs::{Mode, OFlags};
    if pid == 0 || start == 0 {
        return Err("its record names no init process".into());
    }
    let gone = |e: rustix::io::Errno| format!("its init (pid {pid}) is gone: {e}");
    let proc_dir = rustix::fs::open(
        format!("/proc/{pid}"),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(gone)?;
    let stat = rustix::fs::openat(
        &proc_dir,
        "stat",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(gone)?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(stat), &mut text)
        .map_err(|e| format!("reading /proc/{pid}/stat: {e}"))?;
    match state::parse_start_time(&text) {
        Some(t) if t == start => {}
        _ => {
            return Err(format!(
                "pid {pid} is no longer its init (the init died and the pid was reused)"
            ))
        }
    }
    let ns = |which: &str| {
        rustix::fs::openat(
            &proc_dir,
            format!("ns/{which}"),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("opening /proc/{pid}/ns/{which}: {e}"))
    };
    Ok((ns("net")?, ns("user")?))
}
