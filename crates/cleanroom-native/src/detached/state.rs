//! A detached sandbox's state directory, `<state_dir>/<name>/` (0700):
//!
//! - `record.json`: what it is ([`Record`]), written once, atomically
//!   (temporary file, then rename);
//! - `lock`: locked (`flock`) by the creator, then held by the supervisor
//!   for as long as it lives: a free lock means nothing of it runs;
//! - `control.sock`: the init's socket (0600);
//! - `log.0`, `log.1`: the main command's output ([`super::logfile`]);
//! - `exit.json`: its exit status, written by the supervisor once the init
//!   ended normally. An init gone without it is a dead sandbox.
//!
//! Making the directory is what reserves a name: of several creators of one
//! name exactly one succeeds, the others get "name already in use".

use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use cleanroom_core::{Error, Result, SandboxInfo, SandboxState};
use serde::{Deserialize, Serialize};

pub const RECORD: &str = "record.json";
pub const LOCK: &str = "lock";
pub const SOCKET: &str = "control.sock";
pub const EXIT: &str = "exit.json";

/// What `record.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    pub backend: String,
    /// The image reference or the root filesystem's kind.
    pub image: String,
    /// The spec it was made from, under its image's config.
    pub spec: cleanroom_core::SandboxSpec,
    /// Where commands start unless they name a directory (the image's
    /// WorkingDir).
    pub start_dir: Option<PathBuf>,
    /// The main command's argv; empty for `create`.
    pub command: Vec<String>,
    pub labels: std::collections::BTreeMap<String, String>,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub owner_uid: u32,
    /// The init's pid (host view) and start time (clock ticks after boot).
    pub init_pid: u32,
    pub init_start: u64,
    pub supervisor_pid: u32,
    /// Its cgroup's directories, one per hierarchy; empty without one.
    pub cgroup: Vec<PathBuf>,
    /// The release that made it, for version-mismatch messages.
    pub release: String,
}

/// How a sandbox ended, in `exit.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub code: i32,
}

/// The directory of sandbox `name` under `root`.
pub fn dir_of(root: &Path, name: &str) -> PathBuf {
    root.join(name)
}

/// Reserves `name`: makes its directory, or says the name is taken.
pub fn reserve(root: &Path, name: &str) -> Result<PathBuf> {
    let dir = dir_of(root, name);
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::Config {
            origin: format!("sandbox `{name}`"),
            message: "name already in use; choose another, or `cleanroom rm` it first".into(),
        }),
        Err(e) => Err(Error::io(format!("creating {}", dir.display()), e)),
    }
}

/// Opens `dir/lock` (creating it only with `create`: a reader must not
/// put it back into a directory being removed) and takes it; `Ok(None)`
/// when someone holds it.
pub fn try_lock(dir: &Path, create: bool) -> std::io::Result<Option<OwnedFd>> {
    use rustix::fs::{FlockOperation, Mode, OFlags};
    let mut flags = OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    if create {
        flags |= OFlags::CREATE;
    }
    let fd = rustix::fs::open(dir.join(LOCK), flags, Mode::from_raw_mode(0o600))?;
    match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(fd)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub use cleanroom_core::paths::write_atomic;

/// Run by the supervisor once the init ended with `code`: writes
/// `exit.json` through the state directory's descriptor (it may no longer
/// reach the host's paths by name). Raw and allocation-light: it runs in a
/// forked child of the caller.
pub fn record_exit(dir: BorrowedFd<'_>, code: i32) {
    use rustix::fs::{Mode, OFlags};
    let text = format!("{{\"code\":{code}}}");
    let tmp = ".exit.json.tmp";
    let Ok(fd) = rustix::fs::openat(
        dir,
        tmp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o600),
    ) else {
        return;
    };
    if rustix::io::write(&fd, text.as_bytes()).is_ok() {
        let _ = rustix::fs::renameat(dir, tmp, dir, EXIT);
    }
}

pub fn read_record(dir: &Path) -> Option<Record> {
    let bytes = std::fs::read(dir.join(RECORD)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn read_exit(dir: &Path) -> Option<ExitRecord> {
    let bytes = std::fs::read(dir.join(EXIT)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether something of the sandbox in `dir` still runs: its lock is held.
pub fn lock_held(dir: &Path) -> bool {
    match try_lock(dir, false) {
        Ok(Some(fd)) => {
            drop(fd);
            false
        }
        Ok(None) => true,
        // No lock file: never started, or being removed.
        Err(_) => false,
    }
}

/// One sandbox directory as `ps` sees it, or `None` for a directory that
/// is still being created (no record, lock held).
pub fn info(dir: &Path, name: &str) -> Option<(SandboxInfo, Option<Record>)> {
    let record = read_record(dir);
    let running = lock_held(dir);
    let state = match (read_exit(dir), running) {
        (Some(exit), _) => SandboxState::Exited { code: exit.code },
        (None, true) if record.is_none() => return None,
        (None, true) => SandboxState::Running,
        (None, false) if record.is_none() => SandboxState::Dead {
            reason: "its creation was interrupted".into(),
        },
        (None, false) => SandboxState::Dead {
            reason: "its init ended without recording an exit status (killed?)".into(),
        },
    };
    let info = match &record {
        Some(r) => SandboxInfo {
            name: r.name.clone(),
            backend: r.backend.clone(),
            image: r.image.clone(),
            state,
            created: r.created,
            command: r.command.clone(),
            labels: r.labels.clone(),
            id: dir.display().to_string(),
        },
        None => SandboxInfo {
            name: name.to_string(),
            backend: "native".into(),
            image: String::new(),
            state,
            created: 0,
            command: Vec::new(),
            labels: Default::default(),
            id: dir.display().to_string(),
        },
    };
    Some((info, record))
}

/// Every sandbox directory under `root`, by name.
pub use cleanroom_core::detached::names_in as names;

/// When process `pid` started (field 22 of its stat), if it exists.
pub fn start_time(pid: u32) -> Option<u64> {
    crate::proc_stat::start_time(&crate::proc_stat::read(pid).ok()?)
}

/// Removes the sandbox's cgroup directories (empty once nothing runs).
pub fn remove_cgroup(record: &Record) -> Vec<String> {
    let mut removed = Vec::new();
    for p in &record.cgroup {
        // v1 directories may hold an empty child per controller layout;
        // rmdir of an empty cgroup is all it takes.
        if std::fs::remove_dir(p).is_ok() {
            removed.push(p.display().to_string());
        }
    }
    removed
}

/// The descriptor of a directory, for the supervisor's record.
pub fn open_dir(dir: &Path) -> std::io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    Ok(rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}
