//! Named sandboxes across backends: create one whose name no backend holds
//! yet, find one by name from any later process ([`attach`]), and list
//! them all. A name is looked up on native, then docker, then podman, then vm.

use std::sync::Arc;

use cleanroom_core::detached::{not_found, validate_name};
use cleanroom_core::{
    Backend, BackendChoice, Cmd, DetachOptions, Detached, Error, Result, SandboxInfo, SandboxSpec,
};

use crate::registry::backend_for;
use crate::AutoBackend;

/// The backends that can hold named sandboxes, in lookup order.
pub const NAMED_ORDER: [BackendChoice; 4] = [
    BackendChoice::Native,
    BackendChoice::Docker,
    BackendChoice::Podman,
    BackendChoice::Vm,
];

/// The backends a name is looked up on: all of [`NAMED_ORDER`], or only
/// `only` (`--backend`; `auto` means all).
pub fn named_backends(only: BackendChoice) -> Result<Vec<Arc<dyn Backend>>> {
    let choices: Vec<BackendChoice> = match only {
        BackendChoice::Auto => NAMED_ORDER.to_vec(),
        one => vec![one],
    };
    choices.into_iter().map(|c| backend_for(c, None)).collect()
}

/// A handle on the named sandbox `name`, from whichever backend holds it.
///
/// ```no_run
/// # async fn demo() -> cleanroom::Result<()> {
/// let sandbox = cleanroom::attach("build").await?;
/// let r = sandbox.exec(cleanroom::Cmd::from(["cat", "/tmp/state"]), None).await?;
/// println!("{}", r.stdout_lossy());
/// # Ok(()) }
/// ```
pub async fn attach(name: &str) -> Result<Box<dyn Detached>> {
    attach_on(name, BackendChoice::Auto).await
}

/// [`attach`] on the backends `only` selects. A backend that does not
/// answer (an engine that is not running) holds nothing; when `only` names
/// one, its error is the answer, as is a backend's refusal of a sandbox it
/// holds (one another version of Cleanroom made).
pub async fn attach_on(name: &str, only: BackendChoice) -> Result<Box<dyn Detached>> {
    validate_name(name)?;
    for backend in named_backends(only)? {
        match backend.attach(name).await {
            Ok(Some(handle)) => return Ok(handle),
            Ok(None) => {}
            // It holds the name but cannot serve it (made by another
            // version): that is the answer, not "no such sandbox".
            Err(e @ Error::Config { .. }) => return Err(e),
            Err(e) if only != BackendChoice::Auto => return Err(e),
            Err(e) => tracing::debug!("{}: looking up `{name}`: {e}", backend.name()),
        }
    }
    Err(not_found(name))
}

/// Every named sandbox on the backends `only` selects (running ones, and
/// with `all` the rest), and for each backend that could not be asked, why.
pub async fn list(all: bool, only: BackendChoice) -> Result<(Vec<SandboxInfo>, Vec<String>)> {
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    for backend in named_backends(only)? {
        match backend.list(all).await {
            Ok(infos) => found.extend(infos),
            Err(e) if only != BackendChoice::Auto => return Err(e),
            Err(e) => skipped.push(format!("{}: {e}", backend.name())),
        }
    }
    Ok((found, skipped))
}

/// Creates the named sandbox `options.name` on `backend` unless another
/// backend already holds that name: a name means one sandbox. (The backend
/// itself makes concurrent creates of one name give exactly one sandbox.)
pub async fn create_on(
    backend: &dyn Backend,
    spec: &SandboxSpec,
    main: Option<Cmd>,
    options: DetachOptions,
) -> Result<Box<dyn Detached>> {
    validate_name(&options.name)?;
    check_name_free(&options.name, backend.name()).await?;
    backend.create_detached(spec, main, options).await
}

/// Fails if a backend other than `creating_on` holds a sandbox called
/// `name` (one that does not answer holds none).
pub async fn check_name_free(name: &str, creating_on: &str) -> Result<()> {
    for other in named_backends(BackendChoice::Auto)? {
        if other.name() == creating_on {
            continue;
        }
        if let Ok(Some(h)) = other.attach(name).await {
            return Err(Error::Config {
                origin: format!("sandbox `{name}`"),
                message: format!(
                    "the name is already in use (by a sandbox on the {} backend); choose \
                     another or remove it with `cleanroom rm {name}`",
                    h.info().backend
                ),
            });
        }
    }
    Ok(())
}

/// Creates a named sandbox on the configured backend (see
/// [`AutoBackend::detect`]) that outlives this process; with `main`, that
/// command is its main process, else it idles until stopped. Any later
/// process reaches it with [`attach`].
pub async fn create_detached(
    spec: &SandboxSpec,
    main: Option<Cmd>,
    options: DetachOptions,
) -> Result<Box<dyn Detached>> {
    let backend = AutoBackend::detect().await?;
    create_on(&backend, spec, main, options).await
}
