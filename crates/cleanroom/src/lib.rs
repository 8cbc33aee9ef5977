//! Run commands and tests hermetically.
//!
//! This is the crate to depend on. It re-exports the contract of
//! `cleanroom-core` (spec, command, result, enforcement report, traits),
//! picks a backend (`native`, `podman`, `docker` or `local`) automatically or
//! by name, and offers the same API to async and to blocking callers.
//!
//! Named sandboxes outlive the process that made them: [`create_detached`]
//! (or [`Backend::create_detached`] on a chosen backend) makes one, and
//! [`attach`] reaches it by name from any later process; see [`named`].
//!
//! Users of the original synchronous API find it as it was in [`backend`]
//! (`AutoBackend::detect()?.run_cmd(["echo", "hello"])`, `DockerBackend`,
//! `PodmanBackend`, `LocalBackend`, the two-method `Backend` trait) and
//! [`error`]. Those two modules replace `cleanroom-core`'s modules of the
//! same names here; everything those held is at the crate root
//! ([`Backend`], [`Sandbox`], [`Availability`], [`Error`], [`Result`], ...).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> cleanroom::Result<()> {
//! use cleanroom::{Cmd, SandboxSpec};
//!
//! let spec = SandboxSpec::default();
//! let result = cleanroom::run_spec(&spec, Cmd::from(["sh", "-c", "echo hi; exit 3"])).await?;
//! assert_eq!(result.exit_code, 3);
//! assert_eq!(result.stdout_lossy(), "hi\n");
//! for warning in result.enforcement.warnings() {
//!     eprintln!("{warning}");
//! }
//! # Ok(())
//! # }
//! ```

mod auto;
pub mod backend;
pub mod blocking;
pub mod error;
mod local;
pub mod named;
mod registry;

pub use auto::{doctor, AutoBackend, BackendReport, NotEnforced};
pub use cleanroom_core::*;
/// The image engine backends use when none is configured (the busybox test
/// image `scripts/setup.d/40-engines.sh` imports).
pub use cleanroom_docker::DEFAULT_IMAGE as DEFAULT_ENGINE_IMAGE;
pub use cleanroom_docker::{
    DockerBackend, EngineBackend, EngineDetached, EngineSandbox, PodmanBackend,
};
/// The image store: import, pull, verify and unpack images.
pub use cleanroom_image as images;
/// The native backend's building blocks (namespaces, cgroups, seccomp, ...).
pub use cleanroom_native as native;
pub use cleanroom_native::{NativeBackend, NativeSandbox};
pub use local::{LocalBackend, LocalSandbox};
pub use named::{attach, create_detached};
pub use registry::backend_for;

/// Runs `cmd` in a fresh sandbox on the detected backend, made to the
/// configuration seen from the current directory (defaults when there is none).
pub async fn run(cmd: impl Into<Cmd>) -> Result<RunResult> {
    let spec = Config::load_default()?.spec()?;
    run_spec(&spec, cmd).await
}

/// Runs `cmd` in a fresh sandbox made to `spec` on the detected backend.
pub async fn run_spec(spec: &SandboxSpec, cmd: impl Into<Cmd>) -> Result<RunResult> {
    AutoBackend::detect().await?.run(spec, cmd.into()).await
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
