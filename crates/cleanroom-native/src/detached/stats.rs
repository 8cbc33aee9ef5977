//! `stats` of a detached sandbox: CPU, memory and pids read from its
//! cgroup's files, v2 (`memory.current`, `cpu.stat`) or v1
//! (`memory.usage_in_bytes`, `cpuacct.usage`), whichever its directories are.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cleanroom_core::Stats;

/// How long CPU use is sampled for its percentage.
const SAMPLE: Duration = Duration::from_millis(200);

fn number(dir: &Path, file: &str) -> Option<u64> {
    std::fs::read_to_string(dir.join(file))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Total CPU time used, in nanoseconds.
fn cpu_nanos(dirs: &[PathBuf]) -> Option<u64> {
    dirs.iter().find_map(|d| {
        number(d, "cpuacct.usage").or_else(|| {
            let stat = std::fs::read_to_string(d.join("cpu.stat")).ok()?;
            let usec = stat
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))?
                .trim()
                .parse::<u64>()
                .ok()?;
            Some(usec * 1000)
        })
    })
}

/// Why a sandbox without cgroup directories has no numbers.
fn why_none() -> String {
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if !v2 && !rustix::process::geteuid().is_root() {
        "not available: no cgroup (rootless on cgroup v1, which delegates no hierarchy to users)"
            .into()
    } else {
        "not available: no cgroup (the sandbox was created without memory, cpu or pids limits)"
            .into()
    }
}

/// Reads the numbers from `dirs`, sampling CPU use for [`SAMPLE`].
pub async fn read(dirs: &[PathBuf]) -> Stats {
    if dirs.is_empty() || !dirs.iter().any(|d| d.is_dir()) {
        return Stats {
            unavailable: Some(why_none()),
            ..Stats::default()
        };
    }
    let first = cpu_nanos(dirs);
    let started = Instant::now();
    tokio::time::sleep(SAMPLE).await;
    let cpu_percent = match (first, cpu_nanos(dirs)) {
        (Some(a), Some(b)) => {
            let elapsed = started.elapsed().as_nanos().max(1) as f64;
            Some(b.saturating_sub(a) as f64 * 100.0 / elapsed)
        }
        _ => None,
    };
    let memory_bytes = dirs
        .iter()
        .find_map(|d| number(d, "memory.current").or_else(|| number(d, "memory.usage_in_bytes")));
    // v2 says "max", v1 a huge number, when no limit is set.
    let memory_limit = dirs
        .iter()
        .find_map(|d| number(d, "memory.max").or_else(|| number(d, "memory.limit_in_bytes")))
        .filter(|l| *l < (1 << 60));
    let pids = dirs.iter().find_map(|d| number(d, "pids.current"));
    Stats {
        name: String::new(),
        cpu_percent,
        memory_bytes,
        memory_limit,
        pids,
        unavailable: None,
    }
}
