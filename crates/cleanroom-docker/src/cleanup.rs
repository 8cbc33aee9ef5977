//! Removing what is left: everything of this process (for a signal
//! handler) or what dead callers left behind (`gc`), found by label.

use std::collections::HashMap;
use std::sync::Mutex;

use bollard::models::{ContainerSummary, ContainerSummaryStateEnum};
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::Docker;
use cleanroom_core::{process_alive, Error, Removed, Result};

use crate::container::{self, CREATED_BY, LABEL_CREATED_BY, LABEL_HOST, LABEL_PID, LABEL_SESSION};
use crate::endpoint::Endpoint;

/// Every container (running or not) matching `filters`.
///
/// Podman briefly reports a container being cleaned up as `stopped`, a
/// state the Engine API (and so bollard) does not know, and the whole list
/// then fails to decode; such a listing is retried for up to five seconds.
pub async fn list_labelled(
    docker: &Docker,
    filters: &HashMap<&str, Vec<String>>,
) -> std::result::Result<Vec<ContainerSummary>, bollard::errors::Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(filters)
            .build();
        match docker.list_containers(Some(opts)).await {
            Err(bollard::errors::Error::JsonDataError { .. })
                if std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// Removes every container of this process's session on the engine.
pub async fn remove_session(docker: &Docker, name: &str) -> Result<Vec<String>> {
    let filters: HashMap<&str, Vec<String>> = HashMap::from([(
        "label",
        vec![format!("{LABEL_SESSION}={}", container::session())],
    )]);
    let list = list_labelled(docker, &filters)
        .await
        .map_err(|e| Error::backend(name, format!("listing this session's containers: {e}")))?;
    let ids: Vec<String> = list.into_iter().filter_map(|c| c.id).collect();
    let removed = remove_all(docker, name, ids).await?;
    Ok(removed
        .into_iter()
        .map(|id| format!("removed {name} container {}", &id[..id.len().min(12)]))
        .collect())
}

/// Removes containers whose creating process is dead (on this host).
pub async fn gc(docker: &Docker, name: &str) -> Result<Vec<Removed>> {
    let removed = remove_dead_owners(docker, name, false).await?;
    Ok(removed
        .into_iter()
        .map(|line| Removed::one(Removed::CONTAINER, line))
        .collect())
}

/// Once per process and engine, in the background: removes the containers
/// that callers killed between the engine's create and start left behind
/// (state `created`, which Podman also reports for its `initialized`: they
/// never ran). A started container needs no such help, it ends with its
/// owner; this closes the one window where it has no keep-alive yet,
/// cheaply (one filtered list), on the next start.
pub fn reap_unstarted_once(endpoint: &Endpoint) {
    static DONE: Mutex<Vec<String>> = Mutex::new(Vec::new());
    {
        let mut done = crate::pool::lock(&DONE);
        if done.contains(&endpoint.host) {
            return;
        }
        done.push(endpoint.host.clone());
    }
    let endpoint = endpoint.clone();
    tokio::spawn(async move {
        let Ok(docker) = endpoint.connect() else {
            return;
        };
        // Best effort: `gc` reports whatever this misses.
        let _ = remove_dead_owners(&docker, endpoint.engine.name(), true).await;
    });
}

/// Removes the containers (only those never started if `unstarted`) whose
/// creating process is dead (on this host).
async fn remove_dead_owners(docker: &Docker, name: &str, unstarted: bool) -> Result<Vec<String>> {
    // Filtered by state here, not by the engine: Podman's `created` filter
    // leaves out its `initialized` containers, which also never ran.
    let filters: HashMap<&str, Vec<String>> =
        HashMap::from([("label", vec![format!("{LABEL_CREATED_BY}={CREATED_BY}")])]);
    let list = list_labelled(docker, &filters)
        .await
        .map_err(|e| Error::backend(name, format!("listing containers for gc: {e}")))?;
    let here = container::host_name();
    let mut dead = HashMap::new();
    for c in list {
        if unstarted && c.state != Some(ContainerSummaryStateEnum::CREATED) {
            continue;
        }
        let labels = c.labels.unwrap_or_default();
        let Some(pid) = labels.get(LABEL_PID).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if labels.get(LABEL_HOST).is_some_and(|h| *h != here) || process_alive(pid) {
            continue;
        }
        let Some(id) = c.id else { continue };
        let names = c.names.unwrap_or_default().join(",");
        dead.insert(id, (pid, names.trim_start_matches('/').to_string()));
    }
    let removed = remove_all(docker, name, dead.keys().cloned().collect()).await?;
    let removed = removed
        .into_iter()
        .map(|id| {
            let (pid, names) = dead.get(&id).cloned().unwrap_or_default();
            format!(
                "removed {name} container {} ({names}) left by dead process {pid}",
                &id[..id.len().min(12)]
            )
        })
        .collect();
    Ok(removed)
}

/// Force-removes `ids` concurrently and returns those removed. Podman
/// refuses to remove a pod's first container while members remain, so
/// what fails is retried after the rest is gone.
async fn remove_all(docker: &Docker, engine: &str, mut ids: Vec<String>) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for pass in 0..3 {
        let attempts = ids.iter().map(|id| async move {
            let opts = RemoveContainerOptionsBuilder::new()
                .force(true)
                .v(true)
                .build();
            (id.clone(), docker.remove_container(id, Some(opts)).await)
        });
        let mut failed = Vec::new();
        for (id, res) in futures_util::future::join_all(attempts).await {
            match res {
                Ok(()) => removed.push(id),
                Err(e) if crate::errors::is_not_found(&e) => {}
                Err(e) if pass < 2 => failed.push((id, e)),
                Err(e) => {
                    return Err(Error::backend(
                        engine,
                        format!("removing container {id}: {e}"),
                    ))
                }
            }
        }
        if failed.is_empty() {
            break;
        }
        ids = failed.into_iter().map(|(id, _)| id).collect();
    }
    Ok(removed)
}
