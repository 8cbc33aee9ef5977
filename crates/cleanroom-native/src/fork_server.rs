//! The fork server: a small single-threaded copy of a multi-threaded
//! caller that forks its sandboxes for it.
//!
//! Why: a sandbox's first process is a fork ([`crate::spawn`]), and a fork
//! of a process whose threads run on other CPUs is expensive for the
//! *caller*. The kernel write-protects every private page of the caller
//! and must flush the other CPUs' TLBs to do it (an inter-processor
//! interrupt each time), and afterwards every page a caller's thread
//! writes while any first child still shares it is copied on a fault that
//! flushes the other CPUs again. Running 200 one-step tests two at a time
//! (`cleanroom test -j 2`), a quarter of all CPU time went to those
//! flushes, the copies and the page-table work of the forks; the runner's
//! own threads took the faults, between the tests' steps.
//!
//! The server is forked once, from the caller's spawner thread, the first
//! time that thread forks a sandbox. It closes every descriptor it
//! inherited, then waits on a `SOCK_SEQPACKET` socket for plans
//! ([`crate::plan::Plan`], sent as JSON with its descriptors beside it,
//! [`crate::fdpass`]). For each it makes the first child with
//! `CLONE_PARENT`: the child's parent is the *caller*, exactly as after a
//! direct fork, so the caller reaps it, is signalled when it exits, and the
//! child's death signal (`PR_SET_PDEATHSIG`) follows the caller's spawner
//! thread. The server's memory is written by nobody but itself, and it
//! runs on one CPU at a time, so its forks flush nothing elsewhere.
//!
//! Not used for a one-shot run (`cleanroom run`): it forks from its main
//! thread while no other thread runs, and one more process would only cost.
//! Nor for a detached sandbox, whose first child exits at once. Any failure
//! to reach the server falls back to a direct fork; `CLEANROOM_FORK_SERVER=0`
//! turns it off.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rustix::process::{waitpid, Pid, Signal, WaitOptions};
use serde::{Deserialize, Serialize};

use crate::fdpass;
use crate::plan::Plan;
use crate::protocol;

/// Largest plan the server receives (a plan is a few kilobytes; a larger
/// one is forked directly).
const MAX_REQUEST: usize = protocol::MAX_MESSAGE;
/// Most descriptors one plan carries (`SCM_MAX_FD`).
const MAX_FDS: usize = 253;
/// The server's socket, after it has closed everything else.
const SERVER_FD: RawFd = 3;

/// The server's answer to one plan.
#[derive(Serialize, Deserialize)]
enum Reply {
    /// The first child, a child of the caller.
    Started { pid: i32 },
    /// Nothing was started.
    Failed { reason: String },
}

/// The running server as the caller sees it.
struct Server {
    sock: OwnedFd,
    pid: Pid,
    /// The process that started it: a child the caller forks (not through
    /// us) inherits this state, but the server makes children of the
    /// caller, so that child must start its own.
    owner: Pid,
}

enum State {
    NotStarted,
    Running(Server),
    /// Turned off, or it could not be started: fork directly.
    Off,
}

static STATE: Mutex<State> = Mutex::new(State::NotStarted);

/// How many sandboxes a server forked for this process.
static FORKED: AtomicU64 = AtomicU64::new(0);

/// How many sandboxes a fork server has forked for this process (for
/// diagnostics and tests: the rest were forked directly).
pub fn forked() -> u64 {
    FORKED.load(Ordering::Relaxed)
}

/// The running server's pid, if this process has one: a process of ours
/// that lives as long as the caller (tools that wait for a caller's
/// children to be gone leave it out).
pub fn server_pid() -> Option<u32> {
    match &*STATE.lock().unwrap_or_else(|p| p.into_inner()) {
        State::Running(s) if s.owner == rustix::process::getpid() => {
            Some(s.pid.as_raw_nonzero().get() as u32)
        }
        _ => None,
    }
}

/// Whether the environment turns the server off.
fn turned_off() -> bool {
    std::env::var_os("CLEANROOM_FORK_SERVER").is_some_and(|v| v == "0")
}

