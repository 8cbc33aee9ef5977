//! Named native sandboxes that outlive the process that made them.
//!
//! The creator reserves the name ([`state::reserve`]), opens what the init
//! will need after `pivot_root` (the bound control socket, the log files,
//! the state directory, the locked lock file) and forks the sandbox with a
//! supervisor that belongs to no caller. Once the init reports ready, the
//! creator writes the record and lets go. Every later process reaches the
//! sandbox through its control socket ([`handle::NativeDetached`]).

pub mod handle;
pub mod logfile;
pub mod pod;
pub mod state;
mod stats;
mod tty;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use cleanroom_core::detached::{current_uid, now_secs, state_dir};
use cleanroom_core::{
    Cmd, DetachOptions, Detached, Error, Prepared, Removed, Result, SandboxInfo, SandboxSpec,
    SandboxState,
};

use crate::client::{Instance, FIRST_EXEC};
use crate::plan::{DetachedPlan, FirstExec};
use handle::NativeDetached;
use state::Record;

/// Removes a half-made sandbox's directory unless creation finished.
struct Reservation(Option<PathBuf>);

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |e| Error::io(what, e)
}

/// The control socket, bound at `path` (0600) and listening.
fn bind_listener(path: &Path) -> std::io::Result<OwnedFd> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    rustix::net::bind(&fd, &SocketAddrUnix::new(path)?)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    rustix::net::listen(&fd, 64)?;
    Ok(fd)
}

fn open_log(dir: &Path, name: &str) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    Ok(std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dir.join(name))?
        .into())
}

/// The uid a process of `uid` has as seen from inside a sandbox: the
/// spec's user when the sandbox maps the caller itself (rootless), else
/// the kernel's overflow uid (a root caller is not mapped inside).
fn seen_inside(plan: &crate::plan::Plan) -> u32 {
    if plan.userns.is_none() {
        return plan.user.uid;
    }
    std::fs::read_to_string("/proc/sys/kernel/overflowuid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65534)
}

/// `Backend::create_detached_prepared` for native.
pub async fn create(
    spec: &SandboxSpec,
    main: Option<Cmd>,
    options: DetachOptions,
    prepared: Prepared,
) -> Result<Box<dyn Detached>> {
    if !spec.publish.is_empty() {
        // The port proxies run in the creating process, which is about to go.
        return Err(Error::Unsupported {
            backend: "native".into(),
            what: "published ports on a named sandbox (they would end with the creating process); use --backend podman or docker, or `cleanroom run` without -d".into(),
        });
    }
    let root = state_dir()?;
    let name = options.name.clone();
    let dir = state::reserve(&root, &name)?;
    let mut reservation = Reservation(Some(dir.clone()));
    let lock = state::try_lock(&dir, true)
        .map_err(io(format!("locking {}", dir.display())))?
        .ok_or_else(|| Error::backend("native", format!("sandbox `{name}` is being created")))?;
    let listener = bind_listener(&dir.join(state::SOCKET)).map_err(io(format!(
        "binding the control socket in {}",
        dir.display()
    )))?;
    let logs = [
        open_log(&dir, logfile::FILES[0]).map_err(io("opening the log"))?,
        open_log(&dir, logfile::FILES[1]).map_err(io("opening the log"))?,
    ];
    let state_fd = state::open_dir(&dir).map_err(io("opening the state directory"))?;

    let run = crate::image_run(spec).await?;
    let main = main
        .map(|m| run.main_command(m))
        .transpose()?
        .map(|m| cleanroom_core::image_config::starting_in(m, run.start_dir.as_deref()));
    let spec = &run.spec;
    let (enforcement, mut plan, cgroup) = crate::resolve(&run, prepared.into_enforcement()).await?;
    let mut main_output = None;
    if let Some(cmd) = &main {
        let request = crate::exec::Request::new(spec, cmd)?;
        let pipe = || {
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| Error::io("creating the main command's output pipe", e.into()))
        };
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let null: OwnedFd = std::fs::File::open("/dev/null")
            .map_err(io("opening /dev/null"))?
            .into();
        plan.first_exec = Some(FirstExec {
            msg: request.message(FIRST_EXEC, None),
            stdio: [null, out_w, err_w],
            // It ends the sandbox as its main command instead.
            last: false,
        });
        main_output = Some([out_r, err_r]);
    }
    plan.detached = Some(DetachedPlan {
        listener,
        peer_uid: seen_inside(&plan),
        state_dir: state_fd,
        lock: lock.try_clone().map_err(io("sharing the lock"))?,
        logs,
        main_output,
    });
    let inst = Instance::start(plan, cgroup).await?;
    let init_pid = inst.init_pid;
    let supervisor_pid = inst.supervisor_pid;
    let cgroup = inst.release();
    drop(inst);
    let cgroup_dirs = match cgroup {
        Some(cg) => keep_cgroup(cg, &name),
        None => Vec::new(),
    };
    let record = Record {
        name: name.clone(),
        backend: "native".into(),
        image: spec.rootfs.to_string(),
        spec: spec.clone(),
        start_dir: run.start_dir.clone(),
        command: main.as_ref().map(Cmd::argv).unwrap_or_default(),
        labels: options.labels,
        created: now_secs(),
        owner_uid: current_uid(),
        init_pid,
        init_start: state::start_time(init_pid).unwrap_or(0),
        supervisor_pid,
        cgroup: cgroup_dirs,
        release: crate::protocol::RELEASE.into(),
    };
    let bytes = serde_json::to_vec_pretty(&record)
        .map_err(|e| Error::backend("native", format!("encoding the record: {e}")))?;
    state::write_atomic(&dir, state::RECORD, &bytes)
        .map_err(io(format!("writing the record in {}", dir.display())))?;
    // From here the sandbox stands on its own: its supervisor holds the lock.
    reservation.0 = None;
    drop(lock);
    let info = state::info(&dir, &name)
        .map(|(info, _)| info)
        .unwrap_or_else(|| SandboxInfo {
            name: name.clone(),
            backend: "native".into(),
            image: record.image.clone(),
            state: SandboxState::Running,
            created: record.created,
            command: record.command.clone(),
            labels: record.labels.clone(),
            id: dir.display().to_string(),
        });
    Ok(Box::new(NativeDetached::new(
        dir,
        info,
        record,
        enforcement,
    )))
}

