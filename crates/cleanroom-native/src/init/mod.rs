//! The sandbox's PID 1. It sets the sandbox up ([`crate::setup`]), drops
//! every privilege, tells the caller it is ready, then serves requests:
//! exec (with the caller's pipes, or a terminal it makes), copy in and out,
//! stop, and connections for published ports. It reaps every process and
//! enforces exec timeouts.
//!
//! A sandbox of one caller exits when that caller's end of the socket
//! closes, and the kernel kills everything else in its pid namespace. A
//! detached one ([`crate::plan::DetachedPlan`]) also accepts connections on
//! its control socket, from its creator's uid only, several at a time; it
//! copies its main command's output to the log files, and ends when that
//! command ends or when it is stopped, with the main command's status.

mod files;
mod idle;
mod start;

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use cleanroom_core::Stream;
use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, Signal, WaitOptions};

use crate::capabilities;
use crate::detached::logfile;
use crate::mounts::Step;
use crate::plan::{DetachedPlan, FirstExec, Plan};
use crate::protocol::{self, Message, MAX_MESSAGE};
use crate::setup;

/// Runs as PID 1 of the sandbox; never returns. `host_pid` is its pid as
/// the caller sees it, which the caller watches to know when the sandbox
/// is gone; `supervisor_pid` the process that waits for it.
pub fn main(mut plan: Plan, control: OwnedFd, host_pid: i32, supervisor_pid: i32) -> ! {
    let code = match prepare(&plan) {
        Ok(()) => {
            let first = plan.first_exec.take();
            let detached = plan.detached.take();
            let ready = Message::Ready {
                version: protocol::VERSION,
                release: protocol::RELEASE.into(),
                init_pid: host_pid as u32,
                supervisor_pid: supervisor_pid as u32,
            };
            match Server::new(control, detached) {
                Ok(mut server) => {
                    let code = server.run(ready, first);
                    // Not dropped: its descriptors are in the table the
                    // supervisor shares (CLONE_FILES), and the lock among
                    // them must stay held until the supervisor has
                    // recorded the exit and ends.
                    std::mem::forget(server);
                    code
                }
                Err((control, e)) => {
                    fail(control.as_fd(), e);
                    1
                }
            }
        }
        Err(msg) => {
            fail(control.as_fd(), msg);
            1
        }
    };
    // SAFETY: ends this process without running the caller's atexit
    // handlers or destructors, which belong to the caller, not to us.
    unsafe { libc::_exit(code) }
}

fn fail(sock: BorrowedFd<'_>, reason: String) {
    let _ = protocol::send(sock, &Message::Fail { reason }, &[]);
}

fn prepare(plan: &Plan) -> Step {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    setup::run(plan)?;
    capabilities::drop_all(plan.user.uid, plan.user.gid)?;
    crate::rlimits::apply(&plan.rlimits).map_err(|e| format!("setting rlimits: {e}"))?;
    // Non-dumpable: nothing inside may open /proc/1/exe, /proc/1/mem or
    // /proc/1/environ (this process is a copy of the caller's memory).
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| format!("clearing dumpable: {e}"))?;
    // Last: from here on this process and all it starts are filtered.
    if let Some(filter) = &plan.seccomp {
        crate::seccomp::apply(filter).map_err(|e| format!("installing the seccomp filter: {e}"))?;
    }
    Ok(())
}

/// One running exec: which connection asked for it, under which id.
struct Job {
    conn: usize,
    id: u64,
    deadline: Option<Instant>,
    timed_out: bool,
}

/// What only a detached sandbox has.
struct Detached {
    listener: OwnedFd,
    peer_uid: u32,
    logs: Option<logfile::Writer>,
    /// The main command's output pipes, until each reaches its end.
    output: [Option<OwnedFd>; 2],
    /// Kept open so the supervisor's lock and record outlive the init
    /// only as long as the supervisor itself.
    _state: (OwnedFd, OwnedFd),
}

