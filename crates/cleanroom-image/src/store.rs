//! The content-addressed store on disk.
//!
//! ```text
//! <root>/lock, refs.lock       flock(2) targets (see `lock.rs`)
//! <root>/refs.json             reference -> manifest digest (replaced atomically)
//! <root>/blobs/sha256/<hex>    manifests, configs, layers; file name = SHA-256 of content
//! <root>/layers/<hex>/         a layer blob unpacked (see `unpack.rs`), <hex>.json beside it
//! <root>/rootfs/<hex>/         an image's layers merged into one tree, keyed by manifest digest
//! <root>/tmp/                  temp files and dirs, renamed into place when complete;
//!                              named `<pid>.<start>-<what>-...` after their owner
//!                              (see `cleanroom_core::owner`), so opening the store
//!                              removes what a killed owner left
//! <root>/leases/<hex>          flock(2)ed while a sandbox uses that image (see `Store::lease`)
//! ```
//!
//! Every blob is hashed while it is written to `tmp/` and only renamed into
//! `blobs/` when its digest matches, so nothing half-written is ever visible.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use cleanroom_core::{Error, IoContext, Result};
use oci_spec::image::{ImageConfiguration, ImageManifest};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::image::{Compression, Image, ImageInfo, LayerRef};
use crate::lock::StoreLock;
use crate::reference::Reference;
use crate::stream::Pass;

/// One entry of `refs.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RefEntry {
    pub(crate) manifest: Digest,
    /// When it was imported (RFC 3339), used when the config has no `created`.
    pub(crate) imported: String,
}

pub(crate) type Refs = BTreeMap<String, RefEntry>;

/// A content-addressed image store rooted at one directory.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
    /// Leftovers of dead owners removed from `tmp/` when the store was
    /// opened, until a [`Store::gc`] reports them.
    swept: Arc<Mutex<Vec<PathBuf>>>,
}

/// A temp file in `dir` named after this process (see `store.rs`'s layout).
pub(crate) fn temp_file_in(dir: &Path, what: &str) -> Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(&temp_prefix(what))
        .tempfile_in(dir)
        .context(|| format!("creating a temp file in {}", dir.display()))
}

fn temp_prefix(what: &str) -> String {
    format!("{}-{what}-", cleanroom_core::owner::tag())
}

impl Store {
    /// The store in the user's data directory: `$CLEANROOM_HOME` if set,
    /// else `$XDG_DATA_HOME/cleanroom`, else `~/.local/share/cleanroom`.
    pub fn open_default() -> Result<Store> {
        Store::open(default_root()?)
    }

