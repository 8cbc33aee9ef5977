//! Shared by the cgroups, seccomp and rlimits tests: run a closure in a
//! forked child (so the test process itself is never filtered or limited)
//! and get back a fixed array of numbers it recorded.
//!
//! The closure runs between `fork` and `_exit` of a child of a
//! multi-threaded test binary: it must only make system calls (no
//! allocation, no locks, no panics that unwind).

#![allow(dead_code, unsafe_code)]

/// How many numbers a child can report.
pub const SLOTS: usize = 32;

/// Runs `body` in a forked child and returns what it wrote into the slots.
/// Panics (in the parent) if the child did not exit 0.
pub fn in_child(body: impl FnOnce(&mut [i64; SLOTS])) -> [i64; SLOTS] {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills the two-element array.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: the child only runs `body` (system calls only, by contract),
    // writes the slots with write(2) and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let mut slots = [i64::MIN; SLOTS];
        body(&mut slots);
        // SAFETY: writes the slot array (plain bytes) to the pipe, then
        // exits without running destructors or atexit handlers.
        unsafe {
            libc::write(fds[1], slots.as_ptr().cast(), std::mem::size_of_val(&slots));
            libc::_exit(0);
        }
    }
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(fds[1]) };
    let mut slots = [i64::MIN; SLOTS];
    let want = std::mem::size_of_val(&slots);
    let mut got = 0;
    while got < want {
        // SAFETY: reads into the remaining bytes of `slots`.
        let n = unsafe {
            libc::read(
                fds[0],
                slots.as_mut_ptr().cast::<u8>().add(got).cast(),
                want - got,
            )
        };
        if n <= 0 {
            break;
        }
        got += n as usize;
    }
    // SAFETY: closing the read end we own.
    unsafe { libc::close(fds[0]) };
    let status = wait(pid);
    assert_eq!(status, 0, "the test child failed (wait status {status:#x})");
    assert_eq!(got, want, "the test child reported {got} of {want} bytes");
    slots
}

/// Waits for `pid` and returns its raw wait status.
pub fn wait(pid: libc::pid_t) -> libc::c_int {
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child into a valid int.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return status;
        }
        let err = std::io::Error::last_os_error();
        assert_eq!(
            err.raw_os_error(),
            Some(libc::EINTR),
            "waitpid {pid}: {err}"
        );
    }
}

/// The result of a raw system call as a slot value: the return value, or
/// `-errno` on failure.
pub fn ret(rc: libc::c_long) -> i64 {
    if rc == -1 {
        // SAFETY: reads this thread's errno.
        -i64::from(unsafe { *libc::__errno_location() })
    } else {
        rc
    }
}

/// Whether this process is root (uid 0 on the host).
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}
