//! `cleanroom completions SHELL`: a completion script on stdout.

use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};

pub fn main(args: CompletionsArgs) -> cleanroom::Result<ExitCode> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "cleanroom", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
