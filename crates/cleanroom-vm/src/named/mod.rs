//! Named VMs that outlive the process that made them. Each lives in
//! `<state_dir>/.vm/<name>/` (0700; the leading dot keeps the native
//! backend, which owns `<state_dir>`'s named entries, from taking it for one
//! of its own):
//!
//! - `lock`: held by the creator while it boots the VM; a directory without
//!   a record whose lock is free is a creation that was interrupted;
//! - `record.json` ([`Record`]): written atomically once the VM holds its
//!   sandbox, with QEMU's pid and start time;
//! - `port-N.sock` (QEMU's listening sockets, 0600) and `port-N.lock`;
//! - `qemu.pid`, `qemu.log`, `console.log`.
//!
//! QEMU runs daemonized (`-daemonize`): it is no caller's child and has no
//! parent-death signal, so it outlives its creator. Inside, the agent holds
//! the native backend's detached sandbox, whose state, logs and exit code
//! are the VM's. A VM whose QEMU is gone is dead; `gc` removes its files.

pub mod handle;
pub mod port;

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cleanroom_core::detached::{current_uid, now_secs, state_dir};
use cleanroom_core::{
    Cmd, DetachOptions, Detached, Error, Prepared, Removed, Result, SandboxInfo, SandboxSpec,
    SandboxState,
};
use serde::{Deserialize, Serialize};

use cleanroom_native::detached::state;

use crate::backend::{expect_done, plan};
use crate::protocol::Request;
use crate::vm::{self, Channel};
use crate::NAME;
use handle::VmNamed;
use port::{Port, Use, PORTS};

const RECORD: &str = "record.json";
const PIDFILE: &str = "qemu.pid";
const QEMU_LOG: &str = "qemu.log";
const CONSOLE: &str = "console.log";

/// What `record.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    pub backend: String,
    pub image: String,
    /// The spec as the caller gave it (host paths).
    pub spec: SandboxSpec,
    pub command: Vec<String>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub created: u64,
    pub owner_uid: u32,
    pub qemu_pid: u32,
    /// QEMU's start time (clock ticks after boot): a pid reused by another
    /// process is not our VM.
    pub qemu_start: u64,
    /// The guest kernel's release and the accelerator, for the report.
    pub kernel: String,
    pub accel: String,
}

/// `<state_dir>/.vm`, made 0700.
pub fn root() -> Result<PathBuf> {
    let root = state_dir()?.join(".vm");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&root)
        .map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
    Ok(root)
}

/// When process `pid` started (field 22 of its stat), if it runs: a
/// zombie (a killed QEMU its adoptive parent has not reaped yet) does not.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

impl Record {
    /// Whether this record's QEMU still runs.
    pub fn alive(&self) -> bool {
        start_time(self.qemu_pid) == Some(self.qemu_start)
    }
}

fn read_record(dir: &Path) -> Option<Record> {
    serde_json::from_slice(&std::fs::read(dir.join(RECORD)).ok()?).ok()
}

use cleanroom_core::paths::write_atomic;

/// The pid in QEMU's pidfile, if that process is the QEMU of `dir` (its
/// command line names the directory).
fn qemu_of(dir: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(dir.join(PIDFILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let needle = dir.join(PIDFILE);
    let needle = needle.to_string_lossy();
    cmdline
        .split(|&b| b == 0)
        .any(|arg| arg == needle.as_bytes())
        .then_some(pid)
}

/// SIGKILLs `pid` and waits (up to 5 s) until it is gone.
fn kill_and_wait(pid: u32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while start_time(pid).is_some() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills the VM of `dir` (if its QEMU runs) and removes the directory.
fn remove_dir(dir: &Path, record: Option<&Record>) -> Result<()> {
    if let Some(r) = record.filter(|r| r.alive()) {
        kill_and_wait(r.qemu_pid);
    } else if let Some(pid) = qemu_of(dir) {
        kill_and_wait(pid);
    }
    cleanroom_core::paths::remove_all(dir)
        .map_err(|e| Error::io(format!("removing {}", dir.display()), e))
}

/// Removes a half-made VM (and kills its QEMU) unless creation finished.
struct Reservation(Option<PathBuf>);

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = remove_dir(&dir, None);
        }
    }
}

