//! `cleanroom test [PATHS...]`: run `*.clnrm.toml` test files hermetically,
//! in parallel, with live progress and CI reports.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use cleanroom::bridge::wait;
use cleanroom::{AutoBackend, Error, Result};
use cleanroom_runner::report::{human, junit, tap};
use cleanroom_runner::{run_suite, CancellationToken, RunOptions, Shard, SuiteReport};
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::{ReportFormat, TestArgs};

/// Exit code when tests failed.
const EXIT_FAILED: u8 = 1;
/// Exit code after Ctrl-C, as a shell reports SIGINT.
const EXIT_INTERRUPTED: u8 = 130;

pub fn main(args: TestArgs) -> Result<ExitCode> {
    wait(run(args))
}

async fn run(args: TestArgs) -> Result<ExitCode> {
    let cwd = super::current_dir()?;
    let config = super::load_config(&args.sandbox, &cwd)?;
    let spec = config.spec()?;
    let backend = AutoBackend::select(config.backend.value, config.image.value.as_deref()).await?;
    tracing::info!("backend {}: {}", backend.chosen(), backend.reason());

    let shard = args.shard.as_deref().map(str::parse::<Shard>).transpose()?;
    let timeout = args
        .test_timeout
        .as_deref()
        .map(|t| {
            cleanroom::parse_duration(t).map_err(|e| Error::Config {
                origin: "flag --test-timeout".into(),
                message: e.to_string(),
            })
        })
        .transpose()?;
    if args.repeat == 0 {
        return Err(Error::Config {
            origin: "flag --repeat".into(),
            message: "must be at least 1".into(),
        });
    }
    let cancel = CancellationToken::new();
    let watcher = tokio::spawn(cancel_on_signals(cancel.clone()));
    let progress = Arc::new(human::Progress::new());
    let options = RunOptions {
        backend: Some(backend.inner()),
        base_spec: Some(spec),
        jobs: args.jobs.unwrap_or(0),
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
        ExitCode::from(EXIT_INTERRUPTED)
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
        ReportFormat::Human => print!("{}", human::render(report)),
        machine => {
            let text = match machine {
                ReportFormat::Json => report.to_json() + "\n",
                ReportFormat::Junit => junit::render(report),
                ReportFormat::Tap => tap::render(report),
                ReportFormat::Human => unreachable!("handled above"),
            };
            print!("{text}");
            // Humans watching a machine-format run still get the summary.
            eprintln!("{}", report.summary_line());
        }
    }
    Ok(())
}

fn write_file(path: &PathBuf, text: &str) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    std::fs::write(path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// The first SIGINT or SIGTERM cancels the run (every sandbox and service is
/// torn down, tests not yet finished are skipped); a second one exits at once.
async fn cancel_on_signals(cancel: CancellationToken) {
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    eprintln!("\ncleanroom: interrupted; tearing down every sandbox and service (Ctrl-C again to quit at once)");
    cancel.cancel();
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    // Give the message a moment to reach the terminal, then leave.
    tokio::time::sleep(Duration::from_millis(10)).await;
    std::process::exit(i32::from(EXIT_INTERRUPTED));
}
