//! A test's environment: its `[services.*]` and the file its
//! `environment = "FILE"` names, brought up by cleanroom-env's engine (the
//! same code path as `cleanroom up`: start levels, depends_on conditions,
//! health checks, wiring, `/etc/hosts`) under a name of its own, the test's
//! sandbox joined to its pod, and all of it removed after the test.

use std::sync::Arc;
use std::time::Duration;

use cleanroom::{Backend, Detached, Mount, Network, SandboxSpec};
use cleanroom_env::engine::{self, Blocked};
use cleanroom_env::scoped::Scoped;
use cleanroom_env::{EnvError, Environment, LoadOptions, Plan};

use crate::model::{Located, TestFile};
use crate::report::{Failure, ServiceLog};

/// Lines of each service's log shown when a test fails.
const LOG_LINES: usize = 20;

/// A test's environment, from before its first sandbox starts until
/// [`TestEnvironment::down`]: registered first, so that a test stopped halfway
/// through `up` (a timeout, Ctrl-C) still has everything removed.
pub struct TestEnvironment {
    /// Unique per run of a test, so parallel runs never share a sandbox.
    name: String,
    /// The engine's backend: for a test's own services, its named
    /// sandboxes are the test backend's per-process ones, so a killed
    /// runner leaves no service behind.
    backend: Arc<dyn Backend>,
    plan: Option<Plan>,
}

/// How long an environment file's services get to exit when the test ends
/// (a test's own services are killed at once, as they always were).
const FILE_GRACE: Duration = Duration::from_secs(2);

impl TestEnvironment {
    /// A name and a backend for `file`'s environment, or `None` when it has
    /// neither services nor an environment file.
    pub fn for_test(file: &TestFile, backend: Arc<dyn Backend>) -> Option<Self> {
        if file.services.is_empty() && file.environment.is_none() {
            return None;
        }
        // An environment file's services are the backend's named sandboxes,
        // as `cleanroom up` makes them (a one-shot's exit code is seen there);
        // a test's own services are its per-process ones, gone with it.
        let backend: Arc<dyn Backend> = if file.environment.is_some() {
            backend
        } else {
            Arc::new(Scoped::new(backend))
        };
        Some(TestEnvironment {
            name: format!("clnrm-{}", cleanroom::detached::generate_name()),
            backend,
            plan: None,
        })
    }

    /// Reads, plans and brings up the environment over the test's `spec`,
    /// then puts the test's own sandbox into its pod: `spec` gains the pod
    /// network, the names in `/etc/hosts`, and `NAME_HOST`/`NAME_PORT` for
    /// every service.
    pub async fn up(&mut self, file: &TestFile, spec: &mut SandboxSpec) -> Result<(), Failure> {
        let env = self.model(file).map_err(|f| *f)?;
        let plan = cleanroom_env::plan(&env, &[], self.backend.as_ref(), spec)
            .map_err(|e| failure(e.to_string(), None))?;
        self.plan = Some(plan.clone());
        let quiet: engine::Progress = Arc::new(|_: &str| {});
        if let Err(e) = engine::up(self.backend.clone(), &plan, true, quiet).await {
            return Err(self.up_failure(file, e));
        }
        if spec.network != Network::Host {
            let pod = match self.backend.attach(&plan.pod.sandbox).await {
                Ok(Some(p)) => p.info().id.clone(),
                Ok(None) => return Err(failure("the environment's pod is gone".into(), None)),
                Err(e) => return Err(failure(format!("the environment's pod: {e}"), None)),
            };
            spec.network = Network::Pod(pod);
        }
        spec.mounts
            .push(Mount::read_only(plan.state_dir.join("hosts"), "/etc/hosts"));
        let wiring = cleanroom_env::plan::wiring_vars(plan.services.iter().map(|s| {
            (
                s.service.name.as_str(),
                s.service.ports.first().map(|p| p.container),
            )
        }));
        for (k, v) in wiring {
            spec.env.entry(k).or_insert(v);
        }
        Ok(())
    }

