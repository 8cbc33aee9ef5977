//! One sandbox's cgroup: a directory per hierarchy used, limits written,
//! processes added, killed and removed.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::files::{annotate, collect_procs, remove_tree, write_file, write_raw};
use super::gc::reap_dead_once;
use super::hierarchy::{leaf_name, writable};
use super::limits::{set_limit, validate};
use super::{is_v2_root, layout, placement, read_words, Controller, Limits, Version};

/// Makes names unique within this process (with the pid, on the machine).
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Serialises enabling v2 controllers (and moving ourselves into a leaf).
static ENABLE: Mutex<()> = Mutex::new(());

/// How long [`Cgroup::kill_all`] waits for the processes to go.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// One directory of the cgroup, in one hierarchy.
#[derive(Debug)]
struct Dir {
    path: PathBuf,
    version: Version,
    /// The controllers whose limits were written here.
    controllers: Vec<Controller>,
}

/// A sandbox's cgroup, named `cleanroom-<caller pid>-<n>-<caller start time>`, with one directory
/// in each hierarchy it uses: one per v1 controller hierarchy whose limit was
/// asked for, and one in the v2 hierarchy when that is writable (it tracks
/// the processes and kills them with `cgroup.kill`, with or without
/// controllers).
///
/// Dropping it kills every process in it and removes the directories,
/// ignoring errors; [`Cgroup::remove`] does the same and reports them.
#[derive(Debug)]
pub struct Cgroup {
    name: String,
    dirs: Vec<Dir>,
    removed: bool,
}

/// One planned directory: its parent, hierarchy, controllers, and whether
/// it is only for tracking (then a failure to create it is not an error).
struct Planned {
    base: PathBuf,
    version: Version,
    controllers: Vec<Controller>,
    optional: bool,
}

impl Cgroup {
    /// Creates the cgroup below the caller's own cgroup and sets `limits`.
    ///
    /// Every limit set must be enforceable (see [`super::probe`] and
    /// [`super::Support::enforceable`]); one that is not is an
    /// [`io::ErrorKind::Unsupported`] error carrying the reason. With no
    /// limits at all the cgroup still tracks processes, in the v2 hierarchy.
    ///
    /// Memory sets `memory.max` and `memory.swap.max = 0` (v2) or
    /// `memory.limit_in_bytes` and, where swap is accounted,
    /// `memory.memsw.limit_in_bytes` (v1), so swap does not extend it. CPU
    /// sets a quota per 100 ms period (`cpu.max`, or `cpu.cfs_quota_us` and
    /// `cpu.cfs_period_us`). Pids sets `pids.max`.
    ///
    /// In v2 the controllers are enabled in the caller's cgroup's
    /// `cgroup.subtree_control` if they are not yet; when the caller's
    /// cgroup holds processes (which the kernel's "no internal processes"
    /// rule forbids for a cgroup with enabled controllers), the calling
    /// *process* is first moved into a leaf `cleanroom-<pid>-self` beside
    /// the sandbox cgroups. That only works if it is the only process there.
    ///
    /// It also removes the empty cgroups that dead callers left beside it.
    pub fn create(limits: &Limits) -> io::Result<Cgroup> {
        let cgroup = Cgroup::create_with(limits, true)?;
        reap_dead_once(&cgroup.neighbourhood());
        Ok(cgroup)
    }

