//! One container's life: create and start it hardened, exec in it, copy
//! files, read logs, stop and remove it, and remove it on drop.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use bollard::container::AttachContainerResults;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, KillContainerOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use cleanroom_core::{
    async_trait, Cmd, Constraint, Enforcement, Error, Logs, OutputSink, Result, RunResult, Sandbox,
    SandboxSpec,
};
use futures_util::StreamExt;

use crate::copy;
use crate::endpoint::{Endpoint, Engine, PODMAN_RLIMIT_FIX};
use crate::errors::{engine_error, is_not_found};
use crate::exec::{run_exec, split_exit, ExecOutput, ExecRequest, KillMode};
use crate::pool::lock;

/// A created container; removed on [`Container::remove`] or, failing
/// that, when dropped. If this process dies first, the container ends by
/// itself: its keep-alive reads the stdin held open by `keep_alive`.
pub struct Container {
    pub docker: Docker,
    pub endpoint: Endpoint,
    pub id: String,
    removed: AtomicBool,
    /// The attach connection carrying the container's stdin. Never written
    /// to: it only has to stay open while this process lives, and the
    /// kernel closes it when the process dies, however it dies.
    keep_alive: Mutex<Option<AttachContainerResults>>,
}

impl Container {
    /// Creates and starts a container from `body`.
    pub async fn start(
        docker: &Docker,
        endpoint: &Endpoint,
        body: ContainerCreateBody,
    ) -> Result<Container> {
        let name = crate::container::fresh_name();
        let image = body.image.clone().unwrap_or_default();
        let output = body.attach_stdout == Some(true);
        let opts = CreateContainerOptionsBuilder::new().name(&name).build();
        // If this future is dropped while the engine creates the container
        // (a runtime shutting down), the guard removes it by name.
        let mut guard = PendingCreate {
            endpoint: Some(endpoint.clone()),
            name: name.clone(),
        };
        let created = docker.create_container(Some(opts), body).await;
        // Answered, either way: nothing left for the guard to do.
        guard.endpoint = None;
        let created =
            created.map_err(|e| start_error(endpoint.engine, &image, "creating a container", e))?;
        let container = Container {
            docker: docker.clone(),
            endpoint: endpoint.clone(),
            id: created.id,
            removed: AtomicBool::new(false),
            keep_alive: Mutex::new(None),
        };
        // Attached before it starts, so there is no moment in which it runs
        // without an owner. Stdin only, unless the body asks for the output
        // (a one-shot's, which is read as its command runs).
        let attach = AttachContainerOptionsBuilder::new()
            .stream(true)
            .stdin(true)
            .stdout(output)
            .stderr(output)
            .build();
        match docker.attach_container(&container.id, Some(attach)).await {
            Ok(conn) => *lock(&container.keep_alive) = Some(conn),
            Err(e) => {
                let err = start_error(endpoint.engine, &image, "attaching to a container", e);
                let _ = container.remove().await;
                return Err(err);
            }
        }
        if let Err(e) = docker.start_container(&container.id, None).await {
            let err = start_error(endpoint.engine, &image, "starting a container", e);
            let _ = container.remove().await;
            return Err(err);
        }
        Ok(container)
    }