    /// Opens (creating if needed) the store at `root`, and removes the temp
    /// files and directories of imports and unpacks whose process died
    /// (one `readdir` of `tmp/`; [`Store::gc`] reports them).
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        for dir in ["blobs/sha256", "layers", "rootfs", "tmp", "leases"] {
            let d = root.join(dir);
            fs::create_dir_all(&d)
                .context(|| format!("creating the image store directory {}", d.display()))?;
        }
        let swept = cleanroom_core::owner::sweep(&root.join("tmp"), "");
        Ok(Store {
            root,
            swept: Arc::new(Mutex::new(swept)),
        })
    }

    /// What opening the store removed and no gc has reported yet.
    pub(crate) fn take_swept(&self) -> Vec<PathBuf> {
        std::mem::take(&mut *self.swept.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A temp file in `tmp/` named after this process.
    pub(crate) fn temp_file(&self, what: &str) -> Result<tempfile::NamedTempFile> {
        temp_file_in(&self.tmp_dir(), what)
    }

    /// A temp directory in `tmp/` named after this process.
    pub(crate) fn temp_dir(&self, what: &str) -> Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(&temp_prefix(what))
            .tempdir_in(self.tmp_dir())
            .context(|| format!("creating a temp dir in {}", self.tmp_dir().display()))
    }

    /// The directory the store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `digest` is (or would be) stored.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Whether a blob is present (not whether it is intact).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub(crate) fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    pub(crate) fn rootfs_root(&self) -> PathBuf {
        self.root.join("rootfs")
    }

    pub(crate) fn lock_exclusive(&self) -> Result<StoreLock> {
        StoreLock::exclusive(&self.root.join("lock"))
    }

    pub(crate) fn lock_shared(&self) -> Result<StoreLock> {
        StoreLock::shared(&self.root.join("lock"))
    }

    pub(crate) fn try_lock_exclusive(&self) -> Result<Option<StoreLock>> {
        StoreLock::try_exclusive(&self.root.join("lock"))
    }

    pub(crate) fn lock_refs(&self) -> Result<StoreLock> {
        StoreLock::exclusive(&self.root.join("refs.lock"))
    }

    /// Streams `reader` into the store, hashing as it goes. When `expected`
    /// is given and the content does not match, nothing is stored and the
    /// error names both digests. Returns the digest and size.
    pub fn put_blob(&self, reader: impl Read, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let (d, n, _) = self.put_blob_with(reader, expected, None, &mut |_| {})?;
        Ok((d, n))
    }

    /// [`Store::put_blob`], reporting bytes written so far to `progress`;
    /// also says whether the blob is new to the store. Each chunk, once
    /// hashed and written, is handed on to `pass` if given; without one, an
    /// intact stored blob of the `expected` digest is not read again.
    pub(crate) fn put_blob_with(
        &self,
        reader: impl Read,
        expected: Option<&Digest>,
        pass: Option<Pass>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(Digest, u64, bool)> {
        if let Some(d) = expected.filter(|_| pass.is_none()) {
            if self.has_blob(d) && self.blob_is_intact(d).unwrap_or(false) {
                let n = self.blob_path(d).metadata().map_or(0, |m| m.len());
                return Ok((d.clone(), n, false));
            }
        }
        let tmp = self.temp_file("blob")?;
        let (digest, size, tmp) =
            crate::copy::copy_hashed(reader, tmp, pass, &self.tmp_dir(), progress)?;
        if let Some(exp) = expected {
            if *exp != digest {
                return Err(Error::Image {
                    reference: exp.to_string(),
                    message: format!(
                        "content does not match its digest: expected {exp}, got {digest} ({size} bytes); \
                         the source is corrupt or was tampered with, nothing was stored"
                    ),
                });
            }
        }
        let dst = self.blob_path(&digest);
        let new = !dst.exists();
        tmp.persist(&dst)
            .map_err(|e| Error::io(format!("moving blob into {}", dst.display()), e.error))?;
        Ok((digest, size, new))
    }

    /// Stores bytes already in memory.
    pub fn put_blob_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        Ok(self.put_blob(bytes, None)?.0)
    }

    /// Hashes a stored blob and says whether it matches its name.
    pub fn blob_is_intact(&self, digest: &Digest) -> Result<bool> {
        let path = self.blob_path(digest);
        let f = File::open(&path).context(|| format!("opening blob {}", path.display()))?;
        let (d, _) = crate::digest::HashingReader::new(io::BufReader::with_capacity(1 << 20, f))
            .finish()
            .context(|| format!("reading blob {}", path.display()))?;
        Ok(d == *digest)
    }

    /// Reads a small blob (manifest, config) and verifies it before use.
    pub fn read_blob_verified(&self, digest: &Digest, reference: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(missing_blob(reference, digest))
            }
            Err(e) => return Err(Error::io(format!("reading blob {}", path.display()), e)),
        };
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(corrupt_blob(
                reference,
                digest,
                &format!("its content hashes to {actual}"),
            ));
        }
        Ok(bytes)
    }

    pub(crate) fn read_refs(&self) -> Result<Refs> {
        let path = self.root.join("refs.json");
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::Image {
                reference: path.display().to_string(),
                message: format!("the reference index is not valid JSON ({e}); fix or delete it and re-import your images"),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Refs::new()),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Replaces `refs.json` atomically; the caller holds the refs lock or
    /// the exclusive store lock.
    pub(crate) fn write_refs(&self, refs: &Refs) -> Result<()> {
        let path = self.root.join("refs.json");
        let json = serde_json::to_vec_pretty(refs).map_err(|e| Error::Image {
            reference: path.display().to_string(),
            message: format!("cannot serialise the reference index: {e}"),
        })?;
        let mut tmp = self.temp_file("refs")?;
        tmp.write_all(&json)
            .and_then(|_| tmp.as_file().sync_all())
            .context(|| format!("writing {}", tmp.path().display()))?;
        tmp.persist(&path)
            .map_err(|e| Error::io(format!("replacing {}", path.display()), e.error))?;
        Ok(())
    }

    /// Points `reference` at the manifest `manifest`; the caller holds the
    /// shared store lock (so its blobs stay), this takes the refs lock.
    pub(crate) fn set_ref(&self, reference: &Reference, manifest: &Digest) -> Result<()> {
        let _refs_lock = self.lock_refs()?;
        let mut refs = self.read_refs()?;
        refs.insert(
            reference.without_digest().to_string(),
            RefEntry {
                manifest: manifest.clone(),
                imported: crate::time::now_rfc3339(),
            },
        );
        self.write_refs(&refs)
    }

    /// Every tagged image, sorted by reference. An image that cannot be
    /// loaded is listed too, with its [`ImageInfo::problem`]; one broken
    /// image never hides the others.
    pub fn list(&self) -> Result<Vec<ImageInfo>> {
        let refs = self.read_refs()?;
        let mut out = Vec::with_capacity(refs.len());
        for (name, entry) in &refs {
            let image = match self.load(name, &entry.manifest) {
                Ok(image) => image,
                Err(e) => {
                    out.push(self.broken_info(name, entry, &e));
                    continue;
                }
            };
            let size = image.manifest.config().size()
                + image.layers.iter().map(|l| l.size).sum::<u64>()
                + self
                    .blob_path(&image.digest)
                    .metadata()
                    .map_or(0, |m| m.len());
            out.push(ImageInfo {
                reference: name.clone(),
                digest: image.digest.clone(),
                id: image.config_digest.clone(),
                size,
                created: image
                    .config
                    .created()
                    .clone()
                    .unwrap_or_else(|| entry.imported.clone()),
                problem: None,
            });
        }
        Ok(out)
    }

    /// The listing row of an image that failed to load with `error`.
    fn broken_info(&self, name: &str, entry: &RefEntry, error: &Error) -> ImageInfo {
        let id = self
            .manifest(name, &entry.manifest)
            .ok()
            .and_then(|m| Digest::from_oci(m.config().digest()).ok())
            .unwrap_or_else(|| entry.manifest.clone());
        let why = match error {
            Error::Image { message, .. } => message.clone(),
            other => other.to_string(),
        };
        ImageInfo {
            reference: name.to_owned(),
            digest: entry.manifest.clone(),
            id,
            size: 0,
            created: entry.imported.clone(),
            problem: Some(format!("{why}; or drop it with `cleanroom rmi {name}`")),
        }
    }

    /// Finds the manifest digest `reference` names: a tag (`busybox`,
    /// `busybox:1`), a pinned digest (`busybox@sha256:...`), or a manifest or
    /// config digest or unique prefix of one (`sha256:ab12...`, `ab12`).
    pub(crate) fn lookup(&self, reference: &str) -> Result<(String, Digest)> {
        let refs = self.read_refs()?;
        let not_found = || Error::Image {
            reference: reference.to_owned(),
            message: "no such image in the store; `cleanroom images` lists what is there, \
                      `cleanroom import` or `cleanroom pull` adds one"
                .into(),
        };
        if let Ok(r) = Reference::parse(reference) {
            if let Some(want) = r.digest() {
                let hit = refs.iter().find(|(name, e)| {
                    e.manifest == *want
                        && Reference::parse(name).is_ok_and(|n| n.name() == r.name())
                });
                if let Some((_, e)) = hit {
                    return Ok((r.to_string(), e.manifest.clone()));
                }
                if refs.values().any(|e| e.manifest == *want) {
                    return Ok((r.to_string(), want.clone()));
                }
                return Err(not_found());
            }
            let key = r.to_string();
            if let Some(e) = refs.get(&key) {
                return Ok((key, e.manifest.clone()));
            }
        }
        let prefix = reference.strip_prefix("sha256:").unwrap_or(reference);
        if prefix.len() >= 4 && prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut hits: Vec<&Digest> = Vec::new();
            for e in refs.values() {
                let config = self
                    .read_blob_verified(&e.manifest, reference)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<ImageManifest>(&b).ok())
                    .and_then(|m| Digest::from_oci(m.config().digest()).ok());
                let matches = e.manifest.hex().starts_with(prefix)
                    || config.is_some_and(|c| c.hex().starts_with(prefix));
                if matches && !hits.contains(&&e.manifest) {
                    hits.push(&e.manifest);
                }
            }
            match hits.as_slice() {
                [one] => return Ok((format!("sha256:{}", one.hex()), (*one).clone())),
                [] => {}
                _ => {
                    return Err(Error::Image {
                        reference: reference.to_owned(),
                        message: "the digest prefix matches more than one image; give more digits"
                            .into(),
                    })
                }
            }
        }
        Err(not_found())
    }

    /// Resolves `reference` to its verified manifest and config.
    pub fn resolve(&self, reference: &str) -> Result<Image> {
        let (name, digest) = self.lookup(reference)?;
        let image = self.load(&name, &digest)?;
        for l in &image.layers {
            let path = self.blob_path(&l.digest);
            match path.metadata() {
                Ok(m) if m.len() == l.size => {}
                Ok(m) => {
                    return Err(corrupt_blob(
                        &name,
                        &l.digest,
                        &format!("it is {} bytes, the manifest says {}", m.len(), l.size),
                    ))
                }
                Err(_) => return Err(missing_blob(&name, &l.digest)),
            }
        }
        Ok(image)
    }

    /// Reads, verifies and parses the manifest `digest` of image `name`.
    pub(crate) fn manifest(&self, name: &str, digest: &Digest) -> Result<ImageManifest> {
        let mbytes = self.read_blob_verified(digest, name)?;
        serde_json::from_slice(&mbytes)
            .map_err(|e| invalid(name, &format!("manifest {digest}"), &e))
    }

    /// Loads and verifies manifest and config of the manifest `digest`.
    pub(crate) fn load(&self, name: &str, digest: &Digest) -> Result<Image> {
        let bad = |what: &str, e: &dyn std::fmt::Display| invalid(name, what, e);
        let manifest = self.manifest(name, digest)?;
        let config_digest =
            Digest::from_oci(manifest.config().digest()).map_err(|e| bad("config digest", &e))?;
        let cbytes = self.read_blob_verified(&config_digest, name)?;
        let config: ImageConfiguration = serde_json::from_slice(&cbytes)
            .map_err(|e| bad(&format!("config {config_digest}"), &e))?;
        let mut layers = Vec::new();
        for l in manifest.layers() {
            let ld = Digest::from_oci(l.digest()).map_err(|e| bad("layer digest", &e))?;
            let compression =
                Compression::from_media_type(l.media_type()).ok_or_else(|| Error::Image {
                    reference: name.to_owned(),
                    message: format!(
                        "layer {ld} has media type `{}`, which Cleanroom cannot unpack",
                        l.media_type()
                    ),
                })?;
            layers.push(LayerRef {
                digest: ld,
                size: l.size(),
                compression,
            });
        }
        Ok(Image {
            reference: name.to_owned(),
            digest: digest.clone(),
            manifest,
            config_digest,
            config,
            layers,
        })
    }
}

