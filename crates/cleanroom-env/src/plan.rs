//! What `up` would do, decided before anything starts: the start levels,
//! each service's sandbox spec with its wiring (`D_HOST`/`D_PORT`, the
//! service names in `/etc/hosts`), and what the backend will enforce.
//! Pure: nothing here starts or writes anything.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use cleanroom::{Backend, Enforcement, Mount, Network, PortPublish, RootFs, SandboxSpec, User};

use crate::model::{Condition, Environment, Healthcheck, Probe, Service, VolumeSource};
use crate::problem::Problems;
use crate::EnvError;

/// The label every sandbox of an environment carries, holding its name
/// (`io.cleanroom.` keys are the backends' own).
pub const ENV_LABEL: &str = "cleanroom-env";
/// The label holding the service's name.
pub const SERVICE_LABEL: &str = "cleanroom-env.service";
/// The service name the pod's idle sandbox takes (it holds the network
/// namespace every service joins, and the published ports).
pub const POD_SERVICE: &str = "pod";

/// Everything `up` needs, worked out.
#[derive(Clone, Debug)]
pub struct Plan {
    pub env: String,
    pub backend: String,
    /// Service names by start level.
    pub levels: Vec<Vec<String>>,
    /// In start order.
    pub services: Vec<PlannedService>,
    /// The pod's idle sandbox: the shared network namespace and the ports
    /// published to the host.
    pub pod: PlannedSandbox,
    /// Where the environment keeps its `/etc/hosts` and named volumes.
    pub state_dir: PathBuf,
    /// The named volumes, each a directory under `state_dir`.
    pub volumes: Vec<String>,
    /// `/etc/hosts` as every sandbox of the environment sees it.
    pub hosts: String,
}

/// One sandbox to create.
#[derive(Clone, Debug)]
pub struct PlannedSandbox {
    /// `ENV-SERVICE`, as `cleanroom ps` shows it.
    pub sandbox: String,
    pub spec: SandboxSpec,
    pub enforcement: Enforcement,
}

#[derive(Clone, Debug)]
pub struct PlannedService {
    pub service: Service,
    pub level: usize,
    pub sandbox: PlannedSandbox,
    /// The main command (entrypoint and command); `None` idles.
    pub argv: Option<Vec<String>>,
    /// The variables wiring adds (`REDIS_HOST`, `REDIS_PORT`, ...).
    pub wiring: BTreeMap<String, String>,
}

impl Plan {
    pub fn service(&self, name: &str) -> Option<&PlannedService> {
        self.services.iter().find(|s| s.service.name == name)
    }

    /// The plan as `cleanroom plan` prints it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "environment {} on {} ({} services, one pod)",
            self.env,
            self.backend,
            self.services.len()
        );
        for (i, level) in self.levels.iter().enumerate() {
            let _ = writeln!(out, "level {i}: {}", level.join(", "));
        }
        for s in &self.services {
            let svc = &s.service;
            let _ = writeln!(
                out,
                "\n{} (sandbox {}, level {})",
                svc.name, s.sandbox.sandbox, s.level
            );
            let _ = writeln!(
                out,
                "  image: {}",
                svc.image
                    .as_deref()
                    .unwrap_or("(configured root filesystem)")
            );
            if let Some(argv) = &s.argv {
                let _ = writeln!(
                    out,
                    "  command: {}",
                    cleanroom::Cmd::from(argv.clone()).display()
                );
            }
            for d in &svc.depends_on {
                let _ = writeln!(out, "  waits for: {} ({})", d.service, d.condition.name());
            }
            if let Some(h) = &svc.healthcheck {
                let _ = writeln!(
                    out,
                    "  healthcheck: {} every {}, {} retries",
                    describe_probe(&h.test),
                    crate::model::format_duration(h.interval),
                    h.retries
                );
            }
            if !svc.ports.is_empty() {
                let ports: Vec<String> = svc.ports.iter().map(|p| p.to_string()).collect();
                let _ = writeln!(out, "  ports: {}", ports.join(", "));
            }
            for (k, v) in &s.wiring {
                let _ = writeln!(out, "  wiring: {k}={v}");
            }
            if svc.restart != crate::model::Restart::No {
                let _ = writeln!(out, "  restart: {}", svc.restart);
            }
            let enforced: Vec<String> = s
                .sandbox
                .enforcement
                .entries
                .iter()
                .filter(|e| e.status == cleanroom::Status::Enforced)
                .map(|e| e.constraint.to_string())
                .collect();
            let _ = writeln!(
                out,
                "  enforced: {}",
                if enforced.is_empty() {
                    "nothing".to_string()
                } else {
                    enforced.join(", ")
                }
            );
            for (c, reason) in s.sandbox.enforcement.unenforced() {
                let _ = writeln!(out, "  NOT enforced: {c} ({reason})");
            }
        }
        let names: Vec<&str> = self
            .services
            .iter()
            .map(|s| s.service.name.as_str())
            .collect();
        let _ = writeln!(
            out,
            "\nnames resolvable in every sandbox: {} (127.0.0.1, one network namespace)",
            names.join(", ")
        );
        out
    }
}

