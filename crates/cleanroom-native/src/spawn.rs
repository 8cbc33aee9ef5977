//! Starting a sandbox: one fork of the caller, no exec of any binary.
//!
//! The caller forks from one long-lived thread (so `PR_SET_PDEATHSIG`, which
//! follows the parent *thread*, fires only when the caller process dies). The
//! first child creates the namespaces ([`crate::namespaces::enter`]) and
//! starts the sandbox's PID 1 ([`crate::init::main`]) as a vfork-style
//! child that borrows its memory (see [`crate::clone`]), created straight
//! into the v2 cgroup; PID 1 joins the v1 cgroups itself. Then the first
//! child sleeps in the kernel until PID 1 exits, outside the sandbox's
//! cgroups, where the sandbox's OOM killer cannot pick it. Killing the first child kills
//! PID 1 (its death signal), and PID 1's death kills everything in the pid
//! namespace. The caller's end of the control socket closing also ends PID 1.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use nix::sys::signal::Signal;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitStatus};
/// A process id as this module's callers hold them.
pub use nix::unistd::Pid;
use nix::unistd::{fork, ForkResult};

use crate::clone;
use crate::init;
use crate::namespaces;
use crate::plan::{NetPlan, Plan, RootPlan};
use crate::protocol::{self, Message};

type Job = Box<dyn FnOnce() + Send>;

fn spawner() -> &'static Mutex<mpsc::Sender<Job>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("cleanroom-spawner".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            });
        if let Err(e) = spawned {
            tracing::error!("native: cannot start the spawner thread: {e}");
        }
        Mutex::new(tx)
    })
}

/// Runs `f` on the spawner thread, which lives as long as the process, and
/// resolves to its result (without blocking the async caller).
pub async fn on_spawner<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    spawner()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send(job)
        .map_err(|_| std::io::Error::other("the cleanroom spawner thread is gone"))?;
    rx.await
        .map_err(|_| std::io::Error::other("the cleanroom spawner thread dropped a request"))
}

/// The first child and the caller's end of the control socket.
pub struct Spawned {
    pub pid: Pid,
    pub control: OwnedFd,
}

/// Forks the sandbox (call on the spawner thread).
pub fn spawn(plan: Plan) -> std::io::Result<Spawned> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let caller = nix::unistd::getpid();
    // SAFETY: glibc's fork leaves the allocator usable in the child; the
    // child touches no lock another thread of the caller could hold (no
    // stdio, no tracing, no environment), and ends with `_exit`.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => {
            drop(theirs);
            Ok(Spawned {
                pid: child,
                control: ours,
            })
        }
        ForkResult::Child => {
            let theirs = theirs.into_raw_fd();
            first_child(plan, theirs, caller)
        }
    }
}

/// The init's stack; only the pages it touches are ever backed.
const INIT_STACK: usize = 8 << 20;

/// Where the control socket lands in the first child; the other kept
/// descriptors follow it.
const CONTROL_FD: RawFd = 3;

fn exit(code: i32) -> ! {
    // SAFETY: leaves the forked child without running the caller's
    // destructors or atexit handlers.
    unsafe { libc::_exit(code) }
}

