//! `cleanroom::backend`: the original synchronous API — `AutoBackend`,
//! `DockerBackend`, `PodmanBackend`, `LocalBackend` with `run_cmd`, and the
//! two-method [`Backend`] trait for backends of one's own — as thin handles
//! on the async backends of this crate.
//!
//! Every handle runs on the same backends as the rest of Cleanroom, through
//! the [blocking bridge](crate::blocking), so results carry the same
//! enforcement report. `run_cmd` takes an argv array (`["echo", "hello"]`),
//! a `Vec<String>` or a [`Cmd`], and runs with the spec of the configuration
//! seen from the current directory (`cleanroom.toml`,
//! `[package.metadata.cleanroom]`, `CLEANROOM_*`; see `cleanroom config`):
//! its limits, timeout and user, on the handle's own root filesystem.
//!
//! Names that differ from the crate root: [`Backend`] here is the
//! two-method synchronous trait; the async trait every built-in backend
//! implements is [`crate::Backend`]. [`crate::error`] holds the same
//! [`Error`](crate::Error) and [`Result`] as the root.
//!
//! # Choosing a backend
//!
//! ```
//! use cleanroom::backend::AutoBackend;
//! let backend = AutoBackend::detect()?;
//! let result = backend.run_cmd(["echo", "hello"])?;
//! assert_eq!(result.stdout_lossy(), "hello\n");
//! # Ok::<(), cleanroom::error::Error>(())
//! ```
//!
//! # Docker and Podman
//!
//! As the original API wrote it, with an image this machine does not have
//! (compiled, not run: `ensure_image` would ask Docker to pull it):
//!
//! ```no_run
//! use cleanroom::backend::DockerBackend;
//! let backend = DockerBackend::new("rust:1-slim");
//! backend.ensure_image()?;            // pull if not present (here: a clear error, nothing can be pulled)
//! let result = backend.run_cmd(["cargo", "test"])?;
//! // also: is_available(&self) -> bool, docker_bin(mut self, path: String) -> Self
//! # Ok::<(), cleanroom::error::Error>(())
//! ```
//!
//! ```no_run
//! use cleanroom::backend::PodmanBackend;
//! let result = PodmanBackend::new("rust:1-slim").run_cmd(["./my_binary"])?;
//! # Ok::<(), cleanroom::error::Error>(())
//! ```
//!
//! The same calls, run against the real engines with the busybox image the
//! project's setup imports into both:
//!
//! ```
//! use cleanroom::backend::{DockerBackend, PodmanBackend};
//!
//! let backend = DockerBackend::new("cleanroom-busybox:latest");
//! assert!(backend.is_available());
//! backend.ensure_image()?; // present: nothing to pull
//! let result = backend.run_cmd(["echo", "hello"])?;
//! assert_eq!(result.stdout_lossy(), "hello\n");
//! assert_eq!(result.backend, "docker");
//!
//! // `docker_bin` names the Docker CLI whose current context says where the
//! // engine listens (when DOCKER_HOST is not set).
//! let backend = DockerBackend::new("cleanroom-busybox:latest").docker_bin("docker".to_string());
//! assert_eq!(backend.run_cmd(["id", "-u"])?.stdout_lossy(), "1000\n");
//!
//! let result = PodmanBackend::new("cleanroom-busybox:latest").run_cmd(["sh", "-c", "echo $0", "hi"])?;
//! assert_eq!(result.stdout_lossy(), "hi\n");
//! assert_eq!(result.backend, "podman");
//! # Ok::<(), cleanroom::error::Error>(())
//! ```
//!
//! # Local
//!
//! The local backend runs each command in a fresh, empty working directory,
//! so a program given as a relative path with a `/` in it is found from the
//! caller's current directory, as a shell there would find it:
//!
//! ```
//! # use std::os::unix::fs::PermissionsExt;
//! # let project = tempfile::tempdir()?;
//! # let bin = project.path().join("target/debug/mycli");
//! # std::fs::create_dir_all(bin.parent().unwrap())?;
//! # std::fs::write(&bin, "#!/bin/sh\necho \"mycli ran: $1 in $(pwd)\"\n")?;
//! # std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
//! # std::env::set_current_dir(project.path())?;
//! use cleanroom::backend::LocalBackend;
//! let result = LocalBackend::new().run_cmd(["./target/debug/mycli", "test"])?;
//! let out = result.stdout_lossy();
//! assert!(out.starts_with("mycli ran: test in /") && out.contains("/cleanroom-local-"), "{out}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Backends of one's own
//!
//! Implement the two methods; [`Backend::into_async`] then makes the
//! backend usable wherever one is — the async API, long-lived sandboxes,
//! the test runner (`cleanroom_runner::RunOptions::backend`). Cleanroom
//! cannot see what such a backend enforces, so every run's report says
//! "unknown" for every constraint, strict mode refuses it, and copies and
//! services are not offered.
//!
//! ```
//! use cleanroom::backend::{Backend, Cmd, RunResult};
//! use cleanroom::error::{Result, BackendError};
//!
//! /// Runs every command as a plain host process.
//! pub struct CustomBackend;
//!
//! impl Backend for CustomBackend {
//!     fn run_cmd(&self, cmd: Cmd) -> Result<RunResult> {
//!         let output = std::process::Command::new(&cmd.program)
//!             .args(&cmd.args)
//!             .envs(&cmd.env)
//!             .output()
//!             .map_err(|e| BackendError::io(format!("starting `{}`", cmd.display()), e))?;
//!         Ok(RunResult::from(output))
//!     }
//!
//!     fn name(&self) -> &str {
//!         "custom"
//!     }
//! }
//!
//! let result = CustomBackend.run_cmd(Cmd::from(["echo", "hello"]))?;
//! assert_eq!(result.stdout_lossy(), "hello\n");
//!
//! // The async face, as every other backend has it: the report says what
//! // cleanroom knows, which is nothing.
//! let backend: std::sync::Arc<dyn cleanroom::Backend> = CustomBackend.into_async();
//! let report = backend.enforcement(&cleanroom::SandboxSpec::default());
//! assert!(report.unknowns().len() > 5);
//! assert!(report.warnings()[0].starts_with("WARN: custom backend: enforcement of filesystem isolation is unknown"));
//! # Ok::<(), cleanroom::error::Error>(())
//! ```