    /// The environment file's services (if any) and the test's own, as one
    /// environment under this run's name.
    fn model(&self, file: &TestFile) -> Result<Environment, Box<Failure>> {
        let mut env = match &file.environment {
            Some(Located { value: path, at }) => cleanroom_env::load(&LoadOptions {
                dir: path.parent().map(|p| p.to_path_buf()).unwrap_or_default(),
                files: vec![path.clone()],
                project_name: Some(self.name.clone()),
                ..LoadOptions::default()
            })
            .map_err(|e| {
                Box::new(failure(
                    format!("environment {}: {e}", path.display()),
                    Some(at.to_string()),
                ))
            })?,
            None => Environment {
                name: self.name.clone(),
                files: vec![file.path.clone()],
                ..Environment::default()
            },
        };
        for s in &file.services {
            if env.service(s.name()).is_some() {
                return Err(Box::new(failure(
                    format!(
                        "service `{}` is defined both here and in the environment file",
                        s.name()
                    ),
                    Some(s.at.to_string()),
                )));
            }
            env.services.push(s.model.clone());
        }
        // A test's services see every service's NAME_HOST/NAME_PORT, as the
        // test's own sandbox does (not only their dependencies').
        let wiring = cleanroom_env::plan::wiring_vars(
            env.services
                .iter()
                .map(|s| (s.name.as_str(), s.ports.first().map(|p| p.container))),
        );
        for s in env.services.iter_mut() {
            if file.services.iter().any(|own| own.name() == s.name) {
                for (k, v) in &wiring {
                    s.env.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        Ok(env)
    }

    /// A failed `up` in the test's words: the service that did not get
    /// ready, at its table, with what its probe saw (every service's log
    /// tail goes with the failure).
    fn up_failure(&self, file: &TestFile, e: EnvError) -> Failure {
        let EnvError::Blocked(blocked) = e else {
            let at = file.environment.as_ref().map(|l| l.at.to_string());
            return failure(e.to_string(), at);
        };
        let Blocked {
            service,
            reason,
            last_probe,
            ..
        } = blocked.as_ref();
        let at = file
            .services
            .iter()
            .find(|s| s.name() == service)
            .map(|s| s.at.to_string())
            .or_else(|| file.environment.as_ref().map(|l| l.at.to_string()));
        let check = self
            .plan
            .as_ref()
            .and_then(|p| p.service(service))
            .and_then(|s| s.service.healthcheck.as_ref());
        let message = match check {
            // A `wait_for`: said as the runner always said it.
            Some(h) if h.deadline.is_some() => {
                let what = cleanroom_env::health::unmet(&h.test);
                let mut msg = format!("service `{service}` {reason}: {what}");
                if !last_probe.is_empty() && *last_probe != what {
                    msg.push_str(&format!(" (last attempt: {last_probe})"));
                }
                msg
            }
            _ => blocked.to_string(),
        };
        // `up` removed what it started: the blocking service's log is kept here.
        Failure {
            service_logs: vec![ServiceLog {
                service: service.clone(),
                lines: blocked.log_tail.lines().map(str::to_string).collect(),
            }],
            ..failure(message, at)
        }
    }

    /// The sandbox of service `name`, for a step that runs in it.
    pub async fn service(&self, name: &str) -> Result<Box<dyn Detached>, String> {
        let sandbox = self
            .plan
            .as_ref()
            .and_then(|p| p.service(name))
            .map(|s| s.sandbox.sandbox.clone())
            .ok_or_else(|| format!("service `{name}` is not running"))?;
        match self.backend.attach(&sandbox).await {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err(format!("service `{name}` is gone")),
            Err(e) => Err(format!("service `{name}`: {e}")),
        }
    }

    /// The last lines of every service's log, in start order.
    pub async fn logs(&self) -> Vec<ServiceLog> {
        let Some(plan) = &self.plan else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for s in &plan.services {
            let Ok(Some(sandbox)) = self.backend.attach(&s.sandbox.sandbox).await else {
                continue;
            };
            let Ok(text) = cleanroom_env::health::log_text(sandbox.as_ref(), Some(LOG_LINES)).await
            else {
                continue;
            };
            out.push(ServiceLog {
                service: s.service.name.clone(),
                lines: text.lines().map(str::to_string).collect(),
            });
        }
        out
    }

    /// Removes every sandbox of the environment, whatever `up` got to.
    pub async fn down(self, file: &TestFile) -> Result<(), String> {
        let grace = if file.environment.is_some() {
            FILE_GRACE
        } else {
            Duration::ZERO
        };
        engine::down(self.backend, &self.name, true, grace)
            .await
            .map(|_| ())
            .map_err(|e| format!("removing environment `{}`: {e}", self.name))
    }
}

fn failure(message: String, location: Option<String>) -> Failure {
    Failure {
        message,
        location,
        ..Failure::default()
    }
}