    /// [`Cgroup::create`] without the sweep for dead callers' cgroups,
    /// which the caller runs when it suits it (a one-shot run: while its
    /// sandbox starts). Without `track_in_v2`, a v2 directory is made
    /// only for limits that live there, not to track the processes of
    /// limits that are all set in v1 (hybrid machines). For a one-shot
    /// sandbox: nothing joins it later, and its pid namespace, which ends
    /// with its init, already ends every process in it. A pair of `mkdir`
    /// and `rmdir` fewer per run.
    pub fn create_with(limits: &Limits, track_in_v2: bool) -> io::Result<Cgroup> {
        validate(limits)?;
        let mut plan: Vec<Planned> = Vec::new();
        for c in limits.controllers() {
            let p = placement(c).as_ref().map_err(|(_, reason)| {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("cannot enforce the {} limit: {reason}", c.limit_name()),
                )
            })?;
            match plan.iter_mut().find(|e| e.base == p.base) {
                Some(e) => e.controllers.push(c),
                None => plan.push(Planned {
                    base: p.base.clone(),
                    version: p.version,
                    controllers: vec![c],
                    optional: false,
                }),
            }
        }
        // The mount table only when a v2 directory may be wanted: the
        // limits' own hierarchies came from `placement`.
        let v2 = match track_in_v2 || plan.is_empty() {
            true => layout()?.v2.as_ref(),
            false => None,
        };
        if let Some(v2) = v2 {
            if !plan.iter().any(|e| e.version == Version::V2) && writable(&v2.base) {
                plan.push(Planned {
                    base: v2.base.clone(),
                    version: Version::V2,
                    controllers: Vec::new(),
                    optional: limits.any(),
                });
            }
        }
        if plan.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "no writable cgroup hierarchy to put the sandbox in (no limits were asked, and \
                 the cgroup v2 hierarchy is missing or not writable)",
            ));
        }
        for p in &plan {
            if p.version == Version::V2 && !p.controllers.is_empty() {
                let names: Vec<&str> = p.controllers.iter().map(|c| c.name()).collect();
                enable_v2_controllers(&p.base, &names)?;
            }
        }

        let mut attempts = 0;
        let (name, dirs) = loop {
            attempts += 1;
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = super::gc::cgroup_name(n);
            match make_dirs(&plan, &name) {
                Ok(dirs) => break (name, dirs),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => continue,
                Err(e) => return Err(e),
            }
        };
        let cgroup = Cgroup {
            name,
            dirs,
            removed: false,
        };
        for d in &cgroup.dirs {
            for &c in &d.controllers {
                // On error `cgroup` is dropped, which removes the directories.
                set_limit(&d.path, d.version, c, limits)?;
            }
        }
        Ok(cgroup)
    }

    /// Where cgroups of dead callers may wait beside this one, for
    /// [`reap_dead_once`]: the parent of each of its directories, and the v2
    /// base when it has no directory there (a dead caller's tracking
    /// directory may be waiting in it).
    pub(crate) fn neighbourhood(&self) -> Vec<PathBuf> {
        let mut bases: Vec<PathBuf> = self
            .dirs
            .iter()
            .filter_map(|d| d.path.parent().map(Path::to_path_buf))
            .collect();
        // Looked up once per process, as the layout is, and not from the
        // mount table if it can be helped: this runs while the sandbox's
        // init makes its mounts (see `hierarchy::quick`).
        static V2_BASE: OnceLock<Option<PathBuf>> = OnceLock::new();
        let v2 = V2_BASE.get_or_init(|| {
            super::hierarchy::quick_v2()
                .map(|h| h.base)
                .or_else(|| layout().ok()?.v2.as_ref().map(|h| h.base.clone()))
        });
        if let Some(base) = v2.as_ref().filter(|b| !bases.contains(b)) {
            bases.push(base.clone());
        }
        bases
    }

    /// The name shared by all its directories, `cleanroom-<pid>-<n>-<start>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its directories, one per hierarchy used.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|d| d.path.as_path())
    }

    /// The directory whose files enforce `controller`'s limit, if set.
    pub fn path_of(&self, controller: Controller) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|d| d.controllers.contains(&controller))
            .map(|d| d.path.as_path())
    }

    /// The hierarchy enforcing `controller`'s limit, if set.
    pub fn version_of(&self, controller: Controller) -> Option<Version> {
        self.dirs
            .iter()
            .find(|d| d.controllers.contains(&controller))
            .map(|d| d.version)
    }

    /// Moves process `pid` (all its threads) into the cgroup, in every
    /// hierarchy. Its future children start there too. Add the sandbox's
    /// init before it runs any user code.
    pub fn add_process(&self, pid: u32) -> io::Result<()> {
        for d in &self.dirs {
            write_file(&d.path.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Opens what a forked child writes to join the cgroup itself
    /// ([`ProcsFiles::join_raw`]) before it execs,
    /// and the v2 directory, so that a child can be created in it directly
    /// (see [`ProcsFiles::v2`]). The descriptors are close-on-exec.
    pub fn open_procs(&self) -> io::Result<ProcsFiles> {
        let open = |path: PathBuf, dir: bool| {
            let mut o = fs::OpenOptions::new();
            if dir {
                o.read(true).custom_flags(libc::O_DIRECTORY);
            } else {
                o.write(true);
            }
            o.open(&path)
                .map(OwnedFd::from)
                .map_err(|e| annotate(e, format!("opening {}", path.display())))
        };
        let mut files = ProcsFiles {
            v1: Vec::new(),
            v2: None,
        };
        for d in &self.dirs {
            match d.version {
                // `tasks`: see `ProcsFiles::join_v1_raw`.
                Version::V1 => files.v1.push(open(d.path.join("tasks"), false)?),
                Version::V2 => {
                    let procs = open(d.path.join("cgroup.procs"), false)?;
                    files.v2 = Some((procs, open(d.path.clone(), true)?));
                }
            }
        }
        Ok(files)
    }

    /// The processes in the cgroup and in any cgroup created below it, in
    /// every hierarchy, without duplicates.
    pub fn procs(&self) -> io::Result<Vec<u32>> {
        let mut pids = Vec::new();
        for d in &self.dirs {
            collect_procs(&d.path, &mut pids)?;
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Whether the kernel's OOM killer killed a process in this cgroup
    /// because of its memory limit (v2 `memory.events`, v1
    /// `memory.oom_control`: `oom_kill` > 0; on v1 kernels without that
    /// counter, `under_oom`). False when no memory limit was set.
    pub fn oom_killed(&self) -> bool {
        self.oom_kills() > 0
    }

    /// How many processes the OOM killer ended in this cgroup (on v1
    /// kernels without that counter: 1 while it is under OOM); 0 without a
    /// memory limit.
    pub fn oom_kills(&self) -> u64 {
        let Some(d) = self
            .dirs
            .iter()
            .find(|d| d.controllers.contains(&Controller::Memory))
        else {
            return 0;
        };
        let (file, keys): (&str, &[&str]) = match d.version {
            Version::V2 => ("memory.events", &["oom_kill"]),
            Version::V1 => ("memory.oom_control", &["oom_kill", "under_oom"]),
        };
        let Ok(text) = fs::read_to_string(d.path.join(file)) else {
            return 0;
        };
        let value = |key: &str| {
            text.lines()
                .filter_map(|l| l.split_once(' '))
                .find(|(k, _)| *k == key)
                .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        };
        keys.iter().find_map(|k| value(k)).unwrap_or(0)
    }

    /// Kills every process in the cgroup (and below) and waits until none
    /// is left. v2 uses `cgroup.kill` where the kernel has it (5.14+),
    /// which also catches processes forking meanwhile; otherwise see
    /// [`Cgroup::kill_all_with_signals`]. Fails with
    /// [`io::ErrorKind::TimedOut`] if processes remain after 10 s.
    pub fn kill_all(&self) -> io::Result<()> {
        let kill_files: Vec<PathBuf> = self
            .dirs
            .iter()
            .filter(|d| d.version == Version::V2)
            .map(|d| d.path.join("cgroup.kill"))
            .filter(|f| f.exists())
            .collect();
        if kill_files.is_empty() {
            return self.kill_all_with_signals();
        }
        for f in &kill_files {
            write_file(f, "1")?;
        }
        // The kernel has sent SIGKILL to all of them; wait until they are
        // gone, signalling again only if that takes unusually long.
        self.wait_empty(false)
    }

    /// The way [`Cgroup::kill_all`] works without `cgroup.kill`: freeze the
    /// v2 directory (if any, so nothing forks meanwhile), send SIGKILL to
    /// every process listed in each `cgroup.procs`, and repeat until no
    /// process is left; then thaw. v1 has no freezing here (the pids limit
    /// bounds a fork race and the loop outlasts it).
    pub fn kill_all_with_signals(&self) -> io::Result<()> {
        let freeze: Vec<PathBuf> = self
            .dirs
            .iter()
            .filter(|d| d.version == Version::V2)
            .map(|d| d.path.join("cgroup.freeze"))
            .filter(|f| f.exists())
            .collect();
        for f in &freeze {
            write_file(f, "1")?;
        }
        let result = self.wait_empty(true);
        for f in &freeze {
            // Killed tasks leave a frozen v2 cgroup, but thaw anyway so a
            // survivor of a timeout is not left frozen forever.
            let _ = write_file(f, "0");
        }
        result
    }

    /// Polls until no process is left, sending SIGKILL to the listed ones
    /// (always if `signal`, else only after a second of waiting).
    fn wait_empty(&self, signal: bool) -> io::Result<()> {
        let start = Instant::now();
        let mut pause = Duration::from_micros(50);
        loop {
            let pids = self.procs()?;
            if pids.is_empty() {
                return Ok(());
            }
            if start.elapsed() > KILL_TIMEOUT {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "cgroup {}: {} process(es) still alive {} s after SIGKILL (pids {:?}); \
                         they may be stuck in the kernel (D state), see /proc/<pid>/stack",
                        self.name,
                        pids.len(),
                        KILL_TIMEOUT.as_secs(),
                        pids
                    ),
                ));
            }
            if signal || start.elapsed() > Duration::from_secs(1) {
                for &p in &pids {
                    // Never 0 (that would be our own process group).
                    let pid = libc::pid_t::try_from(p)
                        .ok()
                        .and_then(rustix::process::Pid::from_raw);
                    if let Some(pid) = pid {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 3 / 2).min(Duration::from_millis(10));
        }
    }

    /// Kills what is left and removes every directory (and any cgroup the
    /// sandbox created below them). Errors name the directory.
    pub fn remove(mut self) -> io::Result<()> {
        self.remove_mut()
    }

    fn remove_mut(&mut self) -> io::Result<()> {
        if self.removed {
            return Ok(());
        }
        // The usual end: the sandbox's processes are gone already, and each
        // directory goes with one `rmdir`. The kernel removes only a cgroup
        // with no process and no child cgroup, so a success leaves nothing
        // behind; whatever is refused is killed and walked below. (Listing,
        // killing and walking first cost a one-shot `cleanroom run
        // --memory` about a tenth of its caller's time.)
        self.dirs.retain(|d| match fs::remove_dir(&d.path) {
            Ok(()) => false,
            Err(e) => e.kind() != io::ErrorKind::NotFound,
        });
        if self.dirs.is_empty() {
            self.removed = true;
            return Ok(());
        }
        let killed = self.kill_all();
        let mut first_err = killed.err();
        for d in &self.dirs {
            if let Err(e) = remove_tree(&d.path) {
                first_err.get_or_insert(e);
            }
        }
        self.removed = true;
        match first_err {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = self.remove_mut();
    }
}

/// The files a child writes to move itself into a [`Cgroup`] (v1 `tasks`,
/// v2 `cgroup.procs`), opened before `fork` so it needs no allocation; and
/// its v2 directory.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ProcsFiles {
    /// `tasks` of each v1 directory.
    #[serde(with = "crate::fdpass::vec")]
    v1: Vec<OwnedFd>,
    /// `cgroup.procs` of the v2 directory, and the directory itself.
    #[serde(with = "crate::fdpass::pair")]
    v2: Option<(OwnedFd, OwnedFd)>,
}

impl ProcsFiles {
    /// Its descriptors in order (each v1 `tasks` file, then the v2
    /// `cgroup.procs` file and directory), how many are v1 and whether v2
    /// follows: to send them to a sandbox's first child.
    pub fn into_parts(self) -> (u32, bool, Vec<OwnedFd>) {
        let v1 = self.v1.len() as u32;
        let v2 = self.v2.is_some();
        let mut fds = self.v1;
        if let Some((procs, dir)) = self.v2 {
            fds.push(procs);
            fds.push(dir);
        }
        (v1, v2, fds)
    }

    /// The files [`ProcsFiles::into_parts`] listed, received; `None` if
    /// their number does not match.
    pub fn from_parts(v1: u32, v2: bool, fds: Vec<OwnedFd>) -> Option<ProcsFiles> {
        let v1 = v1 as usize;
        if fds.len() != v1 + if v2 { 2 } else { 0 } {
            return None;
        }
        let mut fds = fds.into_iter();
        let tasks: Vec<OwnedFd> = fds.by_ref().take(v1).collect();
        let v2 = match (fds.next(), fds.next()) {
            (Some(procs), Some(dir)) => Some((procs, dir)),
            _ => None,
        };
        Some(ProcsFiles { v1: tasks, v2 })
    }

    /// Moves the calling process into the cgroup by writing `0` ("myself")
    /// to every file. Async-signal-safe: raw `write(2)` only, so it can run
    /// in a forked child before `exec`, which must be single-threaded (a v1
    /// `tasks` write moves one thread).
    pub fn join_raw(&self) -> io::Result<()> {
        self.join_v1_raw()?;
        match &self.v2 {
            Some((procs, _)) => join_self(procs.as_fd()),
            None => Ok(()),
        }
    }

    /// [`ProcsFiles::join_raw`] for the v1 directories only: the v2 one is
    /// then entered at `clone3` time with `CLONE_INTO_CGROUP`. For a
    /// single-threaded caller (a forked child) only.
    ///
    /// Moving a whole process (`cgroup.procs`) takes the kernel's cgroup
    /// threadgroup lock for writing, which waits for an RCU grace period
    /// unless another move happened moments before: 10 to 20 ms measured
    /// on an idle machine here. Moving the calling thread alone (`0` to
    /// `tasks`) skips that lock (Linux 6.x), 0.15 ms; for a process with
    /// one thread it is the same move. A child created in its cgroup (v2)
    /// is not moved at all.
    pub fn join_v1_raw(&self) -> io::Result<()> {
        self.v1.iter().try_for_each(|fd| join_self(fd.as_fd()))
    }

    /// The v2 directory (for `CLONE_INTO_CGROUP`) and its `cgroup.procs`.
    pub fn v2(&self) -> Option<(BorrowedFd<'_>, BorrowedFd<'_>)> {
        self.v2
            .as_ref()
            .map(|(procs, dir)| (dir.as_fd(), procs.as_fd()))
    }

    /// Every descriptor held, for a child that closes all others.
    pub fn fds_mut(&mut self) -> impl Iterator<Item = &mut OwnedFd> {
        self.v1
            .iter_mut()
            .chain(self.v2.iter_mut().flat_map(|(a, b)| [a, b]))
    }
}

/// Moves the calling thread (for `tasks`) or process (for `cgroup.procs`)
/// into the cgroup whose file `fd` is, by writing `0` ("myself"). A raw
/// `write(2)`: async-signal-safe, for a forked or vfork-style child.
pub(crate) fn join_self(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: writes one byte from a static buffer to an open fd.
    let n = unsafe { libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) };
    if n != 1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates `name` below every planned base; on `AlreadyExists` (or any
/// error) removes what it created. Optional (tracking-only) directories
/// that cannot be created are left out.
fn make_dirs(plan: &[Planned], name: &str) -> io::Result<Vec<Dir>> {
    let mut dirs: Vec<Dir> = Vec::new();
    for p in plan {
        let path = p.base.join(name);
        match fs::create_dir(&path) {
            Ok(()) => dirs.push(Dir {
                path,
                version: p.version,
                controllers: p.controllers.clone(),
            }),
            Err(e) if p.optional && e.kind() != io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                for d in &dirs {
                    let _ = fs::remove_dir(&d.path);
                }
                let kind = e.kind();
                return Err(io::Error::new(
                    kind,
                    format!("creating cgroup {}: {e}", path.display()),
                ));
            }
        }
    }
    Ok(dirs)
}

/// Enables `names` controllers for the children of `base` (v2), moving this
/// process into its own leaf first if `base` must stop holding processes.
fn enable_v2_controllers(base: &Path, names: &[&str]) -> io::Result<()> {
    let _guard = ENABLE.lock().unwrap_or_else(|p| p.into_inner());
    let subtree = base.join("cgroup.subtree_control");
    let enabled = read_words(&subtree);
    let line: Vec<String> = names
        .iter()
        .filter(|c| !enabled.iter().any(|e| e == *c))
        .map(|c| format!("+{c}"))
        .collect();
    if line.is_empty() {
        return Ok(());
    }
    let line = line.join(" ");
    match write_raw(&subtree, &line) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) && !is_v2_root(base) => {
            let pid = std::process::id();
            let leaf = base.join(leaf_name(pid));
            match fs::create_dir(&leaf) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(annotate(e, format!("creating {}", leaf.display()))),
            }
            write_file(&leaf.join("cgroup.procs"), &pid.to_string())?;
            write_file(&subtree, &line).map_err(|e| {
                annotate(
                    e,
                    "after moving this process into its own leaf; another process in the same \
                     cgroup keeps it busy: run Cleanroom in a cgroup of its own"
                        .to_string(),
                )
            })
        }
        Err(e) => Err(annotate(
            e,
            format!("writing `{line}` to {}", subtree.display()),
        )),
    }
}
