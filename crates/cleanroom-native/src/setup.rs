//! The sandbox's set-up, as one ordered sequence run by its PID 1 before it
//! drops privileges (bubblewrap style: read it top to bottom).
//!
//! A scratch tmpfs becomes the root for a moment, with the host's root
//! reachable at `/oldroot`; the new root is assembled at `/newroot`, then
//! becomes `/` and the host's root is detached for good.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use rustix::mount::{mount, mount_remount, MountFlags};

use crate::mounts::{self, create_inside, Step};
use crate::namespaces;
use crate::plan::{NetPlan, Plan, RootPlan, TopEntry};

const NEWROOT: &str = "/newroot";
const OLDROOT: &str = "/oldroot";

/// Files under /proc hidden behind /dev/null, and directories behind an
/// empty read-only tmpfs (runc's defaults).
const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/interrupts",
];
/// Paths under /proc left visible but read-only.
const READ_ONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];
/// Host device nodes bound into the sandbox's /dev (mknod is not allowed
/// in a user namespace).
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Builds the sandbox's world and enters it. On return the process is in
/// the new root, in the working directory, still privileged inside its
/// user namespace.
pub fn run(plan: &Plan) -> Step {
    // 1. A cgroup namespace rooted at the cgroup this process is in now (it
    // may have been created straight into its v2 cgroup, after the first
    // child made the namespaces); then identity and network.
    // SAFETY: a new cgroup namespace leaves the file descriptor table as it
    // is (no UnshareFlags::FILES), so no thread can see a stale one.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWCGROUP) }
        .map_err(|e| format!("creating the cgroup namespace: {e}"))?;
    namespaces::set_hostname(&plan.hostname)?;
    if let NetPlan::Isolated = plan.network {
        namespaces::loopback_up()?;
    }

    // 2. A private scratch root; the host's root stays at /oldroot.
    mounts::make_private(Path::new("/"))?;
    mounts::tmpfs(Path::new("/tmp"), "mode=0700")?;
    rustix::process::chdir("/tmp").map_err(|e| format!("entering the scratch tmpfs: {e}"))?;
    for dir in ["newroot", "oldroot", "upper", "lower"] {
        std::fs::create_dir(dir).map_err(|e| format!("creating scratch {dir}: {e}"))?;
    }
    rustix::process::pivot_root(".", "oldroot")
        .map_err(|e| format!("pivot_root into the scratch tmpfs: {e}"))?;
    rustix::process::chdir("/").map_err(|e| format!("entering the scratch root: {e}"))?;

    // 3. The root filesystem at /newroot.
    let new = Path::new(NEWROOT);
    root_filesystem(plan, new)?;

    // 4. /dev, then a fresh /proc with its sensitive paths masked.
    devices(new, plan.scratch_sizes.shm)?;
    proc(new)?;

    // 5. Writable scratch space, then the spec's own mounts.
    // Each sized (the kernel's default is half the machine's memory).
    let sizes = &plan.scratch_sizes;
    let tmp = create_inside(new, Path::new("/tmp"), true)?;
    mounts::tmpfs(&tmp, &format!("mode=1777,size={}", sizes.tmp))?;
    let work = create_inside(new, &plan.workdir, true)?;
    // The same mode as the engines' working directory, owned by the
    // sandbox's user (the init may be another user inside now).
    let owner = format!("uid={},gid={}", plan.user.uid, plan.user.gid);
    mounts::tmpfs(
        &work,
        &format!(
            "mode={:o},{owner},size={}",
            cleanroom_core::spec::WORKDIR_MODE,
            sizes.workdir
        ),
    )?;
    if let Some(dir) = &plan.start_dir {
        create_inside(new, dir, true)?;
    }
    for (target, size) in &plan.tmpfs {
        let at = create_inside(new, target, true)?;
        mounts::tmpfs(&at, &format!("mode=1777,size={size}"))?;
    }
    for b in &plan.binds {
        let at = create_inside(new, &b.target, b.is_dir)?;
        match &b.tree {
            // Made by the caller, flags and idmapping set.
            Some(tree) => mounts::attach(tree, &at)?,
            None => mounts::bind_with(&host(&b.source), &at, !b.read_only)?,
        }
    }

    // 6. Enter the new root; the host's root is gone from this namespace.
    mounts::pivot_into(new)?;
    if plan.read_only_root {
        remount_read_only("/", MountFlags::NODEV)?;
    }
    // Nothing to create in /dev (its own tmpfs); /dev/shm stays writable.
    remount_read_only("/dev", MountFlags::NOEXEC)?;
    rustix::process::chdir(&plan.workdir).map_err(|e| {
        format!(
            "entering the working directory {}: {e}",
            plan.workdir.display()
        )
    })
}

/// A host path as seen from the scratch root.
fn host(p: &Path) -> PathBuf {
    Path::new(OLDROOT).join(p.strip_prefix("/").unwrap_or(p))
}

