//! `cleanroom stats` on an engine: CPU, memory and pids of a named
//! sandbox's container from the engine's stats endpoint (one sample,
//! `stream=false`, which carries the previous CPU reading too).

use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::StatsOptions;
use cleanroom_core::{Result, SandboxState, Stats};
use futures_util::StreamExt;

use crate::detached::EngineDetached;
use crate::errors::engine_error;

pub(crate) async fn stats(h: &EngineDetached) -> Result<Stats> {
    let info = h.refreshed().await?;
    let mut stats = Stats {
        name: info.name.clone(),
        ..Stats::default()
    };
    if info.state != SandboxState::Running {
        stats.unavailable = Some(format!("the sandbox is {}, not running", info.state));
        return Ok(stats);
    }
    let opts = StatsOptions {
        stream: false,
        one_shot: false,
    };
    let engine = h.engine().name();
    let sample = h
        .docker()
        .stats(h.container_id(), Some(opts))
        .next()
        .await
        .transpose()
        .map_err(|e| engine_error(engine, h.container_id(), "reading stats", e))?;
    let Some(sample) = sample else {
        stats.unavailable = Some(format!("the {engine} engine sent no statistics"));
        return Ok(stats);
    };
    fill(&mut stats, &sample, h.spec().memory);
    if stats.memory_bytes.is_none() && stats.pids.is_none() {
        stats.unavailable = Some(format!(
            "the {engine} engine reports no cgroup statistics for it (rootless without \
             delegated controllers?)"
        ));
    }
    Ok(stats)
}

/// Reads `sample` into `stats`; `memory_limit` is the spec's (the engine
/// reports the host's memory when there is none).
fn fill(stats: &mut Stats, sample: &ContainerStatsResponse, memory_limit: Option<u64>) {
    let cpu = sample.cpu_stats.as_ref();
    let pre = sample.precpu_stats.as_ref();
    let total = |c: Option<&bollard::models::ContainerCpuStats>| {
        c.and_then(|c| c.cpu_usage.as_ref())
            .and_then(|u| u.total_usage)
    };
    let system =
        |c: Option<&bollard::models::ContainerCpuStats>| c.and_then(|c| c.system_cpu_usage);
    if let (Some(now), Some(before), Some(sys_now), Some(sys_before)) =
        (total(cpu), total(pre), system(cpu), system(pre))
    {
        let cpus = cpu
            .and_then(|c| c.online_cpus)
            .filter(|n| *n > 0)
            .map(f64::from)
            .unwrap_or(1.0);
        let used = now.saturating_sub(before) as f64;
        let elapsed = sys_now.saturating_sub(sys_before) as f64;
        if elapsed > 0.0 {
            stats.cpu_percent = Some(used / elapsed * cpus * 100.0);
        }
    }
    if let Some(m) = &sample.memory_stats {
        // What `docker stats` shows: usage less the page cache that can
        // be dropped (`inactive_file` on cgroup v2, `total_inactive_file` on v1).
        let cache = m.stats.as_ref().and_then(|s| {
            s.get("inactive_file")
                .or_else(|| s.get("total_inactive_file"))
                .copied()
        });
        stats.memory_bytes = m.usage.map(|u| u.saturating_sub(cache.unwrap_or(0)));
    }
    stats.memory_limit = memory_limit;
    stats.pids = sample.pids_stats.as_ref().and_then(|p| p.current);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{
        ContainerCpuStats, ContainerCpuUsage, ContainerMemoryStats, ContainerPidsStats,
    };

    #[test]
    fn cpu_percent_is_of_one_cpu() {
        let cpu = |total, system| ContainerCpuStats {
            cpu_usage: Some(ContainerCpuUsage {
                total_usage: Some(total),
                ..Default::default()
            }),
            system_cpu_usage: Some(system),
            online_cpus: Some(2),
            ..Default::default()
        };
        let sample = ContainerStatsResponse {
            cpu_stats: Some(cpu(1_500, 10_000)),
            precpu_stats: Some(cpu(1_000, 8_000)),
            memory_stats: Some(ContainerMemoryStats {
                usage: Some(10 << 20),
                stats: Some([("inactive_file".to_string(), 2 << 20)].into()),
                ..Default::default()
            }),
            pids_stats: Some(ContainerPidsStats {
                current: Some(3),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut s = Stats::default();
        fill(&mut s, &sample, Some(64 << 20));
        // 500 of 2000 system ns on 2 CPUs: half of one CPU.
        assert_eq!(s.cpu_percent, Some(50.0));
        assert_eq!(s.memory_bytes, Some(8 << 20));
        assert_eq!(s.memory_limit, Some(64 << 20));
        assert_eq!(s.pids, Some(3));
    }
}
