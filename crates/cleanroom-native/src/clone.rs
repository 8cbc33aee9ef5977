//! `clone(CLONE_VM | CLONE_VFORK)`: a child that borrows its parent's memory
//! instead of copying it.
//!
//! A plain `fork` copies the page tables of the whole address space, and
//! every page either side writes afterwards is copied again on the fault.
//! The caller of a sandbox is a large multi-threaded program (a test
//! binary, the CLI with its runtime), so each fork of it costs far more than
//! the sandbox's own set-up. A vfork-style child shares the memory and runs
//! while its parent is suspended in the kernel; the parent resumes only when
//! the child calls `execve` or exits. Both uses here need nothing more:
//!
//! - the sandbox's first process waits for its init anyway, so the init runs
//!   on borrowed memory for its whole life ([`crate::spawn`]);
//! - the init suspends for the instant between starting a command's process
//!   and that process's `execve` ([`crate::init`]).
//!
//! Rules for the child: it runs on its own stack (given here), in memory its
//! parent sees afterwards, so it must not unwind into the parent's frames;
//! it ends with `execve` or `_exit`. The parent must be single-threaded, as
//! both callers are: no other thread can hold a lock the child needs or
//! change memory under it while the parent is suspended.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use rustix::process::Pid;

/// The child's stack: lazily backed, so only the pages it touches cost memory.
struct Stack {
    base: *mut libc::c_void,
    size: usize,
}

impl Stack {
    fn new(size: usize) -> io::Result<Stack> {
        use rustix::mm::{MapFlags, ProtFlags};
        // SAFETY: an anonymous private mapping at an address of the kernel's
        // choosing; no existing memory is affected.
        let base = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                size,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::NORESERVE | MapFlags::STACK,
            )
        }?;
        Ok(Stack { base, size })
    }

    /// The initial stack pointer: the top, since stacks grow down on every
    /// architecture this crate builds for.
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping, which is where a
        // descending stack starts.
        unsafe { self.base.cast::<u8>().add(self.size).cast() }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; the child that
        // used it has exec'd or exited (CLONE_VFORK) before this runs.
        let _ = unsafe { rustix::mm::munmap(self.base, self.size) };
    }
}

/// What the child gets: the closure, where the kernel stores the child's
/// pid as the parent sees it (CLONE_PARENT_SETTID) before the child first
/// runs, and the `cgroup.procs` the child writes itself into first when it
/// could not be created in its cgroup.
struct Slot<'a, F> {
    child: Option<F>,
    pid: libc::pid_t,
    join: Option<BorrowedFd<'a>>,
}

extern "C" fn trampoline<F: FnOnce(libc::pid_t, io::Result<()>) -> i32>(
    arg: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: `arg` is the `Slot<F>` that `vfork_with` keeps alive until the
    // child has exec'd or exited, and only the child touches it meanwhile
    // (the kernel wrote `pid` before the child started).
    let slot = unsafe { &mut *arg.cast::<Slot<F>>() };
    let pid = slot.pid;
    // The child moves itself, never its parent: the parent may be a helper
    // of ours that must stay outside the sandbox's cgroup (and its OOM).
    let joined = match slot.join {
        Some(procs) => crate::cgroups::join_self(procs),
        None => Ok(()),
    };
    let code = match slot.child.take() {
        Some(f) => f(pid, joined),
        None => 127,
    };
    // SAFETY: ends the child without running destructors or atexit
    // handlers, which belong to the (shared-memory) parent.
    unsafe { libc::_exit(code) }
}

/// Where the child's cgroup comes from.
#[derive(Clone, Copy)]
pub enum Cgroup<'a> {
    /// The parent's.
    Inherit,
    /// A v2 cgroup, entered as the child is created (`clone3` with
    /// `CLONE_INTO_CGROUP`, Linux 5.7): `dir` is the cgroup's directory.
    /// Where that is not available, the child moves itself in through
    /// `procs`, its `cgroup.procs`, before anything else; the parent stays
    /// where it is.
    Into {
        dir: BorrowedFd<'a>,
        procs: BorrowedFd<'a>,
    },
}

