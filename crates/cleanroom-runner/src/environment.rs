//! A test file's `environment = "FILE"`: the environment brought up by
//! cleanroom-env before the steps (health conditions included), the test's
//! sandbox joined to its pod with its wiring, and removed after the test.

use std::sync::Arc;
use std::time::Duration;

use cleanroom::{Backend, Mount, Network, SandboxSpec};
use cleanroom_env::{engine, LoadOptions};

use crate::model::{Located, TestFile};
use crate::report::Failure;

/// How long an environment's services get to exit when the test ends.
const GRACE: Duration = Duration::from_secs(2);

/// An environment this test brought up; [`Started::down`] removes it.
pub struct Started {
    name: String,
}

impl Started {
    /// Removes every sandbox and volume of the environment.
    pub async fn down(self, backend: Arc<dyn Backend>) -> Result<(), String> {
        engine::down(backend, &self.name, true, GRACE)
            .await
            .map(|_| ())
            .map_err(|e| format!("removing environment `{}`: {e}", self.name))
    }
}

/// Brings up `file.environment` (if any) over `spec` and puts the test's
/// own sandbox into its pod: `spec` gains the pod network, the names in
/// `/etc/hosts`, and `NAME_HOST`/`NAME_PORT` for every service.
pub async fn up(
    file: &TestFile,
    backend: Arc<dyn Backend>,
    spec: &mut SandboxSpec,
) -> Result<Option<Started>, Failure> {
    let Some(Located { value: path, at }) = &file.environment else {
        return Ok(None);
    };
    let fail = |message: String| Failure {
        message,
        location: Some(at.to_string()),
        ..Failure::default()
    };
    let name = format!("clnrm-{}", cleanroom::detached::generate_name());
    let env = cleanroom_env::load(&LoadOptions {
        dir: path.parent().map(|p| p.to_path_buf()).unwrap_or_default(),
        files: vec![path.clone()],
        project_name: Some(name.clone()),
        ..LoadOptions::default()
    })
    .map_err(|e| fail(format!("environment {}: {e}", path.display())))?;
    let plan =
        cleanroom_env::plan(&env, &[], backend.as_ref(), spec).map_err(|e| fail(e.to_string()))?;
    let quiet: engine::Progress = Arc::new(|_: &str| {});
    engine::up(backend.clone(), &plan, true, quiet)
        .await
        .map_err(|e| fail(format!("bringing up environment {}: {e}", path.display())))?;
    let started = Started { name };
    let pod = match backend.attach(&plan.pod.sandbox).await {
        Ok(Some(p)) => p.info().id.clone(),
        other => {
            let why = match other {
                Err(e) => e.to_string(),
                _ => "its pod is gone".to_string(),
            };
            let _ = started.down(backend).await;
            return Err(fail(format!("environment {}: {why}", path.display())));
        }
    };
    spec.network = Network::Pod(pod);
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
    Ok(Some(started))
}
