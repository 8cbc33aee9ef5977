//! The native backend: runs each sandbox directly on Linux kernel primitives,
//! with no daemon, no setuid helper and no binary of ours inside.
//!
//! A sandbox is one fork of the caller ([`spawn`], done by a
//! [`fork_server`] for a multi-threaded caller), which creates the user,
//! pid, mount, uts, ipc, net and cgroup namespaces ([`namespaces`]) and
//! starts the sandbox's PID 1 ([`init`]) on its own memory ([`clone`]). PID 1
//! builds the root filesystem and pivots into it ([`setup`], [`mounts`],
//! [`rootfs`]), drops every privilege ([`capabilities`]), starts the run's
//! command at once when the plan carries one, and runs commands for the
//! caller over a socket ([`protocol`], [`client`], [`exec`]). It works the
//! same as root and as an unprivileged user: the caller's uid is mapped to
//! the spec's user in a fresh user namespace.

pub mod capabilities;
pub mod cgroups;
pub mod client;
pub mod clone;
pub mod copy;
pub mod detached;
pub mod exec;
pub mod fdpass;
pub mod fork_server;
pub mod idmap;
pub mod init;
pub mod mounts;
pub mod namespaces;
pub mod netns_pool;
pub mod plan;
pub mod proc_stat;
pub mod protocol;
pub mod publish;
pub mod rlimits;
pub mod rootfs;
pub mod sandbox;
pub mod seccomp;
pub mod setup;
pub mod spawn;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use async_trait::async_trait;
use cleanroom_core::{
    Availability, Backend, Cmd, Constraint, Enforcement, Error, ImageRun, Network, OutputSink,
    Prepared, Result, RunResult, Sandbox, SandboxSpec,
};

pub use sandbox::NativeSandbox;

use client::{CgroupPlan, Instance};
use plan::Plan;

const NAME: &str = "native";

/// The native Linux backend. Cheap to create; all state is per sandbox.
#[derive(Clone, Debug, Default)]
pub struct NativeBackend {
    _private: (),
}

impl NativeBackend {
    pub fn new() -> Self {
        NativeBackend::default()
    }
}

/// What the native backend enforces for `spec`.
pub fn native_enforcement(spec: &SandboxSpec) -> Enforcement {
    use Constraint::*;
    let mut e = Enforcement::new(NAME);
    for c in [
        FilesystemIsolation,
        ReadOnlyRoot,
        User,
        Capabilities,
        NoNewPrivs,
        PidNamespace,
        Hostname,
        EnvIsolation,
        Timeout,
        OutputLimit,
        Mounts,
    ] {
        e.enforced(c);
    }
    match spec.network {
        Network::Host => e.not_enforced(
            NetworkIsolation,
            "network = host shares the caller's network",
        ),
        _ => e.enforced(NetworkIsolation),
    };
    match default_seccomp() {
        Ok(_) => e.enforced(Seccomp),
        Err(why) => e.not_enforced(
            Seccomp,
            format!("the default seccomp filter could not be built: {why}"),
        ),
    };
    let support = cgroups::probe(&limits_of(spec));
    for (c, controller) in [
        (MemoryLimit, cgroups::Controller::Memory),
        (CpuLimit, cgroups::Controller::Cpu),
        (PidsLimit, cgroups::Controller::Pids),
    ] {
        match support.get(controller) {
            Some(l) if l.enforceable => e.enforced(c),
            Some(l) => e.not_enforced(c, l.reason.clone()),
            None => e.not_enforced(c, "not requested"),
        };
    }
    // The file and process limits every backend sets, unless this caller's
    // own hard limits are lower (raising them needs CAP_SYS_RESOURCE).
    for x in rlimits::effective(&rlimits::Rlimits::sandbox_default())
        .unwrap_or_default()
        .iter()
        .filter(|x| x.clamped())
    {
        e.notes.push(format!(
            "{} is {} here, not {} as on the other backends: the caller's hard limit",
            x.resource.name(),
            x.effective,
            x.requested
        ));
    }
    match spec.network {
        Network::Host => e.not_enforced(
            PublishPorts,
            "network = host: the sandbox's ports are the host's own, nothing to publish",
        ),
        _ => e.enforced(PublishPorts),
    };
    let mut e = e.restrict_to(spec).with_tmpfs(spec);
    e.user_mapping = idmap::Mapping::for_spec(spec)
        .ok()
        .map(|m| m.describe(spec.user));
    e
}

/// The cgroup limits a spec asks for.
fn limits_of(spec: &SandboxSpec) -> cgroups::Limits {
    cgroups::Limits {
        memory: spec.memory,
        cpus: spec.cpus,
        pids: spec.pids,
    }
}

/// The limits of `spec` that can be enforced here.
fn enforceable_limits(spec: &SandboxSpec) -> cgroups::Limits {
    let wanted = limits_of(spec);
    cgroups::probe(&wanted).enforceable(&wanted)
}

