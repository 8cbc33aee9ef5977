//! Namespaces: the user namespace that maps the caller to the sandbox's
//! user, and the pid, mount, uts, ipc, net and cgroup namespaces it owns.

use std::os::fd::{AsFd, AsRawFd};

use rustix::thread::{move_into_link_name_space as setns, LinkNameSpaceType, UnshareFlags};

use crate::mounts::Step;
use crate::plan::{NetPlan, Plan};

/// Run by the first child, still in the caller's namespaces: creates every
/// namespace and maps the caller's uid/gid to the spec's user. Its next child
/// is PID 1 of the new pid namespace.
pub fn enter(plan: &Plan) -> Step {
    if plan.outer_uid == 0 {
        // Root's supplementary groups would show up inside as `nogroup`;
        // dropping them keeps root and rootless runs alike.
        let _ = rustix::thread::set_thread_groups(&[]);
    }
    let mut flags = UnshareFlags::NEWNS
        | UnshareFlags::NEWUTS
        | UnshareFlags::NEWIPC
        | UnshareFlags::NEWPID
        | UnshareFlags::NEWCGROUP;
    match &plan.network {
        NetPlan::Isolated => flags |= UnshareFlags::NEWNET,
        NetPlan::Host => {}
        NetPlan::Join(pod) => {
            // Joining a network namespace needs CAP_SYS_ADMIN both in the
            // user namespace owning it and in our own: enter the pod's user
            // namespace first (the caller owns it, so it may), then its
            // network namespace. The sandbox's own user namespace, created
            // below, is then a child of the pod's.
            setns(pod.user.as_fd(), Some(LinkNameSpaceType::User))
                .map_err(|e| format!("entering the pod's user namespace: {e}"))?;
            setns(pod.net.as_fd(), Some(LinkNameSpaceType::Network))
                .map_err(|e| format!("joining the pod's network namespace: {e}"))?;
        }
        NetPlan::Pooled(pooled) => {
            // As for a pod: the user namespace owning it first (a rootless
            // caller's pool has one; the caller owns it, so it may enter),
            // then the namespace. The sandbox's own user namespace, made or
            // joined below, is another one: nothing inside has any
            // capability over this network namespace.
            if let Some(user) = &pooled.user {
                setns(user.as_fd(), Some(LinkNameSpaceType::User))
                    .map_err(|e| format!("entering the network pool's user namespace: {e}"))?;
            }
            setns(pooled.net.as_fd(), Some(LinkNameSpaceType::Network))
                .map_err(|e| format!("joining a pooled network namespace: {e}"))?;
            if pooled.bring_up {
                loopback_up()?;
            }
        }
    }
    // A root caller's sandbox joins the user namespace the caller made with
    // its mapping (a pod member: the pod's, entered above, which is that
    // same one); every other makes its own and maps the caller itself.
    let joined = match (&plan.userns, &plan.network) {
        (Some(_), NetPlan::Join(_)) => true,
        (Some(ns), _) => {
            setns(ns.as_fd(), Some(LinkNameSpaceType::User))
                .map_err(|e| format!("entering the sandbox's user namespace: {e}"))?;
            true
        }
        (None, _) => {
            flags |= UnshareFlags::NEWUSER;
            false
        }
    };
    // SAFETY: no descriptor table is unshared (no `FILES`); the caller is
    // the single-threaded first child.
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(|e| {
        format!("creating namespaces (user, pid, mount, uts, ipc, net, cgroup): {e}")
    })?;
    if joined {
        return Ok(());
    }
    write_maps(plan.user.uid, plan.outer_uid, plan.user.gid, plan.outer_gid)
}

/// Run by the init of a sandbox that joined a user namespace as the caller
/// (whose id its map leaves out): takes `ids` inside, so that what it
/// creates while building the sandbox has an owner there.
pub fn take_setup_ids((uid, gid): (u32, u32)) -> Step {
    // The thread calls are the process's: the init is single-threaded.
    let _ = rustix::thread::set_thread_groups(&[]);
    // Unchecked: no debug assertion may panic in the init (a vfork child).
    let (u, g) = (
        rustix::process::Uid::from_raw_unchecked(uid),
        rustix::process::Gid::from_raw_unchecked(gid),
    );
    rustix::thread::set_thread_res_gid(g, g, g)
        .map_err(|e| format!("taking gid {gid} inside: {e}"))?;
    rustix::thread::set_thread_res_uid(u, u, u).map_err(|e| format!("taking uid {uid} inside: {e}"))
}

/// Maps one id each way; `setgroups` is denied, as an unprivileged caller must.
pub fn write_maps(uid: u32, outer_uid: u32, gid: u32, outer_gid: u32) -> Step {
    let w = |file: &str, text: String| {
        std::fs::write(file, text.as_bytes()).map_err(|e| format!("writing {file} ({text:?}): {e}"))
    };
    w("/proc/self/setgroups", "deny".into())?;
    w("/proc/self/uid_map", format!("{uid} {outer_uid} 1\n"))?;
    w("/proc/self/gid_map", format!("{gid} {outer_gid} 1\n"))
}

pub fn set_hostname(name: &str) -> Step {
    rustix::system::sethostname(name.as_bytes())
        .map_err(|e| format!("setting hostname {name:?}: {e}"))
}

/// Brings `lo` up in the sandbox's fresh network namespace.
pub fn loopback_up() -> Step {
    let fd = rustix::net::socket_with(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| format!("opening a socket to configure lo: {e}"))?;
    // SAFETY: `ifreq` is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills `req.ifr_ifru.ifru_flags` of the
    // interface named in `req`, which lives for the whole call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } != 0 {
        return Err(format!(
            "reading the flags of lo: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the union member SIOCGIFFLAGS just filled in.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above, SIOCSIFFLAGS only reads `req`.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } != 0 {
        return Err(format!(
            "bringing lo up: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}
