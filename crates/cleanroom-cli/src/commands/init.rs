//! `cleanroom init [DIR]`: scaffold `cleanroom.toml` and an example test
//! that passes as written.

use std::path::PathBuf;
use std::process::ExitCode;

use cleanroom::Result;

use crate::cli::InitArgs;

pub fn main(args: InitArgs) -> Result<ExitCode> {
    let dir = match args.dir {
        Some(d) => d,
        None => super::current_dir()?,
    };
    let written: Vec<PathBuf> = cleanroom_runner::scaffold::init(&dir)?;
    for p in &written {
        say!("created {}", p.display());
    }
    say!("next: `cleanroom test` runs tests/example.clnrm.toml");
    Ok(ExitCode::SUCCESS)
}
