//! What the engine says it can enforce (`GET /info`, cached on disk) and
//! the enforcement report a spec gets from that answer.

use bollard::Docker;
use cleanroom_core::{Constraint, Enforcement, Error, Network, Result, SandboxSpec};

use crate::backend::Shared;
use crate::endpoint::Endpoint;

/// What the engine says it can enforce (from `GET /info`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineInfo {
    pub server_version: String,
    pub memory_limit: bool,
    pub cpu_cfs_quota: bool,
    pub pids_limit: bool,
    /// The engine applies its default seccomp profile.
    pub seccomp: bool,
    pub rootless: bool,
    pub cgroup_version: String,
}

impl Shared {
    pub(crate) fn plan(&self, spec: &SandboxSpec, info: Option<&EngineInfo>) -> Enforcement {
        let mut e = Enforcement::new(self.engine.name());
        for c in Constraint::ALL {
            e.enforced(c);
        }
        let unknown = "the engine did not answer, so its cgroup support is unknown";
        match info {
            Some(i) => {
                let why = |what: &str| {
                    format!(
                        "the {} engine reports no {what} support{}",
                        self.engine.name(),
                        if i.rootless {
                            " (rootless, without delegated cgroup controllers)"
                        } else {
                            ""
                        }
                    )
                };
                if !i.memory_limit {
                    e.not_enforced(Constraint::MemoryLimit, why("memory cgroup"));
                }
                if !i.cpu_cfs_quota {
                    e.not_enforced(Constraint::CpuLimit, why("CPU quota"));
                }
                if !i.pids_limit {
                    e.not_enforced(Constraint::PidsLimit, why("pids cgroup"));
                }
                if !i.seccomp {
                    e.not_enforced(Constraint::Seccomp, why("seccomp"));
                }
            }
            None => {
                for c in [
                    Constraint::MemoryLimit,
                    Constraint::CpuLimit,
                    Constraint::PidsLimit,
                    Constraint::Seccomp,
                ] {
                    e.not_enforced(c, unknown);
                }
            }
        }
        if let Network::Pod(_) = spec.network {
            e.not_enforced(
                Constraint::Hostname,
                "a pod member has the hostname of the sandbox whose network it joins",
            );
        }
        e.not_enforced(
            Constraint::PublishPorts,
            "the engine backends run containers without a bridge network, so ports cannot be \
             published; use network `host` or the native backend",
        );
        e.restrict_to(spec).with_tmpfs(spec)
    }
}

/// The engine's `/info`, from the on-disk cache when it still applies.
pub(crate) async fn fetch_info(docker: &Docker, ep: &Endpoint) -> Result<EngineInfo> {
    if let Some(i) = crate::info_cache::load(&ep.host) {
        return Ok(i);
    }
    let i = ask_info(docker, ep).await?;
    crate::info_cache::store(&ep.host, &i);
    Ok(i)
}

async fn ask_info(docker: &Docker, ep: &Endpoint) -> Result<EngineInfo> {
    let unreachable = |e: String| Error::Unavailable {
        backend: ep.engine.name().into(),
        reason: format!("no answer from {} ({}): {e}", ep.host, ep.origin),
        hint: Some(ep.engine.start_hint()),
    };
    let i = docker
        .info()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let sec = i.security_options.unwrap_or_default();
    Ok(EngineInfo {
        server_version: i.server_version.unwrap_or_default(),
        memory_limit: i.memory_limit.unwrap_or(false),
        cpu_cfs_quota: i.cpu_cfs_quota.unwrap_or(false),
        pids_limit: i.pids_limit.unwrap_or(false),
        seccomp: sec.iter().any(|s| s.contains("seccomp")),
        rootless: sec.iter().any(|s| s.contains("rootless")),
        cgroup_version: i.cgroup_version.map(|v| v.to_string()).unwrap_or_default(),
    })
}