/// Runs `child` in a new process that shares this one's memory, with
/// `extra` clone flags and a stack of `stack_size` bytes, in `cgroup`. The
/// child is given its own pid as its parent sees it (in the parent's pid
/// namespace, unlike `getpid` in a new one), and whether it got into
/// `cgroup` (an error only when it had to move itself and could not).
/// Returns the child's pid once the child has called `execve` or exited.
///
/// # Safety
///
/// The calling process must be single-threaded (or `child` must only make
/// raw system calls: no allocation, no lock), and `child` must end in
/// `execve` or return an exit code (it is then `_exit`ed): it must not
/// unwind out of the closure, longjmp, or leave memory its parent will use
/// in an inconsistent state.
pub unsafe fn vfork_with<F: FnOnce(libc::pid_t, io::Result<()>) -> i32>(
    child: F,
    stack_size: usize,
    extra: libc::c_int,
    cgroup: Cgroup<'_>,
) -> io::Result<Pid> {
    let stack = Stack::new(stack_size)?;
    let mut slot = Slot {
        child: Some(child),
        pid: 0,
        join: None,
    };
    let slot_ptr: *mut Slot<'_, F> = &mut slot;
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PARENT_SETTID | extra;
    if let Cgroup::Into { dir, procs } = cgroup {
        // SAFETY: as below; clone3_into runs the same trampoline.
        match unsafe { clone3_into(flags, &stack, slot_ptr, dir) } {
            Ok(pid) => return Ok(pid),
            // No clone3 or no CLONE_INTO_CGROUP here: the child moves
            // itself in.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOSYS | libc::E2BIG | libc::EINVAL)
                ) =>
            {
                // SAFETY: `slot_ptr` points at `slot`, alive on this
                // stack; the child has not been created yet.
                unsafe { (*slot_ptr).join = Some(procs) }
            }
            Err(e) => return Err(e),
        }
    }
    // SAFETY: the stack is a fresh mapping large enough for the child and
    // kept until the child no longer uses it (CLONE_VFORK suspends us until
    // then); `slot` lives on our stack for as long, and the kernel writes
    // the child's pid into it (CLONE_PARENT_SETTID) before the child runs.
    // SIGCHLD makes the child reapable with a plain waitpid.
    let pid = unsafe {
        libc::clone(
            trampoline::<F>,
            stack.top(),
            flags | libc::SIGCHLD,
            slot_ptr.cast(),
            std::ptr::addr_of_mut!((*slot_ptr).pid),
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    child_pid(pid)
}

/// The pid `clone` returned in the parent: always positive there.
fn child_pid(raw: libc::pid_t) -> io::Result<Pid> {
    Pid::from_raw(raw).ok_or_else(|| io::Error::other(format!("clone returned pid {raw}")))
}

/// The kernel's `struct clone_args` (version 2, with `cgroup`).
#[repr(C)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `clone3` with `CLONE_INTO_CGROUP`: the child starts on `stack` in
/// [`trampoline`]. glibc has no `clone3` wrapper, and a raw system call that
/// returns in the child on a new stack cannot be written in Rust, so the
/// child's first instructions (call the trampoline with the slot) are
/// assembly, as in the C library's own `clone`.
///
/// # Safety
///
/// As for [`vfork_with`]; `slot` must point at a live `Slot<F>`.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_into<F: FnOnce(libc::pid_t, io::Result<()>) -> i32>(
    flags: libc::c_int,
    stack: &Stack,
    slot: *mut Slot<'_, F>,
    cgroup: BorrowedFd<'_>,
) -> io::Result<Pid> {
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let args = CloneArgs {
        flags: flags as u32 as u64 | CLONE_INTO_CGROUP,
        pidfd: 0,
        child_tid: 0,
        // SAFETY: a field of the live slot; only its address is taken.
        parent_tid: unsafe { std::ptr::addr_of_mut!((*slot).pid) } as u64,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack.base as u64,
        stack_size: stack.size as u64,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup.as_raw_fd() as u64,
    };
    let entry: extern "C" fn(*mut libc::c_void) -> libc::c_int = trampoline::<F>;
    let ret: i64;
    // SAFETY: clone3 with a valid, live `args`. In the parent it returns
    // like any system call (after the child has exec'd or exited, with
    // CLONE_VFORK). In the child it returns 0 on the new stack, whose top
    // the kernel set 16-byte aligned; the child clears the frame pointer and
    // calls the trampoline with the slot, which never returns (`_exit`),
    // and traps if it ever did. r12/r13 survive the system call in both.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r13",
            "call r12",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") &args as *const CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") entry,
            in("r13") slot,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret as i32));
    }
    child_pid(ret as libc::pid_t)
}

