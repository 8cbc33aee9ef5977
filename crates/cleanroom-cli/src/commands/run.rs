//! `cleanroom run -- CMD...`: one command in a fresh sandbox.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use cleanroom::bridge::wait_here;
use cleanroom::{
    backend_for, output_channel, AutoBackend, Backend, BackendChoice, Cmd, Error, Mount,
    OutputSink, Prepared, Result, RunResult, SandboxSpec, Stream, Warnings,
};
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::{RunArgs, SpecArgs};
use crate::output;

/// The exit code `timeout(1)` uses for a command that ran out of time.
const EXIT_TIMED_OUT: u8 = 124;

pub fn main(args: RunArgs) -> Result<ExitCode> {
    if args.detach {
        return super::sandboxes::create::run_detached(args);
    }
    if args.named.name.is_some() || !args.named.label.is_empty() {
        return Err(Error::Config {
            origin: "flags --name/--label".into(),
            message:
                "name a sandbox that outlives the run; add -d (`cleanroom run -d --name N -- CMD`)"
                    .into(),
        });
    }
    // One sandbox, then exit: a runtime on this thread alone, with no
    // worker threads (see `wait_here`).
    wait_here(run(args))
}

async fn run(args: RunArgs) -> Result<ExitCode> {
    let cwd = super::current_dir()?;
    let config = super::load_config(&args.spec.sandbox.given, &cwd)?;
    let spec = spec_from(&args.spec, config.spec()?, &cwd)?;
    let image = config.image.value.as_deref();
    // Native or local asked for by name is not probed first (for native a
    // user namespace made and thrown away, ~0.3 ms of a 5 ms run): the run
    // itself finds out, and only if it fails is the backend asked why, so
    // the error still names the reason and the fix. An engine is still
    // pinged first: the preamble's report needs its answer anyway, and
    // warnings about an engine that is not there would mislead.
    let named = matches!(
        config.backend.value,
        BackendChoice::Native | BackendChoice::Local
    );
    let backend: Arc<dyn Backend> = if named {
        tracing::info!("backend {}: asked for by name", config.backend.value);
        backend_for(config.backend.value, image)?
    } else {
        let auto = AutoBackend::select(config.backend.value, image).await?;
        tracing::info!("backend {}: {}", auto.chosen(), auto.reason());
        Arc::new(auto)
    };

    let cmd = Cmd::from(args.command.clone());
    // The preamble, once; its warnings are ours to print, before any output.
    let prepared = match backend.prepare(&spec, Some(&cmd), Warnings::Caller) {
        Ok(p) => p,
        Err(e) => return Err(unavailable_or(backend.as_ref(), e).await),
    };
    if !args.quiet {
        for w in prepared.warnings() {
            eprintln!("{w}");
        }
    }
    let result = tokio::select! {
        r = execute(backend.as_ref(), &spec, cmd, prepared, args.json) => match r {
            Ok(r) => r,
            Err(e) if named => return Err(unavailable_or(backend.as_ref(), e).await),
            Err(e) => return Err(e),
        },
        code = interrupted() => {
            // Dropping the run above tears a native or local sandbox down;
            // engine containers are removed by label.
            if let Err(e) = backend.remove_session().await {
                eprintln!("cleanroom: interrupted, but removing the sandbox failed: {e}; run `cleanroom gc`");
            } else {
                eprintln!("cleanroom: interrupted; the sandbox was removed");
            }
            return Ok(ExitCode::from(code));
        }
    };
    if args.json {
        output::json(&result)?;
    }
    Ok(exit_code(&result, &spec))
}

/// Why `backend` cannot run anything here, if it cannot; else `failed`.
async fn unavailable_or(backend: &dyn Backend, failed: Error) -> Error {
    let a = backend.availability().await;
    if a.available {
        return failed;
    }
    Error::Unavailable {
        backend: backend.name().to_string(),
        reason: a.reason,
        hint: a.hint,
    }
}

/// Runs the command, passing its output through live unless `quiet_output`.
async fn execute(
    backend: &dyn Backend,
    spec: &SandboxSpec,
    cmd: Cmd,
    prepared: Prepared,
    quiet_output: bool,
) -> Result<RunResult> {
    if quiet_output {
        return backend.run_prepared(spec, cmd, None, prepared).await;
    }
    let (sink, writer) = pass_through();
    let result = backend.run_prepared(spec, cmd, Some(sink), prepared).await;
    let _ = writer.await;
    result
}

