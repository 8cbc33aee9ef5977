//! [`EngineBackend`]: the `docker` and `podman` backends, one implementation
//! over the Engine API.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bollard::Docker;
use cleanroom_core::{
    async_trait, Availability, Backend, Cmd, DetachOptions, Detached, Enforcement, Error,
    ImageConfig, ImageRun, Network, OutputSink, Prepared, Result, RootFs, RunResult, Sandbox,
    SandboxInfo, SandboxSpec,
};

use crate::cleanup;
use crate::container::create_body;
use crate::endpoint::{Endpoint, Engine};
use crate::engine_info::{fetch_info, EngineInfo};
use crate::exec::{run_exec, KillMode};
use crate::image;
use crate::oneshot;
use crate::pod;
use crate::pool::WarmPool;
use crate::sandbox::{exec_request, run_result, Container, EngineSandbox};

/// The image engine backends use when a spec asks for the `host` rootfs,
/// unless configured otherwise.
pub const DEFAULT_IMAGE: &str = "cleanroom-busybox:latest";

/// The Docker or Podman backend. Cheap to share: clones see the same
/// engine, caches and warm pool.
#[derive(Clone)]
pub struct EngineBackend {
    shared: Arc<Shared>,
    pool: Option<Arc<WarmPool>>,
}

/// What every clone of a backend and its warm pool's refills share.
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    image: String,
    docker_bin: Option<PathBuf>,
    endpoint: OnceLock<Endpoint>,
    info: OnceLock<EngineInfo>,
    images_ready: Mutex<HashSet<String>>,
    /// Each image's runtime config, read once.
    image_configs: Mutex<HashMap<String, ImageConfig>>,
}

/// `DockerBackend::new(image)`: the Docker backend.
pub struct DockerBackend;

impl DockerBackend {
    /// The Docker backend; `image` is used for specs with the `host` rootfs.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(image: impl Into<String>) -> EngineBackend {
        EngineBackend::new(Engine::Docker, image)
    }
}

/// `PodmanBackend::new(image)`: the Podman backend.
pub struct PodmanBackend;

impl PodmanBackend {
    /// The Podman backend; `image` is used for specs with the `host` rootfs.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(image: impl Into<String>) -> EngineBackend {
        EngineBackend::new(Engine::Podman, image)
    }
}

impl EngineBackend {
    pub fn new(engine: Engine, image: impl Into<String>) -> Self {
        EngineBackend::build(engine, image.into(), None, 0)
    }

    fn build(engine: Engine, image: String, docker_bin: Option<PathBuf>, pool: usize) -> Self {
        EngineBackend {
            shared: Arc::new(Shared {
                engine,
                image,
                docker_bin,
                endpoint: OnceLock::new(),
                info: OnceLock::new(),
                images_ready: Mutex::new(HashSet::new()),
                image_configs: Mutex::new(HashMap::new()),
            }),
            pool: (pool > 0).then(|| Arc::new(WarmPool::new(pool))),
        }
    }

    /// Finds the Docker endpoint from this CLI's current context when
    /// `DOCKER_HOST` is unset (kept for users of the old `docker_bin` option).
    pub fn docker_bin(self, path: impl Into<PathBuf>) -> Self {
        let pool = self.pool.as_ref().map_or(0, |p| p.size());
        EngineBackend::build(
            self.shared.engine,
            self.shared.image.clone(),
            Some(path.into()),
            pool,
        )
    }

    /// Keeps `n` started, never-used containers per spec ready, so that a
    /// one-shot run costs an exec rather than a container start. A used
    /// container is always removed, never handed to another run; in this
    /// mode the removal finishes in the background just after the run
    /// returns (its command has ended by then).
    pub fn with_warm_pool(self, n: usize) -> Self {
        EngineBackend::build(
            self.shared.engine,
            self.shared.image.clone(),
            self.shared.docker_bin.clone(),
            n,
        )
    }

    pub fn engine(&self) -> Engine {
        self.shared.engine
    }

    /// The image used for specs with the `host` rootfs.
    pub fn default_image(&self) -> &str {
        &self.shared.image
    }

    /// Where the engine's API is expected.
    pub fn endpoint(&self) -> Result<Endpoint> {
        self.shared.endpoint()
    }

    /// The image a spec runs: its own, or the default for `host`.
    pub fn image_for(&self, spec: &SandboxSpec) -> Result<String> {
        self.shared.image_for(spec)
    }

