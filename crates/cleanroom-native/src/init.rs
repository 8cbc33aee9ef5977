//! The sandbox's PID 1. It sets the sandbox up ([`crate::setup`]), drops
//! every privilege, tells the caller it is ready, then serves requests over
//! the control socket: exec (with the caller's pipes), copy in and out,
//! stop, and connections for published ports. It reaps every process and
//! enforces exec timeouts. When the caller's end of the socket closes, it
//! exits, and the kernel kills everything else in its pid namespace.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::capabilities;
use crate::mounts::Step;
use crate::plan::{FirstExec, Plan};
use crate::protocol::{self, Msg, CHUNK, MAX_MESSAGE};
use crate::setup;

/// Runs as PID 1 of the sandbox; never returns. `host_pid` is its pid as
/// the caller sees it, which the caller watches to know when the sandbox
/// is gone.
pub fn main(mut plan: Plan, control: OwnedFd, host_pid: i32) -> ! {
    let code = match prepare(&plan) {
        Ok(()) => serve(control, plan.first_exec.take(), host_pid),
        Err(msg) => {
            let _ = protocol::send(control.as_fd(), &Msg::new("fail").push(msg), &[]);
            1
        }
    };
    // SAFETY: ends this process without running the caller's atexit
    // handlers or destructors, which belong to the caller, not to us.
    unsafe { libc::_exit(code) }
}

fn prepare(plan: &Plan) -> Step {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    setup::run(plan)?;
    capabilities::drop_all(plan.user.uid, plan.user.gid)?;
    crate::rlimits::apply(&plan.rlimits).map_err(|e| format!("setting rlimits: {e}"))?;
    // Non-dumpable: nothing inside may open /proc/1/exe, /proc/1/mem or
    // /proc/1/environ (this process is a copy of the caller's memory).
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("clearing dumpable: {e}"))?;
    // Last: from here on this process and all it starts are filtered.
    if let Some(filter) = &plan.seccomp {
        crate::seccomp::apply(filter).map_err(|e| format!("installing the seccomp filter: {e}"))?;
    }
    Ok(())
}

/// One running exec.
struct Job {
    id: u64,
    deadline: Option<Instant>,
    timed_out: bool,
}

fn serve(control: OwnedFd, first: Option<FirstExec>, host_pid: i32) -> i32 {
    let sock = control.as_fd();
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    if let Err(e) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None) {
        let _ = protocol::send(
            sock,
            &Msg::new("fail").push(format!("blocking SIGCHLD: {e}")),
            &[],
        );
        return 1;
    }
    let sfd = match SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
        Ok(s) => s,
        Err(e) => {
            let _ = protocol::send(sock, &Msg::new("fail").push(format!("signalfd: {e}")), &[]);
            return 1;
        }
    };
    // The namespaces another sandbox joins to share this one's network.
    let ns: Vec<std::fs::File> = ["/proc/self/ns/net", "/proc/self/ns/user"]
        .iter()
        .filter_map(|p| std::fs::File::open(p).ok())
        .collect();
    let fds: Vec<RawFd> = ns.iter().map(|f| f.as_raw_fd()).collect();
    let ready = Msg::new("ready").num(host_pid as u64);
    if protocol::send(sock, &ready, &fds).is_err() {
        return 1;
    }
    drop(ns);

    let mut jobs: HashMap<i32, Job> = HashMap::new();
    if let Some(first) = first {
        handle(sock, &first.msg, first.stdio.into(), &mut jobs);
    }
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let now = Instant::now();
        let wait = jobs
            .values()
            .filter(|j| !j.timed_out)
            .filter_map(|j| j.deadline)
            .min()
            .map(|d| d.saturating_duration_since(now));
        let timeout = match wait {
            Some(d) => PollTimeout::try_from(d.as_millis().min(60_000) as i32 + 1)
                .unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        };
        let mut fds = [
            PollFd::new(sock, PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return 1,
        }
        let control_ready = fds[0].any().unwrap_or(false);
        while let Ok(Some(_)) = sfd.read_signal() {}
        reap(sock, &mut jobs);
        if control_ready {
            match protocol::recv(sock, &mut buf) {
                Ok(Some((msg, fds))) => handle(sock, &msg, fds, &mut jobs),
                // The caller is gone or closed its end: everything ends.
                Ok(None) | Err(_) => return 0,
            }
        }
        let now = Instant::now();
        for (pid, job) in jobs.iter_mut() {
            if !job.timed_out && job.deadline.is_some_and(|d| d <= now) {
                job.timed_out = true;
                let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
            }
        }
    }
}

/// Reaps every child that ended; for an exec, kills what is left of its
/// process group and reports its status.
fn reap(sock: BorrowedFd<'_>, jobs: &mut HashMap<i32, Job>) {
    loop {
        let (pid, code, signal) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, code, 0),
            Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, 128 + sig as i32, sig as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => continue,
        };
        if let Some(job) = jobs.remove(&pid.as_raw()) {
            let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
            let msg = Msg::new("exit")
                .num(job.id)
                .push(code.to_string())
                .num(signal as u64)
                .num(job.timed_out as u64);
            let _ = protocol::send(sock, &msg, &[]);
        }
    }
}

