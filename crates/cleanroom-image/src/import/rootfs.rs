//! Root filesystems without image metadata: a tarball (`tar://`) stored as
//! one layer as it is, or a directory (`file://`) packed into one layer.
//! Both get a minimal config for the host platform.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use cleanroom_core::{Error, IoContext, Result};

use super::bundle::{decompress, looks_like_tar, read_head, unknown_format};
use super::{write_manifest, Imported, Tx};
use crate::digest::{Digest, HashingReader};
use crate::image::Compression;

/// A layer blob in the store.
pub(crate) struct StoredLayer {
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    pub(crate) compression: Compression,
    /// Digest of the uncompressed tar; `None` for a compressed layer passed
    /// to a [`Tx::prebuild`], whose thread hashes it (see
    /// [`StoredLayer::diff_id_or_read`]).
    pub(crate) diff_id: Option<Digest>,
}

/// Stores a layer blob (sniffing its compression) and computes its diff ID,
/// passing its bytes to the import's prebuild if there is one.
pub(crate) fn store_layer(
    tx: &mut Tx<'_>,
    mut reader: impl Read,
    total: Option<u64>,
    expected: Option<&Digest>,
    item: &str,
) -> Result<StoredLayer> {
    let head = read_head(&mut reader, 8).context(|| format!("reading layer `{item}`"))?;
    let compression = Compression::sniff(&head);
    let pass = tx.prebuild.as_mut().and_then(|p| p.next_pass());
    let teed = pass.is_some();
    let source = head.as_slice().chain(reader);
    let (digest, size) = tx.put_as(source, expected, item, total, pass)?;
    let diff_id = match compression {
        Compression::None => Some(digest.clone()),
        _ if teed => None,
        _ => Some(diff_id_of_blob(tx, &digest, compression)?),
    };
    Ok(StoredLayer {
        digest,
        size,
        compression,
        diff_id,
    })
}

impl StoredLayer {
    /// The diff ID: known, hashed by the prebuild's thread (`hashed`), or
    /// else read from the stored blob.
    pub(crate) fn diff_id_or_read(&self, tx: &Tx<'_>, hashed: Option<&Digest>) -> Result<Digest> {
        match (&self.diff_id, hashed) {
            (Some(d), _) | (None, Some(d)) => Ok(d.clone()),
            (None, None) => diff_id_of_blob(tx, &self.digest, self.compression),
        }
    }
}

/// Decompresses a stored blob to hash its tar stream.
fn diff_id_of_blob(tx: &Tx<'_>, digest: &Digest, compression: Compression) -> Result<Digest> {
    let path = tx.store.blob_path(digest);
    let f = File::open(&path).context(|| format!("opening {}", path.display()))?;
    let dec = decompress(BufReader::with_capacity(1 << 20, f), compression)
        .context(|| format!("decompressing layer {digest}"))?;
    Ok(HashingReader::new(dec)
        .finish()
        .context(|| format!("decompressing layer {digest} ({compression:?})"))?
        .0)
}

/// The config of an image made from a bare root filesystem.
fn config_for(diff_id: &Digest, created_by: &str) -> Vec<u8> {
    let created = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or_else(crate::time::now_rfc3339, crate::time::rfc3339);
    let v = serde_json::json!({
        "created": created,
        "architecture": crate::fsutil::host_arch(),
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        },
        "rootfs": { "type": "layers", "diff_ids": [diff_id.to_string()] },
        "history": [{ "created": created, "created_by": created_by }],
    });
    v.to_string().into_bytes()
}

fn finish(tx: &mut Tx<'_>, layer: StoredLayer, created_by: &str) -> Result<Imported> {
    let diff_id = layer.diff_id_or_read(tx, None)?;
    let config = config_for(&diff_id, created_by);
    let config_digest = tx.put_bytes(&config, "config")?;
    let manifest = write_manifest(
        tx,
        (&config_digest, config.len() as u64),
        &[(layer.digest, layer.size, layer.compression)],
    )?;
    Ok(Imported {
        manifest,
        names: Vec::new(),
    })
}