/// Has the server fork the first child of `plan`, whose end of the control
/// socket is `control`: its pid (a child of this process). An error means
/// no server could take it; the caller then forks itself, with a fresh
/// socket (a server that ended mid-request may have started a child on
/// this one, which then sees the caller's end close and exits).
/// Call only on the spawner thread.
pub fn fork_sandbox(plan: &Plan, control: BorrowedFd<'_>) -> std::io::Result<Pid> {
    let mut state = STATE.lock().unwrap_or_else(|p| p.into_inner());
    if matches!(&*state, State::Running(s) if s.owner != rustix::process::getpid()) {
        // Inherited: forget it (its descriptor closes with the state).
        *state = State::NotStarted;
    }
    if matches!(*state, State::NotStarted) {
        *state = if turned_off() {
            State::Off
        } else {
            match start() {
                Ok(server) => State::Running(server),
                Err(e) => {
                    tracing::debug!("native: no fork server ({e}); forking each sandbox here");
                    State::Off
                }
            }
        };
    }
    let State::Running(server) = &*state else {
        return Err(std::io::Error::other("no fork server"));
    };
    match request(server, plan, control) {
        Ok(pid) => {
            FORKED.fetch_add(1, Ordering::Relaxed);
            Ok(pid)
        }
        Err(Failure::Refused(reason)) => Err(std::io::Error::other(reason)),
        Err(Failure::Gone(e)) => {
            // Started again for the next sandbox.
            if let State::Running(server) = std::mem::replace(&mut *state, State::NotStarted) {
                stop(server);
            }
            Err(e)
        }
    }
}

enum Failure {
    /// The server answered that it could not fork this plan.
    Refused(String),
    /// The server could not be reached or did not answer.
    Gone(std::io::Error),
}

fn request(server: &Server, plan: &Plan, control: BorrowedFd<'_>) -> Result<Pid, Failure> {
    let (bytes, plan_fds) = fdpass::encode(plan)
        .map_err(|e| Failure::Refused(format!("the plan cannot be sent: {e}")))?;
    if bytes.len() > MAX_REQUEST || plan_fds.len() + 1 > MAX_FDS {
        return Err(Failure::Refused("the plan is too large to send".into()));
    }
    let mut fds = vec![control];
    // SAFETY: `plan` holds every one of these descriptors for this call.
    fds.extend(unsafe { fdpass::borrow(&plan_fds) });
    protocol::send_bytes(server.sock.as_fd(), &bytes, &fds).map_err(Failure::Gone)?;
    let mut buf = [0u8; 4096];
    let reply = match protocol::recv_bytes(server.sock.as_fd(), &mut buf, 0) {
        Ok(Some((len, _))) => serde_json::from_slice::<Reply>(&buf[..len])
            .map_err(|e| Failure::Gone(std::io::Error::other(e))),
        Ok(None) => Err(Failure::Gone(std::io::Error::other(
            "the fork server exited",
        ))),
        Err(e) => Err(Failure::Gone(e)),
    }?;
    match reply {
        Reply::Started { pid } => Pid::from_raw(pid)
            .ok_or_else(|| Failure::Gone(std::io::Error::other(format!("pid {pid}")))),
        Reply::Failed { reason } => Err(Failure::Refused(reason)),
    }
}

/// Ends a server that failed, and reaps it.
fn stop(server: Server) {
    let _ = rustix::process::kill_process(server.pid, Signal::KILL);
    let _ = waitpid(Some(server.pid), WaitOptions::empty());
}

/// Forks the server (on the spawner thread, whose end is the process's end:
/// the server's death signal fires with it).
fn start() -> std::io::Result<Server> {
    match crate::spawn::fork_with_socket()? {
        crate::spawn::Forked::Parent { pid, ours } => {
            register_stop_at_exit();
            Ok(Server {
                sock: ours,
                pid,
                owner: rustix::process::getpid(),
            })
        }
        // Until it has closed what it inherited, the server keeps to the
        // rule for a child of a threaded process; from then on it is a
        // single-threaded process of its own, ending with `_exit`.
        crate::spawn::Forked::Child { theirs, caller } => serve(theirs, caller),
    }
}