struct Server {
    /// Connections by slot; slot 0 is the socket the sandbox was created over.
    conns: Vec<Option<OwnedFd>>,
    detached: Option<Detached>,
    jobs: HashMap<i32, Job>,
    signals: OwnedFd,
    /// The main command (a detached sandbox's, or a run's first exec) and,
    /// once it ended, its status.
    main: Option<i32>,
    /// A one-shot run's command ([`FirstExec::last`]) until its exit is
    /// sent; then `done`, and the init ends.
    last: Option<i32>,
    done: bool,
    main_status: Option<i32>,
    /// A stop in progress: the request to answer and when to SIGKILL.
    stopping: Option<(usize, u64, Instant)>,
    buf: Vec<u8>,
}

/// The connection slot the sandbox was created over.
const CREATOR: usize = 0;

impl Server {
    fn new(
        control: OwnedFd,
        detached: Option<DetachedPlan>,
    ) -> std::result::Result<Server, (OwnedFd, String)> {
        let signals = match block_sigchld() {
            Ok(fd) => fd,
            Err(e) => return Err((control, e)),
        };
        let detached = match detached {
            None => None,
            Some(d) => {
                let [l0, l1] = d.logs;
                let logs = match logfile::Writer::new([l0, l1]) {
                    Ok(w) => Some(w),
                    Err(e) => return Err((control, format!("starting the log: {e}"))),
                };
                let output = match d.main_output {
                    Some([out, err]) => [Some(out), Some(err)],
                    None => [None, None],
                };
                for fd in output.iter().flatten() {
                    let _ = rustix::io::ioctl_fionbio(fd, true);
                }
                let _ = rustix::io::ioctl_fionbio(&d.listener, true);
                Some(Detached {
                    listener: d.listener,
                    peer_uid: d.peer_uid,
                    logs,
                    output,
                    _state: (d.state_dir, d.lock),
                })
            }
        };
        Ok(Server {
            conns: vec![Some(control)],
            detached,
            jobs: HashMap::new(),
            signals,
            main: None,
            last: None,
            done: false,
            main_status: None,
            stopping: None,
            buf: vec![0u8; MAX_MESSAGE],
        })
    }

