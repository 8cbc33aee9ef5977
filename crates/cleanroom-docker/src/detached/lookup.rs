//! Finding named sandboxes on the engine: by name, all of this user's, and
//! the dead ones `gc` removes. Their state is the engine's, read each time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum};
use bollard::Docker;
use cleanroom_core::detached::{current_uid, now_secs, NAME_LABEL};
use cleanroom_core::{Detached, Error, Removed, Result, SandboxInfo, SandboxState};

use super::handle::EngineDetached;
use super::{container_name, LABEL_UID, UNSTARTED_GRACE_SECS};
use crate::backend::Shared;
use crate::endpoint::Engine;
use crate::errors::{engine_error, is_gone};

/// Every named sandbox of this user on the engine: running ones, and with
/// `all` the rest.
pub(crate) async fn list(shared: &Shared, all: bool) -> Result<Vec<SandboxInfo>> {
    let (docker, _) = shared.client()?;
    let handles = list_handles(&docker, shared.engine, all).await?;
    Ok(handles.into_iter().map(|h| h.info).collect())
}

async fn list_handles(docker: &Docker, engine: Engine, all: bool) -> Result<Vec<EngineDetached>> {
    let mut filters: HashMap<&str, Vec<String>> = HashMap::from([(
        "label",
        vec![
            NAME_LABEL.to_string(),
            format!("{LABEL_UID}={}", current_uid()),
        ],
    )]);
    if !all {
        filters.insert("status", vec!["running".into()]);
    }
    let summaries = crate::cleanup::list_labelled(docker, &filters)
        .await
        .map_err(|e| Error::backend(engine.name(), format!("listing named sandboxes: {e}")))?;
    // The list has no exit codes: each is inspected (concurrently).
    let inspected = futures_util::future::join_all(
        summaries
            .iter()
            .filter_map(|s| s.id.as_deref())
            .map(|id| inspect(docker, engine, id)),
    )
    .await;
    let mut handles = Vec::new();
    for got in inspected {
        // Removed since the listing: not there any more.
        if let Some(c) = got? {
            // One another version made stays out of the list (`attach`
            // says why); the rest are listed.
            if let Some(Ok(h)) = EngineDetached::from_inspect(docker, engine, c) {
                handles.push(h);
            }
        }
    }
    handles.sort_by(|a, b| a.info.name.cmp(&b.info.name));
    Ok(handles)
}

/// The named sandbox `name` of this user, if the engine holds it.
pub(crate) async fn attach(shared: &Shared, name: &str) -> Result<Option<Box<dyn Detached>>> {
    let (docker, _) = shared.client()?;
    Ok(find(&docker, shared.engine, name)
        .await?
        .map(|h| Box::new(h) as Box<dyn Detached>))
}

pub(super) async fn find(
    docker: &Docker,
    engine: Engine,
    name: &str,
) -> Result<Option<EngineDetached>> {
    let Some(c) = inspect(docker, engine, &container_name(name)).await? else {
        return Ok(None);
    };
    // A container of that name made by someone else, or by another user,
    // is not this user's sandbox.
    EngineDetached::from_inspect(docker, engine, c)
        .transpose()
        .map(|h| h.filter(|h| h.info.name == name))
}

/// Inspects container `id`; `None` when there is none. Podman briefly
/// reports states the Engine API does not know (`stopping`), which fail to
/// decode: such an answer is asked again for up to five seconds.
pub(super) async fn inspect(
    docker: &Docker,
    engine: Engine,
    id: &str,
) -> Result<Option<ContainerInspectResponse>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match docker.inspect_container(id, None).await {
            Ok(c) => return Ok(Some(c)),
            Err(e) if is_gone(&e) => return Ok(None),
            Err(bollard::errors::Error::JsonDataError { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => {
                return Err(engine_error(
                    engine.name(),
                    "",
                    &format!("inspecting {id}"),
                    e,
                ))
            }
        }
    }
}

/// `gc`'s part for named sandboxes: removes those the engine marks dead
/// and those whose creator died between the engine's create and start.
/// Exited ones stay: they keep their logs until `rm`.
pub(crate) async fn gc_dead(docker: &Docker, engine: Engine) -> Result<Vec<Removed>> {
    let mut removed = Vec::new();
    for h in list_handles(docker, engine, true).await? {
        let SandboxState::Dead { reason } = &h.info.state else {
            continue;
        };
        let unstarted_young = h.unstarted() && now_secs() < h.record.created + UNSTARTED_GRACE_SECS;
        if unstarted_young {
            continue;
        }
        h.remove(true).await?;
        removed.push(Removed::one(
            Removed::CONTAINER,
            format!(
                "removed dead {} sandbox `{}` (container {}): {reason}",
                engine.name(),
                h.info.name,
                &h.id[..h.id.len().min(12)]
            ),
        ));
    }
    Ok(removed)
}

pub(super) const NEVER_STARTED: &str = "created but never started (its creator died first)";

pub(super) fn state_of(s: bollard::models::ContainerState) -> SandboxState {
    let code = s
        .exit_code
        .unwrap_or(0)
        .clamp(i32::MIN as i64, i32::MAX as i64) as i32;
    match s.status {
        Some(
            ContainerStateStatusEnum::RUNNING
            | ContainerStateStatusEnum::PAUSED
            | ContainerStateStatusEnum::RESTARTING,
        ) => SandboxState::Running,
        Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::REMOVING) => {
            SandboxState::Exited { code }
        }
        Some(ContainerStateStatusEnum::CREATED) => SandboxState::Dead {
            reason: NEVER_STARTED.into(),
        },
        Some(ContainerStateStatusEnum::DEAD) => SandboxState::Dead {
            reason: match s.error.filter(|e| !e.is_empty()) {
                Some(e) => format!("the engine marks it dead: {e}"),
                None => "the engine marks it dead".into(),
            },
        },
        _ if s.running == Some(true) => SandboxState::Running,
        _ => SandboxState::Exited { code },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::ContainerStateStatusEnum;

    #[test]
    fn engine_states_map_to_sandbox_states() {
        let state = |status, code| bollard::models::ContainerState {
            status: Some(status),
            exit_code: Some(code),
            ..Default::default()
        };
        assert_eq!(
            state_of(state(ContainerStateStatusEnum::RUNNING, 0)),
            SandboxState::Running
        );
        assert_eq!(
            state_of(state(ContainerStateStatusEnum::EXITED, 3)),
            SandboxState::Exited { code: 3 }
        );
        assert!(matches!(
            state_of(state(ContainerStateStatusEnum::DEAD, 0)),
            SandboxState::Dead { .. }
        ));
        assert!(matches!(
            state_of(state(ContainerStateStatusEnum::CREATED, 0)),
            SandboxState::Dead { reason } if reason == NEVER_STARTED
        ));
    }
}