    pub fn engine(&self) -> &'static str {
        self.endpoint.engine.name()
    }

    /// The attach connection, lent out to talk to the container's main
    /// process; [`Container::put_attach`] gives it back.
    pub(crate) fn take_attach(&self) -> Option<AttachContainerResults> {
        lock(&self.keep_alive).take()
    }

    pub(crate) fn put_attach(&self, conn: AttachContainerResults) {
        if !self.is_removed() {
            *lock(&self.keep_alive) = Some(conn);
        }
    }

    /// Hands the removal over to the caller: dropping it no longer removes
    /// it. (It still ends when this process does.)
    pub fn disown(self) -> (Endpoint, String) {
        self.removed.store(true, Ordering::SeqCst);
        (self.endpoint.clone(), self.id.clone())
    }

    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::SeqCst)
    }

    /// Kills every process inside; the engine then removes the container
    /// (auto-remove).
    pub async fn kill(&self) -> Result<()> {
        let opts = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
        match self.docker.kill_container(&self.id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404 | 409 | 304 | 500,
                ..
            }) => Ok(()),
            Err(e) => Err(engine_error(self.engine(), &self.id, "stopping", e)),
        }
    }

    /// Force-removes the container (a no-op once it is gone). On failure
    /// (Podman keeps a pod's first container while members remain) it stays
    /// marked live, so dropping it tries again.
    /// Ends the container without waiting: its keep-alive reads EOF and
    /// exits, the container stops, and the engine removes it
    /// (`AutoRemove`). For a container whose work is done; if the engine
    /// cannot remove it, `cleanroom gc` finds it by its labels.
    pub fn release(&self) {
        lock(&self.keep_alive).take();
        self.removed.store(true, Ordering::SeqCst);
    }

    pub async fn remove(&self) -> Result<()> {
        if self.is_removed() {
            return Ok(());
        }
        let opts = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(&self.id, Some(opts)).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) || is_removal_in_progress(&e) => {}
            Err(e) => {
                return Err(Error::backend(
                    self.engine(),
                    format!("removing container {}: {e}", self.id),
                ))
            }
        }
        self.removed.store(true, Ordering::SeqCst);
        lock(&self.keep_alive).take();
        Ok(())
    }

    /// The memory cgroup's OOM-kill count as seen inside. Where no command
    /// can run there any more (a full tmpfs keeps the cgroup at its limit
    /// after the kill, so the reading command is killed too), 1 if the
    /// engine's statistics show the cgroup at its limit (the highest usage
    /// on cgroup v1, the current one on v2; the engines mark only a
    /// container's main process as OOM-killed, never an exec); else 0.
    pub async fn oom_kills(&self, user: &str) -> u64 {
        if let Some(counted) = self.oom_kills_inside(user).await {
            return counted;
        }
        let opts = bollard::query_parameters::StatsOptions {
            stream: false,
            one_shot: true,
        };
        let stats = self.docker.stats(&self.id, Some(opts)).next().await;
        let memory = stats.and_then(|s| s.ok()).and_then(|s| s.memory_stats);
        let at_limit = memory.is_some_and(|m| match (m.max_usage.or(m.usage), m.limit) {
            (Some(used), Some(limit)) => used.saturating_add(2 << 20) >= limit,
            _ => false,
        });
        u64::from(at_limit)
    }

    /// `None` when the reading command did not run to the end.
    async fn oom_kills_inside(&self, user: &str) -> Option<u64> {
        let req = ExecRequest {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "cat /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events 2>/dev/null; exit 0".into(),
            ],
            env: cleanroom_core::base_environment(Path::new("/")),
            user: user.to_string(),
            workdir: "/".into(),
            stdin: None,
            timeout: Some(std::time::Duration::from_secs(10)),
            limit: 64 * 1024,
            sink: None,
        };
        match run_exec(&self.docker, self.engine(), &self.id, req, KillMode::Group).await {
            Ok(out) if out.exit_code == 0 => Some(
                String::from_utf8_lossy(&out.stdout.bytes)
                    .lines()
                    .filter_map(|l| l.strip_prefix("oom_kill "))
                    .filter_map(|n| n.trim().parse::<u64>().ok())
                    .max()
                    .unwrap_or(0),
            ),
            _ => None,
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.is_removed() {
            return;
        }
        // Remove over a connection of its own, through the bridge, so this
        // works inside or outside any runtime, even one shutting down.
        let endpoint = self.endpoint.clone();
        let id = self.id.clone();
        cleanroom_core::bridge::wait(async move { force_remove(&endpoint, &id).await });
    }
}

/// A create request whose answer was never seen: on drop, removes the
/// container by name, retrying for a moment in case the engine is still
/// creating it.
struct PendingCreate {
    endpoint: Option<Endpoint>,
    name: String,
}

impl Drop for PendingCreate {
    fn drop(&mut self) {
        let Some(endpoint) = self.endpoint.take() else {
            return;
        };
        let name = std::mem::take(&mut self.name);
        cleanroom_core::bridge::wait(async move {
            let Ok(docker) = endpoint.connect() else {
                return;
            };
            for _ in 0..10 {
                let opts = RemoveContainerOptionsBuilder::new()
                    .force(true)
                    .v(true)
                    .build();
                match docker.remove_container(&name, Some(opts)).await {
                    Err(e) if is_not_found(&e) => {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await
                    }
                    _ => return,
                }
            }
        });
    }
}

