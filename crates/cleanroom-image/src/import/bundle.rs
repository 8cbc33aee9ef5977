//! Random access to the files of an image bundle that is either a directory
//! or a tar archive (plain or compressed): `docker save` output and OCI
//! image layouts come both ways.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use cleanroom_core::{Error, IoContext, Result};

use crate::image::Compression;

pub(crate) enum Entry {
    Data { offset: u64, size: u64 },
    Link(String),
}

/// The files of a bundle, by `/`-separated relative path.
pub(crate) enum Bundle {
    Dir(PathBuf),
    Tar {
        path: PathBuf,
        file: File,
        index: HashMap<String, Entry>,
        /// Keeps a decompressed copy alive while the bundle is in use.
        _tmp: Option<tempfile::NamedTempFile>,
    },
}

/// Whether the first 512 bytes look like a tar header (`ustar` magic, or an
/// old-style header with a valid checksum).
pub(crate) fn looks_like_tar(head: &[u8]) -> bool {
    if head.len() < 512 {
        return false;
    }
    if &head[257..262] == b"ustar" {
        return true;
    }
    let stored = std::str::from_utf8(&head[148..156])
        .ok()
        .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' '))
        .and_then(|s| u32::from_str_radix(s, 8).ok());
    let sum: u32 = head[..512]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    stored == Some(sum) && head[0] != 0
}

/// Reads up to `n` bytes from the start of a stream.
pub(crate) fn read_head(r: &mut impl Read, n: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(n);
    r.take(n as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// A reader that decompresses `r` according to `c`.
pub(crate) fn decompress<'a>(r: impl Read + 'a, c: Compression) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
    })
}

fn normalise(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in name.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

impl Bundle {
    /// Opens a directory or a (possibly compressed) tar file. A compressed
    /// tar is decompressed into `tmp_dir` first so it can be read in any order.
    pub(crate) fn open(path: &Path, tmp_dir: &Path) -> Result<Bundle> {
        if path.is_dir() {
            return Ok(Bundle::Dir(path.to_owned()));
        }
        let mut f = File::open(path).context(|| format!("opening {}", path.display()))?;
        let head = read_head(&mut f, 8).context(|| format!("reading {}", path.display()))?;
        let mut tmp = None;
        let comp = Compression::sniff(&head);
        if comp != Compression::None {
            f.seek(SeekFrom::Start(0))
                .context(|| format!("reading {}", path.display()))?;
            let mut t = crate::store::temp_file_in(tmp_dir, "archive")?;
            let mut dec = decompress(BufReader::new(f), comp)
                .context(|| format!("decompressing {}", path.display()))?;
            io::copy(&mut dec, &mut t).context(|| format!("decompressing {}", path.display()))?;
            f = t
                .reopen()
                .context(|| format!("reopening {}", t.path().display()))?;
            tmp = Some(t);
        }
        f.seek(SeekFrom::Start(0))
            .context(|| format!("reading {}", path.display()))?;
        let head = read_head(&mut f, 512).context(|| format!("reading {}", path.display()))?;
        if !looks_like_tar(&head) {
            return Err(unknown_format(
                path,
                "it is neither a directory nor a tar archive",
            ));
        }
        f.seek(SeekFrom::Start(0))
            .context(|| format!("reading {}", path.display()))?;
        let mut index = HashMap::new();
        {
            let mut ar = tar::Archive::new(&f);
            let entries = ar
                .entries_with_seek()
                .context(|| format!("reading tar {}", path.display()))?;
            for e in entries {
                let e = e.context(|| format!("reading tar {}", path.display()))?;
                let name = normalise(&String::from_utf8_lossy(&e.path_bytes()));
                let kind = e.header().entry_type();
                let entry = if kind.is_symlink() || kind.is_hard_link() {
                    let target = e
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    let resolved = if kind.is_symlink() && !target.starts_with('/') {
                        let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                        normalise(&format!("{dir}/{target}"))
                    } else {
                        normalise(&target)
                    };
                    Entry::Link(resolved)
                } else if kind.is_file() {
                    Entry::Data {
                        offset: e.raw_file_position(),
                        size: e.size(),
                    }
                } else {
                    continue;
                };
                index.insert(name, entry);
            }
        }
        Ok(Bundle::Tar {
            path: path.to_owned(),
            file: f,
            index,
            _tmp: tmp,
        })
    }

    /// Where the bundle is, for messages.
    pub(crate) fn path(&self) -> &Path {
        match self {
            Bundle::Dir(p) | Bundle::Tar { path: p, .. } => p,
        }
    }

    /// Whether `name` exists as a file.
    pub(crate) fn has(&self, name: &str) -> bool {
        match self {
            Bundle::Dir(d) => d.join(normalise(name)).is_file(),
            Bundle::Tar { index, .. } => self.locate(index, name).is_some(),
        }
    }

    fn locate(&self, index: &HashMap<String, Entry>, name: &str) -> Option<(u64, u64)> {
        let mut name = normalise(name);
        for _ in 0..16 {
            match index.get(&name)? {
                Entry::Data { offset, size } => return Some((*offset, *size)),
                Entry::Link(t) => name = t.clone(),
            }
        }
        None
    }

    /// Opens the file `name` and returns a reader and its size.
    pub(crate) fn open_file(&self, name: &str) -> Result<(Box<dyn Read + '_>, u64)> {
        let missing = || {
            Error::Image {
            reference: self.path().display().to_string(),
            message: format!("the bundle has no file `{name}` although its index names it; the archive is incomplete, re-export it"),
        }
        };
        match self {
            Bundle::Dir(d) => {
                let rel = normalise(name);
                let p = d.join(&rel);
                let f = File::open(&p).map_err(|e| match e.kind() {
                    io::ErrorKind::NotFound => missing(),
                    _ => Error::io(format!("opening {}", p.display()), e),
                })?;
                let size = f
                    .metadata()
                    .context(|| format!("inspecting {}", p.display()))?
                    .len();
                Ok((Box::new(BufReader::with_capacity(1 << 20, f)), size))
            }
            Bundle::Tar { file, index, .. } => {
                let (offset, size) = self.locate(index, name).ok_or_else(missing)?;
                let r = ReadAt {
                    file,
                    pos: offset,
                    end: offset + size,
                };
                Ok((Box::new(BufReader::with_capacity(1 << 20, r)), size))
            }
        }
    }

    /// Reads a small file (JSON) whole.
    pub(crate) fn read_small(&self, name: &str) -> Result<Vec<u8>> {
        let (mut r, size) = self.open_file(name)?;
        if size > 64 << 20 {
            return Err(Error::Image {
                reference: self.path().display().to_string(),
                message: format!("`{name}` is {size} bytes, too large for an index or config file"),
            });
        }
        let mut v = Vec::with_capacity(size as usize);
        r.read_to_end(&mut v)
            .context(|| format!("reading `{name}` in {}", self.path().display()))?;
        Ok(v)
    }
}

/// Reads `file[pos..end]` with `pread`, so several readers can share one file.
struct ReadAt<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let left = (self.end - self.pos).min(buf.len() as u64) as usize;
        if left == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..left], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends inside a file",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// The error for a file that is no format we import.
pub(crate) fn unknown_format(path: &Path, why: &str) -> Error {
    Error::Image {
        reference: path.display().to_string(),
        message: format!(
            "unknown image format ({why}); Cleanroom imports `docker save` archives, OCI image layouts \
             (directory or tar), root filesystem tarballs as `tar://PATH` (plain, gzip or zstd) and \
             directories as `file://PATH`"
        ),
    }
}
