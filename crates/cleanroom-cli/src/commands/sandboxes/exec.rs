//! `cleanroom exec [-i] [-t] NAME -- CMD...`: a command in a running named
//! sandbox; the exit status is the command's.

use std::path::PathBuf;
use std::process::ExitCode;

use cleanroom::bridge::wait;
use cleanroom::detached::{not_running, EXIT_TIMED_OUT};
use cleanroom::spec::parse_duration;
use cleanroom::{Cmd, Error, ExecStdio, Result, SandboxState};

use crate::cli::ExecArgs;
use crate::commands::run::{env_pair, exit_code, humanize, pass_through};

pub fn main(args: ExecArgs) -> Result<ExitCode> {
    wait(exec(args))
}

async fn exec(args: ExecArgs) -> Result<ExitCode> {
    let cmd = command(&args)?;
    let sandbox = super::find(&args.name, &args.lookup).await?;
    let info = sandbox.info();
    if info.state != SandboxState::Running {
        return Err(not_running(info));
    }
    if args.interactive || args.tty {
        let stdio = ExecStdio {
            stdin: args.interactive,
            tty: args.tty,
        };
        let timeout = cmd.timeout;
        let code = sandbox.exec_attached(cmd, stdio).await?;
        if let (Some(t), EXIT_TIMED_OUT) = (timeout, code) {
            eprintln!(
                "cleanroom: the command timed out after {}; everything it started was killed",
                humanize(t)
            );
        }
        return Ok(ExitCode::from(code.clamp(0, 255) as u8));
    }
    // The exit message names this exec's own timeout.
    let spec = cleanroom::SandboxSpec {
        timeout: cmd.timeout,
        ..Default::default()
    };
    let (sink, writer) = pass_through();
    let result = sandbox.exec(cmd, Some(sink)).await;
    let _ = writer.await;
    Ok(exit_code(&result?, &spec))
}

/// The command with this exec's own environment, directory and timeout.
fn command(args: &ExecArgs) -> Result<Cmd> {
    let mut cmd = Cmd::from(args.command.clone());
    for pair in &args.env {
        let (k, v) = env_pair(pair)?;
        cmd.env.insert(k, v);
    }
    if let Some(dir) = &args.workdir {
        let dir = PathBuf::from(dir);
        if !dir.is_absolute() {
            return Err(Error::Config {
                origin: "flag --workdir".into(),
                message: format!(
                    "`{}` must be an absolute path inside the sandbox",
                    dir.display()
                ),
            });
        }
        cmd.workdir = Some(dir);
    }
    cmd.timeout = args_timeout(args)?;
    cmd.validate()?;
    Ok(cmd)
}

fn args_timeout(args: &ExecArgs) -> Result<Option<std::time::Duration>> {
    args.timeout
        .as_deref()
        .map(|t| {
            parse_duration(t).map_err(|e| Error::Config {
                origin: "flag --timeout".into(),
                message: format!("`{t}`: {e}"),
            })
        })
        .transpose()
}
