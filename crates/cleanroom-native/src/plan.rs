//! Everything the sandbox's init needs, worked out in the caller before the
//! fork: host paths resolved, the rootfs unpacked, `/etc` generated. The
//! child then only performs system calls in order; it never reads the spec.

use std::borrow::Cow;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use cleanroom_core::{Error, Network, Result, SandboxSpec, User};
use serde::{Deserialize, Serialize};

use crate::idmap::{detached, Mapping};
use crate::rootfs;

/// Which network namespace the sandbox gets.
#[derive(Serialize, Deserialize)]
pub enum NetPlan {
    /// A fresh one with only loopback, brought up.
    Isolated,
    /// The caller's (opt-in).
    Host,
    /// The network namespace of a live sandbox (a pod).
    Join(Pod),
    /// A namespace of the process's pool ([`crate::netns_pool`]): only
    /// loopback, brought up by whoever first uses it.
    Pooled(crate::netns_pool::Join),
}

/// What joining a pod takes: its network namespace and the user namespace
/// that owns it (entered first, since only there the network namespace may
/// be joined), and the pod's uid/gid, which the caller's ids are seen as there.
#[derive(Serialize, Deserialize)]
pub struct Pod {
    #[serde(with = "crate::fdpass")]
    pub net: OwnedFd,
    #[serde(with = "crate::fdpass")]
    pub user: OwnedFd,
    pub uid: u32,
    pub gid: u32,
}

/// One entry at the top of the new root.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum TopEntry {
    /// A directory bound read-only from the host.
    Dir(String),
    /// A file bound read-only from the host.
    File(String),
    /// A symlink recreated as it is on the host.
    Symlink(String, PathBuf),
}