/// Elsewhere the cgroup is joined by writing `cgroup.procs` instead.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone3_into<F: FnOnce(libc::pid_t, io::Result<()>) -> i32>(
    _flags: libc::c_int,
    _stack: &Stack,
    _slot: *mut Slot<'_, F>,
    _cgroup: BorrowedFd<'_>,
) -> io::Result<Pid> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// A child that shares this process's memory and runs beside it, doing
/// nothing until the write end of its pipe closes: it holds a namespace
/// made with it (`CLONE_NEWUSER`) open while the caller configures it
/// through `/proc/<pid>` and opens it. Made without copying the caller's
/// page tables, which a fork of a large multi-threaded caller would.
pub struct Sleeper {
    pub pid: Pid,
    /// Kept mapped until the child is reaped (`Drop`).
    _stack: Stack,
}

/// The sleeper's whole life: close every descriptor but the pipe's read end
/// (its table is a copy of the caller's: a copy of a pipe's write end kept
/// here would keep the caller's reader waiting, and its own pipe's would
/// keep it from ever seeing the end), read until the caller closes its
/// write end (or dies), end. Raw system calls only (rustix, which leaves
/// `errno` alone, and `close_range`, which cannot fail for these bounds and
/// so never writes it): the child shares the memory and the thread pointer
/// of the caller's thread that made it, so it must not allocate, lock or
/// write a thread-local.
extern "C" fn sleep_until_eof(arg: *mut libc::c_void) -> libc::c_int {
    let read = arg as usize as libc::c_uint;
    // SAFETY: close_range takes plain integers; it fails only when the
    // first bound is above the last, which neither call's is. `read` was
    // an open descriptor in the caller when it made this child, and this
    // child's descriptor table is its own copy.
    unsafe {
        if read > 0 {
            libc::syscall(
                libc::SYS_close_range,
                0 as libc::c_uint,
                read - 1,
                0 as libc::c_uint,
            );
        }
        libc::syscall(
            libc::SYS_close_range,
            read + 1,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        );
        let mut b = [0u8; 1];
        while let Err(rustix::io::Errno::INTR) =
            rustix::io::read(BorrowedFd::borrow_raw(read as i32), &mut b)
        {}
    }
    0
}

impl Sleeper {
    /// Starts a sleeper with `extra` clone flags (e.g. `CLONE_NEWUSER`)
    /// that ends when `write` (whose read end is `read`) is closed here.
    pub fn start(
        extra: libc::c_int,
        read: BorrowedFd<'_>,
        write: BorrowedFd<'_>,
    ) -> io::Result<Sleeper> {
        let stack = Stack::new(64 << 10)?;
        // The child closes its copy of `write` with every other descriptor.
        let _ = write;
        let fds = read.as_raw_fd() as u32 as usize;
        // SAFETY: the child runs `sleep_until_eof` on its own fresh stack,
        // kept mapped until it is reaped; it makes raw system calls only,
        // so sharing the memory of a multi-threaded caller is sound.
        // SIGCHLD makes it reapable with a plain waitpid.
        let pid = unsafe {
            libc::clone(
                sleep_until_eof,
                stack.top(),
                libc::CLONE_VM | libc::SIGCHLD | extra,
                fds as *mut libc::c_void,
            )
        };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Sleeper {
            pid: child_pid(pid)?,
            _stack: stack,
        })
    }
}

impl Drop for Sleeper {
    /// Ends the child (it may be ending already) and reaps it before its
    /// stack is unmapped.
    fn drop(&mut self) {
        let _ = rustix::process::kill_process(self.pid, rustix::process::Signal::KILL);
        let _ = rustix::process::waitpid(Some(self.pid), rustix::process::WaitOptions::empty());
    }
}

/// Whether processes `a` and `b` share one address space, as the first
/// child and the init of a sandbox do (`kcmp` with `KCMP_VM`). `None` when
/// the kernel will not compare them (without the right to inspect both, for
/// example a non-dumpable init seen by an unprivileged caller). Memory
/// measurements use it to count a shared address space once.
pub fn shares_memory(a: u32, b: u32) -> Option<bool> {
    const KCMP_VM: libc::c_long = 1;
    // SAFETY: kcmp compares two kernel objects by pid and type; it takes
    // plain integers and touches no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            a as libc::pid_t,
            b as libc::pid_t,
            KCMP_VM,
            0,
            0,
        )
    };
    (r >= 0).then_some(r == 0)
}
