//! What the store hands out: an [`Image`] (manifest + config, verified), a
//! listing row [`ImageInfo`], and the runtime defaults [`ImageConfig`] that
//! backends honour (read from the OCI config by [`runtime_config_of`]).

use oci_spec::image::{ImageConfiguration, ImageManifest, MediaType};
use serde::Serialize;

pub use cleanroom_core::ImageConfig;

use crate::digest::Digest;

/// One row of `cleanroom images`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImageInfo {
    /// Normalised reference, e.g. `busybox:latest`.
    pub reference: String,
    /// Digest of the image manifest (what `name@sha256:...` pins).
    pub digest: Digest,
    /// Digest of the image config (the Docker "image ID").
    pub id: Digest,
    /// Bytes of manifest, config and layer blobs.
    pub size: u64,
    /// RFC 3339 creation time from the image config, or the import time.
    pub created: String,
    /// Why the image cannot be used (a blob missing or corrupt), with what
    /// to do; `None` for a healthy image. A broken image's `id` is its
    /// manifest digest when the manifest cannot be read, and its `size` 0.
    pub problem: Option<String>,
}

/// A layer as the manifest describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerRef {
    /// Digest of the blob as stored (compressed or not).
    pub digest: Digest,
    /// Size of the blob in bytes.
    pub size: u64,
    /// How the blob is compressed.
    pub compression: Compression,
}

/// Compression of a layer blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// A plain tar stream.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// Detects compression from the first bytes of a stream.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The OCI layer media type for a tar with this compression.
    pub fn layer_media_type(self) -> MediaType {
        match self {
            Compression::None => MediaType::ImageLayer,
            Compression::Gzip => MediaType::ImageLayerGzip,
            Compression::Zstd => MediaType::ImageLayerZstd,
        }
    }

    /// From an OCI or Docker layer media type; `None` if it is not a layer type we can unpack.
    pub fn from_media_type(mt: &MediaType) -> Option<Compression> {
        let s = mt.to_string();
        if s.ends_with("gzip") {
            Some(Compression::Gzip)
        } else if s.ends_with("zstd") {
            Some(Compression::Zstd)
        } else if s.ends_with(".tar") || s == "application/vnd.docker.image.rootfs.diff.tar" {
            Some(Compression::None)
        } else {
            None
        }
    }
}

/// A resolved image: its manifest and config, both verified against their digests.
#[derive(Clone, Debug)]
pub struct Image {
    /// The reference it was resolved from (normalised when it was a name).
    pub reference: String,
    /// Digest of the manifest.
    pub digest: Digest,
    /// The OCI image manifest.
    pub manifest: ImageManifest,
    /// Digest of the config blob (the image ID).
    pub config_digest: Digest,
    /// The OCI image config.
    pub config: ImageConfiguration,
    /// The layers, lowest first.
    pub layers: Vec<LayerRef>,
}

impl Image {
    /// The runtime defaults from the image config.
    pub fn runtime_config(&self) -> ImageConfig {
        runtime_config_of(&self.config)
    }
}

/// The runtime part of an OCI image config (the type lives in
/// `cleanroom-core`, where every backend applies it by one rule).
pub fn runtime_config_of(config: &ImageConfiguration) -> ImageConfig {
    let Some(c) = config.config() else {
        return ImageConfig::default();
    };
    let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    ImageConfig {
        env: c.env().clone().unwrap_or_default(),
        working_dir: non_empty(c.working_dir()),
        user: non_empty(c.user()),
        entrypoint: c.entrypoint().clone().unwrap_or_default(),
        cmd: c.cmd().clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_config_from_a_docker_style_config() {
        let json = r#"{"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z",
            "config":{"Env":["PATH=/usr/bin:/bin","A=1","A=2"],"WorkingDir":"/srv","User":"1000:1000",
            "Entrypoint":["/bin/sh","-c"],"Cmd":["echo hi"],"OnBuild":null,"Healthcheck":{"Test":["NONE"]}},
            "container_config":{"Hostname":"x"},"docker_version":"24.0.0",
            "rootfs":{"type":"layers","diff_ids":[]}}"#;
        let cfg: ImageConfiguration = serde_json::from_str(json).unwrap();
        let rc = runtime_config_of(&cfg);
        assert_eq!(rc.working_dir.as_deref(), Some("/srv"));
        assert_eq!(rc.user.as_deref(), Some("1000:1000"));
        assert_eq!(rc.env_map()["A"], "2");
        assert_eq!(rc.argv(&[]), ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(rc.argv(&["ls".into()]), ["/bin/sh", "-c", "ls"]);
    }

    #[test]
    fn sniffs_compression() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"bin/"), Compression::None);
    }
}