/// Where the root filesystem comes from.
#[derive(Serialize, Deserialize)]
pub enum RootPlan {
    /// A tmpfs holding host directories bound read-only and a generated `/etc`.
    Host {
        entries: Vec<TopEntry>,
        etc_files: Vec<(Cow<'static, str>, Vec<u8>)>,
        /// Host paths under `/etc` bound read-only at the same place, and
        /// whether each is a directory.
        etc_binds: Vec<(PathBuf, bool)>,
    },
    /// A host directory: lower layer of an overlay (upper on tmpfs), or, where
    /// overlayfs is refused, a tmpfs with its top-level entries bound; or,
    /// without `upper`, the directory itself bound read-only.
    Dir {
        path: PathBuf,
        entries: Vec<TopEntry>,
        /// The directory as a detached, idmapped mount made by the caller,
        /// for a sandbox that cannot reach host paths as the caller does.
        #[serde(with = "crate::fdpass::option")]
        tree: Option<OwnedFd>,
        /// Whether a tmpfs layer goes over it: for a writable root, or for
        /// a read-only one that lacks a mount point the init must create
        /// (`/workdir`, a mount's target). A read-only root with all its
        /// mount points is bound as it is, read-only, as `bwrap --ro-bind`
        /// binds one: two mounts fewer (the tmpfs and the overlay).
        upper: bool,
    },
}

/// A host path bound into the sandbox.
#[derive(Debug, Serialize, Deserialize)]
pub struct BindPlan {
    /// Canonical host path.
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
    pub is_dir: bool,
    /// The source as a detached mount made by the caller (idmapped where
    /// the filesystem allows), attached instead of binding `source`.
    #[serde(with = "crate::fdpass::option")]
    pub tree: Option<OwnedFd>,
}

/// The whole sandbox, ready for the child: built in the caller, and moved
/// to the first child by the fork, or sent to the fork server
/// ([`crate::fork_server`]) with its descriptors beside it ([`crate::fdpass`]).
#[derive(Serialize, Deserialize)]
pub struct Plan {
    pub hostname: String,
    pub user: User,
    /// The user namespace the caller made for this mapping, joined instead
    /// of making one (a root caller's sandbox; see [`crate::idmap`]).
    #[serde(with = "crate::fdpass::option")]
    pub userns: Option<OwnedFd>,
    /// The ids (inside) the init takes before it builds the sandbox, when
    /// it joins `userns` as the caller, whose id that map leaves out.
    pub setup_ids: Option<(u32, u32)>,
    /// The report's words for the user mapping.
    pub user_mapping: String,
    /// The caller's effective uid and gid (as a pod's user namespace sees
    /// them, when joining one), mapped to `user` inside.
    pub outer_uid: u32,
    pub outer_gid: u32,
    pub network: NetPlan,
    pub root: RootPlan,
    pub read_only_root: bool,
    pub workdir: PathBuf,
    /// The image's WorkingDir, where commands start: made if the image
    /// lacks it, as Docker does (no tmpfs over it: it keeps the image's files).
    pub start_dir: Option<PathBuf>,
    pub binds: Vec<BindPlan>,
    /// Sizes in bytes of `/tmp`, the working directory and `/dev/shm`.
    pub scratch_sizes: ScratchSizes,
    /// The spec's own tmpfs mounts and their sizes in bytes.
    pub tmpfs: Vec<(PathBuf, u64)>,
    /// Installed by the init on itself, so every process inherits it.
    pub seccomp: Option<crate::seccomp::Filter>,
    pub rlimits: crate::rlimits::Rlimits,
    /// The sandbox cgroup's `cgroup.procs` files; the init joins them
    /// before it does anything else (the first child stays outside).
    pub cgroup: Option<crate::cgroups::ProcsFiles>,
    /// The caller makes the cgroup only after the fork, while the first
    /// child creates the namespaces, and sends its files
    /// ([`crate::protocol::Message::Cgroup`]); the first child waits for
    /// them before it starts the init. A one-shot run: making a v1 memory
    /// cgroup took 0.16 ms of the caller's time before the fork.
    pub cgroup_later: bool,
    /// A command the init starts as soon as it is ready, without waiting
    /// for a request: a one-shot run saves a round trip to the caller.
    pub first_exec: Option<FirstExec>,
    /// For a sandbox that outlives its caller (`create`, `run -d`). Never
    /// sent to the fork server: such a plan is forked by its caller.
    #[serde(skip)]
    pub detached: Option<DetachedPlan>,
}

/// What a detached sandbox's init and supervisor hold, opened by the
/// caller before the fork (after `pivot_root` the init reaches no host
/// path).
pub struct DetachedPlan {
    /// The control socket, bound and listening in the state directory.
    pub listener: OwnedFd,
    /// The uid the creator has as the init's user namespace sees it
    /// (`SO_PEERCRED` there): only connections from it are served.
    pub peer_uid: u32,
    /// The sandbox's state directory, where the supervisor records the
    /// exit status once the init has ended.
    pub state_dir: OwnedFd,
    /// The record's lock file, locked by the creator: held as long as the
    /// supervisor lives, so a free lock means a dead sandbox.
    pub lock: OwnedFd,
    /// The two log files ([`crate::detached::logfile`]).
    pub logs: [OwnedFd; 2],
    /// The read ends of the main command's stdout and stderr pipes (whose
    /// write ends are in `first_exec`), which the init copies to the logs.
    pub main_output: Option<[OwnedFd; 2]>,
}

impl DetachedPlan {
    /// Every descriptor, for the first child to keep.
    pub fn fds_mut(&mut self) -> impl Iterator<Item = &mut OwnedFd> {
        let [a, b] = &mut self.logs;
        [
            &mut self.listener,
            &mut self.state_dir,
            &mut self.lock,
            a,
            b,
        ]
        .into_iter()
        .chain(self.main_output.iter_mut().flat_map(|o| o.iter_mut()))
    }
}

/// Sizes in bytes of the tmpfs mounts every sandbox gets.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct ScratchSizes {
    pub tmp: u64,
    pub workdir: u64,
    pub shm: u64,
}

/// An `exec` request carried in the plan, with the command's end of its
/// stdin, stdout and stderr pipes.
#[derive(Serialize, Deserialize)]
pub struct FirstExec {
    pub msg: crate::protocol::Message,
    #[serde(with = "crate::fdpass::array")]
    pub stdio: [OwnedFd; 3],
    /// The sandbox ends once this command has ended and its exit has been
    /// sent (a one-shot run): the init exits by itself instead of waiting
    /// for the caller to close the socket, one round trip less.
    pub last: bool,
}