/// `Backend::create_detached_prepared` for vm (blocking).
pub fn create(
    spec: &SandboxSpec,
    main: Option<Cmd>,
    options: DetachOptions,
    prepared: Prepared,
) -> Result<Box<dyn Detached>> {
    let root = root()?;
    let name = options.name.clone();
    let dir = root.join(&name);
    if vm::port_socket(&dir, PORTS - 1).as_os_str().len() >= 100 {
        return Err(Error::Config {
            origin: format!("sandbox `{name}`"),
            message: format!(
                "its VM's sockets under {} would pass the 107-byte limit of a socket path; use \
                 a shorter name or a shorter CLEANROOM_STATE_DIR",
                root.display()
            ),
        });
    }
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Config {
                origin: format!("sandbox `{name}`"),
                message: "name already in use; choose another, or `cleanroom rm` it first".into(),
            })
        }
        Err(e) => return Err(Error::io(format!("creating {}", dir.display()), e)),
    }
    let mut reservation = Reservation(Some(dir.clone()));
    let lock = state::try_lock(&dir, true)
        .map_err(|e| Error::io(format!("locking {}", dir.display()), e))?
        .ok_or_else(|| Error::backend(NAME, format!("sandbox `{name}` is being created")))?;
    for i in 0..PORTS {
        std::fs::File::create(port::lock_file(&dir, i))
            .map_err(|e| Error::io(format!("creating port locks in {}", dir.display()), e))?;
    }

    let probe = crate::backend::accel()?;
    let (kernel, initramfs) = crate::boot_files()?;
    let (opts, guest_spec) = plan(spec, &probe)?;
    let started = std::time::Instant::now();
    let qemu_pid = spawn(&kernel.boot_image(), &initramfs, &opts, &dir)?;
    let qemu_start = start_time(qemu_pid).unwrap_or(0);

    let booted = (|| {
        let mut port = Port::open(&dir, Use::Control, Duration::ZERO, opts.boot_timeout)?;
        let boot_time = started.elapsed();
        port.send(&Request::CreateNamed {
            spec: Box::new(guest_spec),
            main: main.clone(),
            name: name.clone(),
        })?;
        expect_done(&mut port)?;
        Ok::<_, Error>(boot_time)
    })();
    let boot_time = match booted {
        Ok(t) => t,
        Err(e) => {
            let mut console = std::fs::File::open(dir.join(CONSOLE))
                .map_err(|e| Error::io("opening the console log", e))?;
            let mut qemu_log = std::fs::File::open(dir.join(QEMU_LOG))
                .map_err(|e| Error::io("opening qemu.log", e))?;
            return Err(vm::boot_failed(
                &e.to_string(),
                &mut console,
                &mut qemu_log,
                &opts,
            ));
        }
    };
    vm::record_boot(probe.accel, boot_time);
    let record = Record {
        name: name.clone(),
        backend: NAME.into(),
        image: spec.rootfs.to_string(),
        spec: spec.clone(),
        command: main.as_ref().map(Cmd::argv).unwrap_or_default(),
        labels: options.labels,
        created: now_secs(),
        owner_uid: current_uid(),
        qemu_pid,
        qemu_start,
        kernel: kernel.release.clone(),
        accel: probe.accel.name().into(),
    };
    let bytes = serde_json::to_vec_pretty(&record)
        .map_err(|e| Error::backend(NAME, format!("encoding the record: {e}")))?;
    write_atomic(&dir, RECORD, &bytes)
        .map_err(|e| Error::io(format!("writing the record in {}", dir.display()), e))?;
    reservation.0 = None;
    drop(lock);
    let mut enforcement = prepared.into_enforcement();
    enforcement.notes.push(format!(
        "vm: guest kernel {}, accelerator {} ({}), booted in {} ms; QEMU pid {qemu_pid} outlives \
         this process",
        kernel.release,
        probe.accel.name(),
        probe.why,
        boot_time.as_millis()
    ));
    let info = SandboxInfo {
        name,
        backend: NAME.into(),
        image: record.image.clone(),
        state: SandboxState::Running,
        created: record.created,
        command: record.command.clone(),
        labels: record.labels.clone(),
        id: dir.display().to_string(),
    };
    Ok(Box::new(VmNamed::new(dir, info, record, enforcement)))
}

