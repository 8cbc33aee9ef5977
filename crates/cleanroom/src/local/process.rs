//! Running one host process the way the contract asks of the local backend:
//! cleared environment, umask 022, its own process group, bounded output,
//! and a timeout that kills the whole group.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cleanroom_core::{pump, Cmd, Enforcement, Error, OutputSink, Result, RunResult, Stream};
use rustix::process::{kill_process_group, Pid, Signal};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// One command to start, already resolved against the sandbox.
pub(crate) struct Launch<'a> {
    pub cmd: Cmd,
    pub env: BTreeMap<String, String>,
    pub cwd: &'a Path,
    pub output_limit: u64,
}

/// A started process whose group can be killed from elsewhere.
pub(crate) struct Started {
    child: tokio::process::Child,
    pub pgid: Option<Pid>,
    started: Instant,
    stdout: tokio::task::JoinHandle<std::io::Result<cleanroom_core::Captured>>,
    stderr: tokio::task::JoinHandle<std::io::Result<cleanroom_core::Captured>>,
    stdin: Option<tokio::task::JoinHandle<()>>,
    program: String,
    /// Kills the group if the run is abandoned (its future dropped, for
    /// example on Ctrl-C) before [`Started::finish`] did.
    guard: GroupGuard,
}

/// Kills a process group when dropped, unless disarmed.
struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            kill_group(pgid);
        }
    }
}

/// Kills every process of a group; a group already gone is fine.
pub(crate) fn kill_group(pgid: Pid) {
    let _ = kill_process_group(pgid, Signal::KILL);
}

pub(crate) fn start(launch: Launch<'_>, sink: Option<OutputSink>) -> Result<Started> {
    let Launch {
        cmd,
        env,
        cwd,
        output_limit,
    } = launch;
    // The shell sets umask 022 and then becomes the program (exec), so the
    // pid, signals and exit status are the program's own.
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg("unset PWD OLDPWD; umask 022 && exec \"$0\" \"$@\"")
        .arg(&cmd.program)
        .args(&cmd.args)
        .env_clear()
        .envs(&env)
        .current_dir(cwd)
        .process_group(0)
        .kill_on_drop(true)
        .stdin(if cmd.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| Error::io(format!("starting `{}` on the host", cmd.display()), e))?;
    let pgid = child.id().and_then(|id| Pid::from_raw(id as i32));
    let stdin = match (child.stdin.take(), cmd.stdin) {
        (Some(mut pipe), Some(bytes)) => Some(tokio::spawn(async move {
            // A command that exits without reading its input is not an error.
            let _ = pipe.write_all(&bytes).await;
            let _ = pipe.shutdown().await;
        })),
        _ => None,
    };
    let out = child.stdout.take().ok_or_else(|| pipe_missing("stdout"))?;
    let err = child.stderr.take().ok_or_else(|| pipe_missing("stderr"))?;
    let stdout = tokio::spawn(pump(out, Stream::Stdout, output_limit, sink.clone()));
    let stderr = tokio::spawn(pump(err, Stream::Stderr, output_limit, sink));
    Ok(Started {
        child,
        pgid,
        started: Instant::now(),
        stdout,
        stderr,
        stdin,
        program: cmd.program,
        guard: GroupGuard(pgid),
    })
}

fn pipe_missing(which: &str) -> Error {
    Error::backend("local", format!("the child's {which} pipe was not created"))
}

impl Started {
    /// Waits for the process (killing its group at the timeout), then kills
    /// whatever it left running in its group, and collects the output.
    pub(crate) async fn finish(
        mut self,
        timeout: Option<Duration>,
        enforcement: Enforcement,
    ) -> Result<RunResult> {
        let waited = match timeout {
            Some(t) => tokio::time::timeout(t, self.child.wait()).await.ok(),
            None => Some(self.child.wait().await),
        };
        let timed_out = waited.is_none();
        if let Some(pgid) = self.guard.0.take() {
            kill_group(pgid);
        }
        let status = match waited {
            Some(s) => s,
            None => self.child.wait().await,
        }
        .map_err(|e| Error::io(format!("waiting for `{}`", self.program), e))?;
        if let Some(stdin) = self.stdin {
            stdin.abort();
        }
        let stdout = cleanroom_core::collect_pump(self.stdout).await;
        let stderr = cleanroom_core::collect_pump(self.stderr).await;
        let (exit_code, signal) = cleanroom_core::exit_code_and_signal(status);
        Ok(RunResult {
            exit_code,
            signal,
            timed_out,
            oom_killed: false,
            stdout: stdout.bytes,
            stderr: stderr.bytes,
            stdout_truncated: stdout.truncated,
            stderr_truncated: stderr.truncated,
            duration: self.started.elapsed(),
            backend: "local".into(),
            enforcement,
        })
    }
}
