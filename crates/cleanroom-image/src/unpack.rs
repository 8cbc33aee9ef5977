//! Unpacking layer blobs, each once per digest, into
//! `<store>/layers/<hex>/root/` (metadata in `<hex>/meta.json`). A layer
//! is extracted into a temp dir and renamed into place whole, so a present
//! directory is always complete. Layers of one image unpack in parallel.
//!
//! OCI whiteouts become what overlayfs understands (see `crate::extract`);
//! they are also listed in `meta.json`.

use std::fs::{self, File};
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use cleanroom_core::{Error, IoContext, Result};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::extract::Extractor;
use crate::image::{Image, LayerRef};
use crate::import::decompress;
use crate::store::{corrupt_blob, missing_blob, Store};
use crate::stream::{feed, Blob, Failure, Feed, Streamed};

/// The seal of a layer's tree (`crate::tree`), beside `meta.json`.
pub(crate) const SEAL: &str = "seal.json";

/// What unpacking one layer found, kept in `meta.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerMeta {
    /// Digest of the uncompressed tar.
    pub diff_id: Option<Digest>,
    /// Paths this layer deletes from the layers below (`.wh.NAME`).
    pub whiteouts: Vec<String>,
    /// Directories whose content from the layers below this layer hides (`.wh..wh..opq`).
    pub opaque_dirs: Vec<String>,
    /// Whether every whiteout was turned into its overlayfs form, so the
    /// layer directory can be used as an overlay lower directory as is.
    pub overlay_ready: bool,
    /// Entries skipped or changed, for the user (device nodes, ...).
    pub notes: Vec<String>,
}

/// A layer unpacked on disk.
#[derive(Clone, Debug)]
pub struct UnpackedLayer {
    /// The layer blob's digest.
    pub digest: Digest,
    /// The layer's files (`<store>/layers/<hex>/root`).
    pub dir: PathBuf,
    /// What unpacking found.
    pub meta: LayerMeta,
}

impl Store {
    /// Unpacks every layer of `image` that is not unpacked yet (in
    /// parallel) and returns them lowest first.
    pub fn unpack_layers(&self, image: &Image) -> Result<Vec<UnpackedLayer>> {
        let _lock = self.lock_shared()?;
        self.unpack_layers_locked(image)
    }

    /// The layer directories of `image`, lowest first, ready to be stacked
    /// as overlayfs lower directories (the last one is the top). Fails when
    /// a whiteout could not be represented for overlayfs here; use
    /// [`Store::rootfs_dir`] then.
    pub fn layer_dirs(&self, image: &Image) -> Result<Vec<PathBuf>> {
        let layers = self.unpack_layers(image)?;
        if let Some(l) = layers.iter().find(|l| !l.meta.overlay_ready) {
            return Err(Error::Image {
                reference: image.reference.clone(),
                message: format!(
                    "layer {} has whiteouts this machine could not turn into overlayfs form; use the merged rootfs (Store::rootfs_dir) instead",
                    l.digest
                ),
            });
        }
        Ok(layers.into_iter().map(|l| l.dir).collect())
    }

