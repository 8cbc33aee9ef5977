//! Starting one command inside: on the caller's pipes, or on a
//! pseudo-terminal the init makes in the sandbox's own devpts.
//!
//! The command's process borrows the init's memory until its `execve` (see
//! [`crate::clone`]) instead of copying the caller-sized image, so between
//! the clone and the `execve` it makes raw system calls only.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use crate::mounts::Step;
use crate::protocol::{Bytes, WindowSize};

/// The stack a command's process uses until its `execve`.
const EXEC_STACK: usize = 256 << 10;

/// What the command's process runs, resolved before the clone.
struct Program {
    cwd: CString,
    candidates: Vec<CString>,
    argv: Vec<CString>,
    env: Vec<CString>,
}

fn cstr(b: &Bytes) -> Step<CString> {
    CString::new(b.as_slice()).map_err(|_| "argument or variable contains a NUL byte".to_string())
}

impl Program {
    fn new(argv: &[Bytes], env: &[Bytes], cwd: &Bytes) -> Step<Program> {
        let cwd = cstr(cwd)?;
        let argv: Vec<CString> = argv.iter().map(cstr).collect::<Step<_>>()?;
        let env: Vec<CString> = env.iter().map(cstr).collect::<Step<_>>()?;
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
        Ok(Program {
            cwd,
            candidates,
            argv,
            env,
        })
    }
}

/// How the command's process gets its standard streams.
#[derive(Clone, Copy)]
enum Stdio {
    /// Its own process group, on these three descriptors.
    Pipes([RawFd; 3]),
    /// A new session whose controlling terminal is this one.
    Terminal(RawFd),
}

/// Starts the command on `fds` (stdin, stdout, stderr, as sent).
pub fn with_pipes(argv: &[Bytes], env: &[Bytes], cwd: &Bytes, fds: Vec<OwnedFd>) -> Step<i32> {
    let [stdin, stdout, stderr]: [OwnedFd; 3] = fds
        .try_into()
        .map_err(|_| "exec request without its three pipes".to_string())?;
    let program = Program::new(argv, env, cwd)?;
    let fds = [stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()];
    let pid = clone_exec(&program, Stdio::Pipes(fds))?;
    // Also set here, so a kill of the group can never miss it (after its
    // `execve` the call fails, harmlessly).
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::setpgid(Some(p), Some(p));
    }
    Ok(pid)
}

/// Starts the command on a new pseudo-terminal of `size`; returns its pid
/// and the terminal's controlling side, for the caller.
pub fn with_terminal(
    argv: &[Bytes],
    env: &[Bytes],
    cwd: &Bytes,
    size: WindowSize,
) -> Step<(i32, OwnedFd)> {
    use rustix::pty::OpenptFlags;
    let program = Program::new(argv, env, cwd)?;
    let ctx = |what: &str, e: rustix::io::Errno| format!("{what} a terminal: {e}");
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .map_err(|e| ctx("opening", e))?;
    rustix::pty::grantpt(&master).map_err(|e| ctx("granting", e))?;
    rustix::pty::unlockpt(&master).map_err(|e| ctx("unlocking", e))?;
    let name = rustix::pty::ptsname(&master, Vec::new()).map_err(|e| ctx("naming", e))?;
    let winsize = rustix::termios::Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(&master, winsize).map_err(|e| ctx("sizing", e))?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| ctx("opening the inner side of", e))?;
    let pid = clone_exec(&program, Stdio::Terminal(slave.as_fd().as_raw_fd()))?;
    Ok((pid, master))
}

fn clone_exec(program: &Program, stdio: Stdio) -> Step<i32> {
    // SAFETY: the init is single-threaded, and `exec_child` ends in
    // `execve` or `_exit`, making raw system calls only.
    let started = unsafe {
        crate::clone::vfork_with(
            |_, _| exec_child(stdio, program),
            EXEC_STACK,
            0,
            crate::clone::Cgroup::Inherit,
        )
    };
    started
        .map(|pid| pid.as_raw_pid())
        .map_err(|e| format!("starting the command's process: {e}"))
}

fn exec_child(stdio: Stdio, program: &Program) -> ! {
    // SAFETY (whole function): raw system calls on descriptors this
    // process owns and on C strings made before the clone; it ends in
    // `execve` or `_exit`.
    unsafe {
        let empty: libc::sigset_t = std::mem::zeroed();
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        let fds = match stdio {
            Stdio::Pipes(fds) => {
                libc::setpgid(0, 0);
                fds
            }
            Stdio::Terminal(tty) => {
                libc::setsid();
                libc::ioctl(tty, libc::TIOCSCTTY, 0);
                [tty; 3]
            }
        };
        // Move the descriptors out of the way of 0-2 first, then into place.
        let mut high = [0; 3];
        for (i, fd) in fds.iter().enumerate() {
            let moved = libc::fcntl(*fd, libc::F_DUPFD, 10);
            high[i] = if moved < 0 { *fd } else { moved };
        }
        for (i, fd) in high.iter().enumerate() {
            libc::dup2(*fd, i as RawFd);
        }
        libc::close_range(3, libc::c_uint::MAX, 0);
        if libc::chdir(program.cwd.as_ptr()) != 0 {
            let e = std::io::Error::last_os_error();
            fail(
                126,
                format!(
                    "cleanroom: cannot enter working directory {:?}: {e}\n",
                    program.cwd
                ),
            );
        }
        let argv: Vec<*const libc::c_char> = program
            .argv
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let env: Vec<*const libc::c_char> = program
            .env
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let mut denied = None;
        for c in &program.candidates {
            libc::execve(c.as_ptr(), argv.as_ptr(), env.as_ptr());
            let e = std::io::Error::last_os_error();
            if !matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) {
                denied = Some(e);
            }
        }
        let name = String::from_utf8_lossy(program.argv[0].to_bytes()).into_owned();
        match denied {
            Some(e) => fail(126, format!("cleanroom: {name}: {e}\n")),
            None => fail(127, format!("cleanroom: {name}: command not found\n")),
        }
    }
}

fn fail(code: i32, text: String) -> ! {
    // A raw write: std's stderr lock may have been held by another thread
    // of the caller when it forked, and would never be released.
    // SAFETY: writes a valid buffer to descriptor 2, then ends the child
    // without the caller's destructors.
    unsafe {
        libc::write(2, text.as_ptr().cast(), text.len());
        libc::_exit(code)
    }
}