/// A sink whose chunks go to this process's stdout and stderr as they
/// come, and the task writing them (done when every sender is dropped).
pub fn pass_through() -> (OutputSink, tokio::task::JoinHandle<()>) {
    let (sink, mut chunks) = output_channel(64);
    let writer = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        let mut err = tokio::io::stderr();
        while let Some(chunk) = chunks.recv().await {
            // A closed or full stdout must not stop the command early: the
            // rest is dropped and `output::finish` decides the exit code.
            match chunk.stream {
                Stream::Stdout if output::is_open() => {
                    if let Err(e) = write_flush(&mut out, &chunk.bytes).await {
                        output::record(e);
                    }
                }
                Stream::Stdout => {}
                Stream::Stderr => {
                    let _ = write_flush(&mut err, &chunk.bytes).await;
                }
            }
        }
    });
    (sink, writer)
}

async fn write_flush(w: &mut (impl AsyncWriteExt + Unpin), bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

/// Resolves on SIGINT or SIGTERM with the shell's exit code for it.
async fn interrupted() -> u8 {
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => 130,
        _ = term.recv() => 143,
    }
}

pub fn exit_code(result: &RunResult, spec: &SandboxSpec) -> ExitCode {
    if result.timed_out {
        let limit = spec
            .timeout
            .map(|t| format!(" after {}", humanize(t)))
            .unwrap_or_default();
        eprintln!("cleanroom: the command timed out{limit}; everything it started was killed");
        return ExitCode::from(EXIT_TIMED_OUT);
    }
    if result.oom_killed {
        let limit = spec
            .memory
            .map(|m| format!(" ({} MiB)", m >> 20))
            .unwrap_or_default();
        eprintln!("cleanroom: the command was killed for exceeding the memory limit{limit}");
    }
    if result.stdout_truncated || result.stderr_truncated {
        tracing::info!("output beyond the capture limit was passed through but not kept");
    }
    ExitCode::from(result.exit_code.clamp(0, 255) as u8)
}

pub fn humanize(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The configured spec with this command's own flags applied.
pub fn spec_from(args: &SpecArgs, mut spec: SandboxSpec, cwd: &Path) -> Result<SandboxSpec> {
    spec.read_only_root = !args.writable_root;
    for pair in &args.env {
        let (key, value) = env_pair(pair)?;
        spec.env.insert(key, value);
    }
    for m in &args.mount {
        spec.mounts.push(mount_from(m, cwd)?);
    }
    Ok(spec)
}

/// A `--env KEY=VALUE` value, its key checked.
pub fn env_pair(pair: &str) -> Result<(String, String)> {
    let Some((key, value)) = pair.split_once('=') else {
        return Err(Error::Config {
            origin: "flag --env".into(),
            message: format!("`{pair}` is not KEY=VALUE"),
        });
    };
    cleanroom::spec::validate_env_key(key).map_err(|e| Error::Config {
        origin: "flag --env".into(),
        message: e.to_string(),
    })?;
    Ok((key.to_string(), value.to_string()))
}

/// A `--mount` value with a relative source taken from `cwd`; the source must exist.
pub(crate) fn mount_from(value: &str, cwd: &Path) -> Result<Mount> {
    let bad = |message: String| Error::Config {
        origin: "flag --mount".into(),
        message,
    };
    let mut m: Mount = value.parse().map_err(|e: Error| bad(e.to_string()))?;
    if m.source.is_relative() {
        m.source = cwd.join(&m.source);
    }
    let source: PathBuf = m.source.canonicalize().map_err(|e| {
        bad(format!(
            "`{value}`: source {} cannot be used: {e}",
            m.source.display()
        ))
    })?;
    m.source = source;
    cleanroom::ranges::target("target", &m.target).map_err(|e| match e {
        Error::InvalidSpec(why) => bad(format!("`{value}`: {why}")),
        other => other,
    })?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_sources_resolve_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        let m = mount_from("src:/w/src", dir.path()).unwrap();
        assert!(m.read_only);
        assert!(m.source.is_absolute() && m.source.ends_with("src"));
        let e = mount_from("nope:/w", dir.path()).unwrap_err().to_string();
        assert!(e.starts_with("flag --mount: `nope:/w`"), "{e}");
        let e = mount_from("src:rel", dir.path()).unwrap_err().to_string();
        assert!(e.contains("absolute"), "{e}");
    }
}
