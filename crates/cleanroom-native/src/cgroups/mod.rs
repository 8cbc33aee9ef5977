//! Memory, CPU and pids limits through cgroups, v2 or v1, whichever this
//! machine offers for each controller.
//!
//! A sandbox's cgroup is created *below the caller's own cgroup* (read from
//! `/proc/self/cgroup`; each v1 controller has its own path, v2 one unified
//! path), named `cleanroom-<caller pid>-<n>`, so that [`gc`] can tell
//! whose it was and remove it when that caller is dead.
//!
//! # How the backend uses it
//!
//! ```no_run
//! use cleanroom_native::cgroups::{self, Cgroup, Limits};
//!
//! # fn main() -> std::io::Result<()> {
//! let wanted = Limits { memory: Some(256 << 20), cpus: Some(1.5), pids: Some(512) };
//! // 1. Before anything runs: what can be enforced here, and why not.
//! let support = cgroups::probe(&wanted);
//! for w in support.warnings() {
//!     eprintln!("WARN: {w}"); // and an error instead in strict mode
//! }
//! // 2. The cgroup, with the limits that can be enforced.
//! let cgroup = Cgroup::create(&support.enforceable(&wanted))?;
//! // 3. Spawn the sandbox's init stopped (e.g. blocked on a pipe), add it
//! //    *before* it unshares its cgroup namespace or runs user code, then
//! //    let it go. (Or: `cgroup.open_procs()?` before fork and
//! //    `ProcsFiles::join_raw` in the child.)
//! # let init_pid = 0;
//! cgroup.add_process(init_pid)?;
//! // 4. After the run.
//! let oom = cgroup.oom_killed();
//! cgroup.remove()?; // kills whatever is left, then removes the directories
//! # let _ = oom;
//! # Ok(())
//! # }
//! ```
//!
//! Dropping a [`Cgroup`] kills its processes and removes it. What a killed
//! caller leaves behind, [`gc`] removes.
//!
//! # Out of memory
//!
//! Only the sandbox's init and its commands are in the sandbox's cgroup
//! (v1: the init moves its one thread in; v2: it is created there). The
//! first child, whose memory is a copy of the caller's, stays outside, and
//! the init's own memory is charged to it (the memory's owner). Inside, the
//! OOM killer passes over the init, a vfork child sharing its parent's
//! memory, so it picks a command, even when the memory went to a tmpfs
//! that belongs to no process. `memory.oom.group` stays 0: killing the
//! whole group would take the init along.
//!
//! # Rootless
//!
//! An unprivileged caller can only use a cgroup v2 subtree delegated to it
//! (systemd `Delegate=yes`, e.g. `systemd-run --user --scope -p
//! Delegate=yes ...`). v1 hierarchies are root's. [`probe`] says which limit
//! cannot be enforced and what to change, so the run can report it.

mod cgroup;
mod files;
mod gc;
pub(crate) mod hierarchy;
mod limits;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub(crate) use cgroup::join_self;
pub use cgroup::{Cgroup, ProcsFiles};
pub use gc::{gc, GcReport};
pub(crate) use gc::{reap_dead_once, reap_dead_pending};

use hierarchy::{writable, Hierarchy, Layout};

/// The limits a sandbox asks for; `None` means unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    /// Memory (and, where the kernel accounts it, memory plus swap), bytes.
    pub memory: Option<u64>,
    /// CPU bandwidth in CPUs (`0.5`: half of one CPU, `2.0`: two CPUs).
    pub cpus: Option<f64>,
    /// Processes and threads, all together.
    pub pids: Option<u64>,
}

impl Limits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.memory.is_some() || self.cpus.is_some() || self.pids.is_some()
    }

    /// The controllers these limits need.
    pub fn controllers(&self) -> impl Iterator<Item = Controller> + '_ {
        [
            self.memory.map(|_| Controller::Memory),
            self.cpus.map(|_| Controller::Cpu),
            self.pids.map(|_| Controller::Pids),
        ]
        .into_iter()
        .flatten()
    }
}

/// A cgroup controller Cleanroom sets limits with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Controller {
    /// `memory`: [`Limits::memory`].
    Memory,
    /// `cpu`: [`Limits::cpus`].
    Cpu,
    /// `pids`: [`Limits::pids`].
    Pids,
}

impl Controller {
    /// Every controller.
    pub const ALL: [Controller; 3] = [Controller::Memory, Controller::Cpu, Controller::Pids];

