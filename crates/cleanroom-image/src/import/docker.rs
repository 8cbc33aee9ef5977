//! `docker save` archives. Both layouts are read through `manifest.json`:
//! the old one (`<id>/layer.tar`, `<id>.json` config) and the one Docker 25+
//! writes (an OCI layout whose `manifest.json` points into `blobs/sha256/`).

use cleanroom_core::{Error, Result};
use oci_spec::image::ImageConfiguration;
use serde::Deserialize;

use super::bundle::Bundle;
use super::prebuild::Prebuild;
use super::{choose, rootfs::store_layer, write_manifest, Imported, Tx};
use crate::digest::Digest;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The digest a file name promises: `blobs/sha256/<hex>`, `<hex>.json`, `<hex>/layer.tar` is not one.
fn digest_in_name(name: &str) -> Option<Digest> {
    let base = name.rsplit('/').next()?;
    let base = base.strip_suffix(".json").unwrap_or(base);
    let hex = base.strip_suffix(".tar").unwrap_or(base);
    Digest::from_hex(hex)
}

pub(super) fn import(
    tx: &mut Tx<'_>,
    b: &Bundle,
    select: Option<&str>,
    tag: Option<&str>,
) -> Result<Imported> {
    let src = b.path().display().to_string();
    let bad = |message: String| Error::Image {
        reference: src.clone(),
        message,
    };
    let raw = b.read_small("manifest.json")?;
    let entries: Vec<Entry> = serde_json::from_slice(&raw).map_err(|e| {
        bad(format!(
            "`manifest.json` is not a docker save manifest ({e}); re-export with `docker save`"
        ))
    })?;
    let candidates: Vec<(Vec<String>, Entry)> = entries
        .into_iter()
        .map(|e| (e.repo_tags.clone().unwrap_or_default(), e))
        .collect();
    let (names, entry) = choose(b.path(), &candidates, select, tag)?;

    let config_bytes = b.read_small(&entry.config)?;
    let config: ImageConfiguration = serde_json::from_slice(&config_bytes).map_err(|e| {
        bad(format!(
            "config `{}` is not an image config ({e})",
            entry.config
        ))
    })?;
    let config_digest = tx.put(
        config_bytes.as_slice(),
        digest_in_name(&entry.config).as_ref(),
        "config",
        Some(config_bytes.len() as u64),
    )?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != entry.layers.len() {
        return Err(bad(format!(
            "the config lists {} layers but manifest.json {}; the archive is inconsistent, re-export it",
            diff_ids.len(),
            entry.layers.len()
        )));
    }
    // The merged rootfs is built while the layers are copied (`prebuild.rs`).
    tx.prebuild = Some(Prebuild::start(tx.store, entry.layers.len())?);
    let mut stored = Vec::new();
    for name in &entry.layers {
        let (reader, size) = b.open_file(name)?;
        stored.push(store_layer(
            tx,
            reader,
            Some(size),
            digest_in_name(name).as_ref(),
            name,
        )?);
    }
    let hashed = tx
        .prebuild
        .as_mut()
        .map(|p| p.finish_layers())
        .unwrap_or_default();
    let mut layers = Vec::new();
    for (i, ((layer, name), want_diff)) in
        stored.iter().zip(&entry.layers).zip(diff_ids).enumerate()
    {
        let diff_id = layer.diff_id_or_read(tx, hashed.get(i).and_then(Option::as_ref))?;
        if diff_id.to_string() != *want_diff {
            return Err(bad(format!(
                "layer `{name}` unpacks to {diff_id} but the config expects {want_diff}; the archive is corrupt, re-export it"
            )));
        }
        layers.push((layer.digest.clone(), layer.size, layer.compression));
    }
    let manifest = write_manifest(tx, (&config_digest.0, config_digest.1), &layers)?;
    if let Some(p) = tx.prebuild.take() {
        p.place(tx.store, &manifest);
    }
    Ok(Imported {
        manifest,
        names: names.clone(),
    })
}