    fn send(&self, conn: usize, msg: &Message, fds: &[BorrowedFd<'_>]) {
        if let Some(Some(sock)) = self.conns.get(conn) {
            let _ = protocol::send(sock.as_fd(), msg, fds);
        }
    }

    fn reply(&self, conn: usize, id: u64, result: Step) {
        let msg = match result {
            Ok(()) => Message::Ok { id },
            Err(reason) => Message::Err { id, reason },
        };
        self.send(conn, &msg, &[]);
    }

    /// Serves until the sandbox ends; returns the init's exit code.
    fn run(&mut self, ready: Message, first: Option<FirstExec>) -> i32 {
        // The namespaces another sandbox joins to share this one's network.
        let ns: Vec<std::fs::File> = ["/proc/self/ns/net", "/proc/self/ns/user"]
            .iter()
            .filter_map(|p| std::fs::File::open(p).ok())
            .collect();
        let fds: Vec<BorrowedFd<'_>> = ns.iter().map(|f| f.as_fd()).collect();
        if self.conns[CREATOR]
            .as_ref()
            .is_some_and(|s| protocol::send(s.as_fd(), &ready, &fds).is_err())
            && self.detached.is_none()
        {
            return 1;
        }
        drop(fds);
        drop(ns);
        if let Some(first) = first {
            let is_main = self.detached.is_some();
            match self.handle(CREATOR, first.msg, first.stdio.into()) {
                Some(pid) if is_main => self.main = Some(pid),
                Some(pid) if first.last => self.last = Some(pid),
                Some(_) => {}
                // The main command could not start (the creator was told
                // why): the sandbox has ended.
                None if is_main => return 127,
                None => {}
            }
        }
        // A long-lived sandbox gives back its memory once it has been quiet
        // for a while (see `idle`): at once after the start, and again
        // after later requests, which bring pages back.
        let mut quiet_at = self.detached.as_ref().map(|_| Instant::now());
        loop {
            if let Some(code) = self.ended() {
                return code;
            }
            if self.done {
                // Exiting kills whatever the command left running, as the
                // caller's close would have.
                return 0;
            }
            if quiet_at.is_some_and(|t| t <= Instant::now()) {
                idle::release_memory();
                quiet_at = None;
            }
            let deadline = match (self.next_deadline(), quiet_at) {
                (Some(d), Some(q)) => Some(d.min(q)),
                (d, q) => d.or(q),
            };
            let timeout = deadline.map(|d| {
                let d = d.saturating_duration_since(Instant::now()) + Duration::from_millis(1);
                rustix::time::Timespec {
                    tv_sec: d.as_secs().min(60) as i64,
                    tv_nsec: d.subsec_nanos() as i64,
                }
            });
            // Slots: signals, listener, two output pipes, then connections.
            let mut polled: Vec<(usize, PollFd<'_>)> = Vec::new();
            polled.push((0, PollFd::new(&self.signals, PollFlags::IN)));
            if let Some(d) = &self.detached {
                polled.push((1, PollFd::new(&d.listener, PollFlags::IN)));
                for (i, o) in d.output.iter().enumerate() {
                    if let Some(fd) = o {
                        polled.push((2 + i, PollFd::new(fd, PollFlags::IN)));
                    }
                }
            }
            for (i, c) in self.conns.iter().enumerate() {
                if let Some(fd) = c {
                    polled.push((4 + i, PollFd::new(fd, PollFlags::IN)));
                }
            }
            let mut pfds: Vec<PollFd<'_>> = polled.iter().map(|(_, p)| p.clone()).collect();
            match rustix::event::poll(&mut pfds, timeout.as_ref()) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => return 1,
            }
            let ready: Vec<usize> = polled
                .iter()
                .zip(&pfds)
                .filter(|(_, p)| !p.revents().is_empty())
                .map(|((slot, _), _)| *slot)
                .collect();
            drop(pfds);
            drop(polled);
            if self.detached.is_some() && !ready.is_empty() {
                quiet_at = Some(Instant::now() + idle::QUIET);
            }
            for slot in ready {
                match slot {
                    0 => {
                        drain_signals(&self.signals);
                        self.reap();
                    }
                    1 => self.accept(),
                    2 | 3 => self.copy_output(slot - 2),
                    conn => {
                        if let Some(code) = self.serve_conn(conn - 4) {
                            return code;
                        }
                    }
                }
            }
            self.enforce_deadlines();
        }
    }

    /// The exit code once a detached sandbox is done: its main command
    /// ended, or a stop finished, and the main command's output is copied.
    fn ended(&mut self) -> Option<i32> {
        let d = self.detached.as_ref()?;
        if d.output.iter().any(Option::is_some) {
            return None;
        }
        let main_done = self.main.is_some() && self.main_status.is_some();
        let stopped = self.stopping.is_some() && no_children();
        if !(main_done || stopped) {
            return None;
        }
        // Whatever the main command left behind ends with it.
        kill_all(Signal::KILL);
        if let Some((conn, id, _)) = self.stopping {
            self.reply(conn, id, Ok(()));
        }
        Some(self.main_status.unwrap_or(0))
    }

    fn next_deadline(&self) -> Option<Instant> {
        let jobs = self
            .jobs
            .values()
            .filter(|j| !j.timed_out)
            .filter_map(|j| j.deadline);
        jobs.chain(self.stopping.map(|(_, _, at)| at)).min()
    }

    fn enforce_deadlines(&mut self) {
        let now = Instant::now();
        for (pid, job) in self.jobs.iter_mut() {
            if !job.timed_out && job.deadline.is_some_and(|d| d <= now) {
                job.timed_out = true;
                kill_group(*pid, Signal::KILL);
            }
        }
        if let Some((_, _, at)) = self.stopping {
            if at <= now {
                kill_all(Signal::KILL);
            }
        }
    }

    /// A new connection on a detached sandbox's socket: served only when
    /// it comes from the creator's uid.
    fn accept(&mut self) {
        let Some(d) = &self.detached else { return };
        let Ok(sock) = rustix::net::accept_with(&d.listener, rustix::net::SocketFlags::CLOEXEC)
        else {
            return;
        };
        match protocol::peer_uid(&sock) {
            Ok(uid) if uid == d.peer_uid => {}
            other => {
                let who = other.map_or_else(|e| format!("unknown ({e})"), |u| u.to_string());
                let reason = format!(
                    "this sandbox belongs to another user (peer uid {who} as the sandbox sees it)"
                );
                let _ = protocol::send(sock.as_fd(), &Message::Fail { reason }, &[]);
                return;
            }
        }
        let hello = Message::Hello {
            version: protocol::VERSION,
            release: protocol::RELEASE.into(),
        };
        if protocol::send(sock.as_fd(), &hello, &[]).is_err() {
            return;
        }
        match self.conns.iter().position(Option::is_none) {
            Some(free) => self.conns[free] = Some(sock),
            None => self.conns.push(Some(sock)),
        }
    }

    /// Copies what the main command wrote to the log.
    fn copy_output(&mut self, which: usize) {
        let Some(d) = &mut self.detached else { return };
        let Some(fd) = &d.output[which] else { return };
        let stream = if which == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        let mut chunk = [0u8; 16 << 10];
        match rustix::io::read(fd, &mut chunk) {
            Ok(0) => d.output[which] = None,
            Ok(n) => {
                if let Some(w) = &mut d.logs {
                    // A full disk loses output, never the sandbox.
                    let _ = w.write(stream, &chunk[..n]);
                }
            }
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => d.output[which] = None,
        }
    }

    /// Reads one message from connection `conn`; `Some(code)` when the
    /// sandbox ends because its only caller left.
    fn serve_conn(&mut self, conn: usize) -> Option<i32> {
        let Some(Some(sock)) = self.conns.get(conn) else {
            return None;
        };
        match protocol::recv(sock.as_fd(), &mut self.buf) {
            Ok(Some((msg, fds))) => {
                self.handle(conn, msg, fds);
                None
            }
            Ok(None) | Err(_) => {
                self.conns[conn] = None;
                // An exec whose caller is gone (its `cleanroom exec` was
                // interrupted) ends with it, as on a terminal; the main
                // command does not. Their status has nobody to go to, and
                // the slot may be reused by a connection with the same
                // request ids.
                for (pid, job) in self.jobs.iter_mut().filter(|(_, j)| j.conn == conn) {
                    if self.main != Some(*pid) {
                        kill_group(*pid, Signal::KILL);
                    }
                    job.conn = usize::MAX;
                }
                // A sandbox of one caller ends with it.
                (self.detached.is_none() && conn == CREATOR).then_some(0)
            }
        }
    }

    /// Reaps every child that ended; for an exec, kills what is left of its
    /// process group and reports its status.
    fn reap(&mut self) {
        loop {
            let (pid, status) = match rustix::process::wait(WaitOptions::NOHANG) {
                Ok(Some((pid, status))) => (pid.as_raw_nonzero().get(), status),
                Ok(None) | Err(_) => return,
            };
            let (code, signal) = match (status.exit_status(), status.terminating_signal()) {
                (Some(c), _) => (c, 0),
                (None, Some(s)) => (128 + s, s),
                _ => continue,
            };
            if self.main == Some(pid) {
                self.main_status = Some(code);
                // The sandbox ends with its main command.
                kill_all(Signal::KILL);
            }
            if let Some(job) = self.jobs.remove(&pid) {
                kill_group(pid, Signal::KILL);
                let msg = Message::Exit {
                    id: job.id,
                    code,
                    signal,
                    timed_out: job.timed_out,
                };
                self.send(job.conn, &msg, &[]);
                if self.last == Some(pid) {
                    self.done = true;
                }
            }
        }
    }

    /// Handles one request; returns the pid of an exec it started.
    fn handle(&mut self, conn: usize, msg: Message, fds: Vec<OwnedFd>) -> Option<i32> {
        let sock = self
            .conns
            .get(conn)
            .and_then(|c| c.as_ref())
            .map(|c| c.as_raw_fd());
        match msg {
            Message::Exec {
                id,
                argv,
                env,
                cwd,
                timeout_ms,
                tty,
            } => {
                let started = match tty {
                    None => start::with_pipes(&argv, &env, &cwd, fds),
                    Some(size) => {
                        start::with_terminal(&argv, &env, &cwd, size).map(|(pid, pty)| {
                            self.send(conn, &Message::Started { id }, &[pty.as_fd()]);
                            pid
                        })
                    }
                };
                match started {
                    Ok(pid) => {
                        let deadline = (timeout_ms > 0)
                            .then(|| Instant::now() + Duration::from_millis(timeout_ms));
                        self.jobs.insert(
                            pid,
                            Job {
                                conn,
                                id,
                                deadline,
                                timed_out: false,
                            },
                        );
                        return Some(pid);
                    }
                    Err(e) => self.reply(conn, id, Err(e)),
                }
            }
            Message::Stop { id, grace_ms } => {
                if self.detached.is_none() {
                    // Every process of the namespace but this one; the
                    // sandbox stays until its caller removes it.
                    kill_all(Signal::KILL);
                    self.reply(conn, id, Ok(()));
                } else {
                    kill_all(Signal::TERM);
                    let at = Instant::now() + Duration::from_millis(grace_ms);
                    self.stopping = Some((conn, id, at));
                }
            }
            Message::Mkdir { id, path, mode } => {
                self.reply(conn, id, files::make_dir(path.as_path(), mode))
            }
            Message::Write {
                id,
                path,
                mode,
                append,
                data,
            } => self.reply(
                conn,
                id,
                files::write_file(path.as_path(), mode, append, data.as_slice()),
            ),
            Message::Symlink { id, target, path } => {
                self.reply(conn, id, files::symlink(target.as_path(), path.as_path()))
            }
            Message::Get { id, path } => {
                let raw = sock?;
                // SAFETY: `raw` is the connection's socket, open in
                // `self.conns` for the whole call.
                let sock = unsafe { BorrowedFd::borrow_raw(raw) };
                match files::send_tree(sock, id, path.as_path(), std::path::Path::new("")) {
                    Ok(()) => self.send(conn, &Message::Done { id }, &[]),
                    Err(e) => self.reply(conn, id, Err(e)),
                }
            }
            Message::Connect { id, port } => match connect(port) {
                Ok(fd) => self.send(conn, &Message::Conn { id }, &[fd.as_fd()]),
                Err(e) => self.reply(conn, id, Err(e)),
            },
            Message::Namespaces { id } => match own_namespaces() {
                Ok([net, user]) => {
                    self.send(conn, &Message::Ns { id }, &[net.as_fd(), user.as_fd()])
                }
                Err(e) => self.reply(conn, id, Err(e)),
            },
            other => {
                if let Some(id) = other.id() {
                    self.reply(conn, id, Err(format!("not a request: {other:?}")));
                }
            }
        }
        None
    }
}

/// Blocks SIGCHLD and returns a signalfd that reports it.
fn block_sigchld() -> std::result::Result<OwnedFd, String> {
    // SAFETY: plain calls on a local sigset_t; the init is single-threaded.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(format!(
                "blocking SIGCHLD: {}",
                std::io::Error::last_os_error()
            ));
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(format!("signalfd: {}", std::io::Error::last_os_error()));
        }
        Ok(<OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(
            fd as RawFd,
        ))
    }
}