/// Docker's answer when the container already exited and its auto-removal
/// is under way: it is going, as asked.
fn is_removal_in_progress(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            message,
        } if message.contains("already in progress")
    )
}

/// Force-removes container `id` over a new connection to `endpoint`.
pub async fn force_remove(endpoint: &Endpoint, id: &str) {
    if let Ok(docker) = endpoint.connect() {
        let opts = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        let _ = docker.remove_container(id, Some(opts)).await;
    }
}

/// An engine error while creating or starting a container, with what to do.
fn start_error(engine: Engine, image: &str, doing: &str, e: bollard::errors::Error) -> Error {
    let text = e.to_string();
    if is_not_found(&e) && text.to_ascii_lowercase().contains("image") {
        return crate::image::missing_image(engine, image, &text);
    }
    let mut message = format!("{doing} from image `{image}`: {text}");
    let lower = text.to_ascii_lowercase();
    if lower.contains("\"sh\"") && (lower.contains("not found") || lower.contains("no such file")) {
        message.push_str(
            "; the engine backends run commands through the image's `sh` and `env`, so the \
             image must provide both (busybox or coreutils); use an image that has them",
        );
    }
    if engine == Engine::Podman && text.to_ascii_lowercase().contains("rlimit") {
        message.push_str("; ");
        message.push_str(PODMAN_RLIMIT_FIX);
    }
    Error::backend(engine.name(), message)
}

/// Reads back the limits the engine recorded for container `id` of
/// `engine`; any it did not keep are reported not enforced.
pub async fn read_back_limits_of(
    docker: &Docker,
    engine: &str,
    id: &str,
    spec: &SandboxSpec,
    e: &mut Enforcement,
) -> Result<()> {
    if spec.memory.is_none() && spec.cpus.is_none() && spec.pids.is_none() {
        return Ok(());
    }
    let info = docker
        .inspect_container(id, None)
        .await
        .map_err(|err| engine_error(engine, id, "inspecting", err))?;
    let hc = info.host_config.unwrap_or_default();
    let checks = [
        (
            Constraint::MemoryLimit,
            spec.memory.map(|m| m as i64),
            hc.memory,
        ),
        (
            Constraint::CpuLimit,
            spec.cpus.map(|c| (c * 1e9) as i64),
            hc.nano_cpus,
        ),
        (
            Constraint::PidsLimit,
            spec.pids.map(|p| p as i64),
            hc.pids_limit,
        ),
    ];
    for (constraint, want, got) in checks {
        if let Some(want) = want {
            if e.is_enforced(constraint) && got != Some(want) {
                e.not_enforced(
                    constraint,
                    format!("the engine did not apply it: asked {want}, inspect shows {got:?}"),
                );
            }
        }
    }
    e.check_strict(spec)
}

/// One command's result from an exec's output.
pub fn run_result(
    out: ExecOutput,
    oom_killed: bool,
    started: Instant,
    backend: &str,
    enforcement: &Enforcement,
) -> RunResult {
    let (exit_code, signal) = split_exit(out.exit_code);
    RunResult {
        exit_code,
        signal,
        timed_out: out.timed_out,
        oom_killed,
        stdout: out.stdout.bytes,
        stderr: out.stderr.bytes,
        stdout_truncated: out.stdout.truncated,
        stderr_truncated: out.stderr.truncated,
        duration: started.elapsed(),
        backend: backend.to_string(),
        enforcement: enforcement.clone(),
    }
}

/// The exec request for `cmd` under `spec`.
pub fn exec_request(spec: &SandboxSpec, cmd: Cmd, sink: Option<OutputSink>) -> ExecRequest {
    ExecRequest {
        argv: cmd.argv(),
        env: spec.environment(&cmd.env),
        user: spec.user.to_string(),
        workdir: cmd
            .workdir
            .as_ref()
            .unwrap_or(&spec.workdir)
            .display()
            .to_string(),
        stdin: cmd.stdin,
        timeout: cmd.timeout.or(spec.timeout),
        limit: spec.output_limit,
        sink,
    }
}

