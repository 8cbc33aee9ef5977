//! `cleanroom validate FILES...`: check test files without running them and
//! print every problem at its file:line:column.

use std::process::ExitCode;

use cleanroom::Result;

use crate::cli::ValidateArgs;

pub fn main(args: ValidateArgs) -> Result<ExitCode> {
    let files = cleanroom_runner::discover(&args.files)?;
    if files.is_empty() {
        eprintln!("cleanroom: no *.clnrm.toml files to validate");
        return Ok(ExitCode::from(1));
    }
    let options = cleanroom_runner::ParseOptions {
        strict: args.strict,
        env: None,
    };
    let mut bad = 0usize;
    for file in &files {
        match cleanroom_runner::parse_file_with(file, &options) {
            Ok(test) => {
                for w in &test.warnings {
                    eprintln!("{}: warning: {}", w.location, w.message);
                }
                if !args.quiet {
                    say!(
                        "ok {} ({}{}: {} step{}, {} service{})",
                        file.display(),
                        test.name,
                        test.version
                            .as_deref()
                            .map(|v| format!(" {v}"))
                            .unwrap_or_default(),
                        test.steps.len(),
                        if test.steps.len() == 1 { "" } else { "s" },
                        test.services.len(),
                        if test.services.len() == 1 { "" } else { "s" },
                    );
                }
            }
            Err(problems) => {
                bad += 1;
                for p in problems {
                    eprintln!("{}: error: {}", p.location, p.message);
                }
            }
        }
    }
    if bad > 0 {
        eprintln!(
            "{bad} of {} file{} invalid",
            files.len(),
            if files.len() == 1 { "" } else { "s" }
        );
        Ok(ExitCode::from(1))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}
