//! Named sandboxes that outlive their creator (`cleanroom create`, `run -d`)
//! on an engine: a container with every hardening setting of a one-shot run
//! but without its keep-alive and auto-removal, so that it runs on after
//! this process and, once exited, keeps its exit code and logs until `rm`.
//!
//! The container is called `cleanroom-NAME` (the engines reserve names, so
//! two concurrent creates of one name give one sandbox and one "already in
//! use") and labelled with the name, the owner's uid and a record of what a
//! later process needs to exec in it (the spec, its report, the image's
//! user). State is always read back from the engine: there is no second
//! copy that could disagree.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use bollard::Docker;
use cleanroom_core::detached::{current_uid, not_found, now_secs, NAME_LABEL};
use cleanroom_core::{
    async_trait, Cmd, DetachOptions, Detached, Enforcement, Error, ExecStdio, LogOptions, Network,
    OutputChunk, OutputSink, Prepared, Removed, Result, RunResult, SandboxInfo, SandboxSpec,
    SandboxState, Stats, Stream,
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::backend::Shared;
use crate::container::{
    clean_env_argv, create_body, host_name, CREATED_BY, LABEL_CREATED_BY, LABEL_HOST,
};
use crate::endpoint::Engine;
use crate::errors::{engine_error, is_not_found};
use crate::exec::{run_exec, ExecOutput, ExecRequest, KillMode};
use crate::sandbox::{exec_request, read_back_limits_of, run_result};

/// The uid of the user who made it: `ps` and name lookups see only their own.
pub const LABEL_UID: &str = "io.cleanroom.uid";
/// What a later process needs to exec in the sandbox (its spec, report
/// and image user), as JSON.
pub const LABEL_RECORD: &str = "io.cleanroom.record";
/// Label keys under these prefixes are ours; `--label` may not set them.
const RESERVED_PREFIXES: [&str; 2] = ["io.cleanroom.", "cleanroom."];

/// The main process of a sandbox made by `create`: it idles, and ends
/// cleanly (exit 0) on the SIGTERM of `stop`. A shell as PID 1 also reaps
/// the orphans of execs.
const IDLE: &str = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done";

/// A created container that never started is left by a creator that died
/// in between; younger than this, its creator may still be starting it.
const UNSTARTED_GRACE_SECS: u64 = 60;

/// What a later process needs to run commands in the sandbox as its
/// creator would have, carried in the [`LABEL_RECORD`] label.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    /// Bumped when the fields change meaning.
    version: u32,
    /// The spec under the image's config.
    spec: SandboxSpec,
    enforcement: Enforcement,
    image: String,
    /// The main command as given; empty for an idle sandbox.
    command: Vec<String>,
    created: u64,
    /// The image's named user, which execs run as.
    user_name: Option<String>,
    /// The image's WorkingDir, where execs start unless they name one.
    start_dir: Option<PathBuf>,
}

const RECORD_VERSION: u32 = 1;

/// The container a sandbox name maps to.
pub fn container_name(name: &str) -> String {
    format!("cleanroom-{name}")
}

