//! The default seccomp filter, applied for real in forked children: the
//! dangerous calls fail with EPERM (clone3 with ENOSYS), ordinary work goes on.

mod limits_common;

use cleanroom_native::seccomp::{self, Error, FilterOptions};
use limits_common::{in_child, ret};

const PER_READ_IMPLIES_EXEC: libc::c_ulong = 0x0040_0000;

// Slots the child fills.
const APPLY: usize = 0;
const MOUNT: usize = 1;
const UNSHARE_USER: usize = 2;
const INIT_MODULE: usize = 3;
const BPF: usize = 4;
const CLONE3: usize = 5;
const GETPID: usize = 6;
const WRITE: usize = 7;
const FORK_STATUS: usize = 8;
const PTRACE: usize = 9;
const KEYCTL: usize = 10;
const UNSHARE_FILES: usize = 11;
const PERSONALITY_ODD: usize = 12;
const PERSONALITY_QUERY: usize = 13;
const SETNS: usize = 14;
const CLONE_NEWUSER: usize = 15;
const X32_GETPID: usize = 16;
const UNAME: usize = 17;
const MOUNT_API: usize = 18;
const IO_URING: usize = 19;

/// Runs the probe calls in a child, after applying `filter` if given.
fn probe(filter: Option<&seccomp::Filter>) -> [i64; limits_common::SLOTS] {
    in_child(|s| {
        // SAFETY (whole block): raw system calls with valid or null
        // pointers; nothing here allocates.
        unsafe {
            if let Some(f) = filter {
                s[APPLY] = match seccomp::apply(f) {
                    Ok(()) => 0,
                    Err(e) => -i64::from(e.raw_os_error().unwrap_or(-1)),
                };
            }
            // A path that does not exist: harmless if the filter let it through.
            s[MOUNT] = ret(libc::mount(
                c"none".as_ptr(),
                c"/nonexistent-cleanroom-seccomp-test".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            ) as libc::c_long);
            s[UNSHARE_USER] = ret(libc::unshare(libc::CLONE_NEWUSER) as libc::c_long);
            s[INIT_MODULE] = ret(libc::syscall(
                libc::SYS_init_module,
                std::ptr::null::<u8>(),
                0 as libc::c_ulong,
                c"".as_ptr(),
            ));
            s[BPF] = ret(libc::syscall(
                libc::SYS_bpf,
                0 as libc::c_long,
                std::ptr::null::<u8>(),
                0 as libc::c_long,
            ));
            s[CLONE3] = ret(libc::syscall(
                libc::SYS_clone3,
                std::ptr::null::<u8>(),
                0 as libc::c_long,
            ));
            s[GETPID] = ret(libc::syscall(libc::SYS_getpid));
            s[WRITE] = ret(libc::write(2, b"".as_ptr().cast(), 0) as libc::c_long);
            let pid = libc::fork();
            if pid == 0 {
                libc::_exit(7);
            }
            let mut status = 0;
            s[FORK_STATUS] = if pid > 0 && libc::waitpid(pid, &mut status, 0) == pid {
                i64::from(status)
            } else {
                ret(-1)
            };
            s[PTRACE] = ret(libc::syscall(
                libc::SYS_ptrace,
                libc::PTRACE_PEEKDATA as libc::c_long,
                1 as libc::c_long,
                0 as libc::c_long,
                0 as libc::c_long,
            ));
            s[KEYCTL] = ret(libc::syscall(
                libc::SYS_keyctl,
                0 as libc::c_long,  // KEYCTL_GET_KEYRING_ID
                -3 as libc::c_long, // KEY_SPEC_SESSION_KEYRING
                0 as libc::c_long,
            ));
            s[UNSHARE_FILES] = ret(libc::unshare(libc::CLONE_FILES) as libc::c_long);
            s[PERSONALITY_ODD] = ret(libc::personality(PER_READ_IMPLIES_EXEC) as libc::c_long);
            s[PERSONALITY_QUERY] = ret(libc::personality(0xffff_ffff) as libc::c_long);
            s[SETNS] = ret(libc::setns(-1, 0) as libc::c_long);
            s[CLONE_NEWUSER] = ret(libc::syscall(
                libc::SYS_clone,
                (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            ));
            if s[CLONE_NEWUSER] == 0 {
                // Only reached when the filter did not stop it: leave at once.
                libc::_exit(0);
            }
            #[cfg(target_arch = "x86_64")]
            {
                s[X32_GETPID] = ret(libc::syscall(0x4000_0000 | libc::SYS_getpid));
            }
            let mut uts: libc::utsname = std::mem::zeroed();
            s[UNAME] = ret(libc::uname(&mut uts) as libc::c_long);
            s[IO_URING] = ret(libc::syscall(
                libc::SYS_io_uring_setup,
                1 as libc::c_ulong,
                std::ptr::null::<u8>(),
            ));
            s[MOUNT_API] = ret(libc::syscall(
                libc::SYS_fsopen,
                c"tmpfs".as_ptr(),
                0 as libc::c_ulong,
            ));
        }
    })
}

#[test]
fn default_filter_denies_the_dangerous_calls_and_keeps_ordinary_ones() {
    let filter = seccomp::default_filter().expect("the default filter compiles");
    assert!(
        filter.len() > 40,
        "suspiciously small filter: {} instructions",
        filter.len()
    );
    let s = probe(Some(&filter));
    let eperm = -i64::from(libc::EPERM);
    assert_eq!(
        s[APPLY], 0,
        "seccomp::apply failed with errno {}",
        -s[APPLY]
    );
    assert_eq!(s[MOUNT], eperm, "mount");
    assert_eq!(s[UNSHARE_USER], eperm, "unshare(CLONE_NEWUSER)");
    assert_eq!(s[INIT_MODULE], eperm, "init_module");
    assert_eq!(s[BPF], eperm, "bpf");
    assert_eq!(
        s[CLONE3],
        -i64::from(libc::ENOSYS),
        "clone3 must say ENOSYS"
    );
    assert_eq!(s[PTRACE], eperm, "ptrace");
    assert_eq!(s[KEYCTL], eperm, "keyctl");
    assert_eq!(s[PERSONALITY_ODD], eperm, "personality(READ_IMPLIES_EXEC)");
    assert_eq!(s[SETNS], eperm, "setns");
    assert_eq!(s[CLONE_NEWUSER], eperm, "clone(CLONE_NEWUSER)");
    assert_eq!(s[MOUNT_API], eperm, "fsopen");
    assert_eq!(s[IO_URING], eperm, "io_uring_setup");
    #[cfg(target_arch = "x86_64")]
    assert_eq!(s[X32_GETPID], -i64::from(libc::ENOSYS), "x32 getpid");
    // Ordinary calls still work.
    assert!(s[GETPID] > 0, "getpid: {}", s[GETPID]);
    assert_eq!(s[WRITE], 0, "write");
    assert!(
        libc::WIFEXITED(s[FORK_STATUS] as i32) && libc::WEXITSTATUS(s[FORK_STATUS] as i32) == 7,
        "fork + exit(7) + waitpid gave {:#x}",
        s[FORK_STATUS]
    );
    assert_eq!(
        s[UNSHARE_FILES], 0,
        "unshare(CLONE_FILES) has no namespace flag"
    );
    assert!(
        s[PERSONALITY_QUERY] >= 0,
        "personality query: {}",
        s[PERSONALITY_QUERY]
    );
    assert_eq!(s[UNAME], 0, "uname");
}

#[test]
fn without_the_filter_the_same_probes_are_not_eperm() {
    // The control: what the filtered child saw came from the filter.
    let s = probe(None);
    assert_eq!(s[CLONE3], -i64::from(libc::EINVAL), "clone3 with size 0");
    assert_ne!(
        s[MOUNT],
        -i64::from(libc::EPERM) * i64::from(limits_common::is_root())
    );
    assert_eq!(s[PERSONALITY_QUERY] & 0xffff, 0, "personality query");
}

#[test]
fn options_allow_and_deny_by_name() {
    let options = FilterOptions {
        allow: vec!["personality".into(), "clone3".into()],
        deny: vec!["uname".into()],
    };
    let filter = seccomp::filter(&options).expect("filter with options");
    assert!(filter.denied().any(|n| n == "uname"));
    assert!(!filter.denied().any(|n| n == "personality"));
    let s = probe(Some(&filter));
    assert_eq!(s[APPLY], 0);
    assert_eq!(s[UNAME], -i64::from(libc::EPERM), "uname denied by option");
    assert!(
        s[PERSONALITY_ODD] >= 0,
        "personality allowed: {}",
        s[PERSONALITY_ODD]
    );
    assert_eq!(s[CLONE3], -i64::from(libc::EINVAL), "clone3 allowed");
    assert_eq!(s[MOUNT], -i64::from(libc::EPERM), "mount still denied");
}

#[test]
fn unknown_or_conflicting_names_are_clear_errors() {
    let err = seccomp::filter(&FilterOptions {
        allow: vec![],
        deny: vec!["no_such_syscall".into()],
    })
    .expect_err("unknown name");
    assert!(matches!(err, Error::UnknownSyscall { ref name, .. } if name == "no_such_syscall"));
    let msg = err.to_string();
    assert!(
        msg.contains("`no_such_syscall` is not a system call"),
        "{msg}"
    );

    let err = seccomp::filter(&FilterOptions {
        allow: vec!["mount".into()],
        deny: vec!["mount".into()],
    })
    .expect_err("conflict");
    assert!(
        matches!(err, Error::Conflict(ref n) if n == "mount"),
        "{err}"
    );
}

#[test]
fn default_filter_is_short() {
    // The kernel checks and compiles the filter for every sandbox, so its
    // length is start-up time: the plain denials are one comparison each.
    let f = seccomp::default_filter().unwrap();
    assert!(
        f.len() < 250,
        "the default filter has {} instructions",
        f.len()
    );
}
