//! The original API's handles on the built-in backends: `DockerBackend`,
//! `PodmanBackend` and `LocalBackend` with a synchronous `run_cmd`.

use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;

use cleanroom_core::{Backend as _, Cmd, Config, Error, Result, RootFs, RunResult, SandboxSpec};
use cleanroom_docker::{Engine, EngineBackend};

use super::Backend;
use cleanroom_core::bridge::wait;

/// The spec `run_cmd` runs with: the configuration's, on `rootfs`.
fn configured_spec(rootfs: RootFs) -> Result<SandboxSpec> {
    let mut spec = Config::load_default()?.spec()?;
    spec.rootfs = rootfs;
    Ok(spec)
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Docker {}
    impl Sealed for super::Podman {}
}

/// Which engine a [`ContainerBackend`] drives: [`Docker`] or [`Podman`].
pub trait EngineKind: sealed::Sealed {
    #[doc(hidden)]
    const ENGINE: Engine;
}

/// The Docker engine, as a type parameter of [`ContainerBackend`].
#[derive(Clone, Copy, Debug)]
pub enum Docker {}

/// The Podman engine, as a type parameter of [`ContainerBackend`].
#[derive(Clone, Copy, Debug)]
pub enum Podman {}

impl EngineKind for Docker {
    const ENGINE: Engine = Engine::Docker;
}

impl EngineKind for Podman {
    const ENGINE: Engine = Engine::Podman;
}

/// `DockerBackend::new(image)`: runs commands in containers of `image` on
/// the Docker engine (`DOCKER_HOST`, else the default socket).
pub type DockerBackend = ContainerBackend<Docker>;

/// `PodmanBackend::new(image)`: runs commands in containers of `image` on
/// Podman's API service (`CONTAINER_HOST`, else its default socket).
pub type PodmanBackend = ContainerBackend<Podman>;

/// A blocking handle on the Docker or Podman backend ([`EngineBackend`])
/// with a fixed image. Every container is hardened as the contract says:
/// uid 1000:1000, no capabilities, read-only root, no network.
pub struct ContainerBackend<E: EngineKind> {
    inner: EngineBackend,
    engine: PhantomData<E>,
}

impl<E: EngineKind> Clone for ContainerBackend<E> {
    fn clone(&self) -> Self {
        ContainerBackend {
            inner: self.inner.clone(),
            engine: PhantomData,
        }
    }
}

impl<E: EngineKind> std::fmt::Debug for ContainerBackend<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerBackend")
            .field("engine", &E::ENGINE.name())
            .field("image", &self.image())
            .finish()
    }
}

impl<E: EngineKind> ContainerBackend<E> {
    /// Commands run in containers of `image`. Nothing is contacted yet.
    pub fn new(image: impl Into<String>) -> Self {
        ContainerBackend {
            inner: EngineBackend::new(E::ENGINE, image),
            engine: PhantomData,
        }
    }

    /// The image commands run in.
    pub fn image(&self) -> &str {
        self.inner.default_image()
    }

    /// For Docker: the `docker` CLI whose current context (`docker context
    /// inspect`) names the engine's endpoint when `DOCKER_HOST` is unset.
    /// Cleanroom talks to the engine's API itself and never runs this
    /// binary for anything else. For Podman it has no effect: its endpoint
    /// is `CONTAINER_HOST` or Podman's default socket.
    pub fn docker_bin(self, path: impl Into<PathBuf>) -> Self {
        ContainerBackend {
            inner: self.inner.docker_bin(path),
            engine: PhantomData,
        }
    }

    /// Whether the engine answers (a ping and its `/info`, within seconds).
    pub fn is_available(&self) -> bool {
        wait(self.inner.availability()).available
    }

    /// Makes sure the engine has the image: nothing to do when it is there;
    /// otherwise the engine is asked to pull it (calling this is the
    /// opt-in). When that fails, the error names the image and the ways to
    /// load it by hand.
    pub fn ensure_image(&self) -> Result<()> {
        wait(self.inner.ensure_image()).map_err(|e| match e {
            Error::Image { reference, message } => {
                let engine = E::ENGINE.name();
                Error::Image {
                    message: format!(
                        "{}; an archive from `{engine} save` loads with `{engine} load -i \
                         ARCHIVE.tar`",
                        message.split_whitespace().collect::<Vec<_>>().join(" ")
                    ),
                    reference,
                }
            }
            other => other,
        })
    }

    /// Runs `cmd` (`["cargo", "test"]`, a `Vec<String>` or a [`Cmd`]) in a
    /// fresh container of the image, with the configuration's limits and
    /// timeout.
    pub fn run_cmd(&self, cmd: impl Into<Cmd>) -> Result<RunResult> {
        let spec = configured_spec(RootFs::Image(self.image().to_string()))?;
        self.run(&spec, cmd)
    }

    /// Runs `cmd` in a fresh container made to `spec` (its `host` rootfs
    /// means this handle's image).
    pub fn run(&self, spec: &SandboxSpec, cmd: impl Into<Cmd>) -> Result<RunResult> {
        let cmd = cmd.into();
        wait(self.inner.run(spec, cmd))
    }

    /// The async backend underneath.
    pub fn engine(&self) -> &EngineBackend {
        &self.inner
    }
}

impl<E: EngineKind> Backend for ContainerBackend<E> {
    fn run_cmd(&self, cmd: Cmd) -> Result<RunResult> {
        ContainerBackend::run_cmd(self, cmd)
    }

    fn name(&self) -> &str {
        E::ENGINE.name()
    }

    fn into_async(self) -> Arc<dyn crate::Backend> {
        Arc::new(self.inner)
    }
}

/// A blocking handle on the [local backend](crate::LocalBackend): plain
/// host processes with a cleared environment, each in a fresh working
/// directory. A program given as a relative path with a `/` in it
/// (`./target/debug/mycli`) is found from the caller's current directory.
#[derive(Clone, Debug, Default)]
pub struct LocalBackend {
    inner: crate::LocalBackend,
}

impl LocalBackend {
    pub fn new() -> Self {
        LocalBackend::default()
    }

    /// Always: it needs nothing but the host.
    pub fn is_available(&self) -> bool {
        true
    }

    /// Runs `cmd` (`["./target/debug/mycli", "test"]`, a `Vec<String>` or
    /// a [`Cmd`]) with the configuration's timeout and environment rules.
    pub fn run_cmd(&self, cmd: impl Into<Cmd>) -> Result<RunResult> {
        self.run(&configured_spec(RootFs::Host)?, cmd)
    }

    /// Runs `cmd` made to `spec` (whose rootfs must be `host`).
    pub fn run(&self, spec: &SandboxSpec, cmd: impl Into<Cmd>) -> Result<RunResult> {
        let cmd = cmd.into();
        wait(self.inner.run(spec, cmd))
    }
}

impl Backend for LocalBackend {
    fn run_cmd(&self, cmd: Cmd) -> Result<RunResult> {
        LocalBackend::run_cmd(self, cmd)
    }

    fn name(&self) -> &str {
        "local"
    }

    fn into_async(self) -> Arc<dyn crate::Backend> {
        Arc::new(self.inner)
    }
}