fn root_filesystem(plan: &Plan, new: &Path) -> Step {
    match &plan.root {
        RootPlan::Host {
            entries,
            etc_files,
            etc_binds,
        } => {
            mounts::tmpfs(new, "mode=0755")?;
            top_entries(Path::new(OLDROOT), entries, new)?;
            let etc = new.join("etc");
            std::fs::create_dir(&etc).map_err(|e| format!("creating /etc: {e}"))?;
            for (name, content) in etc_files {
                std::fs::write(etc.join(&**name), content)
                    .map_err(|e| format!("writing /etc/{name}: {e}"))?;
            }
            for (p, is_dir) in etc_binds {
                let at = create_inside(new, p, *is_dir)?;
                mounts::bind_with(&host(p), &at, false)?;
            }
            Ok(())
        }
        RootPlan::Dir {
            path,
            entries,
            tree,
            upper,
        } => {
            if !upper {
                // Read-only as it is: the caller's detached copy (made
                // read-only, nosuid, nodev) or the host path, bound so.
                return match tree {
                    Some(tree) => mounts::attach(tree, new),
                    None => mounts::bind_with(&host(path), new, false),
                };
            }
            // The caller's detached copy of the directory, where it made one.
            let lower = match tree {
                Some(tree) => {
                    mounts::attach(tree, Path::new("/lower"))?;
                    PathBuf::from("/lower")
                }
                None => host(path),
            };
            if overlay(&lower, new).is_ok() {
                return Ok(());
            }
            // No overlayfs here: a tmpfs root with the directory's top-level
            // entries bound read-only. New top-level files stay writable
            // (until the root is made read-only); the rest is read-only.
            mounts::tmpfs(new, "mode=0755")?;
            top_entries(&lower, entries, new)
        }
    }
}

/// `lower` under a tmpfs upper layer at `new`: writes land in memory and
/// vanish with the sandbox; the host directory never changes.
fn overlay(lower: &Path, new: &Path) -> Step {
    let upper = Path::new("/upper");
    mounts::tmpfs(upper, "mode=0755")?;
    for d in ["data", "work"] {
        std::fs::create_dir(upper.join(d)).map_err(|e| format!("creating overlay {d}: {e}"))?;
    }
    let base = format!(
        "lowerdir={},upperdir=/upper/data,workdir=/upper/work",
        lower.display()
    );
    let mut last = String::new();
    for opts in [base.clone(), format!("{base},userxattr")] {
        let opts = std::ffi::CString::new(opts)
            .map_err(|_| format!("overlay lower dir {} contains a NUL byte", lower.display()))?;
        match mount(
            "overlay",
            new,
            "overlay",
            MountFlags::NOSUID | MountFlags::NODEV,
            opts.as_c_str(),
        ) {
            Ok(()) => return Ok(()),
            Err(e) => last = format!("overlay on {}: {e}", new.display()),
        }
    }
    Err(last)
}

/// Recreates `entries` at the top of `new`, binding them from `from` (a
/// path in the scratch root: the host's under /oldroot, or /lower).
fn top_entries(from: &Path, entries: &[TopEntry], new: &Path) -> Step {
    for e in entries {
        match e {
            TopEntry::Symlink(name, target) => symlink(target, new.join(name))
                .map_err(|err| format!("creating symlink /{name}: {err}"))?,
            TopEntry::Dir(name) => {
                let at = new.join(name);
                std::fs::create_dir(&at).map_err(|err| format!("creating /{name}: {err}"))?;
                mounts::bind_with(&from.join(name), &at, false)?;
            }
            TopEntry::File(name) => {
                let at = new.join(name);
                std::fs::write(&at, b"").map_err(|err| format!("creating /{name}: {err}"))?;
                mounts::bind_with(&from.join(name), &at, false)?;
            }
        }
    }
    Ok(())
}

fn devices(new: &Path, shm_size: u64) -> Step {
    let dev = create_inside(new, Path::new("/dev"), true)?;
    mount(
        "tmpfs",
        &dev,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        c"mode=0755",
    )
    .map_err(|e| format!("mounting a tmpfs on /dev: {e}"))?;
    for name in DEVICES {
        let at = dev.join(name);
        std::fs::write(&at, b"").map_err(|e| format!("creating /dev/{name}: {e}"))?;
        mounts::bind(&host(&Path::new("/dev").join(name)), &at)?;
    }
    let pts = dev.join("pts");
    std::fs::create_dir(&pts).map_err(|e| format!("creating /dev/pts: {e}"))?;
    // A private devpts instance; without one, terminals are unavailable
    // inside, which is not worth failing the sandbox for.
    let _ = mount(
        "devpts",
        &pts,
        "devpts",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        c"newinstance,ptmxmode=0666,mode=0620",
    );
    let shm = dev.join("shm");
    std::fs::create_dir(&shm).map_err(|e| format!("creating /dev/shm: {e}"))?;
    mounts::tmpfs(&shm, &format!("mode=1777,size={shm_size}"))?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, dev.join(link)).map_err(|e| format!("creating /dev/{link}: {e}"))?;
    }
    Ok(())
}

fn proc(new: &Path) -> Step {
    let p = create_inside(new, Path::new("/proc"), true)?;
    mount(
        "proc",
        &p,
        "proc",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        None,
    )
    .map_err(|e| format!("mounting a fresh /proc: {e}"))?;
    let null = new.join("dev/null");
    for path in MASKED {
        let at = new.join(&path[1..]);
        match std::fs::metadata(&at) {
            Ok(m) if m.is_dir() => mount(
                "tmpfs",
                &at,
                "tmpfs",
                MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
                c"mode=0555,size=0",
            )
            .map_err(|e| format!("masking {path}: {e}"))?,
            Ok(_) => mounts::bind(&null, &at).map_err(|e| format!("masking {path}: {e}"))?,
            Err(_) => {}
        }
    }
    for path in READ_ONLY {
        let at = new.join(&path[1..]);
        if at.exists() {
            mounts::bind(&at, &at)?;
            mounts::read_only(&at)?;
        }
    }
    Ok(())
}

/// Makes the one mount at `path` read-only (not the mounts on top of it),
/// keeping nosuid and the `extra` flags it was mounted with.
fn remount_read_only(path: &str, extra: MountFlags) -> Step {
    // A bind remount changes only per-mount flags; the kernel ignores the
    // (empty) data.
    mount_remount(
        path,
        MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | extra,
        c"",
    )
    .map_err(|e| format!("making {path} read-only: {e}"))
}
