//! Mount plumbing for the sandbox's init: binds, tmpfs, read-only flags and
//! safe resolution of paths inside the new root. Every function returns a
//! message naming the path and the error, for the caller to show.

use std::ffi::CString;
use std::path::{Component, Path, PathBuf};

use rustix::mount::{mount, mount_bind_recursive, mount_change, unmount};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

/// A failed set-up step, already worded for the user.
pub type Step<T = ()> = std::result::Result<T, String>;

fn fail(what: impl std::fmt::Display, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Mounts a tmpfs with `options` (for example `mode=1777`).
pub fn tmpfs(target: &Path, options: &str) -> Step {
    let data = CString::new(options)
        .map_err(|_| format!("tmpfs options {options:?} contain a NUL byte"))?;
    mount(
        "tmpfs",
        target,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        data.as_c_str(),
    )
    .map_err(|e| fail(format!("mounting a tmpfs on {}", target.display()), e))
}

/// Binds `source` (recursively) on `target`.
pub fn bind(source: &Path, target: &Path) -> Step {
    mount_bind_recursive(source, target).map_err(|e| {
        fail(
            format!("binding {} on {}", source.display(), target.display()),
            e,
        )
    })
}

/// `MOUNT_ATTR_*` from linux/mount.h.
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;

/// `struct mount_attr`.
#[repr(C)]
pub(crate) struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

/// Attaches the detached mount tree `tree` (see [`crate::idmap::detached`])
/// on `target` (`move_mount`).
pub fn attach(tree: &std::os::fd::OwnedFd, target: &Path) -> Step {
    use rustix::mount::{move_mount, MoveMountFlags};
    let c = cpath(target)?;
    move_mount(
        tree,
        c"",
        rustix::fs::CWD,
        c.as_c_str(),
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| fail(format!("attaching a host path on {}", target.display()), e))
}

/// Makes the mount at `target` and every mount below it read-only, nosuid
/// and nodev (`mount_setattr`, so flags the kernel locked stay as they are).
pub fn read_only(target: &Path) -> Step {
    set_attr(
        target,
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
    )
}

/// Makes the mounts at and below `target` nosuid and nodev, writable.
pub fn nosuid(target: &Path) -> Step {
    set_attr(target, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)
}

fn set_attr(target: &Path, attrs: u64) -> Step {
    let c = cpath(target)?;
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `c` is a valid NUL-terminated path and `attr` a correctly laid
    // out `struct mount_attr` whose size we pass; the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(fail(
            format!("making {} read-only/nosuid", target.display()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Binds `source` on `target` and makes it read-only unless `writable`.
pub fn bind_with(source: &Path, target: &Path, writable: bool) -> Step {
    bind(source, target)?;
    if writable {
        nosuid(target)
    } else {
        read_only(target)
    }
}

/// Stops mount events from flowing between the host and the sandbox.
pub fn make_private(target: &Path) -> Step {
    mount_change(
        target,
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .map_err(|e| fail(format!("making {} private", target.display()), e))
}

/// Moves into `new_root` and detaches the old root completely
/// (`pivot_root(".", ".")` then a lazy unmount of what is underneath).
pub fn pivot_into(new_root: &Path) -> Step {
    rustix::process::chdir(new_root)
        .map_err(|e| fail(format!("entering {}", new_root.display()), e))?;
    rustix::process::pivot_root(".", ".").map_err(|e| fail("pivot_root into the new root", e))?;
    mount_change(
        ".",
        MountPropagationFlags::REC | MountPropagationFlags::DOWNSTREAM,
    )
    .map_err(|e| fail("making the old root a slave", e))?;
    unmount(".", UnmountFlags::DETACH).map_err(|e| fail("detaching the old root", e))?;
    rustix::process::chdir("/").map_err(|e| fail("entering the new root", e))
}

pub fn cpath(p: &Path) -> Step<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| format!("path {} contains a NUL byte", p.display()))
}

/// Resolves the absolute sandbox path `inside` under `root` without leaving
/// it: symlinks are followed as they would be inside (absolute ones from
/// `root`), and a path that climbs above `root` is refused. Missing
/// components are created as directories, the last one as a directory or an
/// empty file (`last_is_dir`). Returns the host-side path under `root`.
pub fn create_inside(root: &Path, inside: &Path, last_is_dir: bool) -> Step<PathBuf> {
    walk_inside(root, inside, Some(last_is_dir))?
        .ok_or_else(|| format!("{} could not be created", inside.display()))
}

/// Whether the absolute sandbox path `inside` already exists under `root`,
/// resolved as [`create_inside`] resolves it (so that it would create
/// nothing). A path that climbs out of `root` counts as missing.
pub fn exists_inside(root: &Path, inside: &Path) -> bool {
    matches!(walk_inside(root, inside, None), Ok(Some(_)))
}

/// [`create_inside`]'s walk: creates what is missing when `create` says
/// what the last component is, else stops at the first missing one (`None`).
fn walk_inside(root: &Path, inside: &Path, create: Option<bool>) -> Step<Option<PathBuf>> {
    // Components still to walk, in order (owned, so symlink targets can be
    // spliced in).
    let mut pending: std::collections::VecDeque<std::ffi::OsString> = inside
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut resolved: Vec<std::ffi::OsString> = Vec::new();
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            if resolved.pop().is_none() {
                return Err(format!(
                    "{} escapes the sandbox's root through `..`; refusing it",
                    inside.display()
                ));
            }
            continue;
        }
        let here: PathBuf = resolved.iter().fold(root.to_path_buf(), |p, c| p.join(c));
        let candidate = here.join(&name);
        let last = pending.is_empty();
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(format!("{}: too many symlinks", inside.display()));
                }
                let target = std::fs::read_link(&candidate)
                    .map_err(|e| fail(format!("reading link {}", candidate.display()), e))?;
                if target.is_absolute() {
                    resolved.clear();
                }
                let mut spliced: std::collections::VecDeque<std::ffi::OsString> = target
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(n) => Some(n.to_os_string()),
                        Component::ParentDir => Some("..".into()),
                        _ => None,
                    })
                    .collect();
                spliced.extend(pending.drain(..));
                pending = spliced;
            }
            Ok(_) => resolved.push(name),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(last_is_dir) = create else {
                    return Ok(None);
                };
                if last && !last_is_dir {
                    std::fs::write(&candidate, b"")
                        .map_err(|e| fail(format!("creating {}", candidate.display()), e))?;
                } else {
                    std::fs::create_dir(&candidate)
                        .map_err(|e| fail(format!("creating {}", candidate.display()), e))?;
                }
                resolved.push(name);
            }
            Err(e) => return Err(fail(format!("looking at {}", candidate.display()), e)),
        }
    }
    Ok(Some(
        resolved.iter().fold(root.to_path_buf(), |p, c| p.join(c)),
    ))
}
