//! Writing git objects into the shadow history without libgit2's cost per
//! object: ids hashed with SHA-1 here (the CPU's SHA instructions where it
//! has them), and many new objects written as one pack with its index
//! instead of one compressed loose file each. 10,000 loose objects beside
//! a 10,000-file snapshot cost more than the snapshot itself.
//!
//! The packs are plain version-2 packs of whole (undeltified) objects, each
//! a zlib stream of stored (uncompressed) blocks: writing them is a copy,
//! and reading them back (diff, sync) is one too. `git fsck` accepts them;
//! `git gc` on an exported history compresses them.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use git2::{ObjectType, Odb, Oid};
use sha1::{Digest, Sha1};

use crate::error::{git, io, Result};

/// A pack is written once its objects reach this many bytes, which bounds
/// the memory a snapshot of a big project takes.
const PACK_BUDGET: usize = 64 << 20;

/// Below this many new objects `write_tree` writes loose objects (as git
/// does below its `unpackLimit`): a pack per small commit would pile up.
pub(crate) const LOOSE_LIMIT: usize = 64;

/// Stored deflate blocks hold at most this many bytes.
const STORED_BLOCK: usize = 65_535;

fn type_name(kind: ObjectType) -> &'static str {
    match kind {
        ObjectType::Tree => "tree",
        ObjectType::Commit => "commit",
        ObjectType::Tag => "tag",
        _ => "blob",
    }
}

/// A pack entry's type number.
fn type_number(kind: ObjectType) -> u8 {
    match kind {
        ObjectType::Commit => 1,
        ObjectType::Tree => 2,
        ObjectType::Tag => 4,
        _ => 3,
    }
}

/// The git id of an object of `kind` holding `data`.
pub(crate) fn object_id(kind: ObjectType, data: &[u8]) -> Oid {
    let mut hash = Sha1::new();
    hash.update(type_name(kind).as_bytes());
    hash.update(format!(" {}\0", data.len()).as_bytes());
    hash.update(data);
    Oid::from_bytes(&hash.finalize()).expect("SHA-1 is 20 bytes")
}

/// One object's place in a pack, for the index.
struct Indexed {
    oid: Oid,
    crc: u32,
    /// From the start of the entries (the pack's 12-byte header not counted).
    offset: u64,
}

/// Collects objects and writes them as packs into `objects/pack`.
pub(crate) struct PackWriter {
    pack_dir: PathBuf,
    entries: Vec<u8>,
    index: Vec<Indexed>,
    seen: HashSet<Oid>,
}

impl PackWriter {
    /// A writer for the repository whose object directory is `objects`.
    pub(crate) fn new(objects: &Path) -> PackWriter {
        PackWriter {
            pack_dir: objects.join("pack"),
            entries: Vec::new(),
            index: Vec::new(),
            seen: HashSet::new(),
        }
    }