/// Renames the sandbox's cgroup directories so that no process's cgroup
/// clean-up takes them for its own (their names carry the creator's pid,
/// which is about to exit), and forgets the handle that would remove them.
fn keep_cgroup(cg: crate::cgroups::Cgroup, name: &str) -> Vec<PathBuf> {
    let suffix = format!(
        "cleanroom-detached-{name}-{}-{}",
        current_uid(),
        cleanroom_core::hash::fnv1a(cg.name().as_bytes()) as u32
    );
    let mut dirs = Vec::new();
    for p in cg.paths() {
        let renamed = p.with_file_name(&suffix);
        match std::fs::rename(p, &renamed) {
            Ok(()) => dirs.push(renamed),
            Err(e) => {
                tracing::warn!("native: renaming cgroup {}: {e}", p.display());
                dirs.push(p.to_path_buf());
            }
        }
    }
    // The record owns the directories now; dropping the handle would
    // remove them under the running sandbox.
    std::mem::forget(cg);
    dirs
}

/// The named sandboxes of this user.
pub fn list(all: bool) -> Result<Vec<SandboxInfo>> {
    let root = state_dir()?;
    Ok(state::names(&root)
        .into_iter()
        .filter_map(|n| state::info(&state::dir_of(&root, &n), &n).map(|(i, _)| i))
        .filter(|i| all || i.state == SandboxState::Running)
        .collect())
}

/// A handle on this user's sandbox `name`, if there is one.
pub fn attach(name: &str) -> Result<Option<Box<dyn Detached>>> {
    if cleanroom_core::detached::validate_name(name).is_err() {
        return Ok(None);
    }
    let root = state_dir()?;
    let dir = state::dir_of(&root, name);
    let Some((info, Some(record))) = state::info(&dir, name) else {
        if dir.is_dir() {
            // Dead before it had a record: only removable.
            return Ok(Some(Box::new(NativeDetached::orphan(dir, name))));
        }
        return Ok(None);
    };
    let enforcement = crate::native_enforcement(&record.spec);
    Ok(Some(Box::new(NativeDetached::new(
        dir,
        info,
        record,
        enforcement,
    ))))
}

/// Removes every trace of this user's dead sandboxes.
pub fn gc() -> Result<Vec<Removed>> {
    let root = state_dir()?;
    let mut removed = Vec::new();
    for name in state::names(&root) {
        let dir = state::dir_of(&root, &name);
        let Some((info, record)) = state::info(&dir, &name) else {
            continue;
        };
        if !matches!(info.state, SandboxState::Dead { .. }) {
            continue;
        }
        removed.extend(handle::remove_traces(&dir, record.as_ref()));
    }
    Ok(removed)
}