fn reply(sock: BorrowedFd<'_>, id: u64, result: Step) {
    let msg = match result {
        Ok(()) => Msg::new("ok").num(id),
        Err(e) => Msg::new("err").num(id).push(e),
    };
    let _ = protocol::send(sock, &msg, &[]);
}

fn handle(sock: BorrowedFd<'_>, msg: &Msg, fds: Vec<OwnedFd>, jobs: &mut HashMap<i32, Job>) {
    let id = msg.num_at(1);
    match msg.tag() {
        b"exec" => match start(msg, fds) {
            Ok(pid) => {
                let ms = msg.num_at(2);
                jobs.insert(
                    pid.as_raw(),
                    Job {
                        id,
                        deadline: (ms > 0).then(|| Instant::now() + Duration::from_millis(ms)),
                        timed_out: false,
                    },
                );
            }
            Err(e) => reply(sock, id, Err(e)),
        },
        b"stop" => {
            // Every process of the namespace but this one.
            let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
            reply(sock, id, Ok(()));
        }
        b"mkdir" => reply(sock, id, make_dir(msg)),
        b"create" => reply(sock, id, write_file(msg, false)),
        b"append" => reply(sock, id, write_file(msg, true)),
        b"symlink" => reply(
            sock,
            id,
            std::os::unix::fs::symlink(os(msg.field(2)), os(msg.field(3)))
                .map_err(|e| format!("creating symlink {}: {e}", msg.text(3))),
        ),
        b"get" => {
            let root = os(msg.field(2));
            match send_tree(sock, id, root, Path::new("")) {
                Ok(()) => {
                    let _ = protocol::send(sock, &Msg::new("done").num(id), &[]);
                }
                Err(e) => reply(sock, id, Err(e)),
            }
        }
        b"connect" => match connect(msg.num_at(2) as u16) {
            Ok(fd) => {
                let _ = protocol::send(sock, &Msg::new("conn").num(id), &[fd.as_raw_fd()]);
            }
            Err(e) => reply(sock, id, Err(e)),
        },
        other => reply(
            sock,
            id,
            Err(format!(
                "unknown request {:?}",
                String::from_utf8_lossy(other)
            )),
        ),
    }
}

fn os(b: &[u8]) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(b))
}

fn cstr(b: &[u8]) -> Step<CString> {
    CString::new(b).map_err(|_| "argument or variable contains a NUL byte".to_string())
}

/// `exec ID TIMEOUT_MS CWD ARGC ARGV... ENV...` with stdin, stdout, stderr.
fn start(msg: &Msg, fds: Vec<OwnedFd>) -> Step<Pid> {
    let [stdin, stdout, stderr]: [OwnedFd; 3] = fds
        .try_into()
        .map_err(|_| "exec request without its three pipes".to_string())?;
    let cwd = cstr(msg.field(3))?;
    let argc = msg.num_at(4) as usize;
    let argv: Vec<CString> = (0..argc)
        .map(|i| cstr(msg.field(5 + i)))
        .collect::<Step<_>>()?;
    let env: Vec<CString> = (5 + argc..msg.fields.len())
        .map(|i| cstr(msg.field(i)))
        .collect::<Step<_>>()?;
    let program = argv.first().ok_or("empty command")?.clone();
    let path = env
        .iter()
        .find_map(|e| e.to_bytes().strip_prefix(b"PATH="))
        .unwrap_or(b"/usr/bin:/bin");
    let candidates: Vec<CString> = if program.to_bytes().contains(&b'/') {
        vec![program.clone()]
    } else {
        path.split(|b| *b == b':')
            .filter(|d| !d.is_empty())
            .filter_map(|d| {
                let mut p = d.to_vec();
                p.push(b'/');
                p.extend_from_slice(program.to_bytes());
                CString::new(p).ok()
            })
            .collect()
    };
    let fds = [stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()];
    // The command's process borrows this one's memory until its `execve`
    // (see [`crate::clone`]) instead of copying the caller-sized image.
    // SAFETY: the init is single-threaded, and `exec_child` ends in
    // `execve` or `_exit`.
    let started = unsafe {
        crate::clone::vfork_with(
            |_, _| exec_child(fds, &cwd, &candidates, &argv, &env),
            EXEC_STACK,
            0,
            crate::clone::Cgroup::Inherit,
        )
    };
    match started {
        Ok(child) => {
            let child = Pid::from_raw(child.as_raw_pid());
            // Also set here, so a kill of the group can never miss it
            // (after its `execve` the call fails, harmlessly).
            let _ = nix::unistd::setpgid(child, child);
            Ok(child)
        }
        Err(e) => Err(format!("starting the command's process: {e}")),
    }
}

