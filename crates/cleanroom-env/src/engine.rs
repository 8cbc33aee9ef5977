//! Bringing a planned environment up and down over Cleanroom's named
//! sandboxes: the pod first, then each level in parallel once its
//! dependencies meet their conditions; on failure, what blocked and why,
//! and everything this `up` started is removed. Nothing of ours keeps
//! running afterwards but the sandboxes themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cleanroom::{Backend, Cmd, DetachOptions, Network, SandboxInfo, SandboxState};
use tokio::task::JoinSet;

use crate::health::{log_text, not_running, wait_healthy};
use crate::model::Condition;
use crate::plan::{Plan, PlannedService, ENV_LABEL, POD_SERVICE, SERVICE_LABEL};
use crate::EnvError;

/// How many log lines a failed start shows of the blocking service.
pub const LOG_TAIL: usize = 20;
/// How long `stop` gives a service to exit after SIGTERM (compose's default).
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How soon a one-shot service's exit is first checked for again; each
/// later check waits twice as long, up to [`POLL`].
const FIRST_POLL: Duration = Duration::from_millis(5);
/// How often a one-shot service's exit is checked for, at most.
const POLL: Duration = Duration::from_millis(100);

/// Where `up` says what it does (`creating redis`, `redis is healthy`).
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// The sandboxes of environment `env` (all of them with `all`, else the
/// running ones), from the labels every one carries.
pub async fn sandboxes(
    backend: &dyn Backend,
    env: Option<&str>,
    all: bool,
) -> Result<Vec<SandboxInfo>, EnvError> {
    let mut list: Vec<SandboxInfo> = backend
        .list(all)
        .await?
        .into_iter()
        .filter(|s| match (env, s.labels.get(ENV_LABEL)) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(want), Some(have)) => want == have,
        })
        .collect();
    list.sort_by(|a, b| {
        (a.labels.get(ENV_LABEL), a.created, &a.name).cmp(&(
            b.labels.get(ENV_LABEL),
            b.created,
            &b.name,
        ))
    });
    Ok(list)
}

/// The service a sandbox of an environment runs (`pod` for the pod's own).
pub fn service_of(info: &SandboxInfo) -> &str {
    info.labels
        .get(SERVICE_LABEL)
        .map(String::as_str)
        .unwrap_or("")
}

fn labels(env: &str, service: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (ENV_LABEL.to_string(), env.to_string()),
        (SERVICE_LABEL.to_string(), service.to_string()),
    ])
}

/// Brings `plan` up: returns when every service has started and every
/// dependency condition was met, and with `wait` also when every service
/// with a health check is healthy (`up -d`).
pub async fn up(
    backend: Arc<dyn Backend>,
    plan: &Plan,
    wait: bool,
    progress: Progress,
) -> Result<(), EnvError> {
    prepare_state(plan)?;
    let existing: BTreeMap<String, SandboxInfo> =
        sandboxes(backend.as_ref(), Some(&plan.env), true)
            .await?
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
    let mut created: Vec<String> = Vec::new();
    let result = up_inner(&backend, plan, wait, &progress, &existing, &mut created).await;
    if let Err(e) = result {
        if !created.is_empty() {
            progress(&format!(
                "removing what this start created: {}",
                created.join(", ")
            ));
            for name in created.iter().rev() {
                if let Ok(Some(s)) = backend.attach(name).await {
                    let _ = s.remove(true).await;
                }
            }
        }
        return Err(e);
    }
    Ok(())
}

