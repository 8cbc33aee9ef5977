//! Keeping the store honest and small: `remove`, `verify [--repair]`, `gc`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use cleanroom_core::{IoContext, Result};
use serde::Serialize;

use crate::digest::Digest;
use crate::merge::ROOTFS_SEAL_SUFFIX;
use crate::store::Store;
use crate::tree::Check;

/// What [`Store::verify`] found (and, with repair, did).
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Blobs hashed.
    pub blobs_checked: usize,
    /// Blobs whose content does not match their digest.
    pub corrupt: Vec<Digest>,
    /// `(reference, digest)` of blobs an image needs that are missing or corrupt.
    pub broken_images: Vec<(String, Digest)>,
    /// With repair: references removed because their image was broken and
    /// cannot be repaired from what the store holds (re-import them).
    pub refs_removed: Vec<String>,
    /// With repair: corrupt blobs deleted.
    pub blobs_removed: usize,
    /// Unpacked layers and merged root filesystems that differ from what
    /// was unpacked (content, or only metadata such as times).
    pub trees_changed: Vec<PathBuf>,
    /// With repair: changed trees deleted; they are rebuilt from the
    /// verified blobs when next used. (A tree whose only change is metadata
    /// is sealed again instead.)
    pub trees_removed: Vec<PathBuf>,
    /// With repair: changed trees of images a running sandbox uses, left
    /// alone (repair again when it has finished).
    pub trees_in_use: Vec<PathBuf>,
}

impl VerifyReport {
    /// Whether everything was intact.
    pub fn is_ok(&self) -> bool {
        self.corrupt.is_empty() && self.broken_images.is_empty() && self.trees_changed.is_empty()
    }
}

/// One unpacked tree in the store, for `verify`.
struct UnpackedTree {
    /// The tree itself.
    root: PathBuf,
    seal: PathBuf,
    /// What to delete to drop it (with its metadata).
    remove: Vec<PathBuf>,
    /// The lease file of the image using it, for a merged rootfs.
    lease: Option<PathBuf>,
}

/// What [`Store::gc`] removed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    /// Blobs no image refers to.
    pub blobs_removed: usize,
    /// Unpacked layers no image refers to.
    pub layers_removed: usize,
    /// Merged root filesystems of images no longer in the store.
    pub rootfs_removed: usize,
    /// Bytes of blobs freed (unpacked trees are not counted).
    pub bytes_freed: u64,
    /// Leftovers of interrupted imports and unpacks removed from `tmp/`
    /// (those of dead owners already when the store was opened).
    pub temp_removed: Vec<PathBuf>,
}

impl GcReport {
    /// How many things were removed, of every kind.
    pub fn total(&self) -> usize {
        self.blobs_removed + self.layers_removed + self.rootfs_removed + self.temp_removed.len()
    }
}

/// Hex digests of what tagged or leased images need.
#[derive(Default)]
pub(crate) struct Reachable {
    pub(crate) blobs: BTreeSet<String>,
    pub(crate) layers: BTreeSet<String>,
    pub(crate) rootfs: BTreeSet<String>,
}

/// What [`Store::remove`] did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RemoveReport {
    /// References untagged.
    pub untagged: Vec<String>,
    /// The collection that followed.
    pub gc: GcReport,
}