/// The store root for this user (see [`Store::open_default`]).
pub fn default_root() -> Result<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = var("CLEANROOM_HOME") {
        return Ok(p);
    }
    if let Some(p) = var("XDG_DATA_HOME") {
        return Ok(p.join("cleanroom"));
    }
    if let Some(home) = var("HOME") {
        return Ok(home.join(".local/share/cleanroom"));
    }
    Err(Error::Config {
        origin: "environment".into(),
        message: "cannot find a place for the image store: none of CLEANROOM_HOME, XDG_DATA_HOME, HOME is set; set CLEANROOM_HOME".into(),
    })
}

/// A manifest or config that hashes right but does not parse.
fn invalid(name: &str, what: &str, e: &dyn std::fmt::Display) -> Error {
    Error::Image {
        reference: name.to_owned(),
        message: format!("{what} is not valid ({e}); run `cleanroom images verify --repair` and re-import the image"),
    }
}

pub(crate) fn corrupt_blob(reference: &str, digest: &Digest, detail: &str) -> Error {
    Error::Image {
        reference: reference.to_owned(),
        message: format!(
            "blob {digest} is corrupt ({detail}); run `cleanroom images verify --repair` and re-import the image"
        ),
    }
}

pub(crate) fn missing_blob(reference: &str, digest: &Digest) -> Error {
    Error::Image {
        reference: reference.to_owned(),
        message: format!(
            "blob {digest} is missing from the store; run `cleanroom images verify --repair` and re-import the image"
        ),
    }
}
