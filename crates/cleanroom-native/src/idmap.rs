//! Who the sandbox's ids are on the host: the user mapping of a run, the
//! user namespaces that carry it, and idmapped copies of host paths.
//!
//! A rootless caller's sandbox runs as the caller (one id mapped, written
//! by the sandbox itself). A root caller's sandbox never runs as host root
//! unless `userns = "identity"` asks for it by name: its ids 0-65535 are the
//! subordinate ids of the `cleanroom` user (`/etc/subuid`, `/etc/subgid`,
//! as podman's `--userns=auto` uses a range), or, without them, its user is
//! host `nobody` (65534). Such a map may only be written by a process with
//! `CAP_SETUID` over the host, so the caller makes the user namespace once
//! per mapping (a short-lived child it writes the maps of) and every
//! sandbox joins it.
//!
//! Host paths reach such a sandbox as detached mount trees the caller makes
//! while it is still host root ([`detached`]): an image's directory
//! idmapped through the sandbox's own mapping (its files appear with the
//! ids they have in the image), bind mounts idmapped so that the caller's
//! files are the sandbox user's and what it writes lands owned by the
//! caller. Where a filesystem cannot be idmapped, the plain copy is used and
//! the report says so.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use cleanroom_core::{Error, Result, SandboxSpec, User, UserNs};

/// The user whose subordinate ids a root caller's sandboxes use.
pub const SUBID_USER: &str = "cleanroom";
/// How many ids a subordinate range must hold (inside ids 0-65535).
pub const RANGE: u32 = 65536;
/// Host `nobody`, for a root caller without subordinate ids.
pub const NOBODY: u32 = 65534;

/// How a sandbox's ids map to the host's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mapping {
    /// The sandbox's user is the caller's own uid and gid (a rootless
    /// caller, or `userns = "identity"`); the sandbox writes this map itself.
    Own { uid: u32, gid: u32 },
    /// Inside ids `0..RANGE` are host ids `uid..`, `gid..` (subordinate ids).
    Range { uid: u32, gid: u32 },
    /// The sandbox's user is host `nobody`.
    Nobody,
}

impl Mapping {
    /// The mapping for `spec` run by this process.
    pub fn for_spec(spec: &SandboxSpec) -> Result<Mapping> {
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        if uid != 0 || spec.userns == UserNs::Identity {
            return Ok(Mapping::Own { uid, gid });
        }
        let Some((su, sg)) = subordinate_ids() else {
            return Ok(Mapping::Nobody);
        };
        let u = spec.user;
        if u.uid >= RANGE || u.gid >= RANGE {
            return Err(Error::InvalidSpec(format!(
                "user {u}: a root caller's sandbox maps ids 0-{} to the subordinate ids of \
                 `{SUBID_USER}`; give a user below {RANGE}, or ask for `--userns identity`",
                RANGE - 1
            )));
        }
        Ok(Mapping::Range { uid: su, gid: sg })
    }

    /// Whether the sandbox joins a user namespace the caller made (else it
    /// makes its own and maps the caller's ids itself).
    pub fn joins(&self) -> bool {
        !matches!(self, Mapping::Own { .. })
    }

    /// The host uid and gid of the sandbox's user `user`.
    pub fn host_ids(&self, user: User) -> (u32, u32) {
        match *self {
            Mapping::Own { uid, gid } => (uid, gid),
            Mapping::Range { uid, gid } => (uid + user.uid, gid + user.gid),
            Mapping::Nobody => (NOBODY, NOBODY),
        }
    }

    /// The ids the sandbox's init takes inside before it builds the
    /// sandbox (it joined as the caller, whose id the map leaves out):
    /// inside root where the range has one, else the only id mapped.
    pub fn setup_ids(&self, user: User) -> Option<(u32, u32)> {
        match self {
            Mapping::Own { .. } => None,
            Mapping::Range { .. } => Some((0, 0)),
            Mapping::Nobody => Some((user.uid, user.gid)),
        }
    }

    /// `uid_map` and `gid_map` of the user namespace sandboxes join.
    fn maps(&self, user: User) -> (String, String) {
        match *self {
            Mapping::Range { uid, gid } => {
                (format!("0 {uid} {RANGE}\n"), format!("0 {gid} {RANGE}\n"))
            }
            _ => {
                let (hu, hg) = self.host_ids(user);
                (
                    format!("{} {hu} 1\n", user.uid),
                    format!("{} {hg} 1\n", user.gid),
                )
            }
        }
    }

    /// The report's words for this mapping of `user`.
    pub fn describe(&self, user: User) -> String {
        let (hu, hg) = self.host_ids(user);
        let inside = format!("sandbox {}:{}", user.uid, user.gid);
        match self {
            Mapping::Own { uid: 0, .. } => {
                format!(
                    "{inside} = host {hu}:{hg}, host root (identity mapping, asked for by name)"
                )
            }
            Mapping::Own { .. } => format!("{inside} = host {hu}:{hg} (the caller)"),
            Mapping::Range { uid, gid } => format!(
                "{inside} = host {hu}:{hg} (ids 0-{} = host {uid}-{}:{gid}-{}, subordinate ids of \
                 `{SUBID_USER}`)",
                RANGE - 1,
                uid + (RANGE - 1),
                gid + (RANGE - 1)
            ),
            Mapping::Nobody => format!(
                "{inside} = host {hu}:{hg}, nobody (no subordinate ids for `{SUBID_USER}` in \
                 /etc/subuid and /etc/subgid)"
            ),
        }
    }

    /// The user namespace sandboxes with this mapping of `user` join (one
    /// per process and mapping, made on first use).
    pub fn user_namespace(&self, user: User) -> io::Result<OwnedFd> {
        let (u, g) = self.maps(user);
        shared_userns(&u, &g)
    }

