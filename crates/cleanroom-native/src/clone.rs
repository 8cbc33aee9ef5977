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

use nix::unistd::Pid;

/// The child's stack: lazily backed, so only the pages it touches cost memory.
struct Stack {
    base: *mut libc::c_void,
    size: usize,
}

impl Stack {
    fn new(size: usize) -> io::Result<Stack> {
        // SAFETY: an anonymous private mapping at an address of the kernel's
        // choosing; no existing memory is affected.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
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
        unsafe { libc::munmap(self.base, self.size) };
    }
}

extern "C" fn trampoline<F: FnOnce() -> i32>(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Option<F>` that `vfork_with` keeps alive until
    // the child has exec'd or exited, and only the child takes it.
    let f = unsafe { &mut *arg.cast::<Option<F>>() };
    let code = match f.take() {
        Some(f) => f(),
        None => 127,
    };
    // SAFETY: ends the child without running destructors or atexit
    // handlers, which belong to the (shared-memory) parent.
    unsafe { libc::_exit(code) }
}

/// Runs `child` in a new process that shares this one's memory, with
/// `extra` clone flags (namespaces) and a stack of `stack_size` bytes.
/// Returns the child's pid once the child has called `execve` or exited.
///
/// # Safety
///
/// The calling process must be single-threaded, and `child` must end in
/// `execve` or return an exit code (it is then `_exit`ed): it must not
/// unwind out of the closure, longjmp, or leave memory its parent will use
/// in an inconsistent state.
pub unsafe fn vfork_with<F: FnOnce() -> i32>(
    child: F,
    stack_size: usize,
    extra: libc::c_int,
) -> io::Result<Pid> {
    let stack = Stack::new(stack_size)?;
    let mut slot = Some(child);
    // SAFETY: the stack is a fresh mapping large enough for the child and
    // kept until the child no longer uses it (CLONE_VFORK suspends us until
    // then); `slot` lives on our stack for as long. SIGCHLD makes the child
    // reapable with a plain waitpid.
    let pid = unsafe {
        libc::clone(
            trampoline::<F>,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD | extra,
            (&mut slot as *mut Option<F>).cast(),
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Pid::from_raw(pid))
}
