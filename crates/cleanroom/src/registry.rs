//! From a [`BackendChoice`] to a concrete backend.

use std::sync::Arc;

use async_trait::async_trait;
use cleanroom_core::{
    Availability, Backend, BackendChoice, Cmd, Constraint, Enforcement, Error, OutputSink, Result,
    RunResult, Sandbox, SandboxSpec,
};

use crate::local::LocalBackend;

/// The backend named by `choice`; `image` is the default image for engine
/// backends. `auto` is not a concrete backend: use [`crate::AutoBackend`].
pub fn backend_for(choice: BackendChoice, image: Option<&str>) -> Result<Arc<dyn Backend>> {
    let _ = image;
    Ok(match choice {
        BackendChoice::Local => Arc::new(LocalBackend::new()),
        BackendChoice::Native | BackendChoice::Podman | BackendChoice::Docker => {
            Arc::new(NotBuilt(choice))
        }
        BackendChoice::Auto => {
            return Err(Error::InvalidSpec(
                "`auto` is a choice, not a backend; use AutoBackend::select".into(),
            ))
        }
    })
}

/// Stands in for a backend this build does not contain yet.
struct NotBuilt(BackendChoice);

#[async_trait]
impl Backend for NotBuilt {
    fn name(&self) -> &str {
        self.0.as_str()
    }

    async fn availability(&self) -> Availability {
        Availability::no(
            format!("the {} backend is not part of this build", self.0),
            "use --backend local",
        )
    }

    fn enforcement(&self, spec: &SandboxSpec) -> Enforcement {
        let mut e = Enforcement::new(self.0.as_str());
        for c in Constraint::ALL {
            e.not_enforced(c, "backend not built");
        }
        e.restrict_to(spec)
    }

    async fn run_streaming(
        &self,
        _spec: &SandboxSpec,
        _cmd: Cmd,
        _sink: Option<OutputSink>,
    ) -> Result<RunResult> {
        Err(self.unavailable())
    }

    async fn create(&self, _spec: &SandboxSpec, _main: Option<Cmd>) -> Result<Box<dyn Sandbox>> {
        Err(self.unavailable())
    }
}

impl NotBuilt {
    fn unavailable(&self) -> Error {
        Error::Unavailable {
            backend: self.0.to_string(),
            reason: "not part of this build".into(),
            hint: Some("use --backend local".into()),
        }
    }
}
