//! Writes a one-layer `docker save` archive from a root filesystem tar and
//! an [`ImageConfig`]: the form every engine and [`crate::Store::import`]
//! read, for tools and tests that make an image with a config of its own.

use serde_json::json;

use crate::digest::Digest;
use crate::image::ImageConfig;

/// A `docker save` archive (the layout before Docker 25) of one
/// uncompressed `layer` with `config`'s runtime settings, tagged `tag`.
pub fn docker_archive(layer: &[u8], config: &ImageConfig, tag: &str) -> std::io::Result<Vec<u8>> {
    let image_config = json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "created": "1980-01-01T00:00:00Z",
        "config": {
            "Env": config.env, "WorkingDir": config.working_dir, "User": config.user,
            "Entrypoint": config.entrypoint, "Cmd": config.cmd,
        },
        "rootfs": { "type": "layers", "diff_ids": [Digest::of(layer).to_string()] },
    })
    .to_string();
    let manifest = json!([{
        "Config": "config.json", "RepoTags": [tag], "Layers": ["layer/layer.tar"],
    }])
    .to_string();
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("config.json", image_config.as_bytes()),
        ("manifest.json", manifest.as_bytes()),
        ("layer/layer.tar", layer),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data)?;
    }
    b.into_inner()
}
