//! Benchmark (not a test): N generated one-step tests, each in its own
//! fresh sandbox, run as one suite; prints wall time and tests per second.
//!
//! ```text
//! cargo run --release -p cleanroom-runner --example bench_200 -- [--backend native] [-j 2] [--tests 200] [--image IMAGE] [--warm-pool N]
//! ```
//!
//! `--warm-pool N` (docker and podman) keeps N started containers per spec
//! ready, so a one-step test costs an exec rather than a container start.
//!
//! This is the library's number. The headline is the `cleanroom test`
//! process as a user runs it, beside a bubblewrap loop of the same
//! commands: `scripts/bench-test-200.sh`.

use std::sync::Arc;
use std::time::Instant;

use cleanroom::{BackendChoice, SandboxSpec};
use cleanroom_runner::{run_suite_blocking, RunOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut backend = "native".to_string();
    let mut jobs = 2usize;
    let mut tests = 200usize;
    let mut image: Option<String> = None;
    let mut warm = 0usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--backend" => backend = value()?,
            "-j" | "--jobs" => jobs = value()?.parse()?,
            "--tests" => tests = value()?.parse()?,
            "--image" => image = Some(value()?),
            "--warm-pool" => warm = value()?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let choice = BackendChoice::parse(&backend, "--backend")?;
    let engine: Arc<dyn cleanroom::Backend> = match (choice, warm) {
        (_, 0) => cleanroom::backend_for(choice, image.as_deref())?,
        (BackendChoice::Docker, n) => Arc::new(
            cleanroom::DockerBackend::new(image.clone().ok_or("--warm-pool needs --image")?)
                .with_warm_pool(n),
        ),
        (BackendChoice::Podman, n) => Arc::new(
            cleanroom::PodmanBackend::new(image.clone().ok_or("--warm-pool needs --image")?)
                .with_warm_pool(n),
        ),
        _ => return Err("--warm-pool is for docker and podman".into()),
    };
    let dir = tempfile::tempdir()?;
    for i in 0..tests {
        std::fs::write(
            dir.path().join(format!("t{i:04}.clnrm.toml")),
            format!(
                "[[steps]]\ncommand = [\"echo\", \"test {i}\"]\nexpected_output = \"test {i}\"\n"
            ),
        )?;
    }
    let mut spec = SandboxSpec::default();
    if let Some(i) = &image {
        spec.rootfs = i.parse()?;
    }
    let options = RunOptions {
        backend: Some(Arc::clone(&engine)),
        base_spec: Some(spec),
        jobs,
        ..RunOptions::default()
    };
    let t0 = Instant::now();
    let report = run_suite_blocking(&[dir.path().to_path_buf()], &options)?;
    let wall = t0.elapsed().as_secs_f64();
    println!(
        "{tests} one-step tests on {}{} with -j {jobs}: {wall:.2}s wall, {:.1} tests/s; {}",
        engine.name(),
        if warm > 0 {
            format!(" (warm pool {warm})")
        } else {
            String::new()
        },
        tests as f64 / wall,
        report.summary_line()
    );
    if let Some(t) = report.tests.iter().find(|t| t.failure.is_some()) {
        println!(
            "first failure: {}",
            cleanroom_runner::report::human::failure_text(t)
        );
    }
    Ok(())
}