/// A long-lived sandbox: a running container.
pub struct EngineSandbox {
    pub(crate) container: Container,
    pub(crate) spec: SandboxSpec,
    pub(crate) enforcement: Enforcement,
    /// OOM kills already accounted to earlier commands.
    pub(crate) oom_seen: Mutex<u64>,
    /// The main process's output as it was when the sandbox was stopped:
    /// the engine removes a stopped container, logs and all.
    pub(crate) final_logs: Mutex<Option<Logs>>,
    /// Where execs start unless they name a directory (the image's WorkingDir).
    pub(crate) start_dir: Option<std::path::PathBuf>,
    /// The image's named user, which execs run as (the engine resolves it).
    pub(crate) user_name: Option<String>,
}

impl EngineSandbox {
    fn alive(&self) -> Result<()> {
        if self.container.is_removed() {
            return Err(Error::SandboxGone {
                id: self.container.id.clone(),
            });
        }
        Ok(())
    }

    /// The main process's output so far, from the engine.
    async fn read_logs(&self) -> Result<Logs> {
        let opts = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .follow(false)
            .build();
        let mut stream = self.container.docker.logs(&self.container.id, Some(opts));
        let limit = self.spec.output_limit as usize;
        let mut logs = Logs::default();
        while let Some(item) = stream.next().await {
            let (buf, bytes) = match item {
                Ok(bollard::container::LogOutput::StdOut { message }) => {
                    (&mut logs.stdout, message)
                }
                Ok(bollard::container::LogOutput::Console { message }) => {
                    (&mut logs.stdout, message)
                }
                Ok(bollard::container::LogOutput::StdErr { message }) => {
                    (&mut logs.stderr, message)
                }
                Ok(_) => continue,
                Err(e) => {
                    return Err(engine_error(
                        self.container.engine(),
                        &self.container.id,
                        "reading logs",
                        e,
                    ))
                }
            };
            let room = limit.saturating_sub(buf.len());
            buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        Ok(logs)
    }

    async fn exec_raw(&self, req: ExecRequest) -> Result<ExecOutput> {
        self.alive()?;
        run_exec(
            &self.container.docker,
            self.container.engine(),
            &self.container.id,
            req,
            KillMode::Group,
        )
        .await
    }
}

#[async_trait]
impl Sandbox for EngineSandbox {
    fn id(&self) -> &str {
        &self.container.id
    }

    fn backend(&self) -> &str {
        self.container.engine()
    }

    fn enforcement(&self) -> &Enforcement {
        &self.enforcement
    }

    async fn exec_streaming(&self, cmd: Cmd, sink: Option<OutputSink>) -> Result<RunResult> {
        cmd.validate()?;
        let started = Instant::now();
        let cmd = cleanroom_core::image_config::starting_in(cmd, self.start_dir.as_deref());
        let mut req = exec_request(&self.spec, cmd, sink);
        if let Some(u) = &self.user_name {
            req.user = u.clone();
        }
        let out = self.exec_raw(req).await?;
        let mut oom = false;
        if self.spec.memory.is_some() && out.exit_code == 137 && !out.timed_out {
            let count = self.container.oom_kills(&self.spec.user.to_string()).await;
            let mut seen = lock(&self.oom_seen);
            oom = count > *seen;
            *seen = count.max(*seen);
        }
        Ok(run_result(
            out,
            oom,
            started,
            self.container.engine(),
            &self.enforcement,
        ))
    }

    async fn copy_in(&self, host_path: &Path, sandbox_path: &Path) -> Result<()> {
        let engine = self.container.engine();
        copy::copy_in(engine, &self.spec, host_path, sandbox_path, |req| {
            self.exec_raw(req)
        })
        .await
    }

    async fn copy_out(&self, sandbox_path: &Path, host_path: &Path) -> Result<()> {
        let engine = self.container.engine();
        copy::copy_out(engine, &self.spec, sandbox_path, host_path, |req| {
            self.exec_raw(req)
        })
        .await
    }

    async fn logs(&self) -> Result<Logs> {
        if let Some(logs) = lock(&self.final_logs).clone() {
            return Ok(logs);
        }
        self.alive()?;
        self.read_logs().await
    }

    async fn stop(&self) -> Result<()> {
        self.alive()?;
        let logs = self.read_logs().await.unwrap_or_default();
        *lock(&self.final_logs) = Some(logs);
        self.container.kill().await
    }

    async fn remove(&self) -> Result<()> {
        self.container.remove().await
    }
}
