//! Choosing a backend: by name, or `auto` (podman, then docker, then native,
//! then local: the first available that can honour the request).

use std::sync::Arc;

use async_trait::async_trait;
use cleanroom_core::{
    Availability, Backend, BackendChoice, Cmd, Constraint, DetachOptions, Detached, Enforcement,
    OutputSink, Prepared, Result, RunResult, Sandbox, SandboxInfo, SandboxSpec, Status,
};
use serde::Serialize;

use crate::registry::backend_for;

/// A backend picked by [`AutoBackend::detect`] or [`AutoBackend::select`];
/// it runs everything on that backend and remembers why it was picked.
#[derive(Clone)]
pub struct AutoBackend {
    inner: Arc<dyn Backend>,
    reason: String,
}

impl std::fmt::Debug for AutoBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoBackend")
            .field("chosen", &self.inner.name())
            .field("reason", &self.reason)
            .finish()
    }
}

impl AutoBackend {
    /// The backend the configuration asks for (`CLEANROOM_BACKEND`,
    /// `cleanroom.toml`, `[package.metadata.cleanroom]`, ... seen from the
    /// current directory; see [`crate::Config`]), `auto` when none does.
    pub async fn detect() -> Result<Self> {
        let config = cleanroom_core::Config::load_default()?;
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        AutoBackend::select(config.backend.value, config.image.value.as_deref()).await
    }

    /// A named backend (an error, with the reason, if it is not available
    /// here), or for `auto` the first available in order.
    pub async fn select(choice: BackendChoice, image: Option<&str>) -> Result<Self> {
        if choice != BackendChoice::Auto {
            let backend = backend_for(choice, image)?;
            let a = backend.availability().await;
            if !a.available {
                return Err(cleanroom_core::Error::Unavailable {
                    backend: choice.to_string(),
                    reason: a.reason,
                    hint: a.hint,
                });
            }
            return Ok(AutoBackend {
                inner: backend,
                reason: format!("{choice} was asked for by name"),
            });
        }
        let wanted = wanted_by_auto(image)?;
        let mut passed = Vec::new();
        for c in BackendChoice::AUTO_ORDER {
            let backend = backend_for(c, image)?;
            let a = backend.availability().await;
            if a.available {
                if let Some(why) = passed_over(c, backend.as_ref(), image, &wanted).await {
                    passed.push(format!("{c}: available, but {why}"));
                    continue;
                }
                let mut reason = format!("{c}: {}", a.reason);
                if !passed.is_empty() {
                    reason.push_str(&format!(" (passed over: {})", passed.join("; ")));
                }
                tracing::info!("auto-selected the {c} backend: {reason}");
                return Ok(AutoBackend {
                    inner: backend,
                    reason,
                });
            }
            passed.push(format!("{c}: {}", a.reason));
        }
        // Local is always available, so only a rootfs nobody has ends here.
        Err(cleanroom_core::Error::NoBackend(passed.join("; ")))
    }

    /// Name of the backend in use.
    pub fn chosen(&self) -> &str {
        self.inner.name()
    }

    /// Why it was chosen.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    pub fn inner(&self) -> Arc<dyn Backend> {
        self.inner.clone()
    }
}

#[async_trait]
impl Backend for AutoBackend {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn availability(&self) -> Availability {
        self.inner.availability().await
    }

    async fn can_honour(&self, spec: &SandboxSpec) -> std::result::Result<(), String> {
        self.inner.can_honour(spec).await
    }

    async fn remove_session(&self) -> Result<Vec<String>> {
        self.inner.remove_session().await
    }

    async fn gc(&self) -> Result<Vec<cleanroom_core::Removed>> {
        self.inner.gc().await
    }

    fn enforcement(&self, spec: &SandboxSpec) -> Enforcement {
        self.inner.enforcement(spec)
    }

    // The preamble runs once, here (its report is the chosen backend's);
    // the chosen backend does the rest.
    async fn run_prepared(
        &self,
        spec: &SandboxSpec,
        cmd: Cmd,
        sink: Option<OutputSink>,
        prepared: Prepared,
    ) -> Result<RunResult> {
        self.inner.run_prepared(spec, cmd, sink, prepared).await
    }

