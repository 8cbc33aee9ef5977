//! Flattening an image into one directory `<store>/rootfs/<manifest hex>/`:
//! its layer blobs streamed, lowest first, straight into one tree, each
//! layer's whiteouts and opaque directories removing what the layers below
//! put there. Each blob is read once, verified as it streams (digest, size,
//! diff ID) on a thread of its own while the files are written, and the
//! tree is renamed into place only when every layer checked out.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use cleanroom_core::{Error, IoContext, Result};

use crate::extract::Extractor;
use crate::image::Image;
use crate::store::Store;

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
        let tmp = self.temp_dir("rootfs")?;
        let out = tmp.path().join("root");
        fs::create_dir(&out).context(|| format!("creating {}", out.display()))?;
        fs::set_permissions(&out, fs::Permissions::from_mode(0o755))
            .context(|| format!("setting permissions of {}", out.display()))?;
        let diff_ids = image.config.rootfs().diff_ids();
        let mut feed = self.feed(&image.layers)?;
        let mut x = Extractor::merged(&out);
        for (i, layer) in image.layers.iter().enumerate() {
            x.begin_layer(&format!("layer {}", layer.digest));
            let extracted = x.run(&mut feed);
            let want = diff_ids.get(i).and_then(|d| d.parse().ok());
            crate::unpack::verified(
                &image.reference,
                layer,
                want.as_ref(),
                feed.end_layer(),
                extracted,
            )?;
        }
        drop(feed);
        let (_, digests) = x.finish();
        let seal = crate::tree::seal_with(&out, &digests)?;
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
