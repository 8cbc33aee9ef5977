//! Benchmark (not a test): one-shot `true` through the engine backends,
//! cold and with the warm pool, beside the engine's own CLI
//! (`docker run --rm`, `podman run --rm`) with the same hardening flags.
//! Prints medians and ratios.
//!
//! `cargo run --release -p cleanroom-docker --example bench_engines [RUNS]`
//! (engines started by scripts/setup.d/40-engines.sh; default 20 runs).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cleanroom_core::{Backend, Cmd, RootFs, SandboxSpec};
use cleanroom_docker::{DockerBackend, EngineBackend, PodmanBackend, DEFAULT_IMAGE};

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `ENGINE run --rm` of `true` with the flags our backend sets.
fn cli_runs(engine: &str, runs: usize) -> Result<f64, String> {
    let conf = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/podman/containers.conf");
    let mut times = Vec::new();
    for i in 0..=runs {
        let mut cmd = Command::new(engine);
        if engine == "podman" && conf.exists() {
            cmd.env("CONTAINERS_CONF", &conf);
        }
        cmd.args([
            "run",
            "--rm",
            "--network",
            "none",
            "--user",
            "1000:1000",
            "--cap-drop",
            "ALL",
            "--read-only",
            "--security-opt",
            "no-new-privileges",
            DEFAULT_IMAGE,
            "true",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let t = Instant::now();
        let out = cmd.output().map_err(|e| format!("running {engine}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`{engine} run --rm {DEFAULT_IMAGE} true` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        if i > 0 {
            times.push(ms(t.elapsed()));
        }
    }
    Ok(median(times))
}

async fn backend_runs(b: &EngineBackend, runs: usize, wait_warm: bool) -> Result<f64, String> {
    let spec = SandboxSpec::with_rootfs(RootFs::Image(DEFAULT_IMAGE.into()));
    let mut times = Vec::new();
    for i in 0..=runs {
        if wait_warm && i > 0 {
            let started = Instant::now();
            while b.warm_containers() == 0 && started.elapsed() < Duration::from_secs(30) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let t = Instant::now();
        let r = b
            .run(&spec, Cmd::new("true"))
            .await
            .map_err(|e| e.to_string())?;
        if !r.success() {
            return Err(format!("`true` gave {}", r.status_line()));
        }
        if i > 0 {
            times.push(ms(t.elapsed()));
        }
    }
    Ok(median(times))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    println!("one-shot `true`, median of {runs} runs after one warm-up (ms)");
    println!(
        "{:<8} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "engine", "CLI", "backend", "warm pool", "backend/CLI", "pool/CLI"
    );
    for b in [
        DockerBackend::new(DEFAULT_IMAGE),
        PodmanBackend::new(DEFAULT_IMAGE),
    ] {
        let name = b.name().to_string();
        let a = b.availability().await;
        if !a.available {
            println!("{name:<8} not available: {}", a.reason);
            continue;
        }
        let cli = cli_runs(&name, runs);
        let cold = backend_runs(&b, runs, false).await;
        let pooled = b.clone().with_warm_pool(2);
        let warm = backend_runs(&pooled, runs, true).await;
        drop(pooled);
        match (cli, cold, warm) {
            (Ok(cli), Ok(cold), Ok(warm)) => println!(
                "{name:<8} {cli:>10.1} {cold:>10.1} {warm:>10.1} {:>11.2}x {:>11.2}x",
                cold / cli,
                warm / cli
            ),
            (cli, cold, warm) => println!("{name:<8} failed: {cli:?} {cold:?} {warm:?}"),
        }
    }
}
