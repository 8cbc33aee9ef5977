//! Running one command in a running container through the exec API:
//! demultiplexed stdout/stderr, stdin, exit code, and a timeout that kills
//! the command's whole process tree.
//!
//! Every command runs as `sh -c 'echo $$; exec env -i "$@"' sh K=V... PROG ARGS`.
//! The exec'd process is a session leader (the runtime calls setsid), so
//! its pid is the process group of everything it starts; the first stdout
//! line carries that pid to us and is removed from the output. A timeout then
//! kills the group with a second exec (`kill -9 -PGID`), or, for a one-shot
//! run, the whole container.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::KillContainerOptionsBuilder;
use bollard::Docker;
use cleanroom_core::{Captured, Error, OutputChunk, OutputSink, Result, Stream};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::errors::engine_error;

/// How a timed-out command is ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillMode {
    /// Kill the command's process group; the container lives on.
    Group,
    /// Kill the whole container (one-shot runs).
    Container,
}

/// One command to exec.
pub struct ExecRequest {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub user: String,
    pub workdir: String,
    pub stdin: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
    /// Bytes kept of each stream.
    pub limit: u64,
    pub sink: Option<OutputSink>,
}

/// What came back.
pub struct ExecOutput {
    pub exit_code: i64,
    pub timed_out: bool,
    pub stdout: Captured,
    pub stderr: Captured,
}

/// How long output may stay quiet after the command exited before we stop
/// reading (something it started in the background holds the stream open).
const GRACE: Duration = Duration::from_millis(300);

pub(crate) const WRAPPER: &str = "echo $$; exec env -i \"$@\"";