/// What a probe runs, for messages.
pub fn describe_probe(p: &Probe) -> String {
    match p {
        Probe::Cmd(argv) => format!("`{}`", cleanroom::Cmd::from(argv.clone()).display()),
        Probe::Shell(s) => format!("`sh -c {s:?}`"),
        Probe::Port(p) => format!("TCP port {p} listening"),
        Probe::Log(re) => format!("output matching /{re}/"),
    }
}

/// The directory an environment keeps its files in.
pub fn env_state_dir(env: &str) -> Result<PathBuf, EnvError> {
    Ok(cleanroom::detached::state_dir()?.join("env").join(env))
}

/// Plans `env` (only `only` and their dependencies when given) on
/// `backend`, each service's spec made from `base`.
pub fn plan(
    env: &Environment,
    only: &[String],
    backend: &dyn Backend,
    base: &SandboxSpec,
) -> Result<Plan, EnvError> {
    let state_dir = env_state_dir(&env.name)?;
    plan_in(env, only, backend, base, &state_dir)
}

/// [`plan`] with the state directory given (tests use a temporary one).
pub fn plan_in(
    env: &Environment,
    only: &[String],
    backend: &dyn Backend,
    base: &SandboxSpec,
    state_dir: &Path,
) -> Result<Plan, EnvError> {
    let mut problems = Problems::default();
    for name in only {
        if env.service(name).is_none() {
            let hint = crate::did_you_mean(name, env.services.iter().map(|s| s.name.as_str()))
                .map(|n| format!("; did you mean `{n}`?"))
                .unwrap_or_default();
            return Err(EnvError::Run(format!(
                "no service `{name}` in environment `{}`{hint}",
                env.name
            )));
        }
    }
    let selected: Vec<String> = if only.is_empty() {
        env.services.iter().map(|s| s.name.clone()).collect()
    } else {
        crate::graph::with_dependencies(env, only)
    };
    let mut sub = env.clone();
    sub.services.retain(|s| selected.contains(&s.name));
    let Some(levels) = crate::graph::levels(&sub, &mut problems) else {
        return Err(EnvError::Problems(problems.list));
    };
    check_ports(&sub, &mut problems);
    let hosts = hosts_file(&sub);
    let hosts_path = state_dir.join("hosts");
    let pod_name = sandbox_name(&env.name, POD_SERVICE);
    let mut services = Vec::new();
    for (level, names) in levels.0.iter().enumerate() {
        for name in names {
            let Some(svc) = sub.service(name) else {
                continue;
            };
            for d in &svc.depends_on {
                if let Some(dep) = sub.service(&d.service) {
                    if let Err(m) = check_condition(dep, d.condition) {
                        problems.error(d.at.clone(), format!("service `{}` {m}", svc.name));
                    }
                }
            }
            let wiring = wiring(&sub, svc);
            match service_spec(svc, base, &wiring, &hosts_path, state_dir, &pod_name) {
                Ok(spec) => {
                    let enforcement = backend.enforcement(&spec);
                    services.push(PlannedService {
                        service: svc.clone(),
                        level,
                        sandbox: PlannedSandbox {
                            sandbox: sandbox_name(&env.name, &svc.name),
                            spec,
                            enforcement,
                        },
                        argv: svc.argv(),
                        wiring,
                    });
                }
                Err(message) => problems.error(svc.at.clone(), message),
            }
        }
    }
    if problems.has_errors() {
        return Err(EnvError::Problems(problems.list));
    }
    let mut pod_spec = base.clone();
    pod_spec.network = Network::None;
    pod_spec.mounts = vec![Mount::read_only(&hosts_path, "/etc/hosts")];
    pod_spec.timeout = None;
    pod_spec.publish = sub
        .services
        .iter()
        .flat_map(|s| s.ports.iter())
        .filter_map(|p| {
            p.host.map(|h| PortPublish {
                sandbox_port: p.container,
                host_port: h,
            })
        })
        .collect();
    let pod_enforcement = backend.enforcement(&pod_spec);
    Ok(Plan {
        env: env.name.clone(),
        backend: backend.name().to_string(),
        levels: levels.0,
        services,
        pod: PlannedSandbox {
            sandbox: pod_name,
            spec: pod_spec,
            enforcement: pod_enforcement,
        },
        state_dir: state_dir.to_path_buf(),
        volumes: env.volumes.clone(),
        hosts,
    })
}

/// `ENV-SERVICE`, as compose names containers (without the replica number).
pub fn sandbox_name(env: &str, service: &str) -> String {
    format!("{env}-{service}")
}

/// Services share one network namespace, so two cannot listen on one
/// port: unlike compose, where each has its own address.
fn check_ports(env: &Environment, problems: &mut Problems) {
    let mut seen: BTreeMap<u16, &str> = BTreeMap::new();
    for s in &env.services {
        for p in &s.ports {
            if let Some(other) = seen.insert(p.container, &s.name) {
                if other != s.name {
                    problems.error(
                        s.at.clone(),
                        format!(
                            "services `{other}` and `{}` both listen on port {}: the services of an environment share one network namespace (one pod), so each port can be used once; change one of them",
                            s.name, p.container
                        ),
                    );
                }
            }
        }
    }
}