/// `tar://PATH`: the tarball becomes the image's only layer.
pub(super) fn import_tar(tx: &mut Tx<'_>, path: &Path) -> Result<Imported> {
    let mut f = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Image {
            reference: format!("tar://{}", path.display()),
            message: "no such file; check the path".into(),
        },
        _ => Error::io(format!("opening {}", path.display()), e),
    })?;
    if f.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(Error::Image {
            reference: format!("tar://{}", path.display()),
            message: "is a directory; import a directory as file://PATH".into(),
        });
    }
    // Check it is a tar (after decompression) before storing anything.
    let head = read_head(&mut f, 8).context(|| format!("reading {}", path.display()))?;
    let c = Compression::sniff(&head);
    f.seek(SeekFrom::Start(0))
        .context(|| format!("reading {}", path.display()))?;
    let tar_head = decompress(BufReader::new(&f), c)
        .and_then(|mut d| read_head(&mut d, 512))
        .unwrap_or_default();
    if !looks_like_tar(&tar_head) {
        return Err(unknown_format(
            path,
            "it is not a tar archive (plain, gzip or zstd)",
        ));
    }
    f.seek(SeekFrom::Start(0))
        .context(|| format!("reading {}", path.display()))?;
    let total = f.metadata().ok().map(|m| m.len());
    let name = path
        .file_name()
        .map_or_else(|| "rootfs".into(), |n| n.to_string_lossy().into_owned());
    let layer = store_layer(tx, BufReader::with_capacity(1 << 20, f), total, None, &name)?;
    finish(
        tx,
        layer,
        &format!("cleanroom import tar://{}", path.display()),
    )
}

/// `file://PATH`: the directory is packed (files owned by root, hard links
/// and symlinks kept, sorted for a reproducible digest) into one layer.
pub(super) fn import_dir(tx: &mut Tx<'_>, path: &Path) -> Result<Imported> {
    if !path.is_dir() {
        return Err(Error::Image {
            reference: format!("file://{}", path.display()),
            message: if path.exists() {
                "is not a directory; import a tarball as tar://PATH".into()
            } else {
                "no such directory; check the path".into()
            },
        });
    }
    let tmp = tx.store.temp_file("pack")?;
    {
        let mut builder =
            tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, tmp.as_file()));
        let mut links = HashMap::new();
        pack(&mut builder, path, Path::new(""), &mut links)?;
        let mut w = builder
            .into_inner()
            .context(|| format!("packing {}", path.display()))?;
        w.flush()
            .context(|| format!("packing {}", path.display()))?;
    }
    let f = tmp
        .reopen()
        .context(|| format!("reopening {}", tmp.path().display()))?;
    let total = f.metadata().ok().map(|m| m.len());
    let layer = store_layer(
        tx,
        BufReader::with_capacity(1 << 20, f),
        total,
        None,
        "rootfs directory",
    )?;
    finish(
        tx,
        layer,
        &format!("cleanroom import file://{}", path.display()),
    )
}

fn pack<W: Write>(
    b: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
    links: &mut HashMap<(u64, u64), std::path::PathBuf>,
) -> Result<()> {
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .context(|| format!("listing {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .context(|| format!("listing {}", dir.display()))?;
    names.sort();
    for name in names {
        let rel_path = rel.join(&name);
        let full = root.join(&rel_path);
        let meta =
            fs::symlink_metadata(&full).context(|| format!("inspecting {}", full.display()))?;
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        h.set_uid(0);
        h.set_gid(0);
        let ctx = || format!("packing {}", full.display());
        let ft = meta.file_type();
        if ft.is_dir() {
            h.set_size(0);
            b.append_data(&mut h, &rel_path, std::io::empty())
                .context(ctx)?;
            pack(b, root, &rel_path, links)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&full).context(ctx)?;
            h.set_size(0);
            b.append_link(&mut h, &rel_path, &target).context(ctx)?;
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    b.append_link(&mut h, &rel_path, first).context(ctx)?;
                    continue;
                }
                links.insert((meta.dev(), meta.ino()), rel_path.clone());
            }
            let f = File::open(&full).context(ctx)?;
            b.append_data(&mut h, &rel_path, BufReader::new(f))
                .context(ctx)?;
        }
        // Sockets, fifos and devices are not part of a root filesystem image.
    }
    Ok(())
}
