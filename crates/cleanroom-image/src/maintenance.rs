//! Keeping the store honest and small: `remove`, `verify [--repair]`, `gc`.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use cleanroom_core::{IoContext, Result};
use serde::Serialize;

use crate::digest::Digest;
use crate::store::Store;

/// What [`Store::verify`] found (and, with repair, did).
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Blobs hashed.
    pub blobs_checked: usize,
    /// Blobs whose content does not match their digest.
    pub corrupt: Vec<Digest>,
    /// `(reference, digest)` of blobs an image needs that are missing or corrupt.
    pub broken_images: Vec<(String, Digest)>,
    /// With repair: references removed because their image was broken (re-import them).
    pub refs_removed: Vec<String>,
    /// With repair: corrupt blobs deleted.
    pub blobs_removed: usize,
}

impl VerifyReport {
    /// Whether everything was intact.
    pub fn is_ok(&self) -> bool {
        self.corrupt.is_empty() && self.broken_images.is_empty()
    }
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
            let mut needed = vec![e.manifest.clone()];
            if !corrupt.contains(&e.manifest) && self.has_blob(&e.manifest) {
                match self.load(name, &e.manifest) {
                    Ok(img) => {
                        needed.push(img.config_digest.clone());
                        needed.extend(img.layers.iter().map(|l| l.digest.clone()));
                    }
                    Err(_) => needed.push(e.manifest.clone()),
                }
            }
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
            if !keep_rootfs.contains(&name) {
                crate::fsutil::remove_all(&rootfs.join(&name))?;
                report.rootfs_removed += 1;
            }
        }
        // Under the exclusive lock nothing is importing or unpacking.
        for name in list_names(&self.tmp_dir())? {
            crate::fsutil::remove_all(&self.tmp_dir().join(name))?;
        }
        Ok(report)
    }
}

fn list_names(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).context(|| format!("listing {}", dir.display()))? {
        let e = e.context(|| format!("listing {}", dir.display()))?;
        out.push(e.file_name().to_string_lossy().into_owned());
    }
    out.sort();
    Ok(out)
}
