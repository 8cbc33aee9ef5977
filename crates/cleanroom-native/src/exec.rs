//! One command in a sandbox, seen from the caller: three pipes handed to the
//! init with the request, output pumped with [`cleanroom_core::pump`], and
//! the exit status the init reports.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

use cleanroom_core::{
    pump, Captured, Cmd, Enforcement, Error, OutputSink, Result, RunResult, SandboxSpec, Stream,
};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::{Instance, Reply};
use crate::protocol::Msg;

/// How a command ended.
#[derive(Clone, Copy, Debug)]
pub struct Exit {
    pub code: i32,
    pub signal: Option<i32>,
    pub timed_out: bool,
}

/// A started command.
pub struct Exec {
    id: u64,
    rx: mpsc::UnboundedReceiver<Reply>,
    stdout: JoinHandle<std::io::Result<Captured>>,
    stderr: JoinHandle<std::io::Result<Captured>>,
    stdin: Option<JoinHandle<()>>,
    started: Instant,
    program: String,
}

fn pipe_pair(what: &str) -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::io(format!("creating the {what} pipe"), e.into()))
}

/// Starts `cmd` in the sandbox `inst` built from `spec`.
pub async fn start(
    inst: &Instance,
    spec: &SandboxSpec,
    cmd: &Cmd,
    sink: Option<OutputSink>,
) -> Result<Exec> {
    cmd.validate()?;
    let env = spec.environment(&cmd.env);
    let cwd = match &cmd.workdir {
        Some(w) => spec.workdir.join(w),
        None => spec.workdir.clone(),
    };
    let timeout = cmd.timeout.or(spec.timeout);
    let (in_r, in_w) = pipe_pair("stdin")?;
    let (out_r, out_w) = pipe_pair("stdout")?;
    let (err_r, err_w) = pipe_pair("stderr")?;
    let argv = cmd.argv();
    let build = |id: u64| {
        let mut m = Msg::new("exec")
            .num(id)
            .num(timeout.map(|t| t.as_millis().max(1) as u64).unwrap_or(0))
            .push(cwd.as_os_str().as_bytes())
            .num(argv.len() as u64);
        for a in &argv {
            m = m.push(a);
        }
        for (k, v) in &env {
            m = m.push(format!("{k}={v}"));
        }
        m
    };
    let fds = [in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()];
    let (id, rx) = inst.request(build, &fds).await?;
    // The init has its own copies now; ours would keep the pipes open.
    drop((in_r, out_w, err_w));
    let io = |e: std::io::Error| Error::io("attaching the command's pipes", e);
    let stdin = match &cmd.stdin {
        Some(bytes) => {
            let mut w = pipe::Sender::from_owned_fd(in_w).map_err(io)?;
            let bytes = bytes.clone();
            Some(tokio::spawn(async move {
                // A command that exits without reading its input is fine.
                let _ = w.write_all(&bytes).await;
                let _ = w.shutdown().await;
            }))
        }
        None => {
            drop(in_w);
            None
        }
    };
    let out = pipe::Receiver::from_owned_fd(out_r).map_err(io)?;
    let err = pipe::Receiver::from_owned_fd(err_r).map_err(io)?;
    let limit = spec.output_limit;
    Ok(Exec {
        id,
        rx,
        stdout: tokio::spawn(pump(out, Stream::Stdout, limit, sink.clone())),
        stderr: tokio::spawn(pump(err, Stream::Stderr, limit, sink)),
        stdin,
        started: Instant::now(),
        program: cmd.program.clone(),
    })
}

impl Exec {
    /// Waits for the init to report the command's end.
    pub async fn wait(&mut self, inst: &Instance) -> Result<Exit> {
        let reply = self.rx.recv().await;
        inst.done(self.id);
        match reply {
            Some((m, _)) if m.tag() == b"exit" => {
                let signal = m.num_at(3) as i32;
                Ok(Exit {
                    code: m.text(2).parse().unwrap_or(-1),
                    signal: (signal != 0).then_some(signal),
                    timed_out: m.num_at(4) != 0,
                })
            }
            Some((m, _)) => Err(Error::backend(
                "native",
                format!("starting `{}` failed: {}", self.program, m.text(2)),
            )),
            None => Err(Error::backend(
                "native",
                format!("the sandbox ended while `{}` was running", self.program),
            )),
        }
    }

    /// The output, once the pipes close (or the grace period ends).
    pub async fn finish(self, exit: Exit, enforcement: Enforcement) -> RunResult {
        if let Some(stdin) = self.stdin {
            stdin.abort();
        }
        let stdout = cleanroom_core::collect_pump(self.stdout).await;
        let stderr = cleanroom_core::collect_pump(self.stderr).await;
        RunResult {
            exit_code: exit.code,
            signal: exit.signal,
            timed_out: exit.timed_out,
            oom_killed: false,
            stdout: stdout.bytes,
            stderr: stderr.bytes,
            stdout_truncated: stdout.truncated,
            stderr_truncated: stderr.truncated,
            duration: self.started.elapsed(),
            backend: "native".into(),
            enforcement,
        }
    }

    /// Lets the command run on its own; resolves when it ends.
    pub async fn detach(mut self) {
        let _ = self.rx.recv().await;
    }

    /// Stops the output pumps without waiting (the sandbox is being torn down).
    pub fn abort(self) {
        self.stdout.abort();
        self.stderr.abort();
        if let Some(s) = self.stdin {
            s.abort();
        }
    }
}
