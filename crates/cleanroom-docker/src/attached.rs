//! `cleanroom exec -i/-t` on an engine: a command in a named sandbox on the
//! caller's own streams, through the engine's hijacked exec connection.
//! With `-t` the exec gets a pseudo-terminal sized like the caller's (and
//! resized on SIGWINCH) while the caller's terminal is in raw mode.
//!
//! The command runs under the same wrapper as every exec ([`WRAPPER`]): its
//! first output line names its process group, so a timeout kills the whole
//! tree; that line never reaches the caller.

use std::io::Read;
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use cleanroom_core::detached::EXIT_TIMED_OUT;
use cleanroom_core::terminal::{self, RawMode};
use cleanroom_core::{Error, ExecStdio, Result};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::detached::EngineDetached;
use crate::errors::engine_error;
use crate::exec::{kill_group, ExecRequest, WRAPPER};

/// Runs `req` in `h` on this process's stdin (with `stdio.stdin`), stdout
/// and stderr, and returns its exit code.
pub(crate) async fn exec_attached(
    h: &EngineDetached,
    req: ExecRequest,
    stdio: ExecStdio,
) -> Result<i32> {
    let engine = h.engine().name();
    let (docker, id) = (h.docker(), h.container_id());
    if req.argv.first().is_some_and(|p| p.contains('=')) {
        return Err(Error::InvalidSpec(format!(
            "program `{}` contains `=`; the {engine} backend cannot run such a name, rename it",
            req.argv[0]
        )));
    }
    let mut cmd: Vec<String> = ["sh", "-c", WRAPPER, "sh"].map(String::from).to_vec();
    cmd.extend(req.env.iter().map(|(k, v)| format!("{k}={v}")));
    cmd.extend(req.argv.iter().cloned());
    let created = docker
        .create_exec(
            id,
            CreateExecOptions {
                attach_stdin: Some(stdio.stdin),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(stdio.tty),
                cmd: Some(cmd),
                user: Some(req.user.clone()),
                working_dir: Some(req.workdir.clone()),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| engine_error(engine, id, "creating an exec", e))?;
    let exec_id = created.id;
    // Raw before the start, so no key typed meanwhile is cooked.
    let raw = if stdio.tty { RawMode::enter() } else { None };
    let started = docker
        .start_exec(
            &exec_id,
            Some(StartExecOptions {
                detach: false,
                tty: stdio.tty,
                output_capacity: None,
            }),
        )
        .await
        .map_err(|e| engine_error(engine, id, "starting an exec", e))?;
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = started
    else {
        return Err(Error::backend(
            engine,
            "the engine started the exec detached; cannot attach to it",
        ));
    };
    let resize = |size: terminal::Size| {
        docker.resize_exec(
            &exec_id,
            ResizeExecOptions {
                height: size.rows,
                width: size.columns,
            },
        )
    };
    if stdio.tty {
        if let Some(size) = terminal::size() {
            let _ = resize(size).await;
        }
    }

    let stdin_task = tokio::spawn(async move {
        if stdio.stdin {
            let mut chunks = stdin_chunks();
            while let Some(chunk) = chunks.recv().await {
                if input.write_all(&chunk).await.is_err() || input.flush().await.is_err() {
                    break;
                }
            }
        }
        let _ = input.shutdown().await;
    });

    let mut winch = if stdio.tty {
        signal(SignalKind::window_change()).ok()
    } else {
        None
    };
    let deadline = req.timeout.map(|t| Instant::now() + t);
    let mut out = tokio::io::stdout();
    let mut err = tokio::io::stderr();
    let mut pid_line: Option<Vec<u8>> = Some(Vec::new());
    let mut pgid: Option<u32> = None;
    let mut timed_out = false;
    loop {
        tokio::select! {
            item = output.next() => {
                let Some(item) = item else { break };
                let (to_stdout, mut bytes) = match item {
                    Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => (true, message.to_vec()),
                    Ok(LogOutput::StdErr { message }) => (false, message.to_vec()),
                    Ok(LogOutput::StdIn { .. }) => continue,
                    Err(e) => return Err(engine_error(engine, id, "reading exec output", e)),
                };
                if to_stdout {
                    if let Some(buf) = pid_line.as_mut() {
                        buf.extend_from_slice(&bytes);
                        let Some(nl) = buf.iter().position(|b| *b == b'\n') else { continue };
                        pgid = std::str::from_utf8(&buf[..nl]).ok().and_then(|s| s.trim().parse().ok());
                        bytes = if pgid.is_some() { buf[nl + 1..].to_vec() } else { buf.clone() };
                        pid_line = None;
                    }
                }
                // A closed stdout or stderr (`| head`) must not stop the
                // command early: the rest is dropped.
                let w: &mut (dyn tokio::io::AsyncWrite + Unpin + Send) = if to_stdout { &mut out } else { &mut err };
                if w.write_all(&bytes).await.is_ok() {
                    let _ = w.flush().await;
                }
            }
            Some(()) = async { match winch.as_mut() { Some(w) => w.recv().await, None => std::future::pending().await } } => {
                if let Some(size) = terminal::size() {
                    let _ = resize(size).await;
                }
            }
            () = async { match deadline { Some(d) => tokio::time::sleep_until(d.into()).await, None => std::future::pending().await } } => {
                timed_out = true;
                break;
            }
        }
    }
    drop(output);
    stdin_task.abort();
    if timed_out {
        if let Some(pgid) = pgid {
            kill_group(docker, id, &req.user, pgid).await;
        }
    }
    let mut code = None;
    for _ in 0..100 {
        match docker.inspect_exec(&exec_id).await {
            Ok(info) if info.running != Some(true) => {
                code = info.exit_code;
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => return Err(engine_error(engine, id, "inspecting an exec", e)),
        }
    }
    drop(raw);
    if timed_out {
        return Ok(EXIT_TIMED_OUT);
    }
    let code = code.ok_or_else(|| {
        Error::backend(
            engine,
            format!("exec in container {id} still running after its output ended"),
        )
    })?;
    if pgid.is_none() {
        return Err(Error::backend(
            engine,
            format!(
                "could not start a command in container {id} (exit {code}): the engine \
                 backends run commands through the image's `sh` and `env`; use an image that \
                 has both"
            ),
        ));
    }
    Ok(code.clamp(i32::MIN as i64, i32::MAX as i64) as i32)
}

/// This process's stdin, read on a thread of its own: a read blocked on a
/// terminal must not keep the runtime (or the process) from ending.
fn stdin_chunks() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    });
    rx
}