async fn up_inner(
    backend: &Arc<dyn Backend>,
    plan: &Plan,
    wait: bool,
    progress: &Progress,
    existing: &BTreeMap<String, SandboxInfo>,
    created: &mut Vec<String>,
) -> Result<(), EnvError> {
    let pod_id = match existing.get(&plan.pod.sandbox) {
        Some(info) if info.state == SandboxState::Running => info.id.clone(),
        other => {
            if other.is_some() {
                remove_named(backend.as_ref(), &plan.pod.sandbox).await?;
            }
            let options = DetachOptions {
                name: plan.pod.sandbox.clone(),
                labels: labels(&plan.env, POD_SERVICE),
            };
            let pod = backend
                .create_detached(&plan.pod.spec, None, options)
                .await
                .map_err(|e| {
                    EnvError::Run(format!(
                        "creating the pod of environment `{}`: {e}",
                        plan.env
                    ))
                })?;
            created.push(plan.pod.sandbox.clone());
            pod.info().id.clone()
        }
    };
    let mut met: BTreeSet<(String, Condition)> = BTreeSet::new();
    let max_level = plan.services.iter().map(|s| s.level).max().unwrap_or(0);
    for level in 0..=max_level {
        let members: Vec<&PlannedService> =
            plan.services.iter().filter(|s| s.level == level).collect();
        // Conditions this level waits for, each checked once, in parallel.
        let mut needed: BTreeMap<(String, Condition), String> = BTreeMap::new();
        for s in &members {
            for d in &s.service.depends_on {
                if plan.service(&d.service).is_some()
                    && !met.contains(&(d.service.clone(), d.condition))
                {
                    needed
                        .entry((d.service.clone(), d.condition))
                        .or_insert_with(|| s.service.name.clone());
                }
            }
        }
        wait_conditions(backend, plan, &needed, progress).await?;
        met.extend(needed.into_keys());
        let mut starts = JoinSet::new();
        for s in members {
            if let Some(info) = existing.get(&s.sandbox.sandbox) {
                if info.state == SandboxState::Running {
                    progress(&format!("{} is already running", s.service.name));
                    continue;
                }
                remove_named(backend.as_ref(), &s.sandbox.sandbox).await?;
            }
            let backend = backend.clone();
            let s = s.clone();
            let env = plan.env.clone();
            let pod_id = pod_id.clone();
            progress(&format!("starting {}", s.service.name));
            starts.spawn(async move {
                let r = start_service(backend.as_ref(), &env, &s, &pod_id).await;
                (s.sandbox.sandbox.clone(), r)
            });
        }
        let mut first_error = None;
        while let Some(joined) = starts.join_next().await {
            match joined {
                Ok((name, Ok(()))) => created.push(name),
                Ok((_, Err(e))) => first_error = first_error.or(Some(e)),
                Err(e) => {
                    first_error =
                        first_error.or(Some(EnvError::Run(format!("a start task failed: {e}"))))
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
    }
    if wait {
        let mut needed = BTreeMap::new();
        for s in &plan.services {
            if s.service.healthcheck.is_some()
                && !met.contains(&(s.service.name.clone(), Condition::Healthy))
            {
                needed.insert((s.service.name.clone(), Condition::Healthy), String::new());
            }
        }
        wait_conditions(backend, plan, &needed, progress).await?;
    }
    Ok(())
}

/// Creates one service's sandbox in the pod.
pub async fn start_service(
    backend: &dyn Backend,
    env: &str,
    s: &PlannedService,
    pod_id: &str,
) -> Result<(), EnvError> {
    let mut spec = s.sandbox.spec.clone();
    if spec.network != Network::Host {
        spec.network = Network::Pod(pod_id.to_string());
    }
    let options = DetachOptions {
        name: s.sandbox.sandbox.clone(),
        labels: labels(env, &s.service.name),
    };
    backend
        .create_detached(&spec, s.argv.clone().map(Cmd::from), options)
        .await
        .map_err(|e| {
            EnvError::Run(format!(
                "starting service `{}` ({}): {e}",
                s.service.name, s.service.at
            ))
        })?;
    Ok(())
}

/// Waits for every `(service, condition)` in parallel; the first failure
/// names the blocking service, who waited for it, its last probe output and
/// its log tail.
async fn wait_conditions(
    backend: &Arc<dyn Backend>,
    plan: &Plan,
    needed: &BTreeMap<(String, Condition), String>,
    progress: &Progress,
) -> Result<(), EnvError> {
    let mut waits = JoinSet::new();
    for ((service, condition), waiter) in needed {
        let Some(planned) = plan.service(service) else {
            continue;
        };
        let backend = backend.clone();
        let planned = planned.clone();
        let (service, condition, waiter) = (service.clone(), *condition, waiter.clone());
        let progress = progress.clone();
        waits.spawn(async move {
            let r = wait_condition(backend.as_ref(), &planned, condition).await;
            if r.is_ok() {
                progress(&format!("{service}: {}", condition_met(condition)));
            }
            (
                service,
                condition,
                waiter,
                planned.sandbox.sandbox.clone(),
                r,
            )
        });
    }
    while let Some(joined) = waits.join_next().await {
        let Ok((service, condition, waiter, sandbox, r)) = joined else {
            continue;
        };
        if let Err((reason, last_probe)) = r {
            waits.abort_all();
            let log_tail = match backend.attach(&sandbox).await {
                Ok(Some(s)) => log_text(s.as_ref(), Some(LOG_TAIL))
                    .await
                    .unwrap_or_else(|e| format!("(cannot read its log: {e})")),
                _ => "(its sandbox is gone)".to_string(),
            };
            return Err(EnvError::Blocked(Box::new(Blocked {
                service,
                waiter: (!waiter.is_empty()).then_some(waiter),
                condition,
                reason,
                last_probe,
                log_tail,
            })));
        }
    }
    Ok(())
}

/// A start that could not go on: the dependency that did not reach its
/// condition, who waited for it, why, its last probe output and log tail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    pub service: String,
    /// The service waiting for it; `None` for `up -d`'s final wait.
    pub waiter: Option<String>,
    pub condition: Condition,
    pub reason: String,
    pub last_probe: String,
    /// Its last [`LOG_TAIL`] lines (or why they could not be read).
    pub log_tail: String,
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let service = &self.service;
        match &self.waiter {
            Some(w) => write!(f, "service `{w}` is blocked")?,
            None => write!(f, "`up -d` is blocked")?,
        }
        write!(
            f,
            ": dependency `{service}` did not reach {}: {}",
            self.condition.name(),
            self.reason
        )?;
        if !self.last_probe.is_empty() {
            write!(
                f,
                "\n  last health probe output: {}",
                self.last_probe.trim()
            )?;
        }
        let tail = self.log_tail.trim_end();
        if tail.is_empty() {
            write!(f, "\n  `{service}` wrote nothing to its log")?;
        } else {
            write!(f, "\n  last lines of `{service}`'s log:")?;
            for line in tail.lines() {
                write!(f, "\n    {line}")?;
            }
        }
        Ok(())
    }
}

fn condition_met(c: Condition) -> &'static str {
    match c {
        Condition::Started => "started",
        Condition::Healthy => "healthy",
        Condition::CompletedSuccessfully => "completed successfully",
    }
}

