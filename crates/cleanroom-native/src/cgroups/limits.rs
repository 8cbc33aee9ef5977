//! Writing limits into a cgroup directory.

use std::io;
use std::path::Path;

use super::files::write_file;
use super::{Controller, Limits, Version};

/// The period CPU quotas are expressed in, in microseconds (the kernel's
/// default, 100 ms).
const CPU_PERIOD_US: u64 = 100_000;

/// Rejects limits the kernel would misread.
pub(crate) fn validate(limits: &Limits) -> io::Result<()> {
    let bad = |what: String| Err(io::Error::new(io::ErrorKind::InvalidInput, what));
    if limits.memory == Some(0) {
        return bad("memory limit 0: give at least a few MiB".into());
    }
    if let Some(c) = limits.cpus {
        if !(c.is_finite() && c > 0.0) {
            return bad(format!(
                "cpus limit {c}: give a positive number such as 0.5 or 2"
            ));
        }
    }
    if limits.pids == Some(0) {
        return bad("pids limit 0: give at least 1".into());
    }
    Ok(())
}

/// Writes `controller`'s limit from `limits` into cgroup `dir`.
pub(crate) fn set_limit(
    dir: &Path,
    version: Version,
    c: Controller,
    limits: &Limits,
) -> io::Result<()> {
    match (c, version) {
        (Controller::Memory, _) => {
            let Some(bytes) = limits.memory else {
                return Ok(());
            };
            let bytes = bytes.to_string();
            match version {
                Version::V2 => {
                    write_file(&dir.join("memory.max"), &bytes)?;
                    let swap = dir.join("memory.swap.max");
                    if swap.exists() {
                        write_file(&swap, "0")?;
                    }
                }
                Version::V1 => {
                    write_file(&dir.join("memory.limit_in_bytes"), &bytes)?;
                    let memsw = dir.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        write_file(&memsw, &bytes)?;
                    }
                }
            }
        }
        (Controller::Cpu, _) => {
            let Some(cpus) = limits.cpus else {
                return Ok(());
            };
            let quota = cpu_quota_us(cpus);
            match version {
                Version::V2 => {
                    write_file(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
                }
                Version::V1 => {
                    write_file(&dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                    write_file(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
                }
            }
        }
        (Controller::Pids, _) => {
            if let Some(n) = limits.pids {
                write_file(&dir.join("pids.max"), &n.to_string())?;
            }
        }
    }
    Ok(())
}

/// The quota for `cpus` CPUs per [`CPU_PERIOD_US`] (at least the kernel's
/// minimum of 1 ms).
pub(crate) fn cpu_quota_us(cpus: f64) -> u64 {
    ((cpus * CPU_PERIOD_US as f64).round() as u64).max(1000)
}
