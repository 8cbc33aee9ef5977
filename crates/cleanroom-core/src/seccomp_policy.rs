//! The one system-call policy every isolating backend enforces, as plain
//! data: native compiles it into BPF, the engines receive it rendered as a
//! Docker/OCI seccomp profile. Modelled on Docker's default profile, but a
//! deny list: everything not named here is allowed.
//!
//! Denied: mounting, kernel modules and `kexec`, BPF and perf, tracing
//! other processes, the kernel keyring, new namespaces (`unshare`/`clone`
//! with a `CLONE_NEW*` flag, `setns`), swap, reboot, the clocks, accounting
//! and quotas, file handles, `userfaultfd`, `io_uring` (whose operations a
//! filter never sees), the kernel log, odd personalities and, on x86_64,
//! port I/O and the removed module and `sysctl` calls. A denied call fails
//! with `EPERM`. `clone3` fails with `ENOSYS`, because its flags live in
//! memory a filter cannot read: the C library then falls back to `clone`,
//! whose flags are checked.

/// The errno a denied call returns (`EPERM`, the same number on every
/// Linux architecture).
pub const EPERM: u32 = 1;
/// The errno of a call that must look absent (`ENOSYS`).
pub const ENOSYS: u32 = 38;

/// A call denied with [`EPERM`] whatever its arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denied {
    /// The name as in `man 2 syscalls` and Docker profiles.
    pub name: &'static str,
    /// The only architecture (`x86_64`, `aarch64`) that has it, or `None`
    /// for every architecture.
    pub only_on: Option<&'static str>,
}

const fn all(name: &'static str) -> Denied {
    Denied {
        name,
        only_on: None,
    }
}

const fn x86_64(name: &'static str) -> Denied {
    Denied {
        name,
        only_on: Some("x86_64"),
    }
}

/// Denied with [`EPERM`] whatever the arguments.
pub const DENIED: &[Denied] = &[
    // Mounting and the new mount API.
    all("mount"),
    all("umount2"),
    all("pivot_root"),
    all("fsopen"),
    all("fsconfig"),
    all("fsmount"),
    all("fspick"),
    all("move_mount"),
    all("open_tree"),
    all("mount_setattr"),
    // Replacing or extending the kernel.
    all("kexec_load"),
    all("kexec_file_load"),
    all("init_module"),
    all("finit_module"),
    all("delete_module"),
    all("bpf"),
    all("perf_event_open"),
    all("lookup_dcookie"),
    // Other processes' memory.
    all("ptrace"),
    all("process_vm_readv"),
    all("process_vm_writev"),
    all("kcmp"),
    // The kernel keyring is not namespaced.
    all("keyctl"),
    all("add_key"),
    all("request_key"),
    // Joining namespaces.
    all("setns"),
    // Host-wide state.
    all("swapon"),
    all("swapoff"),
    all("reboot"),
    all("settimeofday"),
    all("clock_settime"),
    all("adjtimex"),
    all("clock_adjtime"),
    all("acct"),
    all("quotactl"),
    all("quotactl_fd"),
    all("syslog"),
    all("vhangup"),
    all("nfsservctl"),
    // File handles bypass path-based confinement.
    all("open_by_handle_at"),
    all("name_to_handle_at"),
    // A classic kernel-exploit helper.
    all("userfaultfd"),
    // io_uring runs operations the filter never sees (Docker denies it too).
    all("io_uring_setup"),
    all("io_uring_enter"),
    all("io_uring_register"),
    // Whole-filesystem event monitoring.
    all("fanotify_init"),
    // x86_64 only: port I/O, the LDT, and calls long removed.
    x86_64("iopl"),
    x86_64("ioperm"),
    x86_64("modify_ldt"),
    x86_64("create_module"),
    x86_64("get_kernel_syms"),
    x86_64("query_module"),
    x86_64("uselib"),
    x86_64("_sysctl"),
];

/// Calls that fail with [`ENOSYS`], as if the kernel lacked them.
pub const ENOSYS_CALLS: &[&str] = &["clone3"];