    /// Adds object `oid` (which must be the id of `data` as `kind`), once.
    pub(crate) fn add(&mut self, kind: ObjectType, oid: Oid, data: &[u8]) -> Result<()> {
        if !self.seen.insert(oid) {
            return Ok(());
        }
        let offset = self.entries.len() as u64;
        let crc = push_entry(&mut self.entries, kind, data);
        self.index.push(Indexed { oid, crc, offset });
        if self.entries.len() >= PACK_BUDGET {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes what is collected; nothing when nothing is.
    pub(crate) fn finish(mut self) -> Result<()> {
        self.flush()
    }

    fn flush(&mut self) -> Result<()> {
        if self.index.is_empty() {
            return Ok(());
        }
        let mut header = Vec::with_capacity(12);
        header.extend_from_slice(b"PACK");
        header.extend_from_slice(&2u32.to_be_bytes());
        header.extend_from_slice(&(self.index.len() as u32).to_be_bytes());
        let mut hash = Sha1::new();
        hash.update(&header);
        hash.update(&self.entries);
        let checksum: [u8; 20] = hash.finalize().into();
        let name = format!("pack-{}", Oid::from_bytes(&checksum).expect("20 bytes"));
        let tmp = self.pack_dir.join(format!("tmp_{name}_{}", unique()));
        let write = |path: &Path, parts: &[&[u8]]| -> Result<()> {
            let mut file =
                File::create(path).map_err(|e| io(format!("creating {}", path.display()), e))?;
            for part in parts {
                file.write_all(part)
                    .map_err(|e| io(format!("writing {}", path.display()), e))?;
            }
            Ok(())
        };
        write(
            &tmp.with_extension("pack"),
            &[&header, &self.entries, &checksum],
        )?;
        let idx = self.index_bytes(&checksum);
        write(&tmp.with_extension("idx"), &[&idx])?;
        // The pack first, then its index: a reader finds packs by their
        // index, so it never sees half of one.
        for ext in ["pack", "idx"] {
            let to = self.pack_dir.join(format!("{name}.{ext}"));
            fs::rename(tmp.with_extension(ext), &to)
                .map_err(|e| io(format!("storing {}", to.display()), e))?;
        }
        self.entries.clear();
        self.index.clear();
        Ok(())
    }

    /// The version-2 index of the collected objects, for the pack whose
    /// trailer is `checksum`.
    fn index_bytes(&mut self, checksum: &[u8; 20]) -> Vec<u8> {
        self.index.sort_by_key(|e| e.oid);
        let n = self.index.len();
        let mut out = Vec::with_capacity(8 + 256 * 4 + n * 28 + 40);
        out.extend_from_slice(b"\xfftOc");
        out.extend_from_slice(&2u32.to_be_bytes());
        let mut fanout = [0u32; 256];
        for e in &self.index {
            fanout[e.oid.as_bytes()[0] as usize] += 1;
        }
        let mut running = 0;
        for count in fanout {
            running += count;
            out.extend_from_slice(&running.to_be_bytes());
        }
        for e in &self.index {
            out.extend_from_slice(e.oid.as_bytes());
        }
        for e in &self.index {
            out.extend_from_slice(&e.crc.to_be_bytes());
        }
        let mut large = Vec::new();
        for e in &self.index {
            let offset = e.offset + 12;
            if offset < 0x8000_0000 {
                out.extend_from_slice(&(offset as u32).to_be_bytes());
            } else {
                out.extend_from_slice(&(0x8000_0000 | large.len() as u32).to_be_bytes());
                large.push(offset);
            }
        }
        for offset in large {
            out.extend_from_slice(&offset.to_be_bytes());
        }
        out.extend_from_slice(checksum);
        let own: [u8; 20] = Sha1::digest(&out).into();
        out.extend_from_slice(&own);
        out
    }
}

/// A name no other writer (thread or process) uses at the same time.
fn unique() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Appends one whole object to `buf` as a pack entry (type and size, then
/// a zlib stream of stored blocks); returns the entry's CRC-32.
fn push_entry(buf: &mut Vec<u8>, kind: ObjectType, data: &[u8]) -> u32 {
    let start = buf.len();
    buf.reserve(data.len() + data.len() / STORED_BLOCK * 5 + 32);
    let mut size = data.len() as u64;
    let mut byte = (type_number(kind) << 4) | (size & 0x0f) as u8;
    size >>= 4;
    while size != 0 {
        buf.push(byte | 0x80);
        byte = (size & 0x7f) as u8;
        size >>= 7;
    }
    buf.push(byte);
    // zlib: deflate with a 32 KiB window, "fastest" level (the check bits
    // make 0x7801 a multiple of 31).
    buf.extend_from_slice(&[0x78, 0x01]);
    if data.is_empty() {
        buf.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    let mut blocks = data.chunks(STORED_BLOCK).peekable();
    while let Some(block) = blocks.next() {
        let last = blocks.peek().is_none();
        buf.push(u8::from(last));
        let len = block.len() as u16;
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(&(!len).to_le_bytes());
        buf.extend_from_slice(block);
    }
    buf.extend_from_slice(&adler2::adler32_slice(data).to_be_bytes());
    crc32fast::hash(&buf[start..])
}

/// Where `write_tree` puts the objects it makes: nothing for one the
/// history has, the first few loose (libgit2 writes them), the rest into
/// one pack.
pub(crate) struct ObjectSink<'r> {
    odb: Odb<'r>,
    loose_left: usize,
    pack: PackWriter,
}

impl<'r> ObjectSink<'r> {
    /// A sink writing up to `loose` loose objects, then packing.
    pub(crate) fn new(repo: &'r git2::Repository, loose: usize) -> Result<ObjectSink<'r>> {
        let odb = repo.odb().map_err(|e| git("opening the object store", e))?;
        Ok(ObjectSink {
            odb,
            loose_left: loose,
            pack: PackWriter::new(&repo.path().join("objects")),
        })
    }

    /// Stores `data` as `kind` unless the history has it; returns its id.
    pub(crate) fn put(&mut self, kind: ObjectType, data: &[u8]) -> Result<Oid> {
        let oid = object_id(kind, data);
        self.put_known(kind, oid, data)?;
        Ok(oid)
    }

    /// [`ObjectSink::put`] when the caller has hashed `data` already.
    pub(crate) fn put_known(&mut self, kind: ObjectType, oid: Oid, data: &[u8]) -> Result<()> {
        if self.odb.exists(oid) {
            return Ok(());
        }
        if self.loose_left > 0 {
            self.loose_left -= 1;
            let written = self
                .odb
                .write(kind, data)
                .map_err(|e| git("storing an object", e))?;
            debug_assert_eq!(written, oid);
            return Ok(());
        }
        self.pack.add(kind, oid, data)
    }

    /// Writes the pack, if any, and makes its objects visible to `repo`.
    pub(crate) fn finish(self) -> Result<()> {
        let packed = !self.pack.seen.is_empty();
        self.pack.finish()?;
        if packed {
            self.odb
                .refresh()
                .map_err(|e| git("reading the new pack", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_libgit2s() {
        for data in [&b""[..], b"hello\n", &[0u8; 70_000]] {
            assert_eq!(
                object_id(ObjectType::Blob, data),
                Oid::hash_object(ObjectType::Blob, data).unwrap()
            );
        }
    }

    #[test]
    fn libgit2_reads_back_every_packed_object() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init_bare(tmp.path()).unwrap();
        let mut pack = PackWriter::new(&repo.path().join("objects"));
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let datas: Vec<&[u8]> = vec![b"", b"one\n", &big, b"one\n"];
        for d in &datas {
            pack.add(ObjectType::Blob, object_id(ObjectType::Blob, d), d)
                .unwrap();
        }
        pack.finish().unwrap();
        let odb = repo.odb().unwrap();
        odb.refresh().unwrap();
        for d in &datas {
            let obj = odb.read(object_id(ObjectType::Blob, d)).unwrap();
            assert_eq!(obj.data(), *d);
        }
        let packs: Vec<_> = fs::read_dir(repo.path().join("objects/pack"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(packs.len(), 2, "one pack and its index: {packs:?}");
    }
}
