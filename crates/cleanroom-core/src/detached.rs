//! Named sandboxes that outlive the process that made them: what
//! `cleanroom create`, `run -d`, `exec`, `ps`, `logs`, `stop`, `rm`, `cp`
//! and `stats` share across backends, and where native keeps their state.
//!
//! A backend that can hold one implements [`crate::Backend::create_detached_prepared`],
//! [`crate::Backend::list`] and [`crate::Backend::attach`]; the handle
//! [`Detached`] reaches a sandbox by name from any later process. Dropping
//! a handle leaves the sandbox as it is: only [`Detached::remove`] removes it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::cmd::Cmd;
use crate::error::{Error, Result};
use crate::output::OutputSink;
use crate::result::RunResult;

/// The label engine backends put on every named sandbox, holding its name.
pub const NAME_LABEL: &str = "io.cleanroom.name";

/// The exit code [`Detached::exec_attached`] reports when the command's
/// timeout ended it, as `timeout(1)` does.
pub const EXIT_TIMED_OUT: i32 = 124;

/// How a new named sandbox is called and labelled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DetachOptions {
    /// Checked by [`validate_name`]; [`generate_name`] makes one.
    pub name: String,
    /// `--label K=V`, shown by `ps --json` and matched by `ps --filter`.
    pub labels: BTreeMap<String, String>,
}

/// Where a named sandbox is in its life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum SandboxState {
    /// Its init (or container) runs; with a main command, that command runs.
    Running,
    /// Its main command exited with `code` (128+N for signal N), or it was
    /// stopped; its logs and status are kept until it is removed.
    Exited { code: i32 },
    /// Its init died without recording an exit (killed, machine rebooted);
    /// `gc` or `rm` removes what is left.
    Dead { reason: String },
}

impl fmt::Display for SandboxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SandboxState::Running => f.write_str("running"),
            SandboxState::Exited { code } => write!(f, "exited ({code})"),
            SandboxState::Dead { .. } => f.write_str("dead"),
        }
    }
}

/// One named sandbox as `ps` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxInfo {
    pub name: String,
    pub backend: String,
    /// The image reference, or the root filesystem's kind (`host`, a path).
    pub image: String,
    #[serde(flatten)]
    pub state: SandboxState,
    /// Seconds since the Unix epoch.
    pub created: u64,
    /// The main command's argv; empty for a sandbox made by `create`.
    pub command: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// The backend's own identifier: a container id, a state directory.
    pub id: String,
}

/// Resource use read from a sandbox's cgroup (or the engine's stats).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub name: String,
    /// CPU time used over the sampling interval, as a percentage of one CPU.
    pub cpu_percent: Option<f64>,
    pub memory_bytes: Option<u64>,
    /// `None` when no limit is set.
    pub memory_limit: Option<u64>,
    pub pids: Option<u64>,
    /// Why the numbers are missing, when they are ("no cgroup: rootless on
    /// cgroup v1").
    pub unavailable: Option<String>,
}

/// What `cleanroom exec` connects of the caller's own standard streams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecStdio {
    /// `-i`: the caller's stdin reaches the command (else it reads nothing).
    pub stdin: bool,
    /// `-t`: the command gets a pseudo-terminal inside the sandbox, sized
    /// like the caller's, and the caller's terminal is put in raw mode.
    pub tty: bool,
}

/// How `cleanroom logs` reads the main process's output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Only the last `tail` lines of what is recorded so far.
    pub tail: Option<usize>,
    /// Keep sending new output until the main process exits.
    pub follow: bool,
}

/// A handle on one named sandbox, from [`crate::Backend::attach`] or made
/// by `create`. Dropping it leaves the sandbox running.
#[async_trait]
pub trait Detached: Send + Sync {
    /// Its state when the handle was made.
    fn info(&self) -> &SandboxInfo;

    /// Runs a command inside, capturing output (and sending it to `sink`
    /// as it comes). A timeout kills that command's whole process tree.
    async fn exec(&self, cmd: Cmd, sink: Option<OutputSink>) -> Result<RunResult>;

    /// Runs a command inside on the caller's own terminal or streams,
    /// as `exec -i`/`-t` do, and returns its exit code (128+N on signal N,
    /// [`EXIT_TIMED_OUT`] when its timeout ended it).
    async fn exec_attached(&self, cmd: Cmd, stdio: ExecStdio) -> Result<i32>;

    /// Copies a host file or directory to `sandbox_path`, modes kept.
    async fn copy_in(&self, host_path: &Path, sandbox_path: &Path) -> Result<()>;

    /// Copies a file or directory from inside to `host_path`, modes kept;
    /// a symlink inside is copied as a symlink, never followed out.
    async fn copy_out(&self, sandbox_path: &Path, host_path: &Path) -> Result<()>;

    /// Sends the main process's recorded output to `sink`, and with
    /// `follow` what it writes next, until it exits.
    async fn logs(&self, options: LogOptions, sink: OutputSink) -> Result<()>;