/// The stack a command's process uses until its `execve`.
const EXEC_STACK: usize = 256 << 10;

fn exec_child(
    fds: [RawFd; 3],
    cwd: &CString,
    candidates: &[CString],
    argv: &[CString],
    env: &[CString],
) -> ! {
    let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // Move the pipes out of the way of 0-2 first, then into place.
    let mut high = [0; 3];
    for (i, fd) in fds.iter().enumerate() {
        high[i] = nix::fcntl::fcntl(*fd, nix::fcntl::FcntlArg::F_DUPFD(10)).unwrap_or(*fd);
    }
    for (i, fd) in high.iter().enumerate() {
        let _ = nix::unistd::dup2(*fd, i as RawFd);
    }
    // SAFETY: closes every descriptor from 3 up; nothing here uses them.
    unsafe { libc::close_range(3, libc::c_uint::MAX, 0) };
    let fail = |code: i32, text: String| -> ! {
        // A raw write: std's stderr lock may have been held by another
        // thread of the caller when it forked, and would never be released.
        let _ = nix::unistd::write(std::io::stderr(), text.as_bytes());
        // SAFETY: ends the forked child without the caller's destructors.
        unsafe { libc::_exit(code) }
    };
    if let Err(e) = nix::unistd::chdir(cwd.as_c_str()) {
        fail(
            126,
            format!("cleanroom: cannot enter working directory {cwd:?}: {e}\n"),
        );
    }
    let mut denied = None;
    for c in candidates {
        match nix::unistd::execve(c, argv, env) {
            Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::ENOTDIR) => {}
            Err(e) => denied = Some(e),
            Ok(never) => match never {},
        }
    }
    let program = String::from_utf8_lossy(argv[0].to_bytes()).into_owned();
    match denied {
        Some(e) => fail(126, format!("cleanroom: {program}: {e}\n")),
        None => fail(127, format!("cleanroom: {program}: command not found\n")),
    }
}

/// `mkdir ID PATH MODE`: an existing directory is fine.
fn make_dir(msg: &Msg) -> Step {
    let p = os(msg.field(2));
    match std::fs::create_dir(p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && p.is_dir() => {}
        Err(e) => return Err(format!("creating directory {}: {e}", p.display())),
    }
    let mode = msg.num_at(3) as u32 & 0o7777;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", p.display()))
}

/// `create ID PATH MODE DATA` / `append ID PATH MODE DATA`.
fn write_file(msg: &Msg, append: bool) -> Step {
    let p = os(msg.field(2));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(!append)
        .append(append)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(msg.num_at(3) as u32 & 0o7777)
        .open(p)
        .map_err(|e| format!("opening {} for writing: {e}", p.display()))?;
    f.write_all(msg.field(4))
        .map_err(|e| format!("writing {}: {e}", p.display()))
}

/// Sends `path` (a file, symlink or whole directory tree) as `dir`, `file`,
/// `more` and `link` messages, with paths relative to the top.
fn send_tree(sock: BorrowedFd<'_>, id: u64, path: &Path, rel: &Path) -> Step {
    use std::os::unix::fs::MetadataExt;
    let ctx = |e: std::io::Error| format!("reading {}: {e}", path.display());
    let meta = std::fs::symlink_metadata(path).map_err(ctx)?;
    let relb = rel.as_os_str().as_bytes();
    let send = |m: Msg| {
        protocol::send(sock, &m, &[]).map_err(|e| format!("sending {}: {e}", path.display()))
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path).map_err(ctx)?;
        send(
            Msg::new("link")
                .num(id)
                .push(relb)
                .push(target.as_os_str().as_bytes()),
        )
    } else if meta.is_dir() {
        send(
            Msg::new("dir")
                .num(id)
                .push(relb)
                .num(meta.mode() as u64 & 0o7777),
        )?;
        let mut names: Vec<_> = std::fs::read_dir(path)
            .map_err(ctx)?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            send_tree(sock, id, &path.join(&n), &rel.join(&n))?;
        }
        Ok(())
    } else if meta.is_file() {
        let mut f = std::fs::File::open(path).map_err(ctx)?;
        let mut chunk = vec![0u8; CHUNK];
        let mut first = true;
        loop {
            let n = f.read(&mut chunk).map_err(ctx)?;
            if n == 0 && !first {
                return Ok(());
            }
            let m = if first {
                Msg::new("file")
                    .num(id)
                    .push(relb)
                    .num(meta.mode() as u64 & 0o7777)
            } else {
                Msg::new("more").num(id).push(relb).num(0)
            };
            send(m.push(&chunk[..n]))?;
            first = false;
            if n == 0 {
                return Ok(());
            }
        }
    } else {
        Ok(())
    }
}

/// A TCP connection to `port` on this sandbox's loopback, for a published port.
fn connect(port: u16) -> Step<OwnedFd> {
    let s = std::net::TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| format!("connecting to 127.0.0.1:{port} inside the sandbox: {e}"))?;
    Ok(OwnedFd::from(s))
}
