//! The same API for callers outside async code, such as plain `#[test]`
//! functions.
//!
//! Every call waits through [`cleanroom_core::bridge::wait`]: it runs on
//! one shared background runtime, so sandboxes outlive the call that made
//! them, and it works (never panics) inside a tokio runtime too.
//!
//! ```
//! let result = cleanroom::blocking::AutoBackend::detect()?.run_cmd(["echo", "hello"])?;
//! assert_eq!(result.stdout_lossy(), "hello\n");
//! # Ok::<(), cleanroom::Error>(())
//! ```

use std::path::Path;

use cleanroom_core::bridge::wait;
use cleanroom_core::{Backend as _, BackendChoice, Cmd, Logs, Result, RunResult, SandboxSpec};

/// Runs `cmd` in a fresh sandbox on the detected backend, made to the
/// configuration seen from the current directory, as for [`crate::run`].
pub fn run(cmd: impl Into<Cmd>) -> Result<RunResult> {
    AutoBackend::detect()?.run_cmd(cmd)
}

/// Runs `cmd` in a fresh sandbox made to `spec` on the detected backend.
pub fn run_spec(spec: &SandboxSpec, cmd: impl Into<Cmd>) -> Result<RunResult> {
    AutoBackend::detect()?.run(spec, cmd)
}

/// A blocking handle on a backend chosen like [`crate::AutoBackend`]; also
/// the original API's `cleanroom::backend::AutoBackend`.
#[derive(Clone, Debug)]
pub struct AutoBackend {
    inner: crate::AutoBackend,
    /// What [`AutoBackend::run_cmd`] runs with.
    spec: SandboxSpec,
}

impl AutoBackend {
    /// See [`crate::AutoBackend::detect`]. [`AutoBackend::run_cmd`] then runs
    /// with the spec of that configuration (image, limits, timeout, ...).
    pub fn detect() -> Result<Self> {
        let config = crate::Config::load_default()?;
        let spec = config.spec()?;
        let inner = wait(crate::AutoBackend::select(
            config.backend.value,
            config.image.value.as_deref(),
        ))?;
        Ok(AutoBackend { inner, spec })
    }

    /// See [`crate::AutoBackend::select`]. [`AutoBackend::run_cmd`] then runs
    /// with the default spec.
    pub fn select(choice: BackendChoice, image: Option<&str>) -> Result<Self> {
        wait(crate::AutoBackend::select(choice, image)).map(|inner| AutoBackend {
            inner,
            spec: SandboxSpec::default(),
        })
    }

    pub fn chosen(&self) -> &str {
        self.inner.chosen()
    }

    pub fn reason(&self) -> &str {
        self.inner.reason()
    }

    /// Runs `cmd` (`["echo", "hello"]`, a `Vec<String>` or a [`Cmd`]) with
    /// the spec this handle was made with: the configuration's for
    /// [`AutoBackend::detect`], the default for [`AutoBackend::select`].
    pub fn run_cmd(&self, cmd: impl Into<Cmd>) -> Result<RunResult> {
        self.run(&self.spec, cmd)
    }

    /// The async backend underneath, for APIs that take one (the test runner's
    /// `RunOptions::backend`, for example).
    pub fn inner(&self) -> std::sync::Arc<dyn crate::Backend> {
        self.inner.inner()
    }

    /// Runs `cmd` in a fresh sandbox made to `spec`.
    pub fn run(&self, spec: &SandboxSpec, cmd: impl Into<Cmd>) -> Result<RunResult> {
        let cmd = cmd.into();
        wait(self.inner.run(spec, cmd))
    }

    /// Starts a long-lived sandbox; see [`crate::Backend::create`].
    pub fn create(&self, spec: &SandboxSpec, main: Option<Cmd>) -> Result<Sandbox> {
        wait(self.inner.create(spec, main)).map(|inner| Sandbox { inner: Some(inner) })
    }
}

/// A blocking handle on a long-lived sandbox; dropping it removes the sandbox.
pub struct Sandbox {
    inner: Option<Box<dyn crate::Sandbox>>,
}

impl Sandbox {
    fn get(&self) -> &dyn crate::Sandbox {
        self.inner
            .as_deref()
            .expect("the sandbox is only taken out in Drop")
    }

    pub fn id(&self) -> &str {
        self.get().id()
    }

    pub fn exec(&self, cmd: impl Into<Cmd>) -> Result<RunResult> {
        let cmd = cmd.into();
        wait(self.get().exec(cmd))
    }

    pub fn copy_in(&self, host_path: &Path, sandbox_path: &Path) -> Result<()> {
        wait(self.get().copy_in(host_path, sandbox_path))
    }

    pub fn copy_out(&self, sandbox_path: &Path, host_path: &Path) -> Result<()> {
        wait(self.get().copy_out(sandbox_path, host_path))
    }

    pub fn logs(&self) -> Result<Logs> {
        wait(self.get().logs())
    }

    pub fn stop(&self) -> Result<()> {
        wait(self.get().stop())
    }

    pub fn remove(&self) -> Result<()> {
        wait(self.get().remove())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            // Errors here have nowhere to go; the backend's own Drop is the
            // last line of defence.
            let _ = wait(async move {
                let r = inner.remove().await;
                drop(inner);
                r
            });
        }
    }
}