/// Makes the process stop the server as it exits, so that nothing of ours
/// outlives it even for the moment the death signal takes. Once per
/// process, however often the server is started.
fn register_stop_at_exit() {
    extern "C" fn stop_at_exit() {
        // Busy means the spawner thread is mid-request: the death signal
        // ends the server then.
        let Ok(mut state) = STATE.try_lock() else {
            return;
        };
        // A process forked from the owner stops nothing of the owner's.
        if matches!(&*state, State::Running(s) if s.owner == rustix::process::getpid()) {
            if let State::Running(server) = std::mem::replace(&mut *state, State::Off) {
                stop(server);
            }
        }
    }
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    // SAFETY: registers a plain function that never blocks on a lock and
    // makes two system calls.
    REGISTERED.call_once(|| unsafe {
        libc::atexit(stop_at_exit);
    });
}

fn exit(code: i32) -> ! {
    // SAFETY: ends the server without running the caller's destructors or
    // atexit handlers, which belong to the caller.
    unsafe { libc::_exit(code) }
}

/// The server's life: forks the first child of each plan it receives.
fn serve(sock: RawFd, caller: Pid) -> ! {
    if rustix::process::set_parent_process_death_signal(Some(Signal::KILL)).is_err()
        || rustix::process::getppid() != Some(caller)
    {
        exit(1);
    }
    let _ = rustix::thread::set_name(c"cleanroom-fork");
    // Only the socket stays open (at 3): the caller's pipes and sockets
    // must not be held open here, or their readers would never see the end.
    // SAFETY: `sock` is ours; fds 0-2 become /dev/null, and every other
    // number this process inherited is closed and never used again.
    unsafe {
        let sock = rustix::fd::BorrowedFd::borrow_raw(sock);
        let mut target = std::mem::ManuallyDrop::new(
            <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(SERVER_FD),
        );
        if sock.as_raw_fd() != SERVER_FD && rustix::io::dup2(sock, &mut target).is_err() {
            exit(1);
        }
        if let Ok(null) = rustix::fs::open(
            c"/dev/null",
            rustix::fs::OFlags::RDWR,
            rustix::fs::Mode::empty(),
        ) {
            let null = null.into_raw_fd();
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
        }
        libc::close_range((SERVER_FD + 1) as libc::c_uint, libc::c_uint::MAX, 0);
    }
    // SAFETY: SERVER_FD was made a copy of the socket above.
    let sock: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(SERVER_FD) };
    let mut buf = vec![0u8; MAX_REQUEST];
    loop {
        let reply = match protocol::recv_bytes(sock.as_fd(), &mut buf, MAX_FDS) {
            Ok(Some((len, fds))) => fork_one(&buf[..len], fds, caller),
            // The caller closed its end.
            Ok(None) => exit(0),
            Err(e) => Reply::Failed {
                reason: format!("receiving the plan: {e}"),
            },
        };
        let bytes = serde_json::to_vec(&reply).unwrap_or_default();
        if protocol::send_bytes(sock.as_fd(), &bytes, &[]).is_err() {
            exit(1);
        }
    }
}

/// Forks the first child of one received plan as a child of `caller`.
fn fork_one(bytes: &[u8], fds: Vec<OwnedFd>, caller: Pid) -> Reply {
    let mut fds = fds.into_iter();
    let Some(control) = fds.next() else {
        return Reply::Failed {
            reason: "a plan arrived without its control socket".into(),
        };
    };
    let plan: Plan = match fdpass::decode(bytes, fds.collect()) {
        Ok(plan) => plan,
        Err(e) => {
            return Reply::Failed {
                reason: format!("a plan arrived malformed: {e}"),
            }
        }
    };
    // `CLONE_PARENT`: the caller, not this server, is the child's parent.
    // A null stack continues the child on its copy of this one, as `fork`.
    // SAFETY: this process is single-threaded, so the copy holds no lock
    // and no half-made state; the child never returns from `first_child`
    // (it ends with `_exit`). Unlike glibc's `fork`, the raw call leaves
    // the C library's cached thread id stale in the child: nothing the
    // child runs asks glibc for it (raw system calls and Rust's own locks).
    let forked = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match forked {
        0 => crate::spawn::first_child(plan, control.into_raw_fd(), caller),
        pid if pid > 0 => Reply::Started { pid: pid as i32 },
        _ => Reply::Failed {
            reason: format!("forking the sandbox: {}", std::io::Error::last_os_error()),
        },
    }
}
