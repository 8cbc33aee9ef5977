//! `cleanroom logs`, `stop` and `rm`: reading and ending named sandboxes.
//! Commands on several names find them all first and change nothing if one
//! is missing.

use std::process::ExitCode;
use std::time::Duration;

use cleanroom::bridge::wait;
use cleanroom::{Error, LogOptions, Result, SandboxState};

use crate::cli::{LogsArgs, RmArgs, StopArgs};
use crate::commands::run::pass_through;

pub fn logs(args: LogsArgs) -> Result<ExitCode> {
    wait(async {
        let sandbox = super::find(&args.name, &args.lookup).await?;
        let options = LogOptions {
            tail: args.tail,
            follow: args.follow,
        };
        let (sink, writer) = pass_through();
        let read = sandbox.logs(options, sink).await;
        let _ = writer.await;
        read?;
        Ok(ExitCode::SUCCESS)
    })
}

pub fn stop(args: StopArgs) -> Result<ExitCode> {
    wait(async {
        let sandboxes = super::find_all(&args.names, &args.lookup).await?;
        for sandbox in sandboxes {
            sandbox.stop(Duration::from_secs(args.time)).await?;
            say!("{}", sandbox.info().name);
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn rm(args: RmArgs) -> Result<ExitCode> {
    wait(async {
        let sandboxes = super::find_all(&args.names, &args.lookup).await?;
        if !args.force {
            if let Some(running) = sandboxes
                .iter()
                .find(|s| s.info().state == SandboxState::Running)
            {
                let name = &running.info().name;
                return Err(Error::Config {
                    origin: format!("sandbox `{name}`"),
                    message: format!(
                        "is running; stop it first (`cleanroom stop {name}`) or remove it \
                         anyway with `cleanroom rm -f {name}`"
                    ),
                });
            }
        }
        for sandbox in sandboxes {
            sandbox.remove(args.force).await?;
            say!("{}", sandbox.info().name);
        }
        Ok(ExitCode::SUCCESS)
    })
}
