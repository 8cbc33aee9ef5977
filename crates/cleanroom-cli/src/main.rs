//! `cleanroom`: run commands and tests hermetically.
//!
//! A thin binary over the `cleanroom` and `cleanroom-runner` libraries: it
//! parses arguments, loads the configuration, calls one library function per
//! command and turns its outcome into output and an exit code.

// Every line on stdout goes through `output`, which handles write errors
// once (`say!`); `print!`/`println!` would panic on `/dev/full`.
#![deny(clippy::print_stdout)]

/// A line on stdout through [`output`]: a closed pipe drops it quietly, any
/// other write error is reported when the process ends.
macro_rules! say {
    () => {
        $crate::output::print_bytes(b"\n")
    };
    ($($arg:tt)*) => {
        $crate::output::print_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

mod cli;
mod commands;
mod field_flags;
mod output;
mod sandbox_args;
mod usage;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

/// Exit code for Cleanroom's own failures (bad input, no backend), kept
/// apart from the codes of the command it runs, as `docker run` does.
pub const EXIT_CLEANROOM_ERROR: u8 = 125;

fn main() -> ExitCode {
    if version_only() {
        // What clap prints for `--version`, without building the parser for
        // every command first: `cleanroom --version` is timed beside
        // `bwrap --version`.
        say!("cleanroom {}", env!("CARGO_PKG_VERSION"));
        return output::finish(ExitCode::SUCCESS);
    }
    let cli = match run_only().map_or_else(Cli::try_parse, Ok) {
        Ok(cli) => cli,
        Err(e) => return output::finish(usage::report(&e)),
    };
    init_logging(cli.verbose);
    let outcome = match cli.command {
        Command::Run(args) => commands::run::main(args),
        Command::Create(args) => commands::sandboxes::create::main(args),
        Command::Exec(args) => commands::sandboxes::exec::main(args),
        Command::Ps(args) => commands::sandboxes::ps::main(args),
        Command::Logs(args) => commands::sandboxes::manage::logs(args),
        Command::Stop(args) => commands::sandboxes::manage::stop(args),
        Command::Rm(args) => commands::sandboxes::manage::rm(args),
        Command::Cp(args) => commands::sandboxes::cp::main(args),
        Command::Stats(args) => commands::sandboxes::stats::main(args),
        Command::Doctor(args) => commands::doctor::main(args),
        Command::Config(args) => commands::config::main(args),
        Command::Gc(args) => commands::gc::main(args),
        Command::Images(args) => commands::images::list(args),
        Command::Import(args) => commands::images::import(args),
        Command::Pull(args) => commands::images::pull(args),
        Command::Rmi(args) => commands::images::rmi(args),
        Command::Bench(args) => commands::bench::main(args),
        Command::Completions(args) => commands::completions::main(args),
        Command::Test(args) => commands::test::main(args),
        Command::Init(args) => commands::init::main(args),
        Command::Validate(args) => commands::validate::main(args),
        Command::SelfTest(args) => commands::self_test::main(args),
        Command::Vm(cmd) => commands::vm::main(cmd),
        Command::Up(args) => commands::env::up(args),
        Command::Plan(args) => commands::env::plan(args),
        Command::Down(args) => commands::env::down(args),
        Command::Convert(args) => commands::env::convert(args),
        Command::Env(args) => commands::env::env_main(args),
        Command::Top(args) => commands::env::top(args),
        Command::Workspace(args) => commands::workspace::main(args),
    };
    let code = match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cleanroom: error: {e}");
            ExitCode::from(EXIT_CLEANROOM_ERROR)
        }
    };
    output::finish(code)
}

/// Whether the whole command line is `cleanroom --version` (or `-V`).
fn version_only() -> bool {
    let mut args = std::env::args_os().skip(1);
    matches!(
        (args.next(), args.next()),
        (Some(a), None) if a == "--version" || a == "-V"
    )
}

/// `cleanroom run ...` parsed by a parser of `run` alone: clap builds the
/// parser of every command before it reads a word (about 90 of the 560
/// page faults of a `run` here). `None` unless the first argument is `run`
/// and the line parses; the full parser then reads it, so `--help` and
/// every error are exactly what they are for any other command.
fn run_only() -> Option<Cli> {
    use clap::FromArgMatches;
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_none_or(|a| a != "run") {
        return None;
    }
    let matches = run_parser().try_get_matches_from(args).ok()?;
    Cli::from_arg_matches(&matches).ok()
}

/// The parser of [`Cli`] with `run` as its only command.
fn run_parser() -> clap::Command {
    use clap::Args;
    clap::Command::new("cleanroom")
        .arg(
            clap::Arg::new("verbose")
                .short('v')
                .long("verbose")
                .action(clap::ArgAction::Count)
                .global(true),
        )
        .subcommand(cli::RunArgs::augment_args(clap::Command::new("run")))
        .subcommand_required(true)
}

/// Logs go to stderr; `-v` shows why a backend was chosen, `-vv` more.
/// `CLEANROOM_LOG` (tracing's filter syntax) overrides both.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => tracing::Level::ERROR,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .without_time()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    match tracing_subscriber::EnvFilter::try_from_env("CLEANROOM_LOG") {
        Ok(filter) => builder.with_env_filter(filter).init(),
        // A plain level: an `EnvFilter` parses its directives and keeps
        // per-span state, a measurable part of a 3 ms `cleanroom run`.
        Err(_) => builder.with_max_level(default).init(),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// The parser of `run` alone reads every `run` line as the full parser
    /// does, and gives way to it on help and errors.
    #[test]
    fn run_only_parser_matches_the_full_one() {
        use clap::{FromArgMatches, Parser};
        let lines: &[&[&str]] = &[
            &["run", "--", "true"],
            &[
                "run",
                "-q",
                "--backend",
                "native",
                "--memory",
                "256M",
                "--",
                "/bin/true",
            ],
            &[
                "run",
                "-vv",
                "--image",
                "file:///x",
                "-e",
                "A=1",
                "--json",
                "--",
                "sh",
                "-c",
                "x",
            ],
            &[
                "run", "-d", "--name", "n", "--label", "k=v", "--", "sleep", "1",
            ],
            &[
                "run",
                "--mount",
                "a:/b",
                "--timeout",
                "3s",
                "--writable-root",
            ],
        ];
        for line in lines {
            let argv: Vec<&str> = std::iter::once("cleanroom")
                .chain(line.iter().copied())
                .collect();
            let full = super::Cli::try_parse_from(&argv).expect("the full parser reads it");
            let matches = super::run_parser()
                .try_get_matches_from(&argv)
                .expect("the run parser reads it");
            let fast = super::Cli::from_arg_matches(&matches).expect("into Cli");
            assert_eq!(format!("{fast:?}"), format!("{full:?}"), "{line:?}");
        }
        for bad in [
            &["run", "--help"][..],
            &["run", "--nope"],
            &["run", "--memory"],
        ] {
            let argv: Vec<&str> = std::iter::once("cleanroom")
                .chain(bad.iter().copied())
                .collect();
            assert!(
                super::run_parser().try_get_matches_from(&argv).is_err(),
                "{bad:?}"
            );
        }
    }

    /// The `--version` fast path prints exactly what clap would.
    #[test]
    fn version_fast_path_matches_clap() {
        assert_eq!(
            super::Cli::command().render_version(),
            format!("cleanroom {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}