fn first_child(mut plan: Plan, control: RawFd, caller: Pid) -> ! {
    let detached = plan.detached.is_some();
    if detached {
        // A detached sandbox outlives the caller: its supervisor is a child
        // of this process, which exits at once, so the supervisor belongs
        // to no caller (reparented to the nearest subreaper) and leaves the
        // caller's session and terminal.
        // SAFETY: this child is single-threaded; the grandchild continues
        // with what this one would have done, and this one `_exit`s.
        match unsafe { fork() } {
            Ok(ForkResult::Parent { .. }) => exit(0),
            Ok(ForkResult::Child) => {
                let _ = nix::unistd::setsid();
            }
            Err(_) => exit(1),
        }
    } else if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err()
        || nix::unistd::getppid() != caller
    {
        exit(1);
    }
    let supervisor = nix::unistd::getpid().as_raw();
    let _ = nix::sys::prctl::set_name(if detached {
        c"cleanroom-sv"
    } else {
        c"cleanroom-ns"
    });
    // This process stays in the caller's cgroups: only the init and what
    // it starts go into the sandbox's (see `init` below), so the sandbox's
    // OOM killer never picks this process, whose memory is a copy of the
    // caller's, and with it the init that shares it.
    // Keep exactly the control socket, a pod's namespaces and the first
    // command's pipes: every other descriptor of the caller (pipes and
    // sockets of other runs) must not stay open in here. Out of the way
    // first, so the moves cannot overwrite each other.
    let high = |fd: RawFd| nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD(100)).unwrap_or(fd);
    let mut kept: Vec<&mut OwnedFd> = Vec::new();
    if let NetPlan::Join(pod) = &mut plan.network {
        kept.push(&mut pod.net);
        kept.push(&mut pod.user);
    }
    if let Some(first) = &mut plan.first_exec {
        kept.extend(first.stdio.iter_mut());
    }
    if let Some(procs) = &mut plan.cgroup {
        kept.extend(procs.fds_mut());
    }
    kept.extend(plan.userns.iter_mut());
    if let Some(d) = &mut plan.detached {
        kept.extend(d.fds_mut());
    }
    kept.extend(plan.binds.iter_mut().filter_map(|b| b.tree.as_mut()));
    if let RootPlan::Dir {
        tree: Some(tree), ..
    } = &mut plan.root
    {
        kept.push(tree);
    }
    let mut moves = vec![high(control)];
    moves.extend(kept.iter().map(|fd| high(fd.as_raw_fd())));
    for (i, fd) in moves.iter().enumerate() {
        let _ = nix::unistd::dup2(*fd, CONTROL_FD + i as RawFd);
    }
    if let Ok(null) = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDWR,
        nix::sys::stat::Mode::empty(),
    ) {
        for fd in 0..3 {
            let _ = nix::unistd::dup2(null, fd);
        }
    }
    // SAFETY: closes descriptors this child inherited and never uses.
    unsafe {
        libc::close_range(
            (CONTROL_FD as usize + moves.len()) as libc::c_uint,
            libc::c_uint::MAX,
            0,
        )
    };
    for (i, fd) in kept.into_iter().enumerate() {
        // SAFETY: this number was just made a copy of the descriptor; its
        // old number was closed above, so the old OwnedFd is forgotten
        // rather than closed twice.
        let moved = unsafe { OwnedFd::from_raw_fd(CONTROL_FD + 1 + i as RawFd) };
        std::mem::forget(std::mem::replace(fd, moved));
    }
    // SAFETY: CONTROL_FD was just made a copy of our socket end.
    let control = unsafe { OwnedFd::from_raw_fd(CONTROL_FD) };
    if let Err(msg) = namespaces::enter(&plan) {
        let _ = protocol::send(control.as_fd(), &Message::Fail { reason: msg }, &[]);
        exit(1);
    }
    if let NetPlan::Join(pod) = &plan.network {
        // Joined: the descriptors are not needed in the sandbox.
        let _ = nix::unistd::close(pod.net.as_raw_fd());
        let _ = nix::unistd::close(pod.user.as_raw_fd());
    }
    // The init borrows this process's memory rather than copying it (see
    // [`crate::clone`]); this process sleeps in the kernel until the init
    // exits, then reaps it and ends.
    // SAFETY: this child is single-threaded and only waits from here on;
    // `init::main` never returns (it `_exit`s).
    let report = control.try_clone();
    // The supervisor records the sandbox's end in its state directory.
    let record = plan
        .detached
        .as_ref()
        .and_then(|d| d.state_dir.try_clone().ok());
    let v2 = plan.cgroup.as_ref().and_then(|p| p.v2());
    let v2 = v2.map(|(dir, procs)| (dir.as_raw_fd(), procs.as_raw_fd()));
    let cgroup = match v2 {
        // SAFETY: the descriptors belong to the plan, which the init takes
        // over and keeps open for its whole life; they are used here only
        // before the init first runs.
        Some((dir, procs)) => unsafe {
            clone::Cgroup::Into {
                dir: std::os::fd::BorrowedFd::borrow_raw(dir),
                procs: std::os::fd::BorrowedFd::borrow_raw(procs),
            }
        },
        None => clone::Cgroup::Inherit,
    };
    let init = |host_pid, joined: std::io::Result<()>| {
        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
        let _ = nix::sys::prctl::set_name(c"cleanroom-init");
        // Into the sandbox's cgroups before anything else, so everything
        // after is limited: v1 by moving this thread (see
        // `ProcsFiles::join_v1_raw`), v2 as it was created (or by moving
        // itself, `joined`). Its memory stays charged to the first child,
        // which owns it; what its commands use is the sandbox's. The OOM
        // killer passes over the init as long as it lives: it is a vfork
        // child that shares its parent's memory (the kernel's `in_vfork`).
        let entered = joined.and_then(|()| match &plan.cgroup {
            Some(procs) => procs.join_v1_raw(),
            None => Ok(()),
        });
        let ready = match entered {
            Err(e) => Err(format!("joining the sandbox's cgroup: {e}")),
            Ok(()) => plan.setup_ids.map_or(Ok(()), namespaces::take_setup_ids),
        };
        if let Err(e) = ready {
            let _ = protocol::send(control.as_fd(), &Message::Fail { reason: e }, &[]);
            return 1;
        }
        init::main(plan, control, host_pid, supervisor)
    };
    // CLONE_FILES: one descriptor table, so what the init closes (the first
    // command's pipe ends) is closed here too, not kept open by a sleeper.
    let started = unsafe { clone::vfork_with(init, INIT_STACK, libc::CLONE_FILES, cgroup) };
    match started {
        Ok(child) => loop {
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, code)) => {
                    if let Some(dir) = &record {
                        crate::detached::state::record_exit(dir.as_fd(), code);
                    }
                    exit(0)
                }
                // An init killed by a signal recorded nothing: the sandbox
                // shows as dead, for `gc`.
                Ok(WaitStatus::Signaled(..)) => exit(0),
                Err(nix::errno::Errno::EINTR) | Ok(_) => continue,
                Err(_) => exit(1),
            }
        },
        Err(e) => {
            if let Ok(sock) = report {
                let msg = Message::Fail {
                    reason: format!("starting the sandbox's init: {e}"),
                };
                let _ = protocol::send(std::os::fd::AsFd::as_fd(&sock), &msg, &[]);
            }
            exit(1)
        }
    }
}