    /// Pulls the default image unless the engine has it.
    pub async fn ensure_image(&self) -> Result<()> {
        let image = self.shared.image.clone();
        self.shared.ensure_image_named(&image, |_| {}).await
    }

    /// Pulls `image` unless the engine has it, telling `progress` each status line.
    pub async fn ensure_image_named(&self, image: &str, progress: impl FnMut(&str)) -> Result<()> {
        self.shared.ensure_image_named(image, progress).await
    }

    /// What the engine can enforce, asked once and remembered.
    pub async fn info(&self) -> Result<EngineInfo> {
        self.shared.info().await
    }

    /// Removes every container this process created on the engine (label
    /// `cleanroom.session`), running or not, and says what it removed. For a
    /// caller's SIGINT/SIGTERM handler: call it, then exit.
    pub async fn remove_session(&self) -> Result<Vec<String>> {
        let (docker, ep) = self.shared.client()?;
        cleanup::remove_session(&docker, ep.engine.name()).await
    }

    /// [`Backend::availability`] plus a real one-shot run of `true` in the
    /// default image, for `doctor`: an engine can answer and still fail to
    /// start containers (Podman without CAP_SYS_RESOURCE, crun on a hybrid
    /// cgroup layout). The hint then says how to fix it.
    pub async fn probe_run(&self) -> Availability {
        let a = self.availability().await;
        if !a.available {
            return a;
        }
        let spec = SandboxSpec::default();
        match self.run(&spec, Cmd::new("true")).await {
            Ok(r) if r.success() => Availability::yes(format!("{}; runs containers", a.reason)),
            Ok(r) => Availability::no(
                format!(
                    "`true` in `{}` gave {}: {}",
                    self.shared.image,
                    r.status_line(),
                    r.stderr_lossy().trim()
                ),
                "check that the image runs with this engine by hand \
                 (`ENGINE run --rm IMAGE true`)",
            ),
            Err(e) => {
                let text = e.to_string();
                let lower = text.to_ascii_lowercase();
                let hint = if lower.contains("rlimit") || lower.contains("crun") {
                    crate::endpoint::PODMAN_RLIMIT_FIX.to_string()
                } else if matches!(e, Error::Image { .. }) {
                    format!(
                        "import an image: `{} import ROOTFS.tar {}`, or set `image` / \
                         CLEANROOM_IMAGE to one the engine has",
                        self.shared.engine.name(),
                        self.shared.image
                    )
                } else {
                    self.shared.engine.start_hint()
                };
                Availability::no(
                    format!(
                        "{} answers but cannot run a container: {text}",
                        self.shared.engine.name()
                    ),
                    hint,
                )
            }
        }
    }

    /// Warm containers kept per spec (0: no pool).
    pub fn warm_pool_size(&self) -> usize {
        self.pool.as_ref().map_or(0, |p| p.size())
    }

    /// Containers waiting in the warm pool, over all specs.
    pub fn warm_containers(&self) -> usize {
        self.pool.as_ref().map_or(0, |p| p.idle_count())
    }
}

impl Shared {
    fn endpoint(&self) -> Result<Endpoint> {
        if let Some(e) = self.endpoint.get() {
            return Ok(e.clone());
        }
        let e = Endpoint::discover(self.engine, self.docker_bin.as_deref())?;
        Ok(self.endpoint.get_or_init(|| e).clone())
    }

    /// A fresh client: cheap, and bound to no runtime until used.
    pub(crate) fn client(&self) -> Result<(Docker, Endpoint)> {
        let ep = self.endpoint()?;
        Ok((ep.connect()?, ep))
    }

    pub(crate) fn image_for(&self, spec: &SandboxSpec) -> Result<String> {
        match &spec.rootfs {
            RootFs::Image(r) => Ok(r.clone()),
            RootFs::Host => Ok(self.image.clone()),
            other => Err(Error::Unsupported {
                backend: self.engine.name().into(),
                what: format!(
                    "rootfs `{other}`; import it as an image (`{} import ROOTFS.tar NAME`) and \
                     use the image name",
                    self.engine.name()
                ),
            }),
        }
    }