    /// The kernel's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Pids => "pids",
        }
    }

    /// The limit it enforces, as users name it (`memory`, `cpus`, `pids`).
    pub fn limit_name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpus",
            Controller::Pids => "pids",
        }
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// cgroup v1 or v2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// One hierarchy per controller (or group of controllers).
    V1,
    /// The unified hierarchy.
    V2,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V1 => "cgroup v1",
            Version::V2 => "cgroup v2",
        })
    }
}

/// Whether one requested limit can be enforced here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitSupport {
    /// The controller that enforces the limit.
    pub controller: Controller,
    /// Whether [`Cgroup::create`] can set it.
    pub enforceable: bool,
    /// The hierarchy that would enforce it, when there is one.
    pub version: Option<Version>,
    /// For the user: where it is enforced, or why not and what to change.
    pub reason: String,
}

/// What [`probe`] found for each requested limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Support {
    /// One entry per requested limit, in [`Controller::ALL`] order.
    pub limits: Vec<LimitSupport>,
}

impl Support {
    /// Whether every requested limit can be enforced.
    pub fn all_enforceable(&self) -> bool {
        self.limits.iter().all(|l| l.enforceable)
    }

    /// The entry for `controller`, if that limit was requested.
    pub fn get(&self, controller: Controller) -> Option<&LimitSupport> {
        self.limits.iter().find(|l| l.controller == controller)
    }

    /// One warning per limit that cannot be enforced, e.g. `native backend
    /// cannot enforce the memory limit: ...`.
    pub fn warnings(&self) -> Vec<String> {
        self.limits
            .iter()
            .filter(|l| !l.enforceable)
            .map(|l| {
                format!(
                    "native backend cannot enforce the {} limit: {}",
                    l.controller.limit_name(),
                    l.reason
                )
            })
            .collect()
    }

    /// `wanted` without the limits that cannot be enforced, for
    /// [`Cgroup::create`].
    pub fn enforceable(&self, wanted: &Limits) -> Limits {
        let ok = |c| self.get(c).is_some_and(|l| l.enforceable);
        Limits {
            memory: wanted.memory.filter(|_| ok(Controller::Memory)),
            cpus: wanted.cpus.filter(|_| ok(Controller::Cpu)),
            pids: wanted.pids.filter(|_| ok(Controller::Pids)),
        }
    }
}

/// Where a controller's limits go: the hierarchy and our base cgroup in it.
#[derive(Clone, Debug)]
pub(crate) struct Placement {
    pub version: Version,
    /// Our own cgroup in that hierarchy: the sandbox cgroup goes below.
    pub base: PathBuf,
}

/// Whether each requested limit can be enforced here, with the reason.
///
/// Cheap: the hierarchies are read once per process and each requested
/// controller is checked once (mount, delegation, write permission; nothing
/// is created). The answers are cached for the life of the process, and
/// [`Cgroup::create`] places its directories by the same answers.
pub fn probe(limits: &Limits) -> Support {
    // A run without limits asks for no controller, so it reads neither the
    // mount table nor any cgroup file.
    Support {
        limits: limits
            .controllers()
            .map(|c| match placement(c) {
                Ok(p) => LimitSupport {
                    controller: c,
                    enforceable: true,
                    version: Some(p.version),
                    reason: format!(
                        "{} `{}` controller below {}",
                        p.version,
                        c,
                        p.base.display()
                    ),
                },
                Err((version, reason)) => LimitSupport {
                    controller: c,
                    enforceable: false,
                    version: *version,
                    reason: reason.clone(),
                },
            })
            .collect(),
    }
}

/// How to get a delegated cgroup, for reasons.
const DELEGATION_HINT: &str = "rootless cgroups need a cgroup v2 subtree delegated to the user \
     (systemd `Delegate=yes`: run under `systemd-run --user --scope -p Delegate=yes ...`)";

/// Where `controller`'s limits can be set, or (the hierarchy it lives in,
/// why not): worked out once per process and controller, and only for the
/// controllers asked for (a `--memory` run looks at the memory hierarchy
/// alone, once, not again when it makes the cgroup after the fork).
pub(crate) fn placement(
    controller: Controller,
) -> &'static Result<Placement, (Option<Version>, String)> {
    type Answer = OnceLock<Result<Placement, (Option<Version>, String)>>;
    static ANSWERS: [Answer; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let slot = match controller {
        Controller::Memory => 0,
        Controller::Cpu => 1,
        Controller::Pids => 2,
    };
    ANSWERS[slot].get_or_init(|| find_placement(controller))
}