/// A pidfd for `pid` (Linux 5.3+): readable once the process has exited,
/// and safe to signal even after the pid is reused.
pub fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    // SAFETY: on success `fd` is a new descriptor that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends SIGKILL through a pidfd.
pub fn pidfd_kill(pidfd: &OwnedFd) {
    // SAFETY: pidfd_send_signal with a valid pidfd, a constant signal and no
    // siginfo; touches no memory of ours.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
}

/// Reaps the first child `pid`, killing it if it has not ended within
/// `grace` (it ends once the sandbox's PID 1 and with it every process of
/// the sandbox are gone). Blocking.
pub fn reap(pid: Pid, grace: std::time::Duration) {
    // A pidfd wakes us the moment it exits; without one, poll.
    if let Some(pidfd) = pidfd_open(pid) {
        let mut fds = [nix::poll::PollFd::new(
            pidfd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = u16::try_from(grace.as_millis()).unwrap_or(u16::MAX);
        loop {
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
                Err(nix::errno::Errno::EINTR) => continue,
                Ok(0) => pidfd_kill(&pidfd),
                _ => {}
            }
            break;
        }
        let _ = waitpid(pid, None);
        return;
    }
    let deadline = std::time::Instant::now() + grace;
    loop {
        match waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(_) | Err(_) => return,
        }
        if std::time::Instant::now() >= deadline {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Reaps the first child `pid` on one long-lived thread (see [`reap`]),
/// outside any async runtime, whose shutdown would otherwise wait for it:
/// a short-lived caller need not stay for a child that is only exiting.
pub fn reap_in_background(pid: Pid) {
    static REAPER: OnceLock<Option<Mutex<mpsc::Sender<Pid>>>> = OnceLock::new();
    let reaper = REAPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Pid>();
        std::thread::Builder::new()
            .name("cleanroom-reaper".into())
            .spawn(move || {
                for pid in rx {
                    reap(pid, std::time::Duration::from_secs(5));
                }
            })
            .ok()
            .map(|_| Mutex::new(tx))
    });
    let sent = reaper.as_ref().is_some_and(|tx| {
        tx.lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(pid)
            .is_ok()
    });
    if !sent {
        // No reaper thread: reap here rather than leave a zombie.
        reap(pid, std::time::Duration::from_secs(5));
    }
}

/// Whether an unprivileged user namespace can be created here, by trying:
/// a child that borrows our memory (no copy of the caller) is created in a
/// new user namespace and maps its ids as a sandbox does.
pub fn probe_userns() -> std::result::Result<(), String> {
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    // Made here: the child only reads them (it must not allocate, as other
    // threads of the caller keep running meanwhile).
    let uid_map = format!("1000 {uid} 1\n");
    let gid_map = format!("1000 {gid} 1\n");
    let write = |path: &std::ffi::CStr, text: &[u8]| -> bool {
        // SAFETY: open/write/close with a valid C string and buffer.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return false;
            }
            let n = libc::write(fd, text.as_ptr().cast(), text.len());
            libc::close(fd);
            n == text.len() as isize
        }
    };
    let child = |_, _| {
        let ok = write(c"/proc/self/setgroups", b"deny")
            && write(c"/proc/self/uid_map", uid_map.as_bytes())
            && write(c"/proc/self/gid_map", gid_map.as_bytes());
        i32::from(!ok)
    };
    // SAFETY: the child makes raw system calls only: no allocation, no
    // lock, so the other threads of the caller cannot interfere.
    let started =
        unsafe { clone::vfork_with(child, 64 << 10, libc::CLONE_NEWUSER, clone::Cgroup::Inherit) };
    match started {
        Ok(pid) => match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(WaitStatus::Exited(_, _)) => {
                Err("a child in a new user namespace could not map its ids".into())
            }
            Ok(other) => Err(format!(
                "the user namespace probe ended unexpectedly ({other:?})"
            )),
            Err(e) => Err(format!("waiting for the user namespace probe: {e}")),
        },
        Err(e) => Err(format!("creating a user namespace: {e}")),
    }
}
