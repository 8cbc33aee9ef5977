//! Bringing images into the store: `docker save` archives, OCI image
//! layouts, root filesystem tarballs and directories (and, in `pull.rs`,
//! registries). Every importer writes verified blobs, then an OCI manifest;
//! the reference is set last, so a failed import leaves no tagged image, and
//! blobs it added are removed again.

mod bundle;
mod docker;
mod oci;
mod prebuild;
mod rootfs;

use std::path::{Path, PathBuf};

use cleanroom_core::{Error, Result};
use oci_spec::image::{Descriptor, ImageManifest, MediaType};

use crate::digest::Digest;
use crate::image::{Compression, ImageInfo};
use crate::pull::Credentials;
use crate::reference::Reference;
use crate::store::Store;

pub(crate) use bundle::{decompress, read_head, unknown_format};
pub(crate) use oci::select_platform;

/// Where an image comes from, parsed from the `SOURCE` of `cleanroom import`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `docker-archive:PATH[:REF]`: a `docker save` archive (tar, or a directory it was unpacked to).
    DockerArchive {
        path: PathBuf,
        select: Option<String>,
    },
    /// `oci:PATH[:TAG]`: an OCI image layout (directory or tar).
    OciLayout {
        path: PathBuf,
        select: Option<String>,
    },
    /// `tar://PATH`: a root filesystem tarball (plain, gzip or zstd).
    RootfsTar(PathBuf),
    /// `file://PATH`: a root filesystem directory, packed into one layer.
    RootfsDir(PathBuf),
    /// `docker://[HOST/]NAME[:TAG]`: a registry pull.
    Registry(Reference),
    /// A bare path: a `docker save` archive or an OCI layout, detected from its content.
    Detect(PathBuf),
}

impl Source {
    /// Parses a source string.
    pub fn parse(s: &str) -> Result<Source> {
        fn split_select(rest: &str) -> (PathBuf, Option<String>) {
            // `PATH:REF`: the whole thing if it exists, else the first
            // prefix that exists (a REF may hold `:` itself).
            if Path::new(rest).exists() {
                return (rest.into(), None);
            }
            for (i, _) in rest.match_indices(':') {
                if Path::new(&rest[..i]).exists() {
                    return (rest[..i].into(), Some(rest[i + 1..].to_owned()));
                }
            }
            match rest.rsplit_once(':') {
                Some((p, t)) if !t.contains('/') && !t.is_empty() => (p.into(), Some(t.to_owned())),
                _ => (rest.into(), None),
            }
        }
        Ok(if let Some(r) = s.strip_prefix("docker://") {
            Source::Registry(Reference::parse(r)?)
        } else if let Some(p) = s.strip_prefix("tar://") {
            Source::RootfsTar(p.into())
        } else if let Some(p) = s.strip_prefix("file://") {
            Source::RootfsDir(p.into())
        } else if let Some(r) = s.strip_prefix("docker-archive:") {
            let (path, select) = split_select(r);
            Source::DockerArchive { path, select }
        } else if let Some(r) = s
            .strip_prefix("oci-archive:")
            .or_else(|| s.strip_prefix("oci:"))
        {
            let (path, select) = split_select(r);
            Source::OciLayout { path, select }
        } else {
            Source::Detect(s.into())
        })
    }
}

/// What a long import is doing, for progress bars.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// What is being copied: `layer sha256:...`, `config`, `rootfs.tar`, ...
    pub item: String,
    /// Bytes of this item done so far.
    pub done: u64,
    /// Size of this item, when known.
    pub total: Option<u64>,
}

/// A progress callback; called often, keep it cheap.
pub type ProgressFn<'a> = &'a (dyn Fn(&Progress) + Sync);

/// One import: holds the shared store lock (so gc cannot delete its blobs
/// before they are tagged) and remembers the blobs it added, removed again
/// if the import fails.
pub(crate) struct Tx<'a> {
    pub(crate) store: &'a Store,
    added: Vec<Digest>,
    pub(crate) progress: ProgressFn<'a>,
    /// The merged rootfs built from the layers as they are copied, if any.
    pub(crate) prebuild: Option<prebuild::Prebuild>,
    lock: Option<crate::lock::StoreLock>,
}

