//! Making sure an image is in the engine: present, or pulled with progress.

use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::Docker;
use cleanroom_core::{Error, Result};
use futures_util::StreamExt;

use crate::endpoint::Engine;
use crate::errors::is_not_found;

/// The error for an image the engine does not have and could not pull.
pub fn missing_image(engine: Engine, image: &str, detail: &str) -> Error {
    Error::Image {
        reference: image.to_string(),
        message: format!(
            "not in the {} engine and it could not be pulled ({detail}); import it from a \
             rootfs tarball with `{} import ROOTFS.tar {image}` (or `cleanroom import`), or \
             choose another image",
            engine.name(),
            engine.name()
        ),
    }
}

/// Whether `image` is in the engine.
pub async fn present(docker: &Docker, engine: Engine, image: &str) -> Result<bool> {
    match docker.inspect_image(image).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(Error::backend(
            engine.name(),
            format!("inspecting image `{image}`: {e}"),
        )),
    }
}

/// Pulls `image` unless present, telling `progress` each status line.
pub async fn ensure(
    docker: &Docker,
    engine: Engine,
    image: &str,
    mut progress: impl FnMut(&str),
) -> Result<()> {
    if present(docker, engine, image).await? {
        return Ok(());
    }
    progress(&format!("pulling {image} with {}", engine.name()));
    let opts = CreateImageOptionsBuilder::new().from_image(image).build();
    let mut stream = docker.create_image(Some(opts), None, None);
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                let line = [info.id.as_deref(), info.status.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                if !line.is_empty() {
                    progress(&line);
                }
            }
            Err(e) => return Err(missing_image(engine, image, &e.to_string())),
        }
    }
    if present(docker, engine, image).await? {
        Ok(())
    } else {
        Err(missing_image(
            engine,
            image,
            "the pull ended without the image",
        ))
    }
}
