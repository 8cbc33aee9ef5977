//! Flattening an image: its unpacked layers copied, lowest first, into one
//! directory `<store>/rootfs/<manifest hex>/`, applying each layer's
//! whiteouts and opaque directories first. This is the fallback where
//! overlayfs stacking of the layer directories is not possible.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cleanroom_core::{Error, IoContext, Result};

use crate::image::Image;
use crate::safepath::{lookup, remove_existing};
use crate::store::Store;
use crate::unpack::{link_key, set_mtime, LinkMap, UnpackedLayer};

impl Store {
    /// One directory holding the image's merged root filesystem, built once
    /// per image (atomically) and reused.
    pub fn rootfs_dir(&self, image: &Image) -> Result<PathBuf> {
        let _lock = self.lock_shared()?;
        let dst = self.rootfs_root().join(image.digest.hex());
        let seal_path = self.rootfs_seal(image.digest.hex());
        if dst.is_dir() {
            // Run from it only while it is as it was merged.
            crate::tree::check_on_use(&dst, &seal_path, &image.reference)?;
            return Ok(dst);
        }
        let layers = self.unpack_layers_locked(image)?;
        let tmp = self.temp_dir("rootfs")?;
        let out = tmp.path().join("root");
        fs::create_dir(&out).context(|| format!("creating {}", out.display()))?;
        fs::set_permissions(&out, fs::Permissions::from_mode(0o755))
            .context(|| format!("setting permissions of {}", out.display()))?;
        let mut m = Merger {
            as_root: crate::fsutil::is_root(),
            dir_modes: Vec::new(),
        };
        for layer in &layers {
            m.apply(layer, &out)?;
        }
        m.finish();
        let seal = crate::tree::seal(&out)?;
        let kept = tmp.keep();
        if let Err(e) = fs::rename(kept.join("root"), &dst) {
            crate::fsutil::remove_all(&kept)?;
            if !dst.is_dir() {
                return Err(Error::io(
                    format!("moving rootfs into {}", dst.display()),
                    e,
                ));
            }
        } else {
            let _ = fs::remove_dir(&kept);
            crate::tree::write_seal(&seal_path, &seal)?;
        }
        Ok(dst)
    }
}

impl Store {
    /// Where the seal of the merged rootfs `<hex>` is kept.
    pub(crate) fn rootfs_seal(&self, hex: &str) -> PathBuf {
        self.rootfs_root()
            .join(format!("{hex}{ROOTFS_SEAL_SUFFIX}"))
    }
}

/// A merged rootfs `<hex>` has its seal in `<hex>.seal` beside it.
pub(crate) const ROOTFS_SEAL_SUFFIX: &str = ".seal";

struct Merger {
    as_root: bool,
    dir_modes: Vec<(PathBuf, u32, u64)>,
}

fn split(rel: &str) -> Vec<String> {
    rel.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Merger {
    fn apply(&mut self, layer: &UnpackedLayer, out: &Path) -> Result<()> {
        for d in &layer.meta.opaque_dirs {
            let parts = split(d);
            let dir = if parts.is_empty() {
                Some(out.to_path_buf())
            } else {
                lookup(out, &parts)
            };
            if let Some(dir) = dir.filter(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())) {
                for e in fs::read_dir(&dir).context(|| format!("listing {}", dir.display()))? {
                    let e = e.context(|| format!("listing {}", dir.display()))?;
                    remove_existing(&e.path())?;
                }
            }
        }
        for w in &layer.meta.whiteouts {
            if let Some(p) = lookup(out, &split(w)) {
                remove_existing(&p)?;
            }
        }
        let mut links = LinkMap::new();
        self.copy_dir(layer, &layer.dir, out, "", &mut links)
    }

    fn copy_dir(
        &mut self,
        layer: &UnpackedLayer,
        src: &Path,
        dst: &Path,
        rel: &str,
        links: &mut LinkMap,
    ) -> Result<()> {
        for name in crate::fsutil::sorted_names(src)? {
            let name_s = name.to_string_lossy();
            let child_rel = if rel.is_empty() {
                name_s.to_string()
            } else {
                format!("{rel}/{name_s}")
            };
            if layer.meta.whiteouts.contains(&child_rel) {
                continue;
            }
            let s = src.join(&name);
            let d = dst.join(&name);
            let meta =
                fs::symlink_metadata(&s).context(|| format!("inspecting {}", s.display()))?;
            let existing = fs::symlink_metadata(&d).ok();
            let ctx = || format!("copying {} to {}", s.display(), d.display());
            let ft = meta.file_type();
            if ft.is_dir() {
                if !existing.as_ref().is_some_and(|m| m.is_dir()) {
                    remove_existing(&d)?;
                    fs::create_dir(&d).context(ctx)?;
                }
                self.chown(&d, &meta);
                fs::set_permissions(&d, fs::Permissions::from_mode(0o700 | meta.mode() & 0o7777))
                    .context(ctx)?;
                self.dir_modes
                    .push((d.clone(), meta.mode() & 0o7777, meta.mtime() as u64));
                self.copy_dir(layer, &s, &d, &child_rel, links)?;
                continue;
            }
            if existing.is_some() {
                remove_existing(&d)?;
            }
            if ft.is_symlink() {
                let target = fs::read_link(&s).context(ctx)?;
                std::os::unix::fs::symlink(&target, &d).context(ctx)?;
                self.chown(&d, &meta);
            } else if ft.is_file() {
                if let Some(first) = link_key(&meta).and_then(|k| links.get(&k)) {
                    fs::hard_link(first, &d).context(ctx)?;
                    continue;
                }
                let mut from = File::open(&s).context(ctx)?;
                let mut to = File::options()
                    .write(true)
                    .create_new(true)
                    .open(&d)
                    .context(ctx)?;
                io::copy(&mut from, &mut to).context(ctx)?;
                drop(to);
                self.chown(&d, &meta);
                fs::set_permissions(&d, fs::Permissions::from_mode(meta.mode() & 0o7777))
                    .context(ctx)?;
                if let Some(k) = link_key(&meta) {
                    links.insert(k, d.clone());
                }
            } else {
                // Fifos are recreated; 0/0 character devices are whiteouts,
                // already applied; nothing else reaches a layer directory.
                if std::os::unix::fs::FileTypeExt::is_fifo(&ft) {
                    rustix::fs::mknodat(
                        rustix::fs::CWD,
                        &d,
                        rustix::fs::FileType::Fifo,
                        rustix::fs::Mode::from_raw_mode(meta.mode() & 0o7777),
                        0,
                    )
                    .map_err(|e| Error::io(ctx(), e.into()))?;
                }
                continue;
            }
            set_mtime(&d, meta.mtime() as u64);
        }
        Ok(())
    }

    fn chown(&self, path: &Path, meta: &fs::Metadata) {
        if self.as_root {
            let _ = std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()));
        }
    }

    fn finish(self) {
        for (dir, mode, mtime) in self.dir_modes.iter().rev() {
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(*mode));
            set_mtime(dir, *mtime);
        }
    }
}