impl<'a> Tx<'a> {
    pub(crate) fn new(store: &'a Store, progress: ProgressFn<'a>) -> Result<Tx<'a>> {
        Ok(Tx {
            store,
            added: Vec::new(),
            progress,
            prebuild: None,
            lock: Some(store.lock_shared()?),
        })
    }

    /// Stores a blob, verifying it against `expected` when given.
    pub(crate) fn put(
        &mut self,
        reader: impl std::io::Read,
        expected: Option<&Digest>,
        item: &str,
        total: Option<u64>,
    ) -> Result<(Digest, u64)> {
        self.put_as(reader, expected, item, total, None)
    }

    /// [`Tx::put`], handing every chunk on to `pass` once it is hashed and
    /// written; then the whole source is read even when the blob is stored
    /// already.
    pub(crate) fn put_as(
        &mut self,
        reader: impl std::io::Read,
        expected: Option<&Digest>,
        item: &str,
        total: Option<u64>,
        pass: Option<crate::stream::Pass>,
    ) -> Result<(Digest, u64)> {
        let progress = self.progress;
        let mut report = |done| {
            progress(&Progress {
                item: item.to_owned(),
                done,
                total,
            })
        };
        let (d, n, new) = self
            .store
            .put_blob_with(reader, expected, pass, &mut report)?;
        if new && !self.added.contains(&d) {
            self.added.push(d.clone());
        }
        Ok((d, n))
    }

    pub(crate) fn put_bytes(&mut self, bytes: &[u8], item: &str) -> Result<Digest> {
        Ok(self.put(bytes, None, item, Some(bytes.len() as u64))?.0)
    }

    /// Forgets the blobs: the import succeeded.
    fn commit(mut self) {
        self.added.clear();
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        self.lock = None;
        if self.added.is_empty() {
            return;
        }
        // Another import may be about to use a blob this one added, so only
        // roll back when nobody else holds the store; otherwise the blobs
        // stay unreferenced until the next gc.
        let Ok(Some(_exclusive)) = self.store.try_lock_exclusive() else {
            return;
        };
        let Ok(keep) = self.store.reachable() else {
            return;
        };
        for d in &self.added {
            if !keep.blobs.contains(d.hex()) {
                let _ = std::fs::remove_file(self.store.blob_path(d));
            }
        }
    }
}

/// An image an importer wrote: its manifest and the names the source gave it.
pub(crate) struct Imported {
    pub(crate) manifest: Digest,
    pub(crate) names: Vec<String>,
}

/// Builds and stores an OCI manifest for a config and layers.
pub(crate) fn write_manifest(
    tx: &mut Tx<'_>,
    config: (&Digest, u64),
    layers: &[(Digest, u64, Compression)],
) -> Result<Digest> {
    let manifest = ImageManifest::from_parts(config, layers);
    let bytes = serde_json::to_vec(&manifest).map_err(|e| Error::Image {
        reference: config.0.to_string(),
        message: format!("cannot serialise the manifest: {e}"),
    })?;
    tx.put_bytes(&bytes, "manifest")
}

trait FromParts {
    fn from_parts(config: (&Digest, u64), layers: &[(Digest, u64, Compression)]) -> Self;
}

impl FromParts for ImageManifest {
    fn from_parts(config: (&Digest, u64), layers: &[(Digest, u64, Compression)]) -> Self {
        let cfg = Descriptor::new(MediaType::ImageConfig, config.1, config.0.to_oci());
        let layers: Vec<Descriptor> = layers
            .iter()
            .map(|(d, n, c)| Descriptor::new(c.layer_media_type(), *n, d.to_oci()))
            .collect();
        oci_spec::image::ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(cfg)
            .layers(layers)
            .build()
            .expect("all required manifest fields are set")
    }
}

/// Picks one of several images by name. `select` must match (it came from the
/// source string); `tag` is used when it happens to match.
pub(crate) fn choose<'c, T>(
    source: &Path,
    candidates: &'c [(Vec<String>, T)],
    select: Option<&str>,
    tag: Option<&str>,
) -> Result<&'c (Vec<String>, T)> {
    let matches = |want: &str, names: &[String]| {
        let want_ref = Reference::parse(want).ok().map(|r| r.to_string());
        names.iter().any(|n| {
            n == want
                || Reference::parse(n).ok().map(|r| r.to_string()) == want_ref && want_ref.is_some()
                || n.rsplit_once(':').is_some_and(|(_, t)| t == want)
        })
    };
    let listing = || {
        let names: Vec<String> = candidates
            .iter()
            .map(|(n, _)| {
                if n.is_empty() {
                    "<untagged>".into()
                } else {
                    n.join(", ")
                }
            })
            .collect();
        names.join("; ")
    };
    if candidates.is_empty() {
        return Err(Error::Image {
            reference: source.display().to_string(),
            message: "the archive contains no image".into(),
        });
    }
    if let Some(want) = select {
        return candidates
            .iter()
            .find(|(n, _)| matches(want, n))
            .ok_or_else(|| Error::Image {
                reference: source.display().to_string(),
                message: format!(
                    "no image tagged `{want}` in the archive; it contains: {}",
                    listing()
                ),
            });
    }
    if let Some(want) = tag {
        if let Some(c) = candidates.iter().find(|(n, _)| matches(want, n)) {
            return Ok(c);
        }
    }
    match candidates {
        [one] => Ok(one),
        _ => Err(Error::Image {
            reference: source.display().to_string(),
            message: format!(
                "the archive holds {} images; pick one with SOURCE:TAG or --tag ({})",
                candidates.len(),
                listing()
            ),
        }),
    }
}