/// `127.0.0.1 localhost SERVICE...`: every service name resolves to the
/// shared loopback.
fn hosts_file(env: &Environment) -> String {
    hosts_for(env.services.iter().map(|s| s.name.as_str()))
}

/// The `/etc/hosts` of a pod whose members are `names`: each resolves to
/// the shared loopback (the test runner's services use it too).
pub fn hosts_for<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let mut all = vec!["localhost"];
    all.extend(names);
    format!(
        "127.0.0.1\t{}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        all.join(" ")
    )
}

/// A shared `/etc/hosts` for `names`, named by its content (`hosts/KEY`):
/// written once and reused, never a temporary file, so a caller killed
/// mid-test leaves nothing behind in TMPDIR. Kept in the user's cache, else
/// (a HOME that is not theirs to write, as for `nobody`) in the private
/// per-user state directory.
pub fn hosts_file_for<'a>(names: impl IntoIterator<Item = &'a str>) -> std::io::Result<PathBuf> {
    let text = hosts_for(names);
    match shared_file(&cleanroom::paths::cache_dir("hosts"), &text) {
        Ok(path) => Ok(path),
        Err(_) => {
            let state = cleanroom::detached::state_dir().map_err(std::io::Error::other)?;
            shared_file(&state.join("hosts"), &text)
        }
    }
}

/// `dir/KEY` holding `text`, written (atomically) unless already there.
fn shared_file(dir: &std::path::Path, text: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let key = cleanroom::paths::cache_key(text.as_bytes());
    let path = dir.join(&key);
    if !path.is_file() {
        let tmp = dir.join(format!(".{key}.{}", std::process::id()));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(path)
}

/// `D_HOST` (the name, which the pod's `/etc/hosts` resolves) and `D_PORT`
/// (the first declared port) for each `(name, first port)`.
pub fn wiring_vars<'a>(
    deps: impl IntoIterator<Item = (&'a str, Option<u16>)>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, port) in deps {
        let prefix: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        out.insert(format!("{prefix}_HOST"), name.to_string());
        if let Some(p) = port {
            out.insert(format!("{prefix}_PORT"), p.to_string());
        }
    }
    out
}

/// For each dependency D: `D_HOST` (its name, which `/etc/hosts` resolves
/// to the pod's loopback) and `D_PORT` (its first declared port).
pub fn wiring(env: &Environment, svc: &Service) -> BTreeMap<String, String> {
    wiring_vars(
        svc.depends_on
            .iter()
            .filter_map(|d| env.service(&d.service))
            .map(|dep| (dep.name.as_str(), dep.ports.first().map(|p| p.container))),
    )
}

/// The sandbox spec of one service: the configured spec with its image,
/// environment (wiring under what the service sets itself), user, working
/// directory, mounts, and the pod's network.
fn service_spec(
    svc: &Service,
    base: &SandboxSpec,
    wiring: &BTreeMap<String, String>,
    hosts: &Path,
    state_dir: &Path,
    pod: &str,
) -> Result<SandboxSpec, String> {
    let mut spec = base.clone();
    if let Some(image) = &svc.image {
        spec.rootfs = image
            .parse::<RootFs>()
            .map_err(|e| format!("service `{}`: {e}", svc.name))?;
    }
    spec.env.extend(wiring.clone());
    spec.env.extend(svc.env.clone());
    if let Some(u) = &svc.user {
        spec.user = u
            .parse::<User>()
            .map_err(|e| format!("service `{}`: {e}", svc.name))?;
    }
    if let Some(w) = &svc.working_dir {
        spec.workdir = w.clone();
    }
    // A service runs until stopped: the configured per-run timeout is for commands.
    spec.timeout = None;
    spec.mounts.push(Mount::read_only(hosts, "/etc/hosts"));
    for v in &svc.volumes {
        let source = match &v.source {
            VolumeSource::Bind(p) => p.clone(),
            VolumeSource::Named(n) => state_dir.join("volumes").join(n),
        };
        spec.mounts.push(if v.read_only {
            Mount::read_only(source, &v.target)
        } else {
            Mount::read_write(source, &v.target)
        });
    }
    // A caller on the host network (a test that asked for it) keeps it.
    if spec.network != Network::Host {
        spec.network = Network::Pod(pod.to_string());
    }
    spec.publish.clear();
    Ok(spec)
}

/// Whether `condition` on `dep` can ever be met.
pub fn check_condition(dep: &Service, condition: Condition) -> Result<(), String> {
    if condition == Condition::Healthy && dep.healthcheck.is_none() {
        return Err(format!(
            "waits for `{}` to be healthy, but `{}` has no healthcheck",
            dep.name, dep.name
        ));
    }
    Ok(())
}

/// How long a health check may take to pass before `up` gives up: the start
/// period, then `retries` probes an interval apart, each up to its timeout.
pub fn health_deadline(h: &Healthcheck) -> std::time::Duration {
    let by_retries = h.start_period + (h.interval + h.timeout) * (h.retries.max(1));
    h.deadline.map_or(by_retries, |d| d.min(by_retries))
}
