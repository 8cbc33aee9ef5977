//! The merged root filesystem of an image, built while its `docker save`
//! archive is imported: every layer byte the import hashes and copies into
//! the store is also passed to a thread that decompresses and extracts it
//! (`crate::stream`, `crate::extract`), so no layer is read twice and the
//! first run finds the tree ready. The tree is kept only when the import
//! succeeds and every layer unpacked cleanly; otherwise it is dropped, and
//! the first run unpacks from the verified blobs and says what is wrong.

use std::collections::VecDeque;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::thread::JoinHandle;

use cleanroom_core::{IoContext, Result};

use crate::digest::Digest;
use crate::extract::{Extractor, FileDigests};
use crate::store::Store;
use crate::stream::{feed, pass, Pass};

/// Chunks of one layer in flight from the import to the layer thread.
const AHEAD: usize = 8;

/// What the extracting thread made of the layers.
struct Built {
    /// The files' digests, when every layer unpacked cleanly.
    digests: Option<FileDigests>,
    /// Each layer's diff ID, where the layer thread hashed it (compressed layers).
    diff_ids: Vec<Option<Digest>>,
}

/// A merged rootfs being built beside an import.
pub(crate) struct Prebuild {
    passes: VecDeque<Pass>,
    thread: Option<JoinHandle<Built>>,
    built: Option<Built>,
    tmp: tempfile::TempDir,
}

impl Prebuild {
    /// Starts the threads for an image of `layers` layers.
    pub(crate) fn start(store: &Store, layers: usize) -> Result<Prebuild> {
        let tmp = store.temp_dir("rootfs")?;
        let root = tmp.path().join("root");
        fs::create_dir(&root).context(|| format!("creating {}", root.display()))?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755))
            .context(|| format!("setting permissions of {}", root.display()))?;
        let (passes, blobs): (VecDeque<_>, Vec<_>) = (0..layers).map(|_| pass(AHEAD)).unzip();
        let mut feed = feed(blobs).context(|| "starting a layer thread".to_owned())?;
        let thread = std::thread::Builder::new()
            .name("layer-extract".into())
            .spawn(move || {
                let mut x = Extractor::merged(&root);
                let mut clean = true;
                let mut diff_ids = Vec::with_capacity(layers);
                for i in 0..layers {
                    x.begin_layer(&format!("layer {} of the image", i + 1));
                    // After a failure the layers are still read to their
                    // end, for their diff IDs.
                    if clean {
                        clean = x.run(&mut feed).is_ok();
                    }
                    match feed.end_layer() {
                        Ok(s) => diff_ids.push(s.diff_id),
                        Err(_) => {
                            clean = false;
                            diff_ids.push(None);
                        }
                    }
                }
                let (_, digests) = x.finish();
                Built {
                    digests: clean.then_some(digests),
                    diff_ids,
                }
            })
            .context(|| "starting a layer thread".to_owned())?;
        Ok(Prebuild {
            passes,
            thread: Some(thread),
            built: None,
            tmp,
        })
    }

    /// Where the next layer's bytes go.
    pub(crate) fn next_pass(&mut self) -> Option<Pass> {
        self.passes.pop_front()
    }

    /// Waits for the last layer; returns each layer's diff ID where the
    /// layer thread hashed it.
    pub(crate) fn finish_layers(&mut self) -> Vec<Option<Digest>> {
        self.passes.clear();
        if let Some(t) = self.thread.take() {
            self.built = t.join().ok();
        }
        self.built
            .as_ref()
            .map(|b| b.diff_ids.clone())
            .unwrap_or_default()
    }

    /// Seals the tree and moves it into place as the rootfs of `manifest`,
    /// if it is complete and clean (best effort: the first run builds it otherwise).
    pub(crate) fn place(mut self, store: &Store, manifest: &Digest) {
        self.finish_layers();
        let Some(digests) = self.built.as_ref().and_then(|b| b.digests.as_ref()) else {
            return;
        };
        let root: PathBuf = self.tmp.path().join("root");
        let dst = store.rootfs_root().join(manifest.hex());
        if dst.exists() {
            return;
        }
        let Ok(seal) = crate::tree::seal_with(&root, digests) else {
            return;
        };
        if fs::rename(&root, &dst).is_ok() {
            let _ = crate::tree::write_seal(&store.rootfs_seal(manifest.hex()), &seal);
        }
    }
}

impl Drop for Prebuild {
    fn drop(&mut self) {
        // Closing the layers ends the threads; the temp dir goes after them.
        self.finish_layers();
    }
}