impl Store {
    /// Imports `source` (see [`Source::parse`]) and tags it `tag`, or with
    /// the name the source gives it.
    pub fn import(&self, source: &str, tag: Option<&str>) -> Result<ImageInfo> {
        self.import_with_progress(source, tag, &|_| {})
    }

    /// [`Store::import`], reporting progress of each blob copied.
    pub fn import_with_progress(
        &self,
        source: &str,
        tag: Option<&str>,
        progress: ProgressFn<'_>,
    ) -> Result<ImageInfo> {
        self.import_with(source, tag, &Credentials::from_env(), progress)
    }

    /// [`Store::import_with_progress`] with explicit registry credentials
    /// (used only for `docker://` sources).
    pub fn import_with(
        &self,
        source: &str,
        tag: Option<&str>,
        creds: &Credentials,
        progress: ProgressFn<'_>,
    ) -> Result<ImageInfo> {
        let src = Source::parse(source)?;
        let tag_ref = tag.map(Reference::parse).transpose()?;
        let mut tx = Tx::new(self, progress)?;
        let imported = match &src {
            Source::DockerArchive { path, select } => {
                let b = self.open_bundle(path)?;
                docker::import(&mut tx, &b, select.as_deref(), tag)?
            }
            Source::OciLayout { path, select } => {
                let b = self.open_bundle(path)?;
                oci::import(&mut tx, &b, select.as_deref(), tag)?
            }
            Source::Detect(path) => {
                let b = self.open_bundle(path)?;
                if b.has("manifest.json") {
                    docker::import(&mut tx, &b, None, tag)?
                } else if b.has("oci-layout") && b.has("index.json") {
                    oci::import(&mut tx, &b, None, tag)?
                } else {
                    return Err(unknown_format(
                        path,
                        "it has neither the `manifest.json` of `docker save` nor the `oci-layout` and \
                         `index.json` of an OCI layout; if it is a root filesystem, use tar://PATH or file://PATH",
                    ));
                }
            }
            Source::RootfsTar(path) => rootfs::import_tar(&mut tx, path)?,
            Source::RootfsDir(path) => rootfs::import_dir(&mut tx, path)?,
            Source::Registry(r) => crate::pull::pull_locked(&mut tx, r, creds)?,
        };
        let reference =
            match (tag_ref, imported.names.first()) {
                (Some(t), _) => t,
                (None, Some(n)) => Reference::parse(n)?,
                (None, None) => return Err(Error::Image {
                    reference: source.to_owned(),
                    message:
                        "the source does not name the image; give it a name with --tag NAME[:TAG]"
                            .into(),
                }),
            };
        self.set_ref(&reference, &imported.manifest)?;
        tx.commit();
        let key = reference.without_digest().to_string();
        self.list()?
            .into_iter()
            .find(|i| i.reference == key)
            .ok_or_else(|| Error::Image {
                reference: key,
                message: "imported but not listed; the store changed underneath, run `cleanroom images verify`".into(),
            })
    }

    /// Pulls `reference` (`[docker://]HOST[:PORT]/NAME[:TAG|@DIGEST]`) from its
    /// registry with credentials from the environment ([`Credentials::from_env`]).
    pub fn pull(&self, reference: &str, progress: ProgressFn<'_>) -> Result<ImageInfo> {
        self.pull_with(reference, &Credentials::from_env(), progress)
    }

    /// [`Store::pull`] with explicit credentials.
    pub fn pull_with(
        &self,
        reference: &str,
        creds: &Credentials,
        progress: ProgressFn<'_>,
    ) -> Result<ImageInfo> {
        let r = reference.strip_prefix("docker://").unwrap_or(reference);
        self.import_with(&format!("docker://{r}"), None, creds, progress)
    }

    fn open_bundle(&self, path: &Path) -> Result<bundle::Bundle> {
        if !path.exists() {
            return Err(Error::Image {
                reference: path.display().to_string(),
                message: "no such file or directory; check the path".into(),
            });
        }
        bundle::Bundle::open(path, &self.tmp_dir())
    }
}