/// `cleanroom create` / `run -d` on an engine.
pub(crate) async fn create(
    shared: &Shared,
    spec: &SandboxSpec,
    main: Option<Cmd>,
    options: DetachOptions,
    prepared: Prepared,
) -> Result<Box<dyn Detached>> {
    check_labels(&options.labels)?;
    let engine = shared.engine;
    let run = shared.image_run(spec).await?;
    let main = main.map(|m| run.main_command(m)).transpose()?;
    let spec = &run.spec;
    let image = shared.image_for(spec)?;
    let (docker, _) = shared.client()?;
    shared.info().await?;

    let mut body = create_body(engine, spec, &image, None);
    let (argv, env, workdir) = match &main {
        Some(cmd) => {
            cmd.validate()?;
            if cmd.program.contains('=') {
                return Err(Error::InvalidSpec(format!(
                    "program `{}` contains `=`; the {} backend cannot run such a name, rename it",
                    cmd.program,
                    engine.name()
                )));
            }
            let env = spec.environment(&cmd.env);
            let workdir = cmd.workdir.clone().or_else(|| run.start_dir.clone());
            (clean_env_argv(&env, &cmd.argv()), env, workdir)
        }
        None => (
            ["sh", "-c", IDLE].map(String::from).to_vec(),
            spec.environment(&BTreeMap::new()),
            run.start_dir.clone(),
        ),
    };
    let record = Record {
        version: RECORD_VERSION,
        spec: spec.clone(),
        enforcement: prepared.into_enforcement(),
        image: image.clone(),
        command: main.as_ref().map(|m| m.argv()).unwrap_or_default(),
        created: now_secs(),
        user_name: run.user_name.clone(),
        start_dir: run.start_dir.clone(),
    };
    body.entrypoint = Some(argv[..1].to_vec());
    body.cmd = Some(argv[1..].to_vec());
    body.env = Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect());
    if let Some(dir) = workdir {
        body.working_dir = Some(dir.display().to_string());
    }
    if let Some(u) = &run.user_name {
        body.user = Some(u.clone());
    }
    body.labels = Some(labels(&options, &record)?);
    // No keep-alive: nobody holds its stdin, and it is not removed when it
    // exits, so `ps -a` shows its exit code and `logs` its output.
    body.attach_stdin = Some(false);
    body.open_stdin = Some(false);
    body.stdin_once = Some(false);
    body.stop_signal = Some("SIGTERM".into());
    body.stop_timeout = Some(10);
    let seccomp = crate::seccomp_profile::security_opt(engine)?;
    if let Some(hc) = body.host_config.as_mut() {
        hc.auto_remove = Some(false);
        hc.security_opt.get_or_insert_with(Vec::new).push(seccomp);
    }
    let leader = match (&spec.network, engine) {
        (Network::Pod(leader), Engine::Podman) => {
            let pid = crate::pod::join_by_path(&docker, leader, &mut body).await?;
            Some((leader, pid))
        }
        _ => None,
    };

    let opts = CreateContainerOptionsBuilder::new()
        .name(&container_name(&options.name))
        .build();
    let id = match docker.create_container(Some(opts), body).await {
        Ok(created) => created.id,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => return Err(name_in_use(engine, &options.name)),
        Err(e) => {
            return Err(Error::backend(
                engine.name(),
                format!(
                    "creating sandbox `{}` from image `{image}`: {e}",
                    options.name
                ),
            ))
        }
    };
    let handle = EngineDetached {
        docker: docker.clone(),
        engine,
        id: id.clone(),
        info: SandboxInfo {
            name: options.name.clone(),
            backend: engine.name().to_string(),
            image: record.image.clone(),
            state: SandboxState::Running,
            created: record.created,
            command: record.command.clone(),
            labels: options.labels.clone(),
            id,
        },
        record,
    };
    if let Err(e) = handle.finish_start(leader).await {
        let _ = handle.remove(true).await;
        return Err(e);
    }
    Ok(Box::new(handle))
}

/// The error of a second create of a name: the engine keeps names unique.
fn name_in_use(engine: Engine, name: &str) -> Error {
    Error::Config {
        origin: format!("sandbox `{name}`"),
        message: format!(
            "the name is already in use (by a {} container); choose another or remove it \
             with `cleanroom rm {name}`",
            engine.name()
        ),
    }
}

/// User labels must not pass for ours.
fn check_labels(labels: &BTreeMap<String, String>) -> Result<()> {
    for key in labels.keys() {
        if key.is_empty() || RESERVED_PREFIXES.iter().any(|p| key.starts_with(p)) {
            return Err(Error::Config {
                origin: format!("label `{key}`"),
                message: format!(
                    "keys starting with {} are Cleanroom's own (and a key may not be empty); \
                     choose another",
                    RESERVED_PREFIXES.join(" or ")
                ),
            });
        }
    }
    Ok(())
}

fn labels(options: &DetachOptions, record: &Record) -> Result<HashMap<String, String>> {
    let record = serde_json::to_string(record)
        .map_err(|e| Error::backend("engine", format!("encoding the sandbox record: {e}")))?;
    let mut labels: HashMap<String, String> = options
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.extend([
        (NAME_LABEL.to_string(), options.name.clone()),
        (LABEL_UID.to_string(), current_uid().to_string()),
        (LABEL_RECORD.to_string(), record),
        // What every container of ours carries, so that `docker ps
        // --filter label=cleanroom.created-by=cleanroom` shows it; without
        // the pid label, `gc` never takes it for a dead caller's.
        (LABEL_CREATED_BY.to_string(), CREATED_BY.to_string()),
        (LABEL_HOST.to_string(), host_name()),
    ]);
    Ok(labels)
}

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
            handles.extend(EngineDetached::from_inspect(docker, engine, c));
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