fn find_placement(controller: Controller) -> Result<Placement, (Option<Version>, String)> {
    match hierarchy::quick(controller.name()) {
        Some(hierarchy::Quick::V1(h)) => {
            return v1_placement(&h, controller).map_err(|r| (Some(Version::V1), r))
        }
        Some(hierarchy::Quick::V2(h)) => {
            return v2_placement(&h, controller).map_err(|r| (Some(Version::V2), r))
        }
        None => {}
    }
    let layout = hierarchy::layout().map_err(|e| {
        (
            None,
            format!("cannot read the cgroup layout: {e}; is /proc mounted?"),
        )
    })?;
    if let Some(h) = layout.v1_with(controller.name()) {
        return v1_placement(h, controller).map_err(|r| (Some(Version::V1), r));
    }
    if let Some(h) = &layout.v2 {
        return v2_placement(h, controller).map_err(|r| (Some(Version::V2), r));
    }
    Err((
        None,
        format!(
            "no cgroup hierarchy offers the `{controller}` controller (none is mounted, see \
             /proc/self/mountinfo); mount cgroup2 at /sys/fs/cgroup"
        ),
    ))
}

fn uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

fn v1_placement(h: &Hierarchy, controller: Controller) -> Result<Placement, String> {
    let file = match controller {
        Controller::Memory => "memory.limit_in_bytes",
        Controller::Cpu => "cpu.cfs_quota_us",
        Controller::Pids => "pids.max",
    };
    // pids.max does not exist in the root cgroup: look at the mount's root
    // for the others only when we are not at the root ourselves.
    if controller != Controller::Pids && !h.base.join(file).exists() && !h.mount.join(file).exists()
    {
        return Err(format!(
            "the cgroup v1 `{controller}` controller at {} has no {file} (kernel built without \
             it?)",
            h.mount.display()
        ));
    }
    if !writable(&h.base) {
        return Err(format!(
            "cgroup v1 `{controller}` controller not writable by uid {}: {} belongs to root; \
             {DELEGATION_HINT}",
            uid(),
            h.base.display()
        ));
    }
    Ok(Placement {
        version: Version::V1,
        base: h.base.clone(),
    })
}

fn v2_placement(h: &Hierarchy, controller: Controller) -> Result<Placement, String> {
    let base = &h.base;
    let available = read_words(&base.join("cgroup.controllers"));
    if !available.iter().any(|c| c == controller.name()) {
        return Err(format!(
            "the cgroup v2 `{controller}` controller is not available in {} (its \
             cgroup.controllers lists: {}); the parent cgroup must enable it in \
             cgroup.subtree_control. {DELEGATION_HINT}",
            base.display(),
            if available.is_empty() {
                "nothing".to_string()
            } else {
                available.join(" ")
            }
        ));
    }
    if !writable(base) {
        return Err(format!(
            "cgroup v2 `{controller}`: {} is not writable by uid {}; {DELEGATION_HINT}",
            base.display(),
            uid()
        ));
    }
    let enabled = read_words(&base.join("cgroup.subtree_control"));
    if enabled.iter().any(|c| c == controller.name()) {
        return Ok(Placement {
            version: Version::V2,
            base: base.clone(),
        });
    }
    // It must be enabled for our children, which the "no internal
    // processes" rule forbids while other processes sit in our own cgroup
    // (we can move only ourselves into a leaf; the root is exempt).
    let subtree = base.join("cgroup.subtree_control");
    if !writable(&subtree) {
        return Err(format!(
            "cgroup v2 `{controller}`: {} is not writable by uid {}; {DELEGATION_HINT}",
            subtree.display(),
            uid()
        ));
    }
    if !is_v2_root(base) {
        let ours = std::process::id();
        let others: Vec<String> = read_words(&base.join("cgroup.procs"))
            .into_iter()
            .filter(|p| p.parse::<u32>().ok() != Some(ours))
            .collect();
        if !others.is_empty() {
            return Err(format!(
                "cgroup v2 `{controller}`: the controller can only be enabled for a child of {} \
                 if no other process is in it (the \"no internal processes\" rule), but it also \
                 holds pid(s) {}; run Cleanroom in a cgroup of its own, e.g. under \
                 `systemd-run --user --scope -p Delegate=yes ...`",
                base.display(),
                others.join(" ")
            ));
        }
    }
    Ok(Placement {
        version: Version::V2,
        base: base.clone(),
    })
}

/// Whether `dir` is the root of its v2 hierarchy (only non-root cgroups
/// have `cgroup.type`).
pub(crate) fn is_v2_root(dir: &Path) -> bool {
    !dir.join("cgroup.type").exists()
}

/// The whitespace-separated words of a small cgroup file (empty if missing).
pub(crate) fn read_words(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The hierarchy layout, for [`Cgroup::create`] and [`gc`].
pub(crate) fn layout() -> std::io::Result<&'static Layout> {
    hierarchy::layout().map_err(|e| std::io::Error::other(format!("cgroup layout: {e}")))
}