/// Waits until `s` meets `condition`; `Err((reason, last probe output))`.
async fn wait_condition(
    backend: &dyn Backend,
    s: &PlannedService,
    condition: Condition,
) -> Result<(), (String, String)> {
    match condition {
        Condition::Started => Ok(()),
        Condition::Healthy => match &s.service.healthcheck {
            Some(h) => wait_healthy(backend, &s.sandbox.sandbox, h)
                .await
                .map(|_| ())
                .map_err(|u| (u.reason, u.last_probe)),
            None => Err(("it has no healthcheck".into(), String::new())),
        },
        Condition::CompletedSuccessfully => {
            let mut pause = FIRST_POLL;
            loop {
                match backend.attach(&s.sandbox.sandbox).await {
                    Ok(Some(sb)) => match sb.info().state.clone() {
                        SandboxState::Running => {}
                        SandboxState::Exited { code: 0 } => return Ok(()),
                        other => {
                            return Err((not_running(other).unwrap_or_default(), String::new()))
                        }
                    },
                    Ok(None) => return Err(("its sandbox is gone".into(), String::new())),
                    Err(e) => return Err((e.to_string(), String::new())),
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(POLL);
            }
        }
    }
}

/// Writes `/etc/hosts` and makes the named volumes' directories.
fn prepare_state(plan: &Plan) -> Result<(), EnvError> {
    let io = |what: &str, e: std::io::Error| EnvError::Run(format!("{what}: {e}"));
    std::fs::create_dir_all(&plan.state_dir)
        .map_err(|e| io(&format!("creating {}", plan.state_dir.display()), e))?;
    let hosts = plan.state_dir.join("hosts");
    let tmp = plan.state_dir.join("hosts.tmp");
    std::fs::write(&tmp, &plan.hosts).map_err(|e| io(&format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, &hosts).map_err(|e| io(&format!("writing {}", hosts.display()), e))?;
    for v in &plan.volumes {
        let dir = plan.state_dir.join("volumes").join(v);
        std::fs::create_dir_all(&dir)
            .map_err(|e| io(&format!("creating volume {}", dir.display()), e))?;
        // The sandbox's user is not the caller's: let it write its volume.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777));
    }
    Ok(())
}

async fn remove_named(backend: &dyn Backend, name: &str) -> Result<(), EnvError> {
    if let Some(s) = backend.attach(name).await? {
        s.remove(true).await?;
    }
    Ok(())
}

/// `down`: removes every sandbox of `env` (the services in parallel, each
/// given `grace` after SIGTERM, then the pod), its `/etc/hosts`, and with
/// `volumes` its named volumes. Returns the sandboxes removed.
pub async fn down(
    backend: Arc<dyn Backend>,
    env: &str,
    volumes: bool,
    grace: Duration,
) -> Result<Vec<String>, EnvError> {
    let list = sandboxes(backend.as_ref(), Some(env), true).await?;
    let (pods, services): (Vec<_>, Vec<_>) =
        list.into_iter().partition(|s| service_of(s) == POD_SERVICE);
    let mut removed = Vec::new();
    let mut tasks = JoinSet::new();
    for s in services {
        let backend = backend.clone();
        tasks.spawn(async move {
            let r = match backend.attach(&s.name).await {
                Ok(Some(h)) => {
                    // No grace: removing it kills it at once.
                    if h.info().state == SandboxState::Running && !grace.is_zero() {
                        let _ = h.stop(grace).await;
                    }
                    h.remove(true).await.map_err(EnvError::from)
                }
                Ok(None) => Ok(()),
                Err(e) => Err(e.into()),
            };
            (s.name, r)
        });
    }
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((name, Ok(()))) => removed.push(name),
            Ok((_, Err(e))) => first_error = first_error.or(Some(e)),
            Err(e) => {
                first_error =
                    first_error.or(Some(EnvError::Run(format!("a removal task failed: {e}"))))
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    for p in pods {
        remove_named(backend.as_ref(), &p.name).await?;
        removed.push(p.name);
    }
    let dir = crate::plan::env_state_dir(env)?;
    let _ = std::fs::remove_file(dir.join("hosts"));
    if volumes {
        let v = dir.join("volumes");
        if v.exists() {
            std::fs::remove_dir_all(&v)
                .map_err(|e| EnvError::Run(format!("removing {}: {e}", v.display())))?;
        }
    }
    // Gone when nothing is left in it (named volumes stay without --volumes).
    let _ = std::fs::remove_dir(&dir);
    Ok(removed)
}

/// `stop`: stops the named services (all, and then the pod, when none is
/// named); they keep their logs until `down`.
pub async fn stop(
    backend: &dyn Backend,
    env: &str,
    services: &[String],
) -> Result<Vec<String>, EnvError> {
    let list = sandboxes(backend, Some(env), false).await?;
    let (pods, members): (Vec<_>, Vec<_>) =
        list.into_iter().partition(|s| service_of(s) == POD_SERVICE);
    let mut stopped = Vec::new();
    let chosen: Vec<&SandboxInfo> = if services.is_empty() {
        members.iter().rev().chain(pods.iter()).collect()
    } else {
        for name in services {
            if !members.iter().any(|m| service_of(m) == name) {
                return Err(EnvError::Run(format!(
                    "service `{name}` of environment `{env}` is not running"
                )));
            }
        }
        members
            .iter()
            .filter(|m| services.iter().any(|n| n == service_of(m)))
            .collect()
    };
    for s in chosen {
        if let Some(h) = backend.attach(&s.name).await? {
            h.stop(STOP_GRACE).await?;
            stopped.push(service_of(s).to_string());
        }
    }
    Ok(stopped)
}

/// `restart SERVICE`: a fresh sandbox from the plan in the running pod,
/// waited for until healthy when it has a health check.
pub async fn restart(backend: &dyn Backend, plan: &Plan, service: &str) -> Result<(), EnvError> {
    let Some(s) = plan.service(service) else {
        return Err(EnvError::Run(format!(
            "no service `{service}` in environment `{}`",
            plan.env
        )));
    };
    let Some(pod) = backend.attach(&plan.pod.sandbox).await? else {
        return Err(EnvError::Run(format!(
            "environment `{}` is not up; `cleanroom up` starts it",
            plan.env
        )));
    };
    prepare_state(plan)?;
    remove_named(backend, &s.sandbox.sandbox).await?;
    start_service(backend, &plan.env, s, &pod.info().id).await?;
    if let Some(h) = &s.service.healthcheck {
        wait_healthy(backend, &s.sandbox.sandbox, h)
            .await
            .map_err(|u| {
                EnvError::Run(format!(
                    "`{service}` restarted but is not healthy: {}; last probe: {}",
                    u.reason, u.last_probe
                ))
            })?;
    }
    Ok(())
}

/// One pass of the restart policies for a foreground `up`: restarts each
/// service that exited and whose policy says so. `counts` holds restarts so far.
pub async fn apply_restart_policies(
    backend: &dyn Backend,
    plan: &Plan,
    counts: &mut BTreeMap<String, u32>,
    progress: &Progress,
) -> Result<(), EnvError> {
    use crate::model::Restart;
    let list = sandboxes(backend, Some(&plan.env), true).await?;
    let Some(pod) = list
        .iter()
        .find(|s| service_of(s) == POD_SERVICE && s.state == SandboxState::Running)
    else {
        return Ok(());
    };
    for info in &list {
        let Some(s) = plan.service(service_of(info)) else {
            continue;
        };
        let SandboxState::Exited { code } = info.state else {
            continue;
        };
        let n = counts.entry(s.service.name.clone()).or_default();
        let again = match s.service.restart {
            Restart::No => false,
            Restart::Always | Restart::UnlessStopped => true,
            Restart::OnFailure(max) => code != 0 && max.is_none_or(|m| *n < m),
        };
        if again {
            *n += 1;
            progress(&format!(
                "{} exited with code {code}; restarting ({}, restart {n})",
                s.service.name, s.service.restart
            ));
            remove_named(backend, &info.name).await?;
            start_service(backend, &plan.env, s, &pod.id).await?;
        }
    }
    Ok(())
}