    pub(crate) fn unpack_layers_locked(&self, image: &Image) -> Result<Vec<UnpackedLayer>> {
        let diff_ids = image.config.rootfs().diff_ids();
        let todo: Vec<(usize, &LayerRef)> = image
            .layers
            .iter()
            .enumerate()
            .filter(|(_, l)| !self.layer_root(&l.digest).join("meta.json").is_file())
            .collect();
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(todo.len().max(1));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    s.spawn(|| -> Result<()> {
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some((idx, layer)) = todo.get(i) else {
                                return Ok(());
                            };
                            let want = diff_ids.get(*idx).and_then(|d| d.parse::<Digest>().ok());
                            self.unpack_layer(&image.reference, layer, want.as_ref())?;
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::backend("image", "an unpack thread panicked"))
                    })
                })
                .collect()
        });
        for r in results {
            r?;
        }
        image
            .layers
            .iter()
            .map(|l| {
                let root = self.layer_root(&l.digest);
                let meta_path = root.join("meta.json");
                let meta: LayerMeta = serde_json::from_slice(
                    &fs::read(&meta_path).context(|| format!("reading {}", meta_path.display()))?,
                )
                .map_err(|e| Error::Image {
                    reference: image.reference.clone(),
                    message: format!(
                        "{} is not valid ({e}); run `cleanroom gc` and retry",
                        meta_path.display()
                    ),
                })?;
                // A layer changed on disk since it was unpacked is not used.
                crate::tree::check_on_use(&root.join("root"), &root.join(SEAL), &image.reference)?;
                Ok(UnpackedLayer {
                    digest: l.digest.clone(),
                    dir: root.join("root"),
                    meta,
                })
            })
            .collect()
    }

    pub(crate) fn layer_root(&self, digest: &Digest) -> PathBuf {
        self.layers_dir().join(digest.hex())
    }

    /// Extracts one layer blob, verifying blob digest and diff ID on the way.
    fn unpack_layer(
        &self,
        reference: &str,
        layer: &LayerRef,
        diff_id: Option<&Digest>,
    ) -> Result<()> {
        let tmp = self.temp_dir("layer")?;
        let root = tmp.path().join("root");
        fs::create_dir(&root).context(|| format!("creating {}", root.display()))?;
        let what = format!("layer {}", layer.digest);
        let mut feed = self.feed(std::slice::from_ref(layer))?;
        let mut x = Extractor::layer(&root, &what);
        let extracted = x.run(&mut feed);
        let got_diff = verified(reference, layer, diff_id, feed.end_layer(), extracted)?;
        let (meta, digests) = x.finish();
        let meta = LayerMeta {
            diff_id: Some(got_diff),
            ..meta
        };
        let json = serde_json::to_vec_pretty(&meta).expect("layer metadata serialises");
        let meta_path = tmp.path().join("meta.json");
        fs::write(&meta_path, json).context(|| format!("writing {}", meta_path.display()))?;
        crate::tree::write_seal(
            &tmp.path().join(SEAL),
            &crate::tree::seal_with(&root, &digests)?,
        )?;
        let dst = self.layer_root(&layer.digest);
        let tmp_path = tmp.keep();
        if let Err(e) = fs::rename(&tmp_path, &dst) {
            // Another process unpacked the same layer first: use theirs.
            crate::fsutil::remove_all(&tmp_path)?;
            if !dst.join("meta.json").is_file() {
                return Err(Error::io(format!("moving layer into {}", dst.display()), e));
            }
        }
        Ok(())
    }
}

impl Store {
    /// Starts streaming the blobs of `layers` (see `crate::stream`).
    pub(crate) fn feed(&self, layers: &[LayerRef]) -> Result<Feed> {
        let blobs = layers
            .iter()
            .map(|l| Blob::Stored {
                path: self.blob_path(&l.digest),
                compression: l.compression,
            })
            .collect();
        feed(blobs).context(|| "starting a layer reader thread".to_owned())
    }
}

/// Judges one streamed layer: its blob digest and size, then the
/// extraction, then its diff ID (`want`, from the image config). Returns
/// the diff ID.
pub(crate) fn verified(
    reference: &str,
    layer: &LayerRef,
    want: Option<&Digest>,
    streamed: std::result::Result<Streamed, Failure>,
    extracted: Result<()>,
) -> Result<Digest> {
    let (s, (digest, size)) = match streamed {
        Ok(Streamed {
            digest: Some(d),
            diff_id: Some(diff),
        }) => (diff, d),
        Ok(_) => unreachable!("a stored blob is hashed as it streams"),
        Err(Failure::Missing) => return Err(missing_blob(reference, &layer.digest)),
        Err(Failure::Unreadable(e)) => {
            return Err(corrupt_blob(
                reference,
                &layer.digest,
                &format!("cannot read or decompress it: {e}"),
            ))
        }
    };
    if digest != layer.digest || size != layer.size {
        return Err(corrupt_blob(
            reference,
            &layer.digest,
            &format!("its content hashes to {digest} ({size} bytes)"),
        ));
    }
    // The bytes are the image's own: a tar it cannot read is a broken image.
    extracted.map_err(|e| {
        if is_data_error(&e) {
            corrupt_blob(reference, &layer.digest, &format!("unpacking failed: {e}"))
        } else {
            e
        }
    })?;
    if let Some(want) = want {
        if *want != s {
            return Err(corrupt_blob(
                reference,
                &layer.digest,
                &format!("it unpacks to {s} but the image config expects {want}"),
            ));
        }
    }
    Ok(s)
}

fn is_data_error(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if matches!(source.kind(), io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidInput | io::ErrorKind::Other))
}

/// Unpacks a plain, gzip or zstd root filesystem tarball (`tar://`) into
/// the directory `into`, by the same rules as image layers: no entry lands
/// outside `into`, device nodes are skipped (`/dev` inside is always the
/// sandbox's own). Says what it skipped or changed.
pub fn unpack_tarball(tarball: &Path, into: &Path) -> Result<LayerMeta> {
    let what = format!("rootfs tarball {}", tarball.display());
    let ctx = || format!("reading {what}");
    let mut file = BufReader::with_capacity(1 << 20, File::open(tarball).context(ctx)?);
    let compression =
        crate::image::Compression::sniff(io::BufRead::fill_buf(&mut file).context(ctx)?);
    let stream = decompress(file, compression).context(ctx)?;
    let mut x = Extractor::layer(into, &what);
    x.run(stream)?;
    Ok(x.finish().0)
}