    pub(crate) async fn ensure_image_named(
        &self,
        image: &str,
        progress: impl FnMut(&str),
    ) -> Result<()> {
        if self.ready(image) {
            return Ok(());
        }
        let (docker, _) = self.client()?;
        image::ensure(&docker, self.engine, image, progress).await?;
        self.images_ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(image.to_string());
        Ok(())
    }

    fn mark_ready(&self, image: &str) {
        lock_ignoring_poison(&self.images_ready).insert(image.to_string());
    }

    pub(crate) fn ready(&self, image: &str) -> bool {
        self.images_ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(image)
    }

    pub(crate) async fn info(&self) -> Result<EngineInfo> {
        if let Some(i) = self.info.get() {
            return Ok(i.clone());
        }
        let (docker, ep) = self.client()?;
        let i = fetch_info(&docker, &ep).await?;
        Ok(self.info.get_or_init(|| i).clone())
    }

    /// [`EngineBackend::info`] from synchronous code, through the bridge.
    fn info_blocking(&self) -> Option<EngineInfo> {
        if let Some(i) = self.info.get() {
            return Some(i.clone());
        }
        let ep = self.endpoint().ok()?;
        let got = cleanroom_core::bridge::wait(async move {
            let docker = ep.connect().ok()?;
            tokio::time::timeout(Duration::from_secs(10), fetch_info(&docker, &ep))
                .await
                .ok()?
                .ok()
        })?;
        Some(self.info.get_or_init(|| got).clone())
    }

    /// `spec` under its image's config (pulled first if need be), by the
    /// rule of [`cleanroom_core::image_config`]; a named image user is left
    /// to the engine.
    pub(crate) async fn image_run(&self, spec: &SandboxSpec) -> Result<ImageRun> {
        let image = self.image_for(spec)?;
        let known = lock_ignoring_poison(&self.image_configs)
            .get(&image)
            .cloned();
        let config = match known {
            Some(c) => c,
            None => {
                let (docker, _) = self.client()?;
                // One inspect answers both "is it there" and "what is its
                // config"; only a missing image costs a pull and a second.
                let c = match image::runtime_config(&docker, self.engine, &image).await {
                    Ok(c) => c,
                    Err(_) if !self.ready(&image) => {
                        self.ensure_image_named(&image, |_| {}).await?;
                        image::runtime_config(&docker, self.engine, &image).await?
                    }
                    Err(e) => return Err(e),
                };
                self.mark_ready(&image);
                lock_ignoring_poison(&self.image_configs).insert(image, c.clone());
                c
            }
        };
        config.apply(spec, None)
    }

    /// The report for `spec` from the engine's `/info`, for containers
    /// started ahead of a run (the warm pool), outside any preamble.
    pub(crate) async fn planned(&self, spec: &SandboxSpec) -> Result<Enforcement> {
        let info = self.info().await?;
        Ok(self.plan(spec, Some(&info)))
    }

    /// Starts a one-shot container for `spec`, waiting for its command
    /// ([`crate::oneshot`]), whose report, from the preamble or
    /// [`Shared::planned`], is `enforcement`; the report comes back with
    /// what the engine actually applied.
    pub(crate) async fn start_waiting(
        &self,
        spec: &SandboxSpec,
        enforcement: Enforcement,
    ) -> Result<(Container, Enforcement)> {
        self.start_as(spec, Main::Waiter, None, enforcement).await
    }

