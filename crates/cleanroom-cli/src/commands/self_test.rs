//! `cleanroom self-test`: run the built-in conformance checks against the
//! selected backend and report each one.

use std::process::ExitCode;
use std::time::Instant;

use cleanroom::bridge::wait;
use cleanroom::conformance::{checks, Harness, Outcome};
use cleanroom::{AutoBackend, Result};

use crate::cli::SelfTestArgs;

pub fn main(args: SelfTestArgs) -> Result<ExitCode> {
    wait(run(args))
}

async fn run(args: SelfTestArgs) -> Result<ExitCode> {
    let cwd = super::current_dir()?;
    let config = super::load_config(&args.sandbox.given, &cwd)?;
    let spec = config.spec()?;
    let backend = AutoBackend::select(config.backend.value, config.image.value.as_deref()).await?;
    say!(
        "self-test of the {} backend ({})",
        backend.chosen(),
        backend.reason()
    );
    let harness = Harness::from_arc(backend.inner(), spec);
    let (mut passed, mut failed) = (0usize, 0usize);
    for check in checks() {
        if let Some(f) = &args.filter {
            if !check.name.contains(f.as_str()) {
                continue;
            }
        }
        let t0 = Instant::now();
        let outcome = check.run(&harness).await;
        let secs = t0.elapsed().as_secs_f64();
        match outcome {
            Ok(Outcome::Verified) => {
                passed += 1;
                say!("PASS {:<28} verified ({secs:.2}s)", check.name);
            }
            Ok(Outcome::ReportedNotEnforced(c)) => {
                passed += 1;
                say!(
                    "PASS {:<28} not enforced, and reported so: {} ({secs:.2}s)",
                    check.name,
                    c.describe()
                );
            }
            Err(msg) => {
                failed += 1;
                say!("FAIL {:<28} {msg} ({secs:.2}s)", check.name);
                say!("     the contract: {}", check.about);
            }
        }
    }
    say!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
