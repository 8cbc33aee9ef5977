//! From a [`BackendChoice`] to a concrete backend.

use std::sync::Arc;

use cleanroom_core::{Backend, BackendChoice, Error, Result};

use crate::local::LocalBackend;

/// The backend named by `choice`; `image` is the default image for engine
/// backends. `auto` is not a concrete backend: use [`crate::AutoBackend`].
pub fn backend_for(choice: BackendChoice, image: Option<&str>) -> Result<Arc<dyn Backend>> {
    // Engines run images; with none configured they use the busybox test
    // image the project's scripts import (auto never picks them then).
    let image = image
        .filter(|i| *i != "host")
        .unwrap_or(cleanroom_docker::DEFAULT_IMAGE);
    Ok(match choice {
        BackendChoice::Local => Arc::new(LocalBackend::new()),
        BackendChoice::Native => Arc::new(cleanroom_native::NativeBackend::new()),
        BackendChoice::Vm => Arc::new(cleanroom_vm::VmBackend::new()),
        BackendChoice::Docker => Arc::new(cleanroom_docker::DockerBackend::new(image)),
        BackendChoice::Podman => Arc::new(cleanroom_docker::PodmanBackend::new(image)),
        BackendChoice::Auto => {
            return Err(Error::InvalidSpec(
                "`auto` is a choice, not a backend; use AutoBackend::select".into(),
            ))
        }
    })
}