    /// [`Shared::start`] for a run of an image with a config: the main
    /// process runs as the image's named user (which the engine resolves)
    /// and starts in its WorkingDir (which the engine creates if missing).
    async fn start_as(
        &self,
        spec: &SandboxSpec,
        main: Main<'_>,
        image_run: Option<&ImageRun>,
        enforcement: Enforcement,
    ) -> Result<(Container, Enforcement)> {
        let image = self.image_for(spec)?;
        let (docker, ep) = self.client()?;
        // Unreachable engines fail here, with the reason and a hint.
        self.info().await?;
        if !self.ready(&image) {
            self.ensure_image_named(&image, |_| {}).await?;
        }
        cleanup::reap_unstarted_once(&ep);
        // A warm pool's containers come here without the run: the rule
        // gives the same answer for a spec it already applied to.
        let computed;
        let run = match image_run {
            Some(r) => r,
            None => {
                computed = self.image_run(spec).await?;
                &computed
            }
        };
        let mut body = match main {
            Main::Idle => create_body(self.engine, spec, &image, None),
            Main::Command(cmd) => create_body(self.engine, spec, &image, Some(cmd)),
            Main::Waiter => oneshot::waiting(create_body(self.engine, spec, &image, None)),
        };
        if let Some(u) = &run.user_name {
            body.user = Some(u.clone());
        }
        if let Some(d) = &run.start_dir {
            body.working_dir = Some(d.display().to_string());
        }
        // Our syscall policy in place of the engine's default profile.
        let seccomp = crate::seccomp_profile::security_opt(self.engine)?;
        if let Some(hc) = body.host_config.as_mut() {
            hc.security_opt.get_or_insert_with(Vec::new).push(seccomp);
        }
        let leader = match (&spec.network, self.engine) {
            (Network::Pod(leader), Engine::Podman) => {
                let pid = pod::join_by_path(&docker, leader, &mut body).await?;
                Some((leader, pid))
            }
            _ => None,
        };
        let c = Container::start(&docker, &ep, body).await?;
        if let Some((leader, pid)) = leader {
            if let Err(e) = pod::check_leader(&docker, leader, pid).await {
                let _ = c.remove().await;
                return Err(e);
            }
        }
        // The limits are not read back here: a container inspect on every
        // start cost a round trip; the report follows the engine's `/info`,
        // and tests/hardening.rs reads every setting back from inspect.
        if self.engine == Engine::Podman && !spec.read_only_root {
            // Podman mounts a container's root directory r-x for everyone
            // whatever the image says, so even uid 0 (without
            // CAP_DAC_OVERRIDE) cannot create files in `/`. Its owner may
            // still chmod it: give it the usual 755, as Docker does.
            let mut req = exec_request(spec, Cmd::new("chmod").args(["755", "/"]), None);
            req.user = "0:0".into();
            req.workdir = "/".into();
            if let Err(e) = run_exec(&c.docker, c.engine(), &c.id, req, KillMode::Group).await {
                let _ = c.remove().await;
                return Err(e);
            }
        }
        Ok((c, enforcement))
    }
}

/// What a container's main process is, besides keeping it alive.
#[derive(Clone, Copy)]
enum Main<'a> {
    /// Nothing: a long-lived sandbox without a main command.
    Idle,
    /// A long-lived sandbox's main command.
    Command(&'a Cmd),
    /// A one-shot's: it waits for its one command ([`crate::oneshot`]).
    Waiter,
}

#[async_trait]
impl Backend for EngineBackend {
    fn name(&self) -> &str {
        self.shared.engine.name()
    }

