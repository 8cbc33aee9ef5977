//! Podman pod members join their leader's network namespace by path, so
//! that the leader can be removed before its members.
//!
//! With `container:<leader>` Podman records a dependency and refuses to
//! remove the leader while members exist. When the owning process dies,
//! every container of the pod ends at once and the leader's auto-removal
//! fails, leaving it behind for good. Joining `ns:/proc/<leader pid>/ns/net`
//! shares the same namespace without that dependency. (Docker removes a
//! leader with members, so it keeps `container:<leader>`.)

use bollard::models::ContainerCreateBody;
use bollard::Docker;
use cleanroom_core::{Error, Result};

use crate::errors::engine_error;

/// Points `body` at the network namespace of running container `leader`
/// and returns the leader's pid, for [`check_leader`].
pub async fn join_by_path(
    docker: &Docker,
    leader: &str,
    body: &mut ContainerCreateBody,
) -> Result<i64> {
    let pid = running_pid(docker, leader).await?;
    if let Some(hc) = body.host_config.as_mut() {
        hc.network_mode = Some(format!("ns:/proc/{pid}/ns/net"));
    }
    Ok(pid)
}

/// Fails unless `leader` still runs as `pid`: then that pid named the
/// leader all along, and the member joined the leader's namespace and no
/// other process's that reused the number.
pub async fn check_leader(docker: &Docker, leader: &str, pid: i64) -> Result<()> {
    let now = running_pid(docker, leader).await?;
    if now != pid {
        return Err(Error::SandboxGone {
            id: leader.to_string(),
        });
    }
    Ok(())
}

/// The host pid of running container `id`.
async fn running_pid(docker: &Docker, id: &str) -> Result<i64> {
    let info = docker
        .inspect_container(id, None)
        .await
        .map_err(|e| engine_error("podman", id, "inspecting the pod's first container", e))?;
    let state = info.state.unwrap_or_default();
    match state.pid {
        Some(pid) if pid > 0 && state.running == Some(true) => Ok(pid),
        _ => Err(Error::SandboxGone { id: id.to_string() }),
    }
}
