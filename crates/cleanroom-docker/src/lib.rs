//! Cleanroom's `docker` and `podman` backends: one implementation over the
//! Docker Engine API (which Podman also serves), running every sandbox as a
//! hardened container — uid 1000:1000, no capabilities, read-only root,
//! tmpfs `/tmp` and working directory, no network, no_new_privs, the
//! engine's default seccomp profile, cgroup limits — labelled so that
//! nothing outlives its caller (`gc` removes what a crash left).
//!
//! ```no_run
//! # async fn demo() -> cleanroom_core::Result<()> {
//! use cleanroom_core::{Backend, Cmd, SandboxSpec};
//! let docker = cleanroom_docker::DockerBackend::new("cleanroom-busybox:latest");
//! let r = docker.run(&SandboxSpec::default(), Cmd::from(["echo", "hi"])).await?;
//! assert_eq!(r.stdout, b"hi\n");
//! # Ok(()) }
//! ```

mod backend;
mod cleanup;
mod container;
mod copy;
mod endpoint;
mod errors;
mod exec;
mod image;
mod pool;
mod sandbox;

pub use backend::{DockerBackend, EngineBackend, EngineInfo, PodmanBackend, DEFAULT_IMAGE};
pub use container::{session, CREATED_BY, LABEL_CREATED_BY, LABEL_HOST, LABEL_PID, LABEL_SESSION};
pub use endpoint::{Endpoint, Engine, API_VERSION, PODMAN_RLIMIT_FIX};
pub use sandbox::EngineSandbox;