/// The sandbox's cgroup with the limits that can be enforced here, or none
/// when no limit is asked for (or none can be enforced, which the report says).
fn cgroup_for(spec: &SandboxSpec) -> Result<Option<cgroups::Cgroup>> {
    let limits = enforceable_limits(spec);
    if !limits.any() {
        return Ok(None);
    }
    cgroups::Cgroup::create(&limits)
        .map(Some)
        .map_err(|e| Error::io("creating the sandbox's cgroup for its limits", e))
}

/// The default seccomp filter, compiled once per process.
pub fn default_seccomp() -> std::result::Result<&'static seccomp::Filter, String> {
    static FILTER: OnceLock<std::result::Result<seccomp::Filter, String>> = OnceLock::new();
    FILTER
        .get_or_init(|| seccomp::default_filter().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

/// What [`resolve`] works out: the report, the init's plan, the sandbox's
/// cgroup and the pooled network namespace it was lent, if any.
type Resolved = (Enforcement, Plan, CgroupPlan, Option<netns_pool::Lease>);

/// Resolves `run` on the host (off the async threads: a tarball may be
/// unpacked) into the init's plan and the sandbox's cgroup, and adds the
/// user mapping the plan chose to the report. Runs after the preamble
/// ([`Backend::prepare`]). Never pooled: other sandboxes may join this
/// one's network (a pod).
async fn resolve(
    run: &ImageRun,
    enforcement: Enforcement,
) -> Result<(Enforcement, Plan, CgroupPlan)> {
    let (enforcement, plan, cgroup, _) = resolve_with(run, enforcement, false).await?;
    Ok((enforcement, plan, cgroup))
}

/// [`resolve`] for a `one_shot` run, which, without a network of its own,
/// may be lent a pooled network namespace ([`netns_pool`]).
async fn resolve_with(
    run: &ImageRun,
    mut enforcement: Enforcement,
    one_shot: bool,
) -> Result<Resolved> {
    let spec = &run.spec;
    let pod = match &spec.network {
        // A sandbox of this process, else a named one of this user's.
        Network::Pod(id) => match sandbox::pod(id) {
            Some(pod) => Some(pod),
            None => detached::pod::join(id).await?,
        },
        _ => None,
    };
    let owned = spec.clone();
    let start_dir = run.start_dir.clone();
    let (plan, cgroup, lease) = cleanroom_core::bridge::blocking(move || -> Result<_> {
        // Making the plan may make the sandbox's user namespace (or a
        // pooled network namespace), which takes a child of this process:
        // not on a thread the caller's runtime needs meanwhile.
        let mut plan = Plan::new(&owned, pod, start_dir)?;
        let lease = match plan.network {
            plan::NetPlan::Isolated if one_shot => netns_pool::lease().map(|(lease, join)| {
                plan.network = plan::NetPlan::Pooled(join);
                lease
            }),
            _ => None,
        };
        // A one-shot run's cgroup is made after the fork, while the first
        // child creates the namespaces (see `Plan::cgroup_later`).
        if one_shot {
            let limits = enforceable_limits(&owned);
            if !limits.any() {
                return Ok((plan, CgroupPlan::Made(None), lease));
            }
            plan.cgroup_later = true;
            return Ok((plan, CgroupPlan::Later(limits), lease));
        }
        let cgroup = cgroup_for(&owned)?;
        if let Some(cg) = &cgroup {
            plan.cgroup = Some(
                cg.open_procs()
                    .map_err(|e| Error::io("opening the sandbox cgroup's procs files", e))?,
            );
        }
        Ok((plan, CgroupPlan::Made(cgroup), lease))
    })
    .await
    .map_err(|e| Error::backend(NAME, format!("preparing the sandbox: {e}")))??;
    enforcement.user_mapping = Some(plan.user_mapping.clone());
    Ok((enforcement, plan, cgroup, lease))
}

/// `spec` under its image's config (read off the async threads: the
/// image's layers may be merged for its accounts).
async fn image_run(spec: &SandboxSpec) -> Result<ImageRun> {
    if !matches!(spec.rootfs, cleanroom_core::RootFs::Image(_)) {
        return Ok(ImageRun::plain(spec));
    }
    let owned = spec.clone();
    cleanroom_core::bridge::blocking(move || rootfs::image_run(&owned))
        .await
        .map_err(|e| Error::backend(NAME, format!("reading the image's config: {e}")))?
}

/// Why user namespaces do not work here, and what to change.
fn userns_hint() -> String {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .ok()
    };
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1, as on Ubuntu 24.04): run `sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0` or add an AppArmor profile allowing `userns` for this program".into();
    }
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return "user namespaces are disabled (user.max_user_namespaces=0): run `sudo sysctl user.max_user_namespaces=15000`".into();
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0): run `sudo sysctl kernel.unprivileged_userns_clone=1`".into();
    }
    "enable user namespaces in the kernel (CONFIG_USER_NS) or, in a container, allow unshare/clone of user namespaces (seccomp profile)".into()
}

#[async_trait]
impl Backend for NativeBackend {
    fn name(&self) -> &str {
        NAME
    }