    /// A user namespace for idmapping the caller's files to the sandbox's
    /// user `user`: the caller's uid and gid (on disk) are the sandbox user's
    /// host ids, so they read as its own and what it writes lands as the
    /// caller's.
    pub fn caller_idmap(&self, user: User) -> io::Result<OwnedFd> {
        let (hu, hg) = self.host_ids(user);
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        shared_userns(&format!("{uid} {hu} 1\n"), &format!("{gid} {hg} 1\n"))
    }
}

/// The first subordinate uid and gid of [`SUBID_USER`], if both files give
/// it a range of at least [`RANGE`] ids. Read once per process.
pub fn subordinate_ids() -> Option<(u32, u32)> {
    static IDS: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *IDS.get_or_init(|| {
        let first = |file: &str| -> Option<u32> {
            let text = std::fs::read_to_string(file).ok()?;
            text.lines().find_map(|l| {
                let mut f = l.trim().split(':');
                let (name, start, count) = (f.next()?, f.next()?, f.next()?);
                let (start, count) = (start.parse::<u32>().ok()?, count.parse::<u32>().ok()?);
                (name == SUBID_USER && count >= RANGE && start.checked_add(RANGE).is_some())
                    .then_some(start)
            })
        };
        Some((first("/etc/subuid")?, first("/etc/subgid")?))
    })
}

/// A user namespace with these maps, made once per process.
fn shared_userns(uid_map: &str, gid_map: &str) -> io::Result<OwnedFd> {
    static MADE: OnceLock<Mutex<HashMap<(String, String), OwnedFd>>> = OnceLock::new();
    let made = MADE.get_or_init(Default::default);
    let mut made = made.lock().unwrap_or_else(|p| p.into_inner());
    let key = (uid_map.to_string(), gid_map.to_string());
    if let Some(fd) = made.get(&key) {
        return fd.try_clone();
    }
    let fd = make_userns(uid_map, gid_map)?;
    let copy = fd.try_clone()?;
    made.insert(key, fd);
    Ok(copy)
}

/// Makes a user namespace with these maps: a child of ours is created in
/// it and sleeps while we write its maps (we hold `CAP_SETUID` over the
/// host) and open it; then it ends, and the namespace lives on in the
/// descriptor. The child shares our memory ([`crate::clone::Sleeper`]):
/// a fork of a large caller would copy its page tables first.
fn make_userns(uid_map: &str, gid_map: &str) -> io::Result<OwnedFd> {
    let (wait_r, wait_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let sleeper =
        crate::clone::Sleeper::start(libc::CLONE_NEWUSER, wait_r.as_fd(), wait_w.as_fd())?;
    let proc = format!("/proc/{}", sleeper.pid.as_raw_pid());
    let result = (|| {
        std::fs::write(format!("{proc}/uid_map"), uid_map)
            .map_err(|e| annotate(e, format!("writing uid_map {uid_map:?}")))?;
        std::fs::write(format!("{proc}/gid_map"), gid_map)
            .map_err(|e| annotate(e, format!("writing gid_map {gid_map:?}")))?;
        std::fs::File::open(format!("{proc}/ns/user")).map(OwnedFd::from)
    })();
    drop(wait_w);
    drop(sleeper);
    result
}

fn annotate(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// `MOUNT_ATTR_IDMAP` from linux/mount.h.
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// A detached copy of the mount tree at host path `path` (Linux 5.2,
/// `open_tree` with `OPEN_TREE_CLONE`), with mount attributes `attrs`
/// (`MOUNT_ATTR_*`), idmapped through `idmap` when given (Linux 5.12). The
/// second value is why the idmapping was refused (the copy is then plain):
/// not every filesystem supports it.
pub fn detached(
    path: &Path,
    attrs: u64,
    idmap: Option<BorrowedFd<'_>>,
) -> io::Result<(OwnedFd, Option<io::Error>)> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with a NUL byte"))?;
    // SAFETY: open_tree with a valid C string; returns a new descriptor.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_RECURSIVE as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(annotate(
            io::Error::last_os_error(),
            format!("copying the mount at {}", path.display()),
        ));
    }
    // SAFETY: a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let refused = match idmap {
        Some(ns) => set_attrs(&fd, attrs | MOUNT_ATTR_IDMAP, Some(ns)).err(),
        None => None,
    };
    if idmap.is_none() || refused.is_some() {
        set_attrs(&fd, attrs, None)
            .map_err(|e| annotate(e, format!("setting the flags of {}", path.display())))?;
    }
    Ok((fd, refused))
}

fn set_attrs(fd: &OwnedFd, attrs: u64, idmap: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let attr = crate::mounts::MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: idmap.map_or(0, |ns| ns.as_raw_fd() as u64),
    };
    // SAFETY: mount_setattr on our detached tree with a correctly laid out
    // `struct mount_attr` whose size we pass; the kernel only reads it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const crate::mounts::MountAttr,
            std::mem::size_of::<crate::mounts::MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_and_words() {
        let user = User { uid: 0, gid: 0 };
        let range = Mapping::Range {
            uid: 100_000,
            gid: 200_000,
        };
        assert_eq!(range.host_ids(User::DEFAULT), (101_000, 201_000));
        assert_eq!(
            range.maps(user),
            ("0 100000 65536\n".into(), "0 200000 65536\n".into())
        );
        assert_eq!(Mapping::Nobody.maps(User::DEFAULT).0, "1000 65534 1\n");
        assert!(range.describe(user).contains("host 100000:200000"));
        assert!(Mapping::Own { uid: 0, gid: 0 }
            .describe(user)
            .contains("identity"));
        assert!(!Mapping::Own { uid: 5, gid: 5 }.joins());
    }
}
