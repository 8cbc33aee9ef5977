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
//!
//! How it works:
//! - A container's main process idles (`sleep 2147483647`) unless the
//!   sandbox has a main command; every command, one-shot or not, is an exec.
//!   A one-shot run is create, start, exec, remove; with
//!   [`EngineBackend::with_warm_pool`] it is an exec into a container started
//!   beforehand, which is then removed, never reused.
//! - Execs run `sh -c 'echo $$; exec env -i VARS... PROG ARGS'`: the first
//!   output line names the exec's process group so a timeout can kill the
//!   whole tree, and `env -i` gives the command exactly the spec's
//!   environment. Images therefore need `sh`, `env` and `sleep`, and `tar`
//!   for copies (busybox or coreutils images have them all).
//! - Copies in and out are tar streams through the sandbox's own `tar`:
//!   Docker's archive API refuses read-only roots and cannot see tmpfs.
//! - Every container is labelled `cleanroom.session`, `cleanroom.created-by`,
//!   `cleanroom.pid` and `cleanroom.host`. Dropping a sandbox removes it;
//!   [`EngineBackend::remove_session`] removes all of this process's (for a
//!   signal handler); `gc` removes those whose creating process is dead.
//! - Exit codes above 128 up to 192 are reported as signals, as a shell does:
//!   the Engine API gives no other way to tell them apart.
//! - Podman on machines without CAP_SYS_RESOURCE needs the ulimits this crate
//!   passes with every container, and crun may need replacing by runc; see
//!   [`PODMAN_RLIMIT_FIX`], which `doctor` shows through
//!   [`EngineBackend::probe_run`].

mod backend;
mod cleanup;
mod container;
mod copy;
mod endpoint;
mod errors;
mod exec;
mod image;
mod info_cache;
mod pool;
mod sandbox;

pub use backend::{DockerBackend, EngineBackend, EngineInfo, PodmanBackend, DEFAULT_IMAGE};
pub use cleanup::list_labelled;
pub use container::{session, CREATED_BY, LABEL_CREATED_BY, LABEL_HOST, LABEL_PID, LABEL_SESSION};
pub use endpoint::{Endpoint, Engine, API_VERSION, PODMAN_RLIMIT_FIX};
pub use sandbox::EngineSandbox;