async fn find(docker: &Docker, engine: Engine, name: &str) -> Result<Option<EngineDetached>> {
    let Some(c) = inspect(docker, engine, &container_name(name)).await? else {
        return Ok(None);
    };
    // A container of that name made by someone else, or by another user,
    // is not this user's sandbox.
    Ok(EngineDetached::from_inspect(docker, engine, c).filter(|h| h.info.name == name))
}

/// Inspects container `id`; `None` when there is none. Podman briefly
/// reports states the Engine API does not know (`stopping`), which fail to
/// decode: such an answer is asked again for up to five seconds.
async fn inspect(
    docker: &Docker,
    engine: Engine,
    id: &str,
) -> Result<Option<ContainerInspectResponse>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match docker.inspect_container(id, None).await {
            Ok(c) => return Ok(Some(c)),
            Err(e) if is_not_found(&e) => return Ok(None),
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

/// A handle on one named sandbox of an engine.
pub struct EngineDetached {
    docker: Docker,
    engine: Engine,
    id: String,
    info: SandboxInfo,
    record: Record,
}

impl EngineDetached {
    /// The handle for an inspected container, if it is one of this user's
    /// named sandboxes.
    fn from_inspect(docker: &Docker, engine: Engine, c: ContainerInspectResponse) -> Option<Self> {
        let config = c.config.unwrap_or_default();
        let labels = config.labels.unwrap_or_default();
        let name = labels.get(NAME_LABEL)?.clone();
        if labels.get(LABEL_UID) != Some(&current_uid().to_string()) {
            return None;
        }
        let record: Record = serde_json::from_str(labels.get(LABEL_RECORD)?).ok()?;
        let user_labels = labels
            .iter()
            .filter(|(k, _)| !RESERVED_PREFIXES.iter().any(|p| k.starts_with(p)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let id = c.id.unwrap_or_default();
        Some(EngineDetached {
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
        })
    }

    fn name(&self) -> &str {
        &self.info.name
    }

    fn unstarted(&self) -> bool {
        matches!(&self.info.state, SandboxState::Dead { reason } if reason == NEVER_STARTED)
    }

    /// The rest of a create after the engine made the container: start it,
    /// check its pod leader and the limits the engine kept, and on Podman
    /// give a writable root its usual mode.
    async fn finish_start(&self, leader: Option<(&String, i64)>) -> Result<()> {
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
            Err(Error::SandboxGone { .. }) => Err(self.not_running().await),
            other => other,
        }
    }

    /// Why a command cannot run in it now.
    async fn not_running(&self) -> Error {
        match find(&self.docker, self.engine, self.name()).await {
            Ok(Some(now)) if now.id == self.id => not_running_error(&now.info),
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

/// The one-line error for a command sent to a sandbox that is not running.
pub(crate) fn not_running_error(info: &SandboxInfo) -> Error {
    Error::Config {
        origin: format!("sandbox `{}`", info.name),
        message: format!(
            "is {}, not running; commands run only in a running sandbox (`cleanroom rm {}` \
             removes it)",
            info.state, info.name
        ),
    }
}

const NEVER_STARTED: &str = "created but never started (its creator died first)";

fn state_of(s: bollard::models::ContainerState) -> SandboxState {
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
            Err(Error::SandboxGone { .. }) => Err(self.not_running().await),
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
                Err(e) if is_not_found(&e) => return Err(not_found(self.name())),
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
            Err(e) if is_not_found(&e) => Err(not_found(self.name())),
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
            Err(e) if is_not_found(&e) => Ok(()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_label_keys_are_refused() {
        let ok = BTreeMap::from([("team".to_string(), "a".to_string())]);
        check_labels(&ok).unwrap();
        for key in ["io.cleanroom.name", "cleanroom.pid", ""] {
            let bad = BTreeMap::from([(key.to_string(), "x".to_string())]);
            let e = check_labels(&bad).unwrap_err().to_string();
            assert!(e.contains("Cleanroom's own"), "{key}: {e}");
        }
    }

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
