//! `cleanroom completions SHELL`: a completion script on stdout.

use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};

pub fn main(args: CompletionsArgs) -> cleanroom::Result<ExitCode> {
    let mut cmd = Cli::command();
    // clap_complete panics on a write error: render first, then write checked.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "cleanroom", &mut script);
    crate::output::print_bytes(&script);
    Ok(ExitCode::SUCCESS)
}
