//! `cleanroom test [PATHS...]`: run `*.clnrm.toml` test files hermetically,
//! in parallel, with live progress and CI reports.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cleanroom::bridge::wait;
use cleanroom::{AutoBackend, Error, Result};
use cleanroom_runner::report::{human, junit, tap};
use cleanroom_runner::{run_suite, CancellationToken, RunOptions, Shard, SuiteReport};
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::{ReportFormat, TestArgs};
use crate::output;

/// Exit code when tests failed.
const EXIT_FAILED: u8 = 1;
/// Exit codes after SIGINT (Ctrl-C) and SIGTERM, as a shell reports them.
const EXIT_SIGINT: u8 = 130;
const EXIT_SIGTERM: u8 = 143;

pub fn main(args: TestArgs) -> Result<ExitCode> {
    wait(run(args))
}

async fn run(args: TestArgs) -> Result<ExitCode> {
    let cwd = super::current_dir()?;
    let flags = [&args.sandbox.given[..], &args.settings.given[..]].concat();
    let config = super::load_config(&flags, &cwd)?;
    let spec = config.spec()?;
    let backend = AutoBackend::select(config.backend.value, config.image.value.as_deref()).await?;
    tracing::info!("backend {}: {}", backend.chosen(), backend.reason());

    let shard = args.shard.as_deref().map(str::parse::<Shard>).transpose()?;
    if args.repeat == 0 {
        return Err(Error::Config {
            origin: "flag --repeat".into(),
            message: "must be at least 1".into(),
        });
    }
    let cancel = CancellationToken::new();
    let signalled = Arc::new(AtomicU8::new(EXIT_SIGINT));
    let watcher = tokio::spawn(cancel_on_signals(cancel.clone(), signalled.clone()));
    let progress = Arc::new(human::Progress::new());
    // `--jobs` and `--test-timeout` are in the configuration, over the
    // files' `jobs`, `test_timeout` (or clnrm's `[cli] jobs` and
    // `[test_execution] default_timeout`).
    let timeout = config.test_timeout.value;
    let options = RunOptions {
        backend: Some(backend.inner()),
        base_spec: Some(spec),
        jobs: config.jobs.value.unwrap_or(0),
        filter: args.filter.clone(),
        shard,
        fail_fast: args.fail_fast,
        timeout,
        repeat: args.repeat,
        cancel: cancel.clone(),
        events: Some(Arc::new(move |e| progress.event(e))),
    };
    let report = run_suite(&args.paths, &options).await;
    watcher.abort();
    let report = report?;

    if report.tests.is_empty() && shard.is_none() && args.filter.is_none() {
        let wher: Vec<String> = if args.paths.is_empty() {
            vec![".".into()]
        } else {
            args.paths.iter().map(|p| p.display().to_string()).collect()
        };
        eprintln!(
            "cleanroom: no *.clnrm.toml test files under {}; `cleanroom init` writes an example",
            wher.join(", ")
        );
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    write_reports(&args, &report)?;
    Ok(if report.interrupted {
        ExitCode::from(signalled.load(Ordering::SeqCst))
    } else if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

fn write_reports(args: &TestArgs, report: &SuiteReport) -> Result<()> {
    if let Some(path) = &args.junit {
        write_file(path, &junit::render(report))?;
    }
    match args.format {
        ReportFormat::Human => output::print_bytes(human::render(report).as_bytes()),
        machine => {
            let text = match machine {
                ReportFormat::Json => report.to_json() + "\n",
                ReportFormat::Junit => junit::render(report),
                ReportFormat::Tap => tap::render(report),
                ReportFormat::Human => unreachable!("handled above"),
            };
            output::print_bytes(text.as_bytes());
            // Humans watching a machine-format run still get the summary.
            eprintln!("{}", report.summary_line());
        }
    }
    Ok(())
}

fn write_file(path: &PathBuf, text: &str) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
            eprintln!(
                "cleanroom: created directory {} for the report {}",
                parent.display(),
                path.display()
            );
        }
    }
    std::fs::write(path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// The first SIGINT or SIGTERM cancels the run (every sandbox and service is
/// torn down, tests not yet finished are skipped) and sets the exit code in
/// `signalled` (130 or 143); a second one exits at once with its own code.
async fn cancel_on_signals(cancel: CancellationToken, signalled: Arc<AtomicU8>) {
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    let code = tokio::select! {
        _ = int.recv() => EXIT_SIGINT,
        _ = term.recv() => EXIT_SIGTERM,
    };
    signalled.store(code, Ordering::SeqCst);
    eprintln!("\ncleanroom: interrupted; tearing down every sandbox and service (Ctrl-C again to quit at once)");
    cancel.cancel();
    let code = tokio::select! {
        _ = int.recv() => EXIT_SIGINT,
        _ = term.recv() => EXIT_SIGTERM,
    };
    // Give the message a moment to reach the terminal, then leave.
    tokio::time::sleep(Duration::from_millis(10)).await;
    std::process::exit(i32::from(code));
}
