//! OCI image layouts (`oci-layout`, `index.json`, `blobs/sha256/`), as a
//! directory or a tar. Every blob is verified against its descriptor.

use cleanroom_core::{Error, Result};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

use super::bundle::Bundle;
use super::{choose, Imported, Tx};
use crate::digest::Digest;
use crate::image::Compression;

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

pub(super) fn import(
    tx: &mut Tx<'_>,
    b: &Bundle,
    select: Option<&str>,
    tag: Option<&str>,
) -> Result<Imported> {
    let src = b.path().display().to_string();
    let raw = b.read_small("index.json")?;
    let index: ImageIndex = serde_json::from_slice(&raw).map_err(|e| Error::Image {
        reference: src.clone(),
        message: format!("`index.json` is not an OCI image index ({e})"),
    })?;
    let candidates: Vec<(Vec<String>, Descriptor)> = index
        .manifests()
        .iter()
        .map(|d| {
            let ann = d.annotations().clone().unwrap_or_default();
            let names = [CONTAINERD_NAME, REF_NAME]
                .iter()
                .filter_map(|k| ann.get(*k).cloned())
                .collect();
            (names, d.clone())
        })
        .collect();
    let (names, desc) = choose(b.path(), &candidates, select, tag)?;
    let desc = pick_platform(b, desc, &src)?;
    let manifest = copy_manifest(tx, b, &desc, &src)?;
    // A bare `ref.name` like `latest` is a tag, not an image name.
    let names = names
        .iter()
        .filter(|n| n.contains([':', '/']))
        .cloned()
        .collect();
    Ok(Imported { manifest, names })
}

fn blob_name(d: &Descriptor) -> String {
    format!("blobs/{}/{}", d.digest().algorithm(), d.digest().digest())
}

fn is_index(mt: &MediaType) -> bool {
    matches!(mt, MediaType::ImageIndex)
        || mt.to_string() == "application/vnd.docker.distribution.manifest.list.v2+json"
}

/// Reads a small blob of the layout and checks it against its descriptor.
fn read_verified(b: &Bundle, d: &Descriptor, src: &str) -> Result<Vec<u8>> {
    let bytes = b.read_small(&blob_name(d))?;
    let want = Digest::from_oci(d.digest())?;
    let got = Digest::of(&bytes);
    if got != want {
        return Err(Error::Image {
            reference: src.to_owned(),
            message: format!("blob {want} does not match its digest (content hashes to {got}); the layout is corrupt"),
        });
    }
    Ok(bytes)
}

/// Follows nested indexes down to the manifest for this host's platform.
fn pick_platform(b: &Bundle, desc: &Descriptor, src: &str) -> Result<Descriptor> {
    let mut desc = desc.clone();
    for _ in 0..4 {
        if !is_index(desc.media_type()) {
            return Ok(desc);
        }
        let bytes = read_verified(b, &desc, src)?;
        let idx: ImageIndex = serde_json::from_slice(&bytes).map_err(|e| Error::Image {
            reference: src.to_owned(),
            message: format!("nested index {} is not valid ({e})", desc.digest()),
        })?;
        desc = select_platform(idx.manifests(), src)?;
    }
    Err(Error::Image {
        reference: src.to_owned(),
        message: "image indexes nest too deeply".into(),
    })
}

/// The manifest of `manifests` for the host (linux + this CPU), or an error listing what there is.
pub(crate) fn select_platform(manifests: &[Descriptor], src: &str) -> Result<Descriptor> {
    let arch = crate::fsutil::host_arch();
    let fits = |d: &&Descriptor| match d.platform() {
        Some(p) => p.os().to_string() == "linux" && p.architecture().to_string() == arch,
        None => false,
    };
    if let Some(d) = manifests.iter().find(fits) {
        return Ok(d.clone());
    }
    if let [only] = manifests {
        if only.platform().is_none() {
            return Ok(only.clone());
        }
    }
    let have: Vec<String> = manifests
        .iter()
        .map(|d| match d.platform() {
            Some(p) => format!("{}/{}", p.os(), p.architecture()),
            None => "unknown".into(),
        })
        .collect();
    Err(Error::Image {
        reference: src.to_owned(),
        message: format!(
            "no image for this host (linux/{arch}) in the index; it has: {}",
            have.join(", ")
        ),
    })
}

fn copy_manifest(tx: &mut Tx<'_>, b: &Bundle, desc: &Descriptor, src: &str) -> Result<Digest> {
    let bytes = read_verified(b, desc, src)?;
    let manifest: ImageManifest = serde_json::from_slice(&bytes).map_err(|e| Error::Image {
        reference: src.to_owned(),
        message: format!("manifest {} is not an image manifest ({e})", desc.digest()),
    })?;
    for l in manifest.layers() {
        if Compression::from_media_type(l.media_type()).is_none() {
            return Err(Error::Image {
                reference: src.to_owned(),
                message: format!(
                    "layer {} has media type `{}`, which Cleanroom cannot unpack",
                    l.digest(),
                    l.media_type()
                ),
            });
        }
    }
    for (what, d) in std::iter::once(("config".to_owned(), manifest.config())).chain(
        manifest
            .layers()
            .iter()
            .map(|l| (format!("layer {}", l.digest()), l)),
    ) {
        let want = Digest::from_oci(d.digest())?;
        let (reader, size) = b.open_file(&blob_name(d))?;
        tx.put(reader, Some(&want), &what, Some(size))?;
    }
    let want = Digest::from_oci(desc.digest())?;
    Ok(tx
        .put(
            bytes.as_slice(),
            Some(&want),
            "manifest",
            Some(bytes.len() as u64),
        )?
        .0)
}
