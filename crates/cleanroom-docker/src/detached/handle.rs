//! [`EngineDetached`]: a handle on one named sandbox of an engine, from
//! `create` or a lookup by name; every call asks the engine afresh.

use std::path::Path;
use std::time::{Duration, Instant};

use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use cleanroom_core::detached::{current_uid, not_found, not_running, NAME_LABEL};
use cleanroom_core::{
    async_trait, Cmd, Detached, Error, ExecStdio, LogOptions, OutputChunk, OutputSink, Result,
    RunResult, SandboxInfo, SandboxSpec, SandboxState, Stats, Stream,
};
use futures_util::StreamExt;

use super::lookup::{find, state_of, NEVER_STARTED};
use super::{Record, LABEL_RECORD, LABEL_UID, RESERVED_PREFIXES};
use crate::endpoint::Engine;
use crate::errors::{engine_error, is_gone};
use crate::exec::{run_exec, ExecOutput, ExecRequest, KillMode};
use crate::sandbox::{exec_request, read_back_limits_of, run_result};

/// A handle on one named sandbox of an engine.
pub struct EngineDetached {
    pub(super) docker: Docker,
    pub(super) engine: Engine,
    pub(super) id: String,
    pub(super) info: SandboxInfo,
    pub(super) record: Record,
}