    async fn availability(&self) -> Availability {
        static PROBE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
        let probe = match PROBE.get() {
            Some(p) => p.clone(),
            None => {
                let r = spawn::on_spawner(spawn::probe_userns)
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r);
                PROBE.get_or_init(|| r).clone()
            }
        };
        match probe {
            Ok(()) => Availability::yes("user namespaces work here (probed by creating one)"),
            Err(why) => Availability::no(
                format!("cannot create a user namespace: {why}"),
                userns_hint(),
            ),
        }
    }

    fn enforcement(&self, spec: &SandboxSpec) -> Enforcement {
        native_enforcement(spec)
    }

    async fn run_prepared(
        &self,
        spec: &SandboxSpec,
        cmd: Cmd,
        sink: Option<OutputSink>,
        prepared: Prepared,
    ) -> Result<RunResult> {
        let run = image_run(spec).await?;
        let cmd = run.main_command(cmd)?;
        let spec = &run.spec;
        let (enforcement, mut plan, cgroup, lease) =
            resolve_with(&run, prepared.into_enforcement(), true).await?;
        // Without published ports, the command travels in the plan and the
        // init starts it the moment it is ready (no round trip). With them,
        // the proxies are in place before the command starts.
        let mut carried = None;
        if spec.publish.is_empty() {
            let exec::Prepared {
                request,
                theirs,
                ours,
            } = exec::Prepared::new(spec, &cmd)?;
            plan.first_exec = Some(plan::FirstExec {
                msg: request.message(client::FIRST_EXEC, None),
                stdio: theirs,
                last: true,
            });
            carried = Some(ours);
        }
        let inst = Instance::start(plan, cgroup).await?;
        inst.lend_network(lease);
        let inst = std::sync::Arc::new(inst);
        let (_, proxies) = publish::publish(&inst, &spec.publish).await?;
        let started = match (carried, inst.take_first_exec()) {
            (Some(ours), Some(rx)) => ours.attach(client::FIRST_EXEC, rx, sink),
            _ => exec::start(&inst, spec, &cmd, sink).await,
        };
        let mut running = match started {
            Ok(r) => r,
            Err(e) => {
                inst.shutdown().await;
                return Err(e);
            }
        };
        let exit = running.wait(&inst).await;
        let oom = inst.oom_killed();
        for p in proxies {
            p.abort();
        }
        // Whatever the command left running dies with the sandbox, before
        // the output is collected.
        inst.shutdown().await;
        match exit {
            Ok(x) => Ok(running.finish(x, enforcement, oom).await),
            Err(e) => {
                running.abort();
                Err(e)
            }
        }
    }

    async fn create_prepared(
        &self,
        spec: &SandboxSpec,
        main: Option<Cmd>,
        prepared: Prepared,
    ) -> Result<Box<dyn Sandbox>> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let run = image_run(spec).await?;
        let main = main.map(|m| run.main_command(m)).transpose()?;
        let spec = &run.spec;
        let (enforcement, plan, cgroup) = resolve(&run, prepared.into_enforcement()).await?;
        let inst = Instance::start(plan, cgroup).await?;
        let id = format!(
            "native-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut sb = NativeSandbox::start(id, spec.clone(), enforcement, inst, main).await?;
        sb.start_dir = run.start_dir;
        Ok(Box::new(sb))
    }

    async fn create_detached_prepared(
        &self,
        spec: &SandboxSpec,
        main: Option<Cmd>,
        options: cleanroom_core::DetachOptions,
        prepared: Prepared,
    ) -> Result<Box<dyn cleanroom_core::Detached>> {
        detached::create(spec, main, options, prepared).await
    }

    async fn list(&self, all: bool) -> Result<Vec<cleanroom_core::SandboxInfo>> {
        tokio::task::spawn_blocking(move || detached::list(all))
            .await
            .map_err(|e| Error::backend(NAME, format!("listing sandboxes: {e}")))?
    }

    async fn attach(&self, name: &str) -> Result<Option<Box<dyn cleanroom_core::Detached>>> {
        detached::attach(name)
    }

    async fn can_honour(&self, spec: &SandboxSpec) -> std::result::Result<(), String> {
        let spec = spec.clone();
        tokio::task::spawn_blocking(move || rootfs::available(&spec))
            .await
            .map_err(|e| format!("checking the rootfs: {e}"))?
    }

    async fn gc(&self) -> Result<Vec<cleanroom_core::Removed>> {
        let mut removed = tokio::task::spawn_blocking(detached::gc)
            .await
            .map_err(|e| Error::backend(NAME, format!("sandbox gc: {e}")))??;
        removed.extend(rootfs::gc());
        let report = tokio::task::spawn_blocking(cgroups::gc)
            .await
            .map_err(|e| Error::backend(NAME, format!("cgroup gc: {e}")))?
            .map_err(|e| Error::io("removing cgroups of dead callers", e))?;
        removed.extend(report.removed.into_iter().map(|c| {
            cleanroom_core::Removed::one(
                cleanroom_core::Removed::CGROUP,
                format!("native: removed cgroup {c}"),
            )
        }));
        for kept in report.kept {
            tracing::warn!("native gc kept {kept}");
        }
        Ok(removed)
    }
}
