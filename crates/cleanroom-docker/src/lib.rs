//! Cleanroom's `docker` and `podman` backends: one implementation over the
//! Docker Engine API (which Podman also serves), running every sandbox as a
//! hardened container — uid 1000:1000, no capabilities, read-only root,
//! tmpfs `/tmp` and working directory, no network, no_new_privs, the
//! seccomp policy native enforces too ([`seccomp_profile`]), cgroup limits — labelled so that
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
//! - A container's main process is a keep-alive, `cat` reading the
//!   container's stdin, which the creating process holds open through an
//!   attach connection: when that process ends, however it ends, the engine
//!   closes the stdin, `cat` exits and the engine removes the container
//!   (`AutoRemove`). A main command runs beside it. Every command in a
//!   long-lived sandbox is an exec.
//! - A one-shot run needs no exec: its container's main process waits on
//!   that same stdin for the one command, runs it and reports its exit code
//!   in band (`src/oneshot.rs` has the protocol). It is create, attach,
//!   start, a line written; with [`EngineBackend::with_warm_pool`] the
//!   container was started beforehand and the run is the line alone. Either
//!   way the container serves that one run and is then released.
//! - Execs run `sh -c 'echo $$; exec env -i VARS... PROG ARGS'`: the first
//!   output line names the exec's process group so a timeout can kill the
//!   whole tree, and `env -i` gives the command exactly the spec's
//!   environment. Images therefore need `sh`, `env` and `cat`, and `tar`
//!   for copies (busybox or coreutils images have them all).
//! - An image's own config (Env, WorkingDir, User, Entrypoint, Cmd) is read
//!   once per image (`GET /images/{name}/json`) and applied by the same rule
//!   as on native ([`cleanroom_core::image_config`]).
//! - Copies in and out are tar streams through the sandbox's own `tar`:
//!   Docker's archive API refuses read-only roots and cannot see tmpfs.
//! - Every container is labelled `cleanroom.session`, `cleanroom.created-by`,
//!   `cleanroom.pid` and `cleanroom.host`. Dropping a sandbox removes it;
//!   [`EngineBackend::remove_session`] removes all of this process's (for a
//!   signal handler); `gc` removes those whose creating process is dead.
//!   A caller killed between the engine's create and start leaves a
//!   container that never ran: the next process to start one removes it.
//! - Named sandboxes that outlive their creator (`create`, `run -d`) are
//!   containers without that keep-alive or auto-removal, called
//!   `cleanroom-NAME` and labelled with the name, the owner's uid and what a
//!   later process needs to exec in them; see [`EngineDetached`].
//! - Exit codes above 128 up to 192 are reported as signals, as a shell does:
//!   the Engine API gives no other way to tell them apart.
//! - Podman on machines without CAP_SYS_RESOURCE needs the ulimits this crate
//!   passes with every container, and crun may need replacing by runc; see
//!   [`PODMAN_RLIMIT_FIX`], which `doctor` shows through
//!   [`EngineBackend::probe_run`].

mod attached;
mod backend;
mod cleanup;
mod container;
mod copy;
mod detached;
mod endpoint;
mod engine_info;
mod errors;
mod exec;
mod image;
mod info_cache;
mod oneshot;
mod pod;
mod pool;
mod sandbox;
pub mod seccomp_profile;
mod stats;

pub use backend::{DockerBackend, EngineBackend, PodmanBackend, DEFAULT_IMAGE};
pub use cleanup::list_labelled;
pub use container::{session, CREATED_BY, LABEL_CREATED_BY, LABEL_HOST, LABEL_PID, LABEL_SESSION};
pub use detached::{container_name, EngineDetached, LABEL_RECORD, LABEL_UID};
pub use endpoint::{Endpoint, Engine, API_VERSION, PODMAN_RLIMIT_FIX};
pub use engine_info::EngineInfo;
pub use sandbox::EngineSandbox;
