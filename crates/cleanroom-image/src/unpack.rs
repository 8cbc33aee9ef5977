//! Unpacking layer blobs, each once per digest, into
//! `<store>/layers/<hex>/root/` (metadata in `<hex>/meta.json`). A layer
//! is extracted into a temp dir and renamed into place whole, so a present
//! directory is always complete. Layers of one image unpack in parallel.
//!
//! OCI whiteouts become what overlayfs understands: `.wh.NAME` a 0/0
//! character device, `.wh..wh..opq` the `trusted.overlay.opaque` (as root)
//! and `user.overlay.opaque` (for `userxattr` mounts) attributes. They are
//! also listed in `meta.json`, which `merge.rs` uses to flatten an image.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cleanroom_core::{Error, IoContext, Result};
use serde::{Deserialize, Serialize};

use crate::digest::{Digest, HashingReader};
use crate::image::{Image, LayerRef};
use crate::import::decompress;
use crate::safepath::{clean, prepare_parents, remove_existing, unsafe_entry};
use crate::store::{corrupt_blob, missing_blob, Store};

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
        let blob = self.blob_path(&layer.digest);
        let f = File::open(&blob).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => missing_blob(reference, &layer.digest),
            _ => Error::io(format!("opening {}", blob.display()), e),
        })?;
        let tmp = self.temp_dir("layer")?;
        let root = tmp.path().join("root");
        fs::create_dir(&root).context(|| format!("creating {}", root.display()))?;
        let mut blob_hash = HashingReader::new(BufReader::with_capacity(1 << 20, f));
        let what = format!("layer {}", layer.digest);
        let (meta, got_diff) = {
            let dec = decompress(&mut blob_hash, layer.compression).map_err(|e| {
                corrupt_blob(reference, &layer.digest, &format!("cannot decompress: {e}"))
            })?;
            // An uncompressed layer's diff ID is its blob digest, hashed already.
            let plain = layer.compression == crate::image::Compression::None;
            let mut diff_hash = if plain {
                HashingReader::counting(dec)
            } else {
                HashingReader::new(dec)
            };
            let mut x = Extractor::new(&root, &what);
            let res = x.run(&mut diff_hash);
            // Hash the whole stream, even what tar did not need, before judging.
            let rest = io::copy(&mut diff_hash, &mut io::sink());
            if let Err(e) = res {
                return Err(if rest.is_err() || is_data_error(&e) {
                    corrupt_blob(reference, &layer.digest, &format!("unpacking failed: {e}"))
                } else {
                    e
                });
            }
            rest.map_err(|e| {
                corrupt_blob(reference, &layer.digest, &format!("cannot decompress: {e}"))
            })?;
            let (d, _) = diff_hash
                .finish()
                .map_err(|e| corrupt_blob(reference, &layer.digest, &e.to_string()))?;
            (x.finish(), (!plain).then_some(d))
        };
        let (got, size) = blob_hash
            .finish()
            .context(|| format!("reading {}", blob.display()))?;
        let got_diff = got_diff.unwrap_or_else(|| got.clone());
        if got != layer.digest || size != layer.size {
            return Err(corrupt_blob(
                reference,
                &layer.digest,
                &format!("its content hashes to {got} ({size} bytes)"),
            ));
        }
        if let Some(want) = diff_id {
            if *want != got_diff {
                return Err(corrupt_blob(
                    reference,
                    &layer.digest,
                    &format!("it unpacks to {got_diff} but the image config expects {want}"),
                ));
            }
        }
        let meta = LayerMeta {
            diff_id: Some(got_diff),
            ..meta
        };
        let json = serde_json::to_vec_pretty(&meta).expect("layer metadata serialises");
        let meta_path = tmp.path().join("meta.json");
        fs::write(&meta_path, json).context(|| format!("writing {}", meta_path.display()))?;
        crate::tree::write_seal(&tmp.path().join(SEAL), &crate::tree::seal(&root)?)?;
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
    let mut x = Extractor::new(into, &what);
    x.run(stream)?;
    Ok(x.finish())
}