    async fn create_prepared(
        &self,
        spec: &SandboxSpec,
        main: Option<Cmd>,
        prepared: Prepared,
    ) -> Result<Box<dyn Sandbox>> {
        self.inner.create_prepared(spec, main, prepared).await
    }

    async fn create_detached_prepared(
        &self,
        spec: &SandboxSpec,
        main: Option<Cmd>,
        options: DetachOptions,
        prepared: Prepared,
    ) -> Result<Box<dyn Detached>> {
        self.inner
            .create_detached_prepared(spec, main, options, prepared)
            .await
    }

    async fn list(&self, all: bool) -> Result<Vec<SandboxInfo>> {
        self.inner.list(all).await
    }

    async fn attach(&self, name: &str) -> Result<Option<Box<dyn Detached>>> {
        self.inner.attach(name).await
    }
}

/// What `auto` must be able to run: the configured image, or the host rootfs.
fn wanted_by_auto(image: Option<&str>) -> Result<SandboxSpec> {
    Ok(match image {
        Some(i) => SandboxSpec::with_rootfs(i.parse()?),
        None => SandboxSpec::default(),
    })
}

/// Why `auto` passes over the available backend `c`, if it does: the one
/// rule [`AutoBackend::select`] and [`doctor`] both apply.
async fn passed_over(
    c: BackendChoice,
    backend: &dyn Backend,
    image: Option<&str>,
    wanted: &SandboxSpec,
) -> Option<String> {
    // Engine backends run images; the host rootfs is native's and local's.
    let needs_image = matches!(c, BackendChoice::Podman | BackendChoice::Docker);
    if needs_image && image.is_none() {
        return Some("no image is configured (set `image` or CLEANROOM_IMAGE to use it)".into());
    }
    backend.can_honour(wanted).await.err()
}

/// One backend as `cleanroom doctor` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct BackendReport {
    pub name: String,
    pub available: bool,
    pub reason: String,
    pub hint: Option<String>,
    /// Whether `auto` picks this one on this machine.
    pub chosen_by_auto: bool,
    /// For the default spec with memory, CPU and pids limits.
    pub enforced: Vec<Constraint>,
    pub not_enforced: Vec<NotEnforced>,
}

/// A constraint a backend cannot enforce here, and why.
#[derive(Clone, Debug, Serialize)]
pub struct NotEnforced {
    pub constraint: Constraint,
    pub reason: String,
}

/// Every backend's availability and guarantees on this machine, in `auto` order.
pub async fn doctor(image: Option<&str>) -> Result<Vec<BackendReport>> {
    let spec = SandboxSpec {
        memory: Some(512 << 20),
        cpus: Some(1.0),
        pids: Some(512),
        ..SandboxSpec::default()
    };
    let wanted = wanted_by_auto(image)?;
    let mut reports = Vec::new();
    let mut chosen = false;
    for c in BackendChoice::AUTO_ORDER {
        let backend = backend_for(c, image)?;
        let a = backend.availability().await;
        let e = backend.enforcement(&spec);
        let passed_over = if a.available {
            passed_over(c, backend.as_ref(), image, &wanted).await
        } else {
            None
        };
        let chosen_by_auto = a.available && !chosen && passed_over.is_none();
        chosen |= chosen_by_auto;
        let reason = match passed_over {
            Some(why) => format!("{}; auto passes over it: {why}", a.reason),
            None => a.reason,
        };
        reports.push(BackendReport {
            name: c.to_string(),
            available: a.available,
            reason,
            hint: a.hint,
            chosen_by_auto,
            enforced: e
                .entries
                .iter()
                .filter(|x| x.status == Status::Enforced)
                .map(|x| x.constraint)
                .collect(),
            not_enforced: e
                .unenforced()
                .into_iter()
                .map(|(constraint, reason)| NotEnforced {
                    constraint,
                    reason: reason.to_string(),
                })
                .collect(),
        });
    }
    Ok(reports)
}