/// Runs `req` in `container` of `engine` (named for errors).
pub async fn run_exec(
    docker: &Docker,
    engine: &str,
    container: &str,
    req: ExecRequest,
    kill: KillMode,
) -> Result<ExecOutput> {
    if req.argv.first().is_some_and(|p| p.contains('=')) {
        return Err(Error::InvalidSpec(format!(
            "program `{}` contains `=`; the {engine} backend cannot run such a name, rename it",
            req.argv[0]
        )));
    }
    let mut cmd = vec![
        "sh".to_string(),
        "-c".to_string(),
        WRAPPER.to_string(),
        "sh".to_string(),
    ];
    cmd.extend(req.env.iter().map(|(k, v)| format!("{k}={v}")));
    cmd.extend(req.argv.iter().cloned());
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                attach_stdin: Some(req.stdin.is_some()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(false),
                cmd: Some(cmd),
                user: Some(req.user.clone()),
                working_dir: Some(req.workdir.clone()),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| engine_error(engine, container, "creating an exec", e))?;
    let exec_id = created.id;
    let started = Instant::now();
    let deadline = req.timeout.map(|t| started + t);

    let (mut output, input) = match docker
        .start_exec(
            &exec_id,
            Some(StartExecOptions {
                detach: false,
                tty: false,
                output_capacity: None,
            }),
        )
        .await
        .map_err(|e| engine_error(engine, container, "starting an exec", e))?
    {
        StartExecResults::Attached { output, input } => (output, input),
        StartExecResults::Detached => {
            return Err(Error::backend(
                engine,
                "the engine started the exec detached; cannot read its output",
            ))
        }
    };

    // Feed stdin concurrently so a command that writes before reading all
    // of it cannot deadlock against us.
    let stdin_task = {
        let bytes = req.stdin.clone();
        let mut input = input;
        tokio::spawn(async move {
            if let Some(bytes) = bytes {
                let _ = input.write_all(&bytes).await;
                let _ = input.flush().await;
            }
            let _ = input.shutdown().await;
        })
    };

    let mut stdout = Captured::default();
    let mut stderr = Captured::default();
    let mut pid_line: Option<Vec<u8>> = Some(Vec::new());
    let mut pgid: Option<u32> = None;
    let mut sink = req.sink;
    let mut timed_out = false;
    let mut poll = Duration::from_millis(100);
    let mut next_poll = Instant::now() + poll;
    let mut exited_at: Option<Instant> = None;
    let mut last_data = Instant::now();

    loop {
        let now = Instant::now();
        if let Some(d) = deadline {
            if now >= d {
                timed_out = true;
                break;
            }
        }
        // The process exited but something it started still holds the
        // output open: take what arrives shortly, then stop reading.
        let quiet_since = exited_at.map(|t| t.max(last_data));
        if let Some(t) = quiet_since {
            if now >= t + GRACE {
                break;
            }
        }
        let mut wake = next_poll;
        if let Some(d) = deadline {
            wake = wake.min(d);
        }
        if let Some(t) = quiet_since {
            wake = wake.min(t + GRACE);
        }
        tokio::select! {
            item = output.next() => {
                let Some(item) = item else { break };
                last_data = Instant::now();
                let (stream, mut bytes) = match item {
                    Ok(LogOutput::StdOut { message }) => (Stream::Stdout, message.to_vec()),
                    Ok(LogOutput::StdErr { message }) => (Stream::Stderr, message.to_vec()),
                    Ok(LogOutput::Console { message }) => (Stream::Stdout, message.to_vec()),
                    Ok(LogOutput::StdIn { .. }) => continue,
                    Err(e) => return Err(engine_error(engine, container, "reading exec output", e)),
                };
                if stream == Stream::Stdout {
                    if let Some(buf) = pid_line.as_mut() {
                        buf.extend_from_slice(&bytes);
                        match buf.iter().position(|b| *b == b'\n') {
                            Some(nl) => {
                                pgid = std::str::from_utf8(&buf[..nl]).ok().and_then(|s| s.trim().parse().ok());
                                if pgid.is_none() {
                                    // Not our pid: the engine's own error, keep it.
                                    stderr.push(&buf[..=nl], req.limit);
                                }
                                bytes = buf[nl + 1..].to_vec();
                                pid_line = None;
                            }
                            None => continue,
                        }
                    }
                    if bytes.is_empty() {
                        continue;
                    }
                }
                match stream {
                    Stream::Stdout => stdout.push(&bytes, req.limit),
                    Stream::Stderr => stderr.push(&bytes, req.limit),
                }
                if let Some(s) = &sink {
                    if s.send(OutputChunk { stream, bytes }).await.is_err() {
                        sink = None;
                    }
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                if exited_at.is_none() && Instant::now() >= next_poll {
                    let info = docker.inspect_exec(&exec_id).await
                        .map_err(|e| engine_error(engine, container, "inspecting an exec", e))?;
                    if info.running == Some(false) {
                        exited_at = Some(Instant::now());
                    }
                    poll = (poll * 2).min(Duration::from_secs(1));
                    next_poll = Instant::now() + poll;
                }
            }
        }
    }
    drop(output);
    stdin_task.abort();

    if timed_out {
        match kill {
            KillMode::Container => {
                let opts = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
                let _ = docker.kill_container(container, Some(opts)).await;
            }
            KillMode::Group => {
                if let Some(pgid) = pgid {
                    kill_group(docker, container, &req.user, pgid).await;
                }
            }
        }
    }

    // The exit code, once the engine has noticed the exit.
    let mut exit_code = None;
    for _ in 0..100 {
        match docker.inspect_exec(&exec_id).await {
            Ok(info) if info.running != Some(true) => {
                exit_code = info.exit_code;
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            // The container is gone (killed after a timeout): no code to read.
            Err(_) if timed_out => break,
            Err(e) => return Err(engine_error(engine, container, "inspecting an exec", e)),
        }
    }
    let exit_code = match exit_code {
        Some(c) => c,
        None if timed_out => 137,
        None => {
            return Err(Error::backend(
                engine,
                format!("exec in container {container} still running after its output ended"),
            ))
        }
    };
    if pgid.is_none() && !timed_out {
        if let Some(partial) = pid_line {
            stderr.push(&partial, req.limit);
        }
        // The wrapper never printed its pid: `sh` (or the exec) failed
        // before anything of ours ran.
        let said = String::from_utf8_lossy(&stderr.bytes).trim().to_string();
        return Err(Error::backend(
            engine,
            format!(
                "could not start a command in container {container} (exit {exit_code}{}): the \
                 engine backends run commands through the image's `sh` and `env`, so the image \
                 must provide both (busybox or coreutils); use an image that has them",
                if said.is_empty() {
                    String::new()
                } else {
                    format!(": {said}")
                }
            ),
        ));
    }
    Ok(ExecOutput {
        exit_code,
        timed_out,
        stdout,
        stderr,
    })
}

/// Kills process group `pgid` in `container`, as `user` (without
/// capabilities, only the same uid may signal it).
pub(crate) async fn kill_group(docker: &Docker, container: &str, user: &str, pgid: u32) {
    let Ok(created) = docker
        .create_exec(
            container,
            CreateExecOptions {
                attach_stdout: Some(false),
                attach_stderr: Some(false),
                cmd: Some(vec![
                    "sh".to_string(),
                    "-c".to_string(),
                    "kill -9 -\"$1\"".to_string(),
                    "sh".to_string(),
                    pgid.to_string(),
                ]),
                user: Some(user.to_string()),
                ..Default::default()
            },
        )
        .await
    else {
        return;
    };
    if docker
        .start_exec(
            &created.id,
            Some(StartExecOptions {
                detach: true,
                tty: false,
                output_capacity: None,
            }),
        )
        .await
        .is_err()
    {
        return;
    }
    for _ in 0..100 {
        match docker.inspect_exec(&created.id).await {
            Ok(info) if info.running == Some(true) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            _ => break,
        }
    }
}

/// Exit code and signal as a shell reports them: 128+N means signal N.
pub fn split_exit(code: i64) -> (i32, Option<i32>) {
    let code = code.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
    if (129..=128 + 64).contains(&code) {
        (code, Some(code - 128))
    } else {
        (code, None)
    }
}
