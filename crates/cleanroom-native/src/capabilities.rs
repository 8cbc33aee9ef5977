//! Dropping privileges for good: the spec's uid and gid, no capability in
//! any set (effective, permitted, inheritable, ambient, bounding), and
//! no_new_privs so nothing (setuid binaries, file capabilities) gives any back.

use rustix::process::{Gid, Uid};
use rustix::thread::{set_no_new_privs, set_thread_res_gid, set_thread_res_uid};

use crate::mounts::Step;

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Becomes `uid:gid` inside with nothing else: no capabilities anywhere and
/// no_new_privs set. Irreversible.
pub fn drop_all(uid: u32, gid: u32) -> Step {
    // The bounding set first: dropping from it needs CAP_SETPCAP, which we
    // still hold. Unknown capability numbers end the loop (EINVAL).
    for cap in 0..64 {
        // SAFETY: PR_CAPBSET_DROP takes a capability number and no pointers.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(format!(
                "dropping capability {cap} from the bounding set: {e}"
            ));
        }
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointers.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(format!(
            "clearing ambient capabilities: {}",
            std::io::Error::last_os_error()
        ));
    }
    // Per thread, as the raw syscalls are: this process has one thread.
    let (g, u) = (Gid::from_raw(gid), Uid::from_raw(uid));
    set_thread_res_gid(g, g, g).map_err(|e| format!("switching to gid {gid}: {e}"))?;
    set_thread_res_uid(u, u, u).map_err(|e| format!("switching to uid {uid}: {e}"))?;
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: capset reads one header and two data structs (version 3), laid
    // out as the kernel's; both live across the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    if rc != 0 {
        return Err(format!(
            "clearing capabilities: {}",
            std::io::Error::last_os_error()
        ));
    }
    set_no_new_privs(true).map_err(|e| format!("setting no_new_privs: {e}"))
}