/// Starts QEMU daemonized for the VM in `dir`; returns its pid once its
/// sockets listen.
fn spawn(kernel: &Path, initramfs: &Path, opts: &vm::BootOptions, dir: &Path) -> Result<u32> {
    let channel = Channel::Listen { dir, ports: PORTS };
    let log =
        std::fs::File::create(dir.join(QEMU_LOG)).map_err(|e| Error::io("creating qemu.log", e))?;
    let out = std::process::Command::new(vm::QEMU)
        .args(vm::qemu_args(
            kernel,
            initramfs,
            opts,
            &channel,
            &dir.join(CONSOLE),
        ))
        .arg("-daemonize")
        .arg("-pidfile")
        .arg(dir.join(PIDFILE))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .status()
        .map_err(|e| {
            Error::backend(
                NAME,
                format!(
                    "cannot run {}: {e}; install qemu-system-x86 (`apt-get install \
                     qemu-system-x86`)",
                    vm::QEMU
                ),
            )
        })?;
    if !out.success() {
        let text = std::fs::read_to_string(dir.join(QEMU_LOG)).unwrap_or_default();
        return Err(Error::backend(
            NAME,
            format!("{} failed ({out}): {}", vm::QEMU, text.trim()),
        ));
    }
    for i in 0..PORTS {
        let _ = std::fs::set_permissions(
            vm::port_socket(dir, i),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        );
    }
    std::fs::read_to_string(dir.join(PIDFILE))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| Error::backend(NAME, format!("{} wrote no pidfile", vm::QEMU)))
}

/// The state of the VM in `dir` and its record: `None` while it is being
/// created.
fn state_of(dir: &Path) -> Option<(SandboxState, Option<Record>)> {
    let record = read_record(dir);
    let Some(r) = record else {
        let creating = !matches!(state::try_lock(dir, false), Ok(Some(_)) | Err(_));
        return (!creating).then(|| {
            (
                SandboxState::Dead {
                    reason: "its creation was interrupted".into(),
                },
                None,
            )
        });
    };
    if !r.alive() {
        return Some((
            SandboxState::Dead {
                reason: "its QEMU is gone (killed?) and the VM was not removed".into(),
            },
            Some(r),
        ));
    }
    // The sandbox inside knows whether its main command exited. A VM too
    // busy to answer soon still runs.
    let state = Port::open(
        dir,
        Use::Control,
        Duration::from_secs(10),
        Duration::from_secs(30),
    )
    .and_then(|mut p| handle::info_over(&mut p))
    .map(|i| i.state)
    .unwrap_or(SandboxState::Running);
    Some((state, Some(r)))
}

fn info_of(dir: &Path, name: &str, state: SandboxState, record: Option<&Record>) -> SandboxInfo {
    SandboxInfo {
        name: name.to_string(),
        backend: NAME.into(),
        image: record.map(|r| r.image.clone()).unwrap_or_default(),
        state,
        created: record.map(|r| r.created).unwrap_or_default(),
        command: record.map(|r| r.command.clone()).unwrap_or_default(),
        labels: record.map(|r| r.labels.clone()).unwrap_or_default(),
        id: dir.display().to_string(),
    }
}

use cleanroom_core::detached::names_in as names;

/// The named VMs of this user.
pub fn list(all: bool) -> Result<Vec<SandboxInfo>> {
    let root = root()?;
    Ok(names(&root)
        .into_iter()
        .filter_map(|n| {
            let dir = root.join(&n);
            state_of(&dir).map(|(s, r)| info_of(&dir, &n, s, r.as_ref()))
        })
        .filter(|i| all || i.state == SandboxState::Running)
        .collect())
}

/// A handle on this user's VM `name`, if there is one.
pub fn attach(name: &str) -> Result<Option<Box<dyn Detached>>> {
    if cleanroom_core::detached::validate_name(name).is_err() {
        return Ok(None);
    }
    let dir = root()?.join(name);
    if !dir.is_dir() {
        return Ok(None);
    }
    let (state, record) = state_of(&dir).unwrap_or((SandboxState::Running, None));
    let info = info_of(&dir, name, state, record.as_ref());
    let enforcement = match &record {
        Some(r) => {
            let mut e = crate::backend::vm_enforcement(&r.spec);
            e.notes.push(format!(
                "vm: guest kernel {}, accelerator {}, QEMU pid {}",
                r.kernel, r.accel, r.qemu_pid
            ));
            e
        }
        None => cleanroom_core::Enforcement::new(NAME),
    };
    Ok(Some(Box::new(VmNamed::from_parts(
        dir,
        info,
        record,
        enforcement,
    ))))
}

/// Removes the files of dead VMs (and the QEMU of an interrupted creation).
pub fn gc() -> Vec<Removed> {
    let Ok(root) = root() else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for name in names(&root) {
        let dir = root.join(&name);
        let record = read_record(&dir);
        let dead = match &record {
            Some(r) => !r.alive(),
            None => matches!(state::try_lock(&dir, false), Ok(Some(_))),
        };
        if dead && remove_dir(&dir, record.as_ref()).is_ok() {
            removed.push(Removed::one(
                Removed::TEMP,
                format!("vm: removed dead VM `{name}` ({})", dir.display()),
            ));
        }
    }
    removed
}
