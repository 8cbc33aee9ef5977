//! Turns clap's outcome of a failed parse into ours: `--help` and
//! `--version` on stdout with exit 0, every usage error as one line on
//! stderr with exit 125 (the code of every other bad input).

use std::process::ExitCode;

use clap::error::ErrorKind;

/// Prints `e` the Cleanroom way and returns the exit code.
pub fn report(e: &clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            crate::output::print_fmt(format_args!("{}", e.render()));
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprintln!("cleanroom: error: a command is required; see `cleanroom --help`");
            ExitCode::from(crate::EXIT_CLEANROOM_ERROR)
        }
        _ => {
            eprintln!("cleanroom: error: {}", one_line(&e.render().to_string()));
            ExitCode::from(crate::EXIT_CLEANROOM_ERROR)
        }
    }
}

/// clap's multi-line error as one line: the error, its tip, and where the
/// usage is (`cleanroom run --help`).
fn one_line(rendered: &str) -> String {
    let mut message = String::new();
    let mut tips = Vec::new();
    let mut command = "cleanroom".to_string();
    for line in rendered.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("error:") {
            message = rest.trim().to_string();
        } else if let Some(tip) = line.strip_prefix("tip:") {
            tips.push(tip.trim().to_string());
        } else if let Some(usage) = line.strip_prefix("Usage:") {
            // `cleanroom run [OPTIONS] -- <COMMAND>...`: the words before the first option.
            let words: Vec<&str> = usage
                .split_whitespace()
                .take_while(|w| !w.starts_with(['[', '<', '-']))
                .collect();
            if !words.is_empty() {
                command = words.join(" ");
            }
        } else if message.is_empty() {
            message = line.to_string();
        } else if !line.starts_with("For more information") {
            // Continuation lines (the list of missing arguments).
            message.push(' ');
            message.push_str(line);
        }
    }
    for tip in tips {
        message.push_str(&format!(" ({tip})"));
    }
    format!("{message}; see `{command} --help`")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse_error(args: &[&str]) -> String {
        match crate::cli::Cli::try_parse_from(args) {
            Ok(_) => panic!("{args:?} parsed"),
            Err(e) => one_line(&e.render().to_string()),
        }
    }

    #[test]
    fn usage_errors_are_one_line_naming_the_command() {
        let e = parse_error(&["cleanroom", "import"]);
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains("<SOURCE>"), "{e}");
        assert!(e.ends_with("see `cleanroom import --help`"), "{e}");
        let e = parse_error(&["cleanroom", "run", "--frobnicate", "--", "true"]);
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains("--frobnicate"), "{e}");
        let e = parse_error(&["cleanroom", "nope"]);
        assert!(
            e.contains("nope") && e.ends_with("see `cleanroom --help`"),
            "{e}"
        );
    }
}