mod adapter;
mod builtin;

use std::sync::Arc;

pub use crate::blocking::AutoBackend;
pub use adapter::{AsyncAdapter, AsyncAdapterSandbox};
pub use builtin::{
    ContainerBackend, Docker, DockerBackend, EngineKind, LocalBackend, Podman, PodmanBackend,
};
pub use cleanroom_core::{Cmd, RunResult};

use crate::error::Result;

/// A way of running one command, in the original API's two methods.
///
/// Implement it for a backend of your own; the built-in handles of this
/// module implement it too, so code written against it takes either.
pub trait Backend {
    /// Runs `cmd` to completion and says how it ended.
    fn run_cmd(&self, cmd: Cmd) -> Result<RunResult>;

    /// A short name for reports and messages, such as `"custom"`.
    fn name(&self) -> &str;

    /// This backend as an async [`crate::Backend`], usable wherever one is.
    /// For a backend of one's own it is an [`AsyncAdapter`]; the built-in
    /// handles give the real backend underneath, with its real report.
    fn into_async(self) -> Arc<dyn crate::Backend>
    where
        Self: Sized + Send + Sync + 'static,
    {
        Arc::new(AsyncAdapter::new(self))
    }
}

impl Backend for AutoBackend {
    fn run_cmd(&self, cmd: Cmd) -> Result<RunResult> {
        AutoBackend::run_cmd(self, cmd)
    }

    fn name(&self) -> &str {
        self.chosen()
    }

    fn into_async(self) -> Arc<dyn crate::Backend> {
        self.inner()
    }
}