    /// SIGTERM to every process inside, SIGKILL after `grace`. The sandbox
    /// is then `exited` and keeps its logs.
    async fn stop(&self, grace: Duration) -> Result<()>;

    /// Removes the sandbox and everything it holds (mounts, cgroup, state,
    /// logs). Refuses a running one unless `force`, which kills it first.
    async fn remove(&self, force: bool) -> Result<()>;

    /// CPU, memory and pids now; `unavailable` says why when they cannot
    /// be read.
    async fn stats(&self) -> Result<Stats>;
}

/// Checks a sandbox name as docker does: a letter or digit, then letters,
/// digits, `_`, `.` or `-`, at most 64 in all.
pub fn validate_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && name.len() <= 64 {
        Ok(())
    } else {
        Err(Error::InvalidSpec(format!(
            "sandbox name `{name}` is not valid: use a letter or digit, then letters, digits, `_`, `.` or `-` (at most 64)"
        )))
    }
}

/// A short name unlikely to be taken: `cr-` and 8 hex digits from the
/// clock, the process id and a counter.
pub fn generate_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let seed = format!(
        "{nanos}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    format!("cr-{:08x}", crate::hash::fnv1a(seed.as_bytes()) as u32)
}

/// The error a backend that cannot hold a named sandbox gives.
pub fn unsupported(backend: &str) -> Error {
    Error::Unsupported {
        backend: backend.to_string(),
        what: "named sandboxes that outlive the command (create, run -d); use --backend native, podman or docker".to_string(),
    }
}

/// The error for a name no backend holds.
pub fn not_found(name: &str) -> Error {
    Error::Config {
        origin: format!("sandbox `{name}`"),
        message: "no such sandbox; `cleanroom ps -a` lists them".to_string(),
    }
}

/// The error for a command sent to a sandbox that is not running.
pub fn not_running(info: &SandboxInfo) -> Error {
    Error::Config {
        origin: format!("sandbox `{}`", info.name),
        message: format!(
            "is {}, not running; commands run only in a running sandbox (`cleanroom rm {}` \
             removes it)",
            info.state, info.name
        ),
    }
}

/// The names of the sandbox directories under `root` (entries that are
/// directories with a valid sandbox name), sorted.
pub fn names_in(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| validate_name(n).is_ok())
        .collect();
    names.sort();
    names
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The per-user directory where native keeps named sandboxes' state:
/// `$CLEANROOM_STATE_DIR`, else `$XDG_RUNTIME_DIR/cleanroom`, else
/// `cleanroom/state` under the user's cache, else `/tmp/cleanroom-UID`.
/// Created 0700 and checked to be the user's own, so another user cannot
/// plant sockets or state in it.
pub fn state_dir() -> Result<PathBuf> {
    let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let uid = current_uid();
    let candidates: Vec<PathBuf> = [
        set("CLEANROOM_STATE_DIR").map(PathBuf::from),
        set("XDG_RUNTIME_DIR").map(|d| PathBuf::from(d).join("cleanroom")),
        set("HOME").map(|_| crate::paths::cache_dir("state")),
        Some(PathBuf::from(format!("/tmp/cleanroom-{uid}"))),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut last = None;
    for dir in candidates {
        match ensure_private_dir(&dir, uid) {
            Ok(()) => return Ok(dir),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::Config {
        origin: "state directory".into(),
        message: "no usable directory".into(),
    }))
}

/// The effective uid of this process.
pub fn current_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

fn ensure_private_dir(dir: &Path, uid: u32) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let io = |what: &str, e: std::io::Error| Error::Io {
        context: format!("{what} state directory {}", dir.display()),
        source: e,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io("creating", e))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| io("reading", e))?;
    if !meta.is_dir() || meta.uid() != uid {
        return Err(Error::Config {
            origin: format!("state directory {}", dir.display()),
            message: format!(
                "is not a directory owned by uid {uid}; remove it or set CLEANROOM_STATE_DIR"
            ),
        });
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io("restricting", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker_rules() {
        for ok in ["web", "a", "db-1", "x.y_z", &"n".repeat(64)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", ".a", "a/b", "a b", "é", &"n".repeat(65)] {
            let e = validate_name(bad).unwrap_err().to_string();
            assert!(e.contains("is not valid"), "{bad}: {e}");
        }
    }

    #[test]
    fn generated_names_are_valid_and_differ() {
        let a = generate_name();
        let b = generate_name();
        assert_ne!(a, b);
        validate_name(&a).unwrap();
    }

    #[test]
    fn state_shows_as_ps_does() {
        assert_eq!(SandboxState::Running.to_string(), "running");
        assert_eq!(SandboxState::Exited { code: 3 }.to_string(), "exited (3)");
    }

    #[test]
    fn state_dir_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        ensure_private_dir(&dir, current_uid()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