impl Plan {
    /// Resolves `spec` on the host. `pod` is the pod to join for
    /// `Network::Pod`, looked up by the caller.
    pub fn new(spec: &SandboxSpec, pod: Option<Pod>, start_dir: Option<PathBuf>) -> Result<Plan> {
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
                    "network pod:{id}: no live native sandbox has id `{id}`: neither one of this process nor a running named sandbox of yours (`cleanroom ps`)"
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
                tree: None,
            });
        }
        let mapping = Mapping::for_spec(spec)?;
        let mut user_mapping = mapping.describe(spec.user);
        let mut root = rootfs::plan(spec)?;
        let userns = if mapping.joins() {
            let ns = mapping
                .user_namespace(spec.user)
                .map_err(|e| Error::io("making the sandbox's user namespace", e))?;
            let notes = host_trees(&mapping, spec.user, &ns, &mut root, &mut binds)?;
            for n in notes {
                user_mapping.push_str("; ");
                user_mapping.push_str(&n);
            }
            Some(ns)
        } else {
            None
        };
        // `tmpfs_mounts` lists /tmp, the working directory and /dev/shm
        // first, then the spec's own.
        let mut sized = spec.tmpfs_mounts().into_iter().map(|t| {
            (
                t.target,
                t.size.unwrap_or(cleanroom_core::spec::DEFAULT_TMPFS_CAP),
            )
        });
        let mut next = || {
            sized
                .next()
                .map_or(cleanroom_core::spec::DEFAULT_TMPFS_CAP, |t| t.1)
        };
        let scratch_sizes = ScratchSizes {
            tmp: next(),
            workdir: next(),
            shm: next(),
        };
        let tmpfs: Vec<(PathBuf, u64)> = sized.collect();
        if let RootPlan::Dir { path, upper, .. } = &mut root {
            // Every path the init mounts on or makes in the new root.
            let mut points = [Path::new("/dev"), Path::new("/proc"), Path::new("/tmp")]
                .into_iter()
                .chain([spec.workdir.as_path()])
                .chain(start_dir.as_deref())
                .chain(tmpfs.iter().map(|(t, _)| t.as_path()))
                .chain(binds.iter().map(|b| b.target.as_path()));
            *upper = !spec.read_only_root || !points.all(|p| crate::mounts::exists_inside(path, p));
        }
        Ok(Plan {
            hostname: spec.hostname.clone(),
            user: spec.user,
            userns,
            setup_ids: mapping.setup_ids(spec.user),
            user_mapping,
            outer_uid,
            outer_gid,
            network,
            root,
            read_only_root: spec.read_only_root,
            workdir: spec.workdir.clone(),
            start_dir,
            binds,
            scratch_sizes,
            tmpfs,
            seccomp: crate::default_seccomp().ok().cloned(),
            rlimits: crate::rlimits::Rlimits::sandbox_default(),
            cgroup: None,
            cgroup_later: false,
            first_exec: None,
            detached: None,
        })
    }
}

/// For a sandbox that joins a user namespace of the caller's (and so cannot
/// reach host paths as the caller): the rootfs directory and every bind
/// source as detached mounts, made now while this process is host root.
/// The rootfs is idmapped through the sandbox's own mapping, binds through
/// one that makes the caller's files the sandbox user's. Returns notes for
/// the report.
fn host_trees(
    mapping: &Mapping,
    user: cleanroom_core::User,
    userns: &OwnedFd,
    root: &mut RootPlan,
    binds: &mut [BindPlan],
) -> Result<Vec<String>> {
    use crate::mounts::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};
    let mut notes = Vec::new();
    let fail =
        |what: &Path, e| Error::io(format!("preparing {} for the sandbox", what.display()), e);
    // Without the new mount API (Linux < 5.2) host paths are bound by path,
    // as the caller's own ids no longer reach them: the report says so.
    let old_kernel = |e: &std::io::Error| e.raw_os_error() == Some(libc::ENOSYS);
    if let RootPlan::Dir { path, tree, .. } = root {
        let attrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
        let (fd, refused) = match detached(path, attrs, Some(userns.as_fd())) {
            Ok(made) => made,
            Err(e) if old_kernel(&e) => {
                notes.push(format!("host paths bound by path, not idmapped ({e})"));
                return Ok(notes);
            }
            Err(e) => return Err(fail(path, e)),
        };
        if let Some(e) = refused {
            notes.push(format!(
                "the rootfs {} is not idmapped ({e}): its files show as nobody",
                path.display()
            ));
        }
        *tree = Some(fd);
    }
    if binds.is_empty() {
        return Ok(notes);
    }
    let idmap = mapping.caller_idmap(user);
    let (hu, hg) = mapping.host_ids(user);
    let mut plain = Vec::new();
    for b in binds.iter_mut() {
        let mut attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
        if b.read_only {
            attrs |= MOUNT_ATTR_RDONLY;
        }
        let ns = idmap.as_ref().ok().map(|fd| fd.as_fd());
        let (fd, refused) = match detached(&b.source, attrs, ns) {
            Ok(made) => made,
            Err(e) if old_kernel(&e) => {
                plain.push(format!("{} ({e})", b.source.display()));
                continue;
            }
            Err(e) => return Err(fail(&b.source, e)),
        };
        let why = refused.map(|e| e.to_string());
        if let Some(e) = why.or_else(|| idmap.as_ref().err().map(ToString::to_string)) {
            plain.push(format!("{} ({e})", b.source.display()));
        }
        b.tree = Some(fd);
    }
    notes.push(if plain.is_empty() {
        "mounts idmapped: the caller's files are the sandbox user's, and what it writes lands \
         owned by the caller"
            .to_string()
    } else {
        format!(
            "mounts not idmapped, where files it writes land owned by host {hu}:{hg}: {}",
            plain.join(", ")
        )
    });
    Ok(notes)
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
