//! Making sure an image is in the engine (present, or pulled with
//! progress), and reading its runtime config.

use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::Docker;
use cleanroom_core::{Error, ImageConfig, Result};
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

/// The runtime part of `image`'s config (Env, WorkingDir, User,
/// Entrypoint, Cmd), which the backend applies by the rule of
/// [`cleanroom_core::image_config`].
pub async fn runtime_config(docker: &Docker, engine: Engine, image: &str) -> Result<ImageConfig> {
    let inspect = docker.inspect_image(image).await.map_err(|e| {
        Error::backend(
            engine.name(),
            format!("reading the config of image `{image}`: {e}"),
        )
    })?;
    let Some(c) = inspect.config else {
        return Ok(ImageConfig::default());
    };
    Ok(ImageConfig {
        env: c.env.unwrap_or_default(),
        working_dir: c.working_dir.filter(|d| !d.is_empty()),
        user: c.user.filter(|u| !u.is_empty()),
        entrypoint: c.entrypoint.unwrap_or_default(),
        cmd: c.cmd.unwrap_or_default(),
    })
}