fn drain_signals(fd: &OwnedFd) {
    let mut info = [0u8; 128];
    while matches!(rustix::io::read(fd, &mut info), Ok(n) if n > 0) {}
}

/// Whether no process but this one is left (every child reaped).
fn no_children() -> bool {
    use rustix::process::{WaitId, WaitIdOptions};
    // NOWAIT: only looks; the child's status stays for `reap`.
    let opts = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    matches!(
        rustix::process::waitid(WaitId::All, opts),
        Err(rustix::io::Errno::CHILD)
    )
}

fn kill_group(pid: i32, sig: Signal) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = rustix::process::kill_process_group(pid, sig);
    }
}

/// `sig` to every process of the namespace but this one.
fn kill_all(sig: Signal) {
    // SAFETY: kill(-1, sig) takes plain integers; in the sandbox's pid
    // namespace it reaches only the sandbox's processes.
    unsafe { libc::kill(-1, sig.as_raw()) };
}

/// A TCP connection to `port` on this sandbox's loopback, for a published port.
/// This sandbox's network and user namespaces, for a pod member.
fn own_namespaces() -> Step<[OwnedFd; 2]> {
    let open = |which: &str| {
        std::fs::File::open(format!("/proc/self/ns/{which}"))
            .map(OwnedFd::from)
            .map_err(|e| format!("opening /proc/self/ns/{which} in the init: {e}"))
    };
    Ok([open("net")?, open("user")?])
}

fn connect(port: u16) -> Step<OwnedFd> {
    let s = std::net::TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| format!("connecting to 127.0.0.1:{port} inside the sandbox: {e}"))?;
    Ok(OwnedFd::from(s))
}
