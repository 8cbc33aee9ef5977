//! Starting a sandbox: one fork of the caller, no exec of any binary.
//!
//! The caller forks from one long-lived thread, or from its main thread in
//! a one-shot process (so `PR_SET_PDEATHSIG`, which follows the parent
//! *thread*, fires only when the caller process dies). Off the main thread
//! the fork itself is done by the caller's fork server
//! ([`crate::fork_server`]), which makes the first child the caller's child
//! all the same, without the cost of forking a multi-threaded process. The
//! first child creates the namespaces ([`crate::namespaces::enter`]),
//! takes the sandbox's cgroup files from the caller if the caller made the
//! cgroup meanwhile ([`crate::plan::Plan::cgroup_later`], a one-shot run),
//! and starts the sandbox's PID 1 ([`crate::init::main`]) as a vfork-style
//! child that borrows its memory (see [`crate::clone`]), created straight
//! into the v2 cgroup; PID 1 joins the v1 cgroups itself. Then the first
//! child sleeps in the kernel until PID 1 exits, outside the sandbox's
//! cgroups, where the sandbox's OOM killer cannot pick it. Killing the first child kills
//! PID 1 (its death signal), and PID 1's death kills everything in the pid
//! namespace. The caller's end of the control socket closing also ends PID 1.

use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use rustix::io::Errno;
use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
use rustix::process::{waitpid, Pid, Signal, WaitOptions, WaitStatus};

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
/// resolves to its result (without blocking the async caller). In a
/// one-shot process ([`cleanroom_core::bridge::wait_here`]) on its main
/// thread, `f` runs right here: the main thread lives as long as the
/// process too, and nothing else needs it meanwhile, so the spawner thread
/// is never started.
pub async fn on_spawner<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    if cleanroom_core::bridge::inline_allowed() && on_main_thread() {
        return Ok(f());
    }
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

/// Whether the calling thread is the process's main thread, whose end is
/// the process's end (so a death signal set by its children fires only
/// when the caller dies).
fn on_main_thread() -> bool {
    rustix::thread::gettid() == rustix::process::getpid()
}

/// The first child and the caller's end of the control socket.
pub struct Spawned {
    pub pid: Pid,
    pub control: OwnedFd,
}

/// Forks the sandbox (call on the spawner thread, or inline on the main
/// thread of a one-shot process). Off the main thread the fork server
/// ([`crate::fork_server`]) forks it, where it can.
pub fn spawn(plan: Plan) -> std::io::Result<Spawned> {
    if plan.detached.is_none() && !on_main_thread() {
        let (ours, theirs) = seqpacket_pair()?;
        match crate::fork_server::fork_sandbox(&plan, theirs.as_fd()) {
            Ok(pid) => return Ok(Spawned { pid, control: ours }),
            Err(e) => tracing::debug!("native: forking here, not in the fork server: {e}"),
        }
    }
    match fork_with_socket()? {
        Forked::Parent { pid, ours } => Ok(Spawned { pid, control: ours }),
        Forked::Child { theirs, caller } => first_child(plan, theirs, caller),
    }
}