    async fn availability(&self) -> Availability {
        let ep = match self.shared.endpoint() {
            Ok(ep) => ep,
            Err(e) => return Availability::no(e.to_string(), self.shared.engine.start_hint()),
        };
        let docker = match ep.connect() {
            Ok(d) => d,
            Err(e) => return Availability::no(e.to_string(), self.shared.engine.start_hint()),
        };
        let ping = tokio::time::timeout(Duration::from_secs(5), docker.ping()).await;
        match ping {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Availability::no(
                    format!(
                        "the {} engine does not answer at {} ({}): {e}",
                        self.shared.engine.name(),
                        ep.host,
                        ep.origin
                    ),
                    self.shared.engine.start_hint(),
                )
            }
            Err(_) => {
                return Availability::no(
                    format!(
                        "the {} engine at {} ({}) did not answer within 5 s",
                        self.shared.engine.name(),
                        ep.host,
                        ep.origin
                    ),
                    self.shared.engine.start_hint(),
                )
            }
        }
        let info = match self.shared.info().await {
            Ok(i) => i,
            Err(e) => return Availability::no(e.to_string(), self.shared.engine.start_hint()),
        };
        let image = &self.shared.image;
        let image_note = match image::present(&docker, self.shared.engine, image).await {
            Ok(true) => format!("default image `{image}` present"),
            Ok(false) => format!(
                "default image `{image}` not present yet: it is pulled on first use, or import \
                 it with `{} import ROOTFS.tar {image}`",
                self.shared.engine.name()
            ),
            Err(e) => format!("default image `{image}`: {e}"),
        };
        Availability::yes(format!(
            "{} {} answers at {} ({}); cgroups v{}{}; {image_note}",
            self.shared.engine.name(),
            info.server_version,
            ep.host,
            ep.origin,
            info.cgroup_version,
            if info.rootless { ", rootless" } else { "" }
        ))
    }

    fn enforcement(&self, spec: &SandboxSpec) -> Enforcement {
        let info = self.shared.info_blocking();
        self.shared.plan(spec, info.as_ref())
    }

    async fn run_prepared(
        &self,
        spec: &SandboxSpec,
        cmd: Cmd,
        sink: Option<OutputSink>,
        prepared: Prepared,
    ) -> Result<RunResult> {
        let started = Instant::now();
        let run = self.shared.image_run(spec).await?;
        let cmd = run.main_command(cmd)?;
        cmd.validate()?;
        let spec = &run.spec;
        let (c, enforcement) = match &self.pool {
            Some(pool) => pool.take(&self.shared, spec, prepared).await?,
            None => {
                let e = prepared.into_enforcement();
                self.shared
                    .start_as(spec, Main::Waiter, Some(&run), e)
                    .await?
            }
        };
        let res = async {
            let mut req = exec_request(spec, cmd, sink);
            if let Some(u) = &run.user_name {
                req.user = u.clone();
            }
            let out = if oneshot::can_send(&req) {
                oneshot::run(&c, req).await?
            } else {
                run_exec(&c.docker, c.engine(), &c.id, req, KillMode::Container).await?
            };
            let oom = spec.memory.is_some()
                && out.exit_code == 137
                && !out.timed_out
                && c.oom_kills(&spec.user.to_string()).await > 0;
            Ok(run_result(
                out,
                oom,
                started,
                self.shared.engine.name(),
                &enforcement,
            ))
        }
        .await;
        if res.is_ok() {
            // The command has ended: closing the keep-alive's stdin ends the
            // container and the engine removes it (`AutoRemove`), as
            // `docker run --rm` has its engine do. A forced removal waited
            // for here cost a kill and a removal on every run's clock.
            c.release();
        } else {
            let _ = c.remove().await;
        }
        if let Some(pool) = &self.pool {
            // Only now, so that the engine's work for the next container
            // does not compete with this run's on a small machine.
            pool.refill(&self.shared, spec);
        }
        res
    }

    async fn create_prepared(
        &self,
        spec: &SandboxSpec,
        main: Option<Cmd>,
        prepared: Prepared,
    ) -> Result<Box<dyn Sandbox>> {
        let run = self.shared.image_run(spec).await?;
        let main = main.map(|m| run.main_command(m)).transpose()?;
        let (container, enforcement) = self
            .shared
            .start_as(
                &run.spec,
                main.as_ref().map_or(Main::Idle, Main::Command),
                Some(&run),
                prepared.into_enforcement(),
            )
            .await?;
        Ok(Box::new(EngineSandbox {
            container,
            enforcement,
            oom_seen: Mutex::new(0),
            final_logs: Mutex::new(None),
            start_dir: run.start_dir.clone(),
            user_name: run.user_name.clone(),
            spec: run.spec,
        }))
    }

    async fn gc(&self) -> Result<Vec<cleanroom_core::Removed>> {
        let (docker, ep) = self.shared.client()?;
        let mut removed = cleanup::gc(&docker, ep.engine.name()).await?;
        removed.extend(crate::detached::gc_dead(&docker, ep.engine).await?);
        Ok(removed)
    }

    async fn create_detached_prepared(
        &self,
        spec: &SandboxSpec,
        main: Option<Cmd>,
        options: DetachOptions,
        prepared: Prepared,
    ) -> Result<Box<dyn Detached>> {
        crate::detached::create(&self.shared, spec, main, options, prepared).await
    }

    async fn list(&self, all: bool) -> Result<Vec<SandboxInfo>> {
        crate::detached::list(&self.shared, all).await
    }

    async fn attach(&self, name: &str) -> Result<Option<Box<dyn Detached>>> {
        crate::detached::attach(&self.shared, name).await
    }

    async fn remove_session(&self) -> Result<Vec<String>> {
        EngineBackend::remove_session(self).await
    }

    async fn can_honour(&self, spec: &SandboxSpec) -> std::result::Result<(), String> {
        let image = self.shared.image_for(spec).map_err(|e| e.to_string())?;
        let (docker, ep) = self.shared.client().map_err(|e| e.to_string())?;
        match crate::image::present(&docker, ep.engine, &image).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "image `{image}` is not in the {} engine (it would have to be pulled)",
                ep.engine.name()
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}

fn lock_ignoring_poison<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