/// Every `CLONE_NEW*` flag `clone` accepts: `clone` with any of them set
/// fails with [`EPERM`] (`CLONE_NEWTIME` shares its bit with the exit
/// signal there, so it is only checked for `unshare`). In the low 32 bits:
/// `clone` ignores the upper half of its flags.
pub const CLONE_NAMESPACE_FLAGS: &[u64] = &[
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

/// `CLONE_NEWTIME`: `unshare` with it, or with any of
/// [`CLONE_NAMESPACE_FLAGS`], fails with [`EPERM`].
pub const CLONE_NEWTIME: u64 = 0x80;

/// `unshare` is denied with each of these flags (the low 32 bits of its
/// argument: it refuses any flag in the upper half anyway).
pub fn unshare_flags() -> impl Iterator<Item = u64> {
    CLONE_NAMESPACE_FLAGS.iter().copied().chain([CLONE_NEWTIME])
}

/// The only values `personality` accepts (its argument's low 32 bits):
/// `PER_LINUX`, `PER_LINUX32`, `UNAME26`, both, and `0xffffffff` (a query
/// that changes nothing), as Docker allows. Anything else fails with [`EPERM`].
pub const PERSONALITIES_ALLOWED: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// Whether the policy denies `name` outright or for some arguments (for
/// reports and docs; `arch` as in [`Denied::only_on`]).
pub fn denies(name: &str, arch: &str) -> bool {
    DENIED
        .iter()
        .any(|d| d.name == name && d.only_on.is_none_or(|a| a == arch))
        || ENOSYS_CALLS.contains(&name)
        || matches!(name, "clone" | "unshare" | "personality")
}

/// The 32-bit values that are not in `allowed`, as aligned blocks
/// `(mask, value)`: `x & mask == value` holds exactly for the values of one
/// block, so one masked comparison per block denies everything else. This
/// is how a profile format without "not one of" (an OCI profile's
/// comparisons on one argument cannot be combined) says "only these values".
pub fn complement_blocks(allowed: &[u64]) -> Vec<(u64, u64)> {
    const TOP: u64 = 1 << 32;
    let mut points: Vec<u64> = allowed.iter().map(|v| v & (TOP - 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut blocks = Vec::new();
    let mut start = 0u64;
    for end in points.into_iter().chain([TOP]) {
        // Cover [start, end) with the largest aligned blocks that fit.
        while start < end {
            let align = if start == 0 {
                TOP
            } else {
                1u64 << start.trailing_zeros()
            };
            let mut size = align.min(TOP);
            while start + size > end {
                size /= 2;
            }
            blocks.push(((TOP - 1) & !(size - 1), start));
            start += size;
        }
        start = end + 1;
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complement_blocks_cover_exactly_what_is_not_allowed() {
        let blocks = complement_blocks(PERSONALITIES_ALLOWED);
        let denied = |x: u64| blocks.iter().any(|&(m, v)| x & m == v);
        for x in [0, 8, 0x20000, 0x20008, 0xffff_ffff] {
            assert!(!denied(x), "{x:#x} must stay allowed");
        }
        for x in [
            1,
            7,
            9,
            0x10,
            0x0040_0000,
            0x0042_0008,
            0x1_ffff,
            0x2_0001,
            0x2_0007,
            0x2_0009,
            0xffff_fffe,
            0x8000_0000,
        ] {
            assert!(denied(x), "{x:#x} must be denied");
        }
        // Blocks are disjoint and aligned: their sizes add up to the rest.
        let total: u64 = blocks.iter().map(|&(m, _)| ((!m) & 0xffff_ffff) + 1).sum();
        assert_eq!(total, (1u64 << 32) - 5);
        assert!(blocks.len() < 100, "{} blocks", blocks.len());
    }

    #[test]
    fn the_policy_names_each_call_once() {
        let mut names: Vec<&str> = DENIED.iter().map(|d| d.name).collect();
        names.extend(ENOSYS_CALLS);
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
        assert!(denies("ptrace", "aarch64") && denies("iopl", "x86_64"));
        assert!(!denies("iopl", "aarch64") && !denies("read", "x86_64"));
    }
}