impl Store {
    /// Untags `reference` (a name, `name@digest`, or a digest/ID prefix,
    /// which untags every name of that image) and collects what is no
    /// longer referenced.
    pub fn remove(&self, reference: &str) -> Result<RemoveReport> {
        let _lock = self.lock_exclusive()?;
        let (name, manifest) = self.lookup(reference)?;
        let mut refs = self.read_refs()?;
        let by_digest = !refs.contains_key(&name);
        let untagged: Vec<String> = refs
            .iter()
            .filter(|(k, e)| {
                if by_digest {
                    e.manifest == manifest
                } else {
                    **k == name
                }
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in &untagged {
            refs.remove(k);
        }
        self.write_refs(&refs)?;
        let gc = self.gc_locked()?;
        Ok(RemoveReport { untagged, gc })
    }

    /// Holds `image` in the store until the lease is dropped: `remove` and
    /// `gc` keep its blobs, unpacked layers and merged rootfs meanwhile.
    /// Take one for as long as a sandbox uses `layer_dirs`/`rootfs_dir`.
    pub fn lease(&self, image: &crate::image::Image) -> Result<crate::lock::ImageLease> {
        let dir = self.root().join("leases");
        fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        crate::lock::ImageLease::take(&dir.join(image.digest.hex()))
    }

    /// Hashes every blob and checks every image has what it needs. With
    /// `repair`, deletes corrupt blobs and the references of images that
    /// lost a blob (so they can be re-imported), then collects garbage.
    pub fn verify(&self, repair: bool) -> Result<VerifyReport> {
        let _lock = if repair {
            self.lock_exclusive()?
        } else {
            self.lock_shared()?
        };
        let mut report = VerifyReport::default();
        let blob_dir = self.root().join("blobs/sha256");
        for name in list_names(&blob_dir)? {
            let Some(d) = Digest::from_hex(&name) else {
                report.corrupt.push(Digest::of(name.as_bytes()));
                continue;
            };
            report.blobs_checked += 1;
            if !self.blob_is_intact(&d)? {
                report.corrupt.push(d);
            }
        }
        let corrupt: BTreeSet<&Digest> = report.corrupt.iter().collect();
        let mut refs = self.read_refs()?;
        let mut broken_refs = Vec::new();
        for (name, e) in &refs {
            // The blobs the manifest names, read from the manifest alone: a
            // corrupt config must mark the image broken, not hide its needs.
            let needed = match self.manifest(name, &e.manifest) {
                Ok(m) => {
                    let mut needed = vec![e.manifest.clone()];
                    let descriptors = std::iter::once(m.config()).chain(m.layers().iter());
                    for desc in descriptors {
                        // A digest that does not parse can never be satisfied.
                        needed.push(
                            Digest::from_oci(desc.digest()).unwrap_or_else(|_| e.manifest.clone()),
                        );
                    }
                    needed
                }
                Err(_) => {
                    report
                        .broken_images
                        .push((name.clone(), e.manifest.clone()));
                    broken_refs.push(name.clone());
                    continue;
                }
            };
            let mut broken = false;
            for d in needed {
                if corrupt.contains(&d) || !self.has_blob(&d) {
                    report.broken_images.push((name.clone(), d));
                    broken = true;
                }
            }
            if broken {
                broken_refs.push(name.clone());
            }
        }
        self.verify_trees(repair, &mut report)?;
        if repair {
            for d in &report.corrupt {
                let p = self.blob_path(d);
                if p.exists() {
                    fs::remove_file(&p)
                        .context(|| format!("removing corrupt blob {}", p.display()))?;
                    report.blobs_removed += 1;
                }
            }
            for name in &broken_refs {
                refs.remove(name);
            }
            self.write_refs(&refs)?;
            report.refs_removed = broken_refs;
            self.gc_locked()?;
        }
        Ok(report)
    }

    /// Checks every unpacked tree against its seal (content re-hashed).
    fn verify_trees(&self, repair: bool, report: &mut VerifyReport) -> Result<()> {
        for t in self.unpacked_trees()? {
            let Some(recorded) = crate::tree::read_seal(&t.seal) else {
                // Unpacked before seals existed: seal it as it is.
                if repair {
                    crate::tree::write_seal(&t.seal, &crate::tree::seal(&t.root)?)?;
                }
                continue;
            };
            match crate::tree::check_full(&t.root, &recorded)? {
                Check::Intact => {}
                Check::MetadataChanged => {
                    report.trees_changed.push(t.root.clone());
                    if repair {
                        crate::tree::write_seal(&t.seal, &crate::tree::seal(&t.root)?)?;
                    }
                }
                Check::ContentChanged => {
                    report.trees_changed.push(t.root.clone());
                    if !repair {
                        continue;
                    }
                    if t.lease.as_deref().is_some_and(crate::lock::is_leased) {
                        report.trees_in_use.push(t.root);
                        continue;
                    }
                    for p in &t.remove {
                        if fs::symlink_metadata(p).is_ok() {
                            crate::fsutil::remove_all(p)?;
                        }
                    }
                    report.trees_removed.push(t.root);
                }
            }
        }
        Ok(())
    }

    /// Every complete unpacked layer and merged rootfs.
    fn unpacked_trees(&self) -> Result<Vec<UnpackedTree>> {
        let mut out = Vec::new();
        for name in list_names(&self.layers_dir())? {
            let dir = self.layers_dir().join(&name);
            if Digest::from_hex(&name).is_some() && dir.join("meta.json").is_file() {
                out.push(UnpackedTree {
                    root: dir.join("root"),
                    seal: dir.join(crate::unpack::SEAL),
                    remove: vec![dir],
                    lease: None,
                });
            }
        }
        for name in list_names(&self.rootfs_root())? {
            let dir = self.rootfs_root().join(&name);
            if Digest::from_hex(&name).is_some() && dir.is_dir() {
                let seal = self.rootfs_seal(&name);
                out.push(UnpackedTree {
                    root: dir.clone(),
                    seal: seal.clone(),
                    remove: vec![dir, seal],
                    lease: Some(self.root().join("leases").join(&name)),
                });
            }
        }
        Ok(out)
    }

    /// Removes blobs, unpacked layers and merged root filesystems no tagged
    /// image refers to, and leftovers of interrupted imports in `tmp/`.
    pub fn gc(&self) -> Result<GcReport> {
        let _lock = self.lock_exclusive()?;
        self.gc_locked()
    }

    /// Everything tagged or leased images need.
    pub(crate) fn reachable(&self) -> Result<Reachable> {
        let mut r = Reachable::default();
        let mut roots: Vec<(String, Digest)> = self
            .read_refs()?
            .into_iter()
            .map(|(name, e)| (name, e.manifest))
            .collect();
        // Images in use by a running sandbox stay, tagged or not.
        let leases = self.root().join("leases");
        for name in list_names(&leases)? {
            let p = leases.join(&name);
            match Digest::from_hex(&name) {
                Some(d) if crate::lock::is_leased(&p) => roots.push((format!("sha256:{name}"), d)),
                _ => {
                    let _ = fs::remove_file(&p);
                }
            }
        }
        for (name, manifest) in &roots {
            r.blobs.insert(manifest.hex().to_owned());
            r.rootfs.insert(manifest.hex().to_owned());
            // An image whose manifest cannot be read keeps only its manifest;
            // `verify --repair` deals with it.
            if let Ok(img) = self.load(name, manifest) {
                r.blobs.insert(img.config_digest.hex().to_owned());
                for l in &img.layers {
                    r.blobs.insert(l.digest.hex().to_owned());
                    r.layers.insert(l.digest.hex().to_owned());
                }
            }
        }
        Ok(r)
    }

    pub(crate) fn gc_locked(&self) -> Result<GcReport> {
        let mut report = GcReport::default();
        let Reachable {
            blobs: keep_blobs,
            layers: keep_layers,
            rootfs: keep_rootfs,
        } = self.reachable()?;
        let blob_dir = self.root().join("blobs/sha256");
        for name in list_names(&blob_dir)? {
            if !keep_blobs.contains(&name) {
                let p = blob_dir.join(&name);
                report.bytes_freed += p.metadata().map_or(0, |m| m.len());
                fs::remove_file(&p).context(|| format!("removing blob {}", p.display()))?;
                report.blobs_removed += 1;
            }
        }
        let layers = self.layers_dir();
        for name in list_names(&layers)? {
            let stem = name.strip_suffix(".json").unwrap_or(&name);
            if !keep_layers.contains(stem) {
                let p = layers.join(&name);
                crate::fsutil::remove_all(&p)?;
                if !name.ends_with(".json") {
                    report.layers_removed += 1;
                }
            }
        }
        let rootfs = self.rootfs_root();
        for name in list_names(&rootfs)? {
            let stem = name.strip_suffix(ROOTFS_SEAL_SUFFIX).unwrap_or(&name);
            if !keep_rootfs.contains(stem) {
                crate::fsutil::remove_all(&rootfs.join(&name))?;
                if stem == name {
                    report.rootfs_removed += 1;
                }
            }
        }
        // Under the exclusive lock nothing is importing or unpacking.
        report.temp_removed = self.take_swept();
        for name in list_names(&self.tmp_dir())? {
            let p = self.tmp_dir().join(name);
            crate::fsutil::remove_all(&p)?;
            report.temp_removed.push(p);
        }
        Ok(report)
    }
}

fn list_names(dir: &Path) -> Result<Vec<String>> {
    Ok(crate::fsutil::sorted_names(dir)?
        .into_iter()
        .map(|n| n.to_string_lossy().into_owned())
        .collect())
}