fn is_data_error(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if matches!(source.kind(), io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidInput | io::ErrorKind::Other))
}

/// Extracts one tar stream into a directory it never leaves.
pub(crate) struct Extractor<'a> {
    root: &'a Path,
    what: &'a str,
    as_root: bool,
    meta: LayerMeta,
    /// Directories and their modes, applied last so read-only directories
    /// do not block their own content.
    dir_modes: Vec<(PathBuf, u32, u64)>,
}

impl<'a> Extractor<'a> {
    pub(crate) fn new(root: &'a Path, what: &'a str) -> Self {
        Extractor {
            root,
            what,
            as_root: crate::fsutil::is_root(),
            meta: LayerMeta {
                overlay_ready: true,
                ..LayerMeta::default()
            },
            dir_modes: Vec::new(),
        }
    }

    pub(crate) fn run(&mut self, r: impl Read) -> Result<()> {
        let mut ar = tar::Archive::new(r);
        let what = self.what;
        let ctx = || format!("reading the tar stream of {what}");
        for entry in ar.entries().context(ctx)? {
            let mut entry = entry.context(ctx)?;
            self.entry(&mut entry)?;
        }
        Ok(())
    }

    pub(crate) fn finish(mut self) -> LayerMeta {
        for (dir, mode, mtime) in self.dir_modes.iter().rev() {
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(*mode));
            set_mtime(dir, *mtime);
        }
        self.meta.whiteouts.sort();
        self.meta.opaque_dirs.sort();
        self.meta
    }

    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw = e.path_bytes().into_owned();
        let parts = clean(&raw, self.what)?;
        let Some(name) = parts.last().cloned() else {
            return Ok(()); // the archive root itself
        };
        let rel = parts.join("/");
        let h = e.header();
        let kind = h.entry_type();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let (uid, gid) = (h.uid().unwrap_or(0), h.gid().unwrap_or(0));
        let mtime = h.mtime().unwrap_or(0);

        if let Some(target) = name.strip_prefix(".wh.") {
            let parent_parts = &parts[..parts.len() - 1];
            return self.whiteout(parent_parts, target);
        }
        let dst = prepare_parents(self.root, &parts, self.what)?;
        let existing = fs::symlink_metadata(&dst).ok();
        let io_ctx = || format!("unpacking `{rel}` of {}", self.what);

        if kind.is_dir() {
            if !existing.as_ref().is_some_and(|m| m.is_dir()) {
                remove_existing(&dst)?;
                fs::create_dir(&dst).context(io_ctx)?;
            }
            self.chown(&dst, uid, gid);
            let mode = if self.as_root { mode } else { mode | 0o700 };
            // Writable until the end, whatever the archive says.
            fs::set_permissions(&dst, fs::Permissions::from_mode(0o700 | mode)).context(io_ctx)?;
            self.dir_modes.push((dst, mode, mtime));
            return Ok(());
        }
        if existing.is_some() {
            remove_existing(&dst)?;
        }
        if kind.is_file() || kind == tar::EntryType::Continuous || kind.is_gnu_sparse() {
            let mut f = File::options()
                .write(true)
                .create_new(true)
                .mode_0600()
                .open(&dst)
                .context(io_ctx)?;
            io::copy(e, &mut f).context(io_ctx)?;
            drop(f);
            self.chown(&dst, uid, gid);
            let mode = if self.as_root { mode } else { mode | 0o400 };
            fs::set_permissions(&dst, fs::Permissions::from_mode(mode)).context(io_ctx)?;
            set_mtime(&dst, mtime);
        } else if kind.is_symlink() {
            let target = e.link_name_bytes().unwrap_or_default().into_owned();
            let target = PathBuf::from(String::from_utf8_lossy(&target).into_owned());
            std::os::unix::fs::symlink(&target, &dst).context(io_ctx)?;
            self.chown(&dst, uid, gid);
            set_mtime(&dst, mtime);
        } else if kind.is_hard_link() {
            let target_raw = e.link_name_bytes().unwrap_or_default().into_owned();
            let tparts = clean(&target_raw, self.what).map_err(|_| {
                unsafe_entry(
                    self.what,
                    &rel,
                    &format!(
                        "is a hard link to `{}`, outside the image",
                        String::from_utf8_lossy(&target_raw)
                    ),
                )
            })?;
            let src = crate::safepath::lookup(self.root, &tparts)
                .filter(|p| fs::symlink_metadata(p).is_ok_and(|m| !m.is_dir()))
                .ok_or_else(|| {
                    unsafe_entry(
                        self.what,
                        &rel,
                        &format!(
                            "is a hard link to `{}`, which is not a file earlier in the same layer",
                            tparts.join("/")
                        ),
                    )
                })?;
            fs::hard_link(&src, &dst).context(io_ctx)?;
        } else if kind.is_character_special() || kind.is_block_special() {
            self.meta.notes.push(format!(
                "skipped device node /{rel}: devices come from the sandbox, not the image"
            ));
        } else if kind.is_fifo() {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &dst,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(mode),
                0,
            )
            .map_err(|e| Error::io(io_ctx(), e.into()))?;
            self.chown(&dst, uid, gid);
        } else if kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions()
            || kind.is_gnu_longname()
            || kind.is_gnu_longlink()
        {
            // Metadata the tar reader already applied.
        } else {
            self.meta.notes.push(format!(
                "skipped /{rel}: unsupported tar entry type {kind:?}"
            ));
        }
        Ok(())
    }

    fn whiteout(&mut self, parent: &[String], target: &str) -> Result<()> {
        let rel_parent = parent.join("/");
        let dir = if parent.is_empty() {
            self.root.to_path_buf()
        } else {
            let mut probe = parent.to_vec();
            probe.push("whiteout".into()); // only its parents are made
            let p = prepare_parents(self.root, &probe, self.what)?;
            p.parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| self.root.to_path_buf())
        };
        if target == ".wh..opq" {
            self.meta.opaque_dirs.push(rel_parent);
            let mut ok = false;
            if self.as_root {
                ok |= set_xattr(&dir, "trusted.overlay.opaque");
            }
            ok |= set_xattr(&dir, "user.overlay.opaque");
            if !ok {
                self.meta.overlay_ready = false;
            }
            return Ok(());
        }
        if target.starts_with(".wh.") {
            return Ok(()); // aufs bookkeeping (.wh..wh.plnk and friends)
        }
        let rel = if rel_parent.is_empty() {
            target.to_owned()
        } else {
            format!("{rel_parent}/{target}")
        };
        clean(rel.as_bytes(), self.what)?;
        if target.is_empty() || target.contains('/') {
            return Err(unsafe_entry(self.what, &rel, "is a malformed whiteout"));
        }
        self.meta.whiteouts.push(rel);
        let dst = dir.join(target);
        remove_existing(&dst)?;
        let made = rustix::fs::mknodat(
            rustix::fs::CWD,
            &dst,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        );
        if made.is_err() {
            self.meta.overlay_ready = false;
        }
        Ok(())
    }

    fn chown(&self, path: &Path, uid: u64, gid: u64) {
        if self.as_root {
            let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
                return;
            };
            let _ = std::os::unix::fs::lchown(path, Some(uid), Some(gid));
        }
    }
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o600)
    }
}

fn set_xattr(path: &Path, name: &str) -> bool {
    rustix::fs::lsetxattr(path, name, b"y", rustix::fs::XattrFlags::empty()).is_ok()
}

pub(crate) fn set_mtime(path: &Path, secs: u64) {
    let t = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: secs as i64,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: secs as i64,
            tv_nsec: 0,
        },
    };
    let _ = rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &t,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    );
}

/// Hard links already copied, by (device, inode) of the source.
pub(crate) type LinkMap = HashMap<(u64, u64), PathBuf>;

/// The (device, inode) of a file with more than one link.
pub(crate) fn link_key(m: &fs::Metadata) -> Option<(u64, u64)> {
    (m.nlink() > 1).then(|| (m.dev(), m.ino()))
}