impl EngineDetached {
    /// The handle for an inspected container, if it is one of this user's
    /// named sandboxes.
    pub(super) fn from_inspect(
        docker: &Docker,
        engine: Engine,
        c: ContainerInspectResponse,
    ) -> Option<Result<Self>> {
        let config = c.config.unwrap_or_default();
        let labels = config.labels.unwrap_or_default();
        let name = labels.get(NAME_LABEL)?.clone();
        if labels.get(LABEL_UID) != Some(&current_uid().to_string()) {
            return None;
        }
        let record = match Record::read(labels.get(LABEL_RECORD)?) {
            Ok(r) => r,
            Err(made_by) => return Some(Err(other_version(engine, &name, &made_by))),
        };
        let user_labels = labels
            .iter()
            .filter(|(k, _)| !RESERVED_PREFIXES.iter().any(|p| k.starts_with(p)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let id = c.id.unwrap_or_default();
        Some(Ok(EngineDetached {
            docker: docker.clone(),
            engine,
            info: SandboxInfo {
                name,
                backend: engine.name().to_string(),
                image: record.image.clone(),
                state: state_of(c.state.unwrap_or_default()),
                created: record.created,
                command: record.command.clone(),
                labels: user_labels,
                id: id.clone(),
            },
            id,
            record,
        }))
    }

    fn name(&self) -> &str {
        &self.info.name
    }

    pub(super) fn unstarted(&self) -> bool {
        matches!(&self.info.state, SandboxState::Dead { reason } if reason == NEVER_STARTED)
    }

    /// The rest of a create after the engine made the container: start it,
    /// check its pod leader and the limits the engine kept, and on Podman
    /// give a writable root its usual mode.
    pub(super) async fn finish_start(&self, leader: Option<(&String, i64)>) -> Result<()> {
        let engine = self.engine.name();
        self.docker
            .start_container(&self.id, None)
            .await
            .map_err(|e| {
                Error::backend(
                    engine,
                    format!(
                        "starting sandbox `{}` from image `{}`: {e}",
                        self.name(),
                        self.record.image
                    ),
                )
            })?;
        if let Some((leader, pid)) = leader {
            crate::pod::check_leader(&self.docker, leader, pid).await?;
        }
        let spec = &self.record.spec;
        // The report stays as labelled at create; what matters here is that
        // strict mode refuses a limit the engine did not keep.
        let mut enforcement = self.record.enforcement.clone();
        read_back_limits_of(&self.docker, engine, &self.id, spec, &mut enforcement).await?;
        if self.engine == Engine::Podman && !spec.read_only_root {
            // As for one-shot runs: Podman mounts the root r-x for all.
            let mut req = exec_request(spec, Cmd::new("chmod").args(["755", "/"]), None);
            req.user = "0:0".into();
            req.workdir = "/".into();
            self.run(req).await?;
        }
        Ok(())
    }

    /// Runs `req` in the container; a container that is not running gives
    /// an error naming its state.
    async fn run(&self, req: ExecRequest) -> Result<ExecOutput> {
        match run_exec(
            &self.docker,
            self.engine.name(),
            &self.id,
            req,
            KillMode::Group,
        )
        .await
        {
            Err(Error::SandboxGone { .. }) => Err(self.why_not_running().await),
            other => other,
        }
    }

    /// Why a command cannot run in it now.
    async fn why_not_running(&self) -> Error {
        match find(&self.docker, self.engine, self.name()).await {
            Ok(Some(now)) if now.id == self.id => not_running(&now.info),
            Ok(_) => not_found(self.name()),
            Err(e) => e,
        }
    }

    /// The state now, from the engine.
    async fn current(&self) -> Result<EngineDetached> {
        match find(&self.docker, self.engine, self.name()).await? {
            Some(now) if now.id == self.id => Ok(now),
            _ => Err(not_found(self.name())),
        }
    }

    /// The exec request for `cmd` as its creator would have made it.
    fn request(&self, cmd: Cmd, sink: Option<OutputSink>) -> ExecRequest {
        let cmd = cleanroom_core::image_config::starting_in(cmd, self.record.start_dir.as_deref());
        let mut req = exec_request(&self.record.spec, cmd, sink);
        if let Some(u) = &self.record.user_name {
            req.user = u.clone();
        }
        req
    }

    pub(crate) fn docker(&self) -> &Docker {
        &self.docker
    }

    pub(crate) fn container_id(&self) -> &str {
        &self.id
    }

    pub(crate) fn engine(&self) -> Engine {
        self.engine
    }
}

/// The error for a sandbox whose record another version of Cleanroom wrote.
fn other_version(engine: Engine, name: &str, made_by: &str) -> Error {
    Error::Config {
        origin: format!("sandbox `{name}`"),
        message: format!(
            "was created by cleanroom {made_by}; this is cleanroom {}, which cannot use it: \
             remove it with `{} rm -f {}` and create it again",
            env!("CARGO_PKG_VERSION"),
            engine.name(),
            super::container_name(name)
        ),
    }
}

#[async_trait]
impl Detached for EngineDetached {
    fn info(&self) -> &SandboxInfo {
        &self.info
    }

    async fn exec(&self, cmd: Cmd, sink: Option<OutputSink>) -> Result<RunResult> {
        cmd.validate()?;
        let started = Instant::now();
        let out = self.run(self.request(cmd, sink)).await?;
        Ok(run_result(
            out,
            false,
            started,
            self.engine.name(),
            &self.record.enforcement,
        ))
    }

    async fn exec_attached(&self, cmd: Cmd, stdio: ExecStdio) -> Result<i32> {
        cmd.validate()?;
        let req = self.request(cmd, None);
        match crate::attached::exec_attached(self, req, stdio).await {
            Err(Error::SandboxGone { .. }) => Err(self.why_not_running().await),
            other => other,
        }
    }

    async fn copy_in(&self, host_path: &Path, sandbox_path: &Path) -> Result<()> {
        let engine = self.engine.name();
        crate::copy::copy_in(engine, &self.record.spec, host_path, sandbox_path, |req| {
            self.run(req)
        })
        .await
    }

    async fn copy_out(&self, sandbox_path: &Path, host_path: &Path) -> Result<()> {
        let engine = self.engine.name();
        crate::copy::copy_out(engine, &self.record.spec, sandbox_path, host_path, |req| {
            self.run(req)
        })
        .await
    }

    async fn logs(&self, options: LogOptions, sink: OutputSink) -> Result<()> {
        let tail = options
            .tail
            .map_or_else(|| "all".to_string(), |n| n.to_string());
        let opts = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .follow(options.follow)
            .tail(&tail)
            .build();
        let mut stream = self.docker.logs(&self.id, Some(opts));
        while let Some(item) = stream.next().await {
            let (stream, message) = match item {
                Ok(bollard::container::LogOutput::StdOut { message })
                | Ok(bollard::container::LogOutput::Console { message }) => {
                    (Stream::Stdout, message)
                }
                Ok(bollard::container::LogOutput::StdErr { message }) => (Stream::Stderr, message),
                Ok(_) => continue,
                Err(e) if is_gone(&e) => return Err(not_found(self.name())),
                Err(e) => {
                    return Err(engine_error(self.engine.name(), "", "reading logs", e));
                }
            };
            let chunk = OutputChunk {
                stream,
                bytes: message.to_vec(),
            };
            if sink.send(chunk).await.is_err() {
                // The reader went away (`logs -f | head`): done.
                break;
            }
        }
        Ok(())
    }

    async fn stop(&self, grace: Duration) -> Result<()> {
        let secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let opts = StopContainerOptionsBuilder::new()
            .t(secs.min(i32::MAX as u64) as i32)
            .build();
        match self.docker.stop_container(&self.id, Some(opts)).await {
            Ok(()) => Ok(()),
            // Already stopped.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) if is_gone(&e) => Err(not_found(self.name())),
            Err(e) => Err(Error::backend(
                self.engine.name(),
                format!("stopping sandbox `{}`: {e}", self.name()),
            )),
        }
    }

    async fn remove(&self, force: bool) -> Result<()> {
        if !force {
            let now = self.current().await?;
            if now.info.state == SandboxState::Running {
                return Err(Error::Config {
                    origin: format!("sandbox `{}`", self.name()),
                    message: format!(
                        "is running; stop it first (`cleanroom stop {0}`) or remove it anyway \
                         with `cleanroom rm -f {0}`",
                        self.name()
                    ),
                });
            }
        }
        let opts = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(&self.id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_gone(&e) => Ok(()),
            Err(e) => Err(Error::backend(
                self.engine.name(),
                format!("removing sandbox `{}`: {e}", self.name()),
            )),
        }
    }

    async fn stats(&self) -> Result<Stats> {
        crate::stats::stats(self).await
    }
}

impl EngineDetached {
    /// The spec it runs under.
    pub(crate) fn spec(&self) -> &SandboxSpec {
        &self.record.spec
    }

    /// Its state, read again from the engine.
    pub(crate) async fn refreshed(&self) -> Result<SandboxInfo> {
        Ok(self.current().await?.info)
    }
}
