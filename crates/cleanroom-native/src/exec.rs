//! One command in a sandbox, seen from the caller: three pipes handed to the
//! init with the request, output pumped with [`cleanroom_core::pump`], and
//! the exit status the init reports.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use cleanroom_core::{
    pump, Captured, Cmd, Enforcement, Error, OutputSink, Result, RunResult, SandboxSpec, Stream,
};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::{Channel, Reply};
use crate::protocol::{Bytes, Message};

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
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| Error::io(format!("creating the {what} pipe"), e.into()))
}

/// A command's request and pipes, made before the request is sent (or
/// carried in the plan, for a one-shot run's command).
pub struct Prepared {
    pub request: Request,
    /// The command's ends: stdin's read end, stdout's and stderr's write ends.
    pub theirs: [OwnedFd; 3],
    /// What the caller keeps to feed and read the command.
    pub ours: Attach,
}

/// The `exec` request's contents.
pub struct Request {
    argv: Vec<String>,
    env: Vec<String>,
    cwd: std::path::PathBuf,
    timeout_ms: u64,
}

impl Request {
    /// The request for `cmd` in a sandbox built from `spec`.
    pub fn new(spec: &SandboxSpec, cmd: &Cmd) -> Result<Request> {
        cmd.validate()?;
        let env = spec
            .environment(&cmd.env)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let cwd = match &cmd.workdir {
            Some(w) => spec.workdir.join(w),
            None => spec.workdir.clone(),
        };
        let timeout = cmd.timeout.or(spec.timeout);
        Ok(Request {
            argv: cmd.argv(),
            env,
            cwd,
            timeout_ms: timeout.map(|t| t.as_millis().max(1) as u64).unwrap_or(0),
        })
    }
}

/// The caller's ends of a command's pipes and what it needs to use them.
pub struct Attach {
    /// stdin's write end, stdout's and stderr's read ends.
    pipes: [OwnedFd; 3],
    stdin: Option<Vec<u8>>,
    limit: u64,
    program: String,
}

impl Prepared {
    pub fn new(spec: &SandboxSpec, cmd: &Cmd) -> Result<Prepared> {
        let request = Request::new(spec, cmd)?;
        let (in_r, in_w) = pipe_pair("stdin")?;
        let (out_r, out_w) = pipe_pair("stdout")?;
        let (err_r, err_w) = pipe_pair("stderr")?;
        Ok(Prepared {
            request,
            theirs: [in_r, out_w, err_w],
            ours: Attach {
                pipes: [in_w, out_r, err_r],
                stdin: cmd.stdin.clone(),
                limit: spec.output_limit,
                program: cmd.program.clone(),
            },
        })
    }
}

impl Request {
    /// The message asking for this command as request `id`; with `tty`,
    /// on a pseudo-terminal of that size.
    pub fn message(&self, id: u64, tty: Option<crate::protocol::WindowSize>) -> Message {
        Message::Exec {
            id,
            argv: self.argv.iter().map(|a| Bytes::from(a.as_str())).collect(),
            env: self.env.iter().map(|e| Bytes::from(e.as_str())).collect(),
            cwd: Bytes::from_path(&self.cwd),
            timeout_ms: self.timeout_ms,
            tty,
        }
    }
}

/// Starts `cmd` in the sandbox reached over `inst`, built from `spec`.
pub async fn start(
    inst: &Channel,
    spec: &SandboxSpec,
    cmd: &Cmd,
    sink: Option<OutputSink>,
) -> Result<Exec> {
    let Prepared {
        request,
        theirs,
        ours,
    } = Prepared::new(spec, cmd)?;
    let fds = theirs.each_ref().map(|fd| fd.as_fd());
    let (id, rx) = inst.request(|id| request.message(id, None), &fds).await?;
    // The init has its own copies now; ours would keep the pipes open.
    drop(theirs);
    ours.attach(id, rx, sink)
}

impl Attach {
    /// Feeds stdin and pumps the output of the command started as `id`,
    /// whose replies arrive on `rx`. The command's ends must be closed here.
    pub fn attach(
        self,
        id: u64,
        rx: mpsc::UnboundedReceiver<Reply>,
        sink: Option<OutputSink>,
    ) -> Result<Exec> {
        let [in_w, out_r, err_r] = self.pipes;
        let io = |e: std::io::Error| Error::io("attaching the command's pipes", e);
        let stdin = match self.stdin {
            Some(bytes) => {
                let mut w = pipe::Sender::from_owned_fd(in_w).map_err(io)?;
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
        Ok(Exec {
            id,
            rx,
            stdout: tokio::spawn(pump(out, Stream::Stdout, self.limit, sink.clone())),
            stderr: tokio::spawn(pump(err, Stream::Stderr, self.limit, sink)),
            stdin,
            started: Instant::now(),
            program: self.program,
        })
    }
}

impl Exec {
    /// Waits for the init to report the command's end.
    pub async fn wait(&mut self, inst: &Channel) -> Result<Exit> {
        let reply = self.rx.recv().await;
        inst.done(self.id);
        match reply {
            Some((
                Message::Exit {
                    code,
                    signal,
                    timed_out,
                    ..
                },
                _,
            )) => Ok(Exit {
                code,
                signal: (signal != 0).then_some(signal),
                timed_out,
            }),
            Some((Message::Err { reason, .. }, _)) => Err(Error::backend(
                "native",
                format!("starting `{}` failed: {reason}", self.program),
            )),
            Some((other, _)) => Err(Error::backend(
                "native",
                format!("unexpected reply to `{}`: {other:?}", self.program),
            )),
            None => Err(Error::backend(
                "native",
                format!("the sandbox ended while `{}` was running", self.program),
            )),
        }
    }

    /// The output, once the pipes close (or the grace period ends).
    /// `oom_event`: the sandbox's cgroup saw an OOM kill during the run; the
    /// command counts as OOM-killed when it then ended with 137 (SIGKILL,
    /// itself or, through a shell, what it ran), as Docker reports it.
    pub async fn finish(self, exit: Exit, enforcement: Enforcement, oom_event: bool) -> RunResult {
        if let Some(stdin) = self.stdin {
            stdin.abort();
        }
        let stdout = cleanroom_core::collect_pump(self.stdout).await;
        let stderr = cleanroom_core::collect_pump(self.stderr).await;
        RunResult {
            exit_code: exit.code,
            signal: exit.signal,
            timed_out: exit.timed_out,
            oom_killed: oom_event && !exit.timed_out && exit.code == 137,
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