/// A connected pair of `SOCK_SEQPACKET` Unix sockets, close-on-exec.
pub(crate) fn seqpacket_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok(socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Each side of [`fork_with_socket`].
pub(crate) enum Forked {
    /// The caller: the child's pid and the caller's end of their socket.
    Parent { pid: Pid, ours: OwnedFd },
    /// The child: its end of the socket, by number, and its parent's pid.
    Child { theirs: RawFd, caller: Pid },
}

/// Forks this (possibly multi-threaded) process with a socket between
/// parent and child. The child must touch no lock another thread of the
/// caller could hold (no stdio, no tracing, no environment) and end with
/// `_exit`.
pub(crate) fn fork_with_socket() -> std::io::Result<Forked> {
    let (ours, theirs) = seqpacket_pair()?;
    let caller = rustix::process::getpid();
    // SAFETY: glibc's fork leaves the allocator usable in the child, and
    // both callers' children keep to the rule above. rustix has no fork: a
    // child of a threaded process is libc's to make.
    let forked = unsafe { libc::fork() };
    if forked < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(match Pid::from_raw(forked) {
        Some(pid) => {
            drop(theirs);
            Forked::Parent { pid, ours }
        }
        None => {
            drop(ours);
            Forked::Child {
                theirs: theirs.into_raw_fd(),
                caller,
            }
        }
    })
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

/// Makes `target` a copy of `fd` (`dup2`), both descriptors this process
/// holds by number only: neither is closed here.
fn dup_onto(fd: RawFd, target: RawFd) {
    // Already there (dup2 would do nothing; rustix may use dup3, which refuses).
    if fd == target {
        return;
    }
    // SAFETY: `fd` is open for the duration of the call; `target` is only
    // named as dup2's destination, and `ManuallyDrop` keeps it from being
    // closed when this wrapper goes away.
    unsafe {
        let mut target = ManuallyDrop::new(OwnedFd::from_raw_fd(target));
        let _ = rustix::io::dup2(BorrowedFd::borrow_raw(fd), &mut target);
    }
}

/// The sandbox's first process, forked by the caller or by its fork server
/// as the caller's child: `caller` is its parent's pid.
pub(crate) fn first_child(mut plan: Plan, control: RawFd, caller: Pid) -> ! {
    let detached = plan.detached.is_some();
    if detached {
        // A detached sandbox outlives the caller: its supervisor is a child
        // of this process, which exits at once, so the supervisor belongs
        // to no caller (reparented to the nearest subreaper) and leaves the
        // caller's session and terminal.
        // SAFETY: this child is single-threaded; the grandchild continues
        // with what this one would have done, and this one `_exit`s.
        match unsafe { libc::fork() } {
            0 => {
                let _ = rustix::process::setsid();
            }
            pid if pid > 0 => exit(0),
            _ => exit(1),
        }
    } else if rustix::process::set_parent_process_death_signal(Some(Signal::KILL)).is_err()
        || rustix::process::getppid() != Some(caller)
    {
        exit(1);
    }
    let supervisor = rustix::process::getpid().as_raw_pid();
    let _ = rustix::thread::set_name(if detached {
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
    // The copies are close-on-exec, and closed below in any case.
    let high = |fd: RawFd| {
        // SAFETY: `fd` is one of ours, open for the duration of the call.
        rustix::io::fcntl_dupfd_cloexec(unsafe { BorrowedFd::borrow_raw(fd) }, 100)
            .map_or(fd, IntoRawFd::into_raw_fd)
    };
    let mut kept: Vec<&mut OwnedFd> = Vec::new();
    match &mut plan.network {
        NetPlan::Join(pod) => {
            kept.push(&mut pod.net);
            kept.push(&mut pod.user);
        }
        NetPlan::Pooled(pooled) => {
            kept.push(&mut pooled.net);
            kept.extend(pooled.user.as_mut());
        }
        NetPlan::Isolated | NetPlan::Host => {}
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
        dup_onto(*fd, CONTROL_FD + i as RawFd);
    }
    let null = rustix::fs::open(
        c"/dev/null",
        rustix::fs::OFlags::RDWR,
        rustix::fs::Mode::empty(),
    );
    if let Ok(null) = null {
        // By number: it may itself be one of 0-2, which must stay open;
        // otherwise `close_range` below closes it.
        let null = null.into_raw_fd();
        for fd in 0..3 {
            dup_onto(null, fd);
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
    // Joined: the descriptors are not needed in the sandbox.
    let joined = match &plan.network {
        NetPlan::Join(pod) => [Some(&pod.net), Some(&pod.user)],
        NetPlan::Pooled(pooled) => [Some(&pooled.net), pooled.user.as_ref()],
        NetPlan::Isolated | NetPlan::Host => [None, None],
    };
    for fd in joined.into_iter().flatten() {
        // SAFETY: closes the number behind its OwnedFd, which is never
        // dropped: the init takes the plan over and ends in `_exit`.
        unsafe { rustix::io::close(fd.as_raw_fd()) };
    }
    // A one-shot run's cgroup was made by the caller meanwhile.
    if plan.cgroup_later {
        match receive_cgroup(control.as_fd()) {
            Ok(files) => plan.cgroup = Some(files),
            Err(reason) => {
                let _ = protocol::send(control.as_fd(), &Message::Fail { reason }, &[]);
                exit(1);
            }
        }
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
        let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
        let _ = rustix::thread::set_name(c"cleanroom-init");
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
            match waitpid(Some(child), WaitOptions::empty()) {
                Ok(Some((_, status))) if status.exited() => {
                    if let (Some(dir), Some(code)) = (&record, status.exit_status()) {
                        crate::detached::state::record_exit(dir.as_fd(), code);
                    }
                    exit(0)
                }
                // An init killed by a signal recorded nothing: the sandbox
                // shows as dead, for `gc`.
                Ok(Some((_, status))) if status.signaled() => exit(0),
                Err(Errno::INTR) | Ok(_) => continue,
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

/// The cgroup files the caller sends right after the fork
/// ([`Plan::cgroup_later`]). The caller gone means no sandbox: exit.
fn receive_cgroup(sock: BorrowedFd<'_>) -> Result<crate::cgroups::ProcsFiles, String> {
    let mut buf = vec![0u8; 4096];
    match protocol::recv(sock, &mut buf) {
        Ok(Some((Message::Cgroup { v1, v2 }, fds))) => {
            crate::cgroups::ProcsFiles::from_parts(v1, v2, fds)
                .ok_or_else(|| "the sandbox's cgroup files arrived incomplete".to_string())
        }
        Ok(Some((other, _))) => Err(format!(
            "expected the sandbox's cgroup from the caller, got {other:?}"
        )),
        Ok(None) => exit(1),
        Err(e) => Err(format!("receiving the sandbox's cgroup: {e}")),
    }
}

/// A pidfd for `pid` (Linux 5.3+): readable once the process has exited,
/// and safe to signal even after the pid is reused.
pub fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

/// Sends SIGKILL through a pidfd.
pub fn pidfd_kill(pidfd: &OwnedFd) {
    let _ = rustix::process::pidfd_send_signal(pidfd, Signal::KILL);
}

/// Reaps the first child `pid`, killing it if it has not ended within
/// `grace` (it ends once the sandbox's PID 1 and with it every process of
/// the sandbox are gone). Blocking.
pub fn reap(pid: Pid, grace: std::time::Duration) {
    // A pidfd wakes us the moment it exits; without one, poll.
    if let Some(pidfd) = pidfd_open(pid) {
        let mut fds = [rustix::event::PollFd::new(
            &pidfd,
            rustix::event::PollFlags::IN,
        )];
        // Capped as before (65.535 s): a longer grace is never asked for.
        let ms = u16::try_from(grace.as_millis()).unwrap_or(u16::MAX);
        let timeout = rustix::event::Timespec {
            tv_sec: i64::from(ms / 1000),
            tv_nsec: i64::from(ms % 1000) * 1_000_000,
        };
        loop {
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Err(Errno::INTR) => continue,
                Ok(0) => pidfd_kill(&pidfd),
                _ => {}
            }
            break;
        }
        let _ = waitpid(Some(pid), WaitOptions::empty());
        return;
    }
    let deadline = std::time::Instant::now() + grace;
    loop {
        match waitpid(Some(pid), WaitOptions::NOHANG) {
            Ok(None) => {}
            Ok(Some(_)) | Err(_) => return,
        }
        if std::time::Instant::now() >= deadline {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
            let _ = waitpid(Some(pid), WaitOptions::empty());
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
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    // Made here: the child only reads them (it must not allocate, as other
    // threads of the caller keep running meanwhile).
    let uid_map = format!("1000 {uid} 1\n");
    let gid_map = format!("1000 {gid} 1\n");
    // Raw system calls (a C string path: no allocation); the descriptor
    // is closed as it is dropped.
    let write = |path: &std::ffi::CStr, text: &[u8]| -> bool {
        let flags = rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC;
        rustix::fs::open(path, flags, rustix::fs::Mode::empty())
            .and_then(|fd| rustix::io::write(&fd, text))
            .is_ok_and(|n| n == text.len())
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
        Ok(pid) => match waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, status))) => match status.exit_status() {
                Some(0) => Ok(()),
                Some(_) => Err("a child in a new user namespace could not map its ids".into()),
                None => Err(format!(
                    "the user namespace probe ended unexpectedly ({})",
                    describe(status)
                )),
            },
            Ok(None) => Err("the user namespace probe ended unexpectedly".into()),
            Err(e) => Err(format!("waiting for the user namespace probe: {e}")),
        },
        Err(e) => Err(format!("creating a user namespace: {e}")),
    }
}

/// How a child ended, when it did not exit normally.
fn describe(status: WaitStatus) -> String {
    match status.terminating_signal() {
        Some(signal) => format!("killed by signal {signal}"),
        None => format!("wait status {:#x}", status.as_raw()),
    }
}
