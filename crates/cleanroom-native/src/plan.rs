//! Everything the sandbox's init needs, worked out in the caller before the
//! fork: host paths resolved, the rootfs unpacked, `/etc` generated. The
//! child then only performs system calls in order; it never reads the spec.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use cleanroom_core::{Error, Network, Result, SandboxSpec, User};

use crate::rootfs;

/// Which network namespace the sandbox gets.
pub enum NetPlan {
    /// A fresh one with only loopback, brought up.
    Isolated,
    /// The caller's (opt-in).
    Host,
    /// The network namespace of a live sandbox (a pod).
    Join(Pod),
}

/// What joining a pod takes: its network namespace and the user namespace
/// that owns it (entered first, since only there the network namespace may
/// be joined), and the pod's uid/gid, which the caller's ids are seen as there.
pub struct Pod {
    pub net: OwnedFd,
    pub user: OwnedFd,
    pub uid: u32,
    pub gid: u32,
}

/// One entry at the top of the new root.
#[derive(Clone, Debug)]
pub enum TopEntry {
    /// A directory bound read-only from the host.
    Dir(String),
    /// A file bound read-only from the host.
    File(String),
    /// A symlink recreated as it is on the host.
    Symlink(String, PathBuf),
}

/// Where the root filesystem comes from.
pub enum RootPlan {
    /// A tmpfs holding host directories bound read-only and a generated `/etc`.
    Host {
        entries: Vec<TopEntry>,
        etc_files: Vec<(&'static str, Vec<u8>)>,
        /// Host paths under `/etc` bound read-only at the same place, and
        /// whether each is a directory.
        etc_binds: Vec<(PathBuf, bool)>,
    },
    /// A host directory: lower layer of an overlay (upper on tmpfs), or, where
    /// overlayfs is refused, a tmpfs with its top-level entries bound.
    Dir {
        path: PathBuf,
        entries: Vec<TopEntry>,
    },
}

/// A host path bound into the sandbox.
#[derive(Clone, Debug)]
pub struct BindPlan {
    /// Canonical host path.
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
    pub is_dir: bool,
}

/// The whole sandbox, ready for the child.
pub struct Plan {
    pub hostname: String,
    pub user: User,
    /// The caller's effective uid and gid (as a pod's user namespace sees
    /// them, when joining one), mapped to `user` inside.
    pub outer_uid: u32,
    pub outer_gid: u32,
    pub network: NetPlan,
    pub root: RootPlan,
    pub read_only_root: bool,
    pub workdir: PathBuf,
    pub binds: Vec<BindPlan>,
    pub tmpfs: Vec<(PathBuf, Option<u64>)>,
    /// Installed by the init on itself, so every process inherits it.
    pub seccomp: Option<crate::seccomp::Filter>,
    pub rlimits: crate::rlimits::Rlimits,
    /// The sandbox cgroup's `cgroup.procs` files; the first child joins
    /// them before it creates any namespace.
    pub cgroup: Option<crate::cgroups::ProcsFiles>,
    /// A command the init starts as soon as it is ready, without waiting
    /// for a request: a one-shot run saves a round trip to the caller.
    pub first_exec: Option<FirstExec>,
}

/// An `exec` request carried in the plan, with the command's end of its
/// stdin, stdout and stderr pipes.
pub struct FirstExec {
    pub msg: crate::protocol::Msg,
    pub stdio: [OwnedFd; 3],
}

impl Plan {
    /// Resolves `spec` on the host. `pod` is the pod to join for
    /// `Network::Pod`, looked up by the caller.
    pub fn new(spec: &SandboxSpec, pod: Option<Pod>) -> Result<Plan> {
        let (mut outer_uid, mut outer_gid) = (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        );
        if let Some(p) = &pod {
            (outer_uid, outer_gid) = (p.uid, p.gid);
        }
        let network = match (&spec.network, pod) {
            (Network::None, _) => NetPlan::Isolated,
            (Network::Host, _) => NetPlan::Host,
            (Network::Pod(_), Some(fd)) => NetPlan::Join(fd),
            (Network::Pod(id), None) => {
                return Err(Error::InvalidSpec(format!(
                    "network pod:{id}: no live native sandbox has id `{id}`; create it first in this process"
                )))
            }
        };
        let mut binds = Vec::new();
        for m in &spec.mounts {
            let source = std::fs::canonicalize(&m.source).map_err(|e| {
                Error::io(
                    format!(
                        "mount source {} (for {}): it must exist on the host",
                        m.source.display(),
                        m.target.display()
                    ),
                    e,
                )
            })?;
            let is_dir = source.is_dir();
            binds.push(BindPlan {
                source,
                target: m.target.clone(),
                read_only: m.read_only,
                is_dir,
            });
        }
        Ok(Plan {
            hostname: spec.hostname.clone(),
            user: spec.user,
            outer_uid,
            outer_gid,
            network,
            root: rootfs::plan(spec)?,
            read_only_root: spec.read_only_root,
            workdir: spec.workdir.clone(),
            binds,
            tmpfs: spec
                .tmpfs
                .iter()
                .map(|t| (t.target.clone(), t.size))
                .collect(),
            seccomp: crate::default_seccomp().ok().cloned(),
            rlimits: crate::rlimits::Rlimits::sandbox_default(),
            cgroup: None,
            first_exec: None,
        })
    }
}

/// Mount options are comma-separated text: refuse paths that would break them.
pub fn check_mountable(p: &Path) -> Result<()> {
    let s = p.to_string_lossy();
    if s.contains(',') || s.contains(':') || s.contains('\\') || s.contains('\n') {
        return Err(Error::InvalidSpec(format!(
            "host path `{}` contains `,`, `:`, `\\` or a newline, which mount options cannot carry; rename or move it",
            p.display()
        )));
    }
    Ok(())
}
