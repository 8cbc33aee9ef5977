//! Extracting tar streams into a directory they never leave, in one of two
//! forms:
//! - a layer directory of its own: whiteouts kept in overlayfs form (`.wh.NAME`
//!   a 0/0 character device, `.wh..wh..opq` the `trusted.overlay.opaque` (as
//!   root) and `user.overlay.opaque` attributes), also listed in the
//!   [`LayerMeta`];
//! - a merged root filesystem: the layers of an image extracted one after
//!   the other into one tree, each layer's whiteouts and opaque directories
//!   removing what the layers below put there (what overlayfs would show).
//!
//! Regular files are written in one pass and hashed (BLAKE3, see
//! `crate::tree`) on the way, so sealing the tree afterwards reads no file
//! back; small ones on worker threads (`crate::writer`).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cleanroom_core::{Error, IoContext, Result};

use crate::fsutil::read_full;
use crate::safepath::{clean, lookup, remove_existing, unsafe_entry};
use crate::tree::FileHash;
use crate::unpack::LayerMeta;
use crate::writer::{create_new, finish_file, Done, FileJob, FileMeta, Writers, JOB_MAX};

/// The hash of every regular file written, by (device, inode), so a tree's
/// content fingerprint needs no second read (hard links share theirs).
pub(crate) type FileDigests = HashMap<(u64, u64), FileHash>;

/// How much of a file is read before it is written (one `write` for most files).
const FILE_BUF: usize = 1 << 20;

/// Extracts tar streams into one directory.
pub(crate) struct Extractor<'a> {
    root: &'a Path,
    what: String,
    as_root: bool,
    /// Layers stacked into one tree (whiteouts applied) rather than one layer in overlayfs form.
    merged: bool,
    meta: LayerMeta,
    /// Directories and their modes, applied last so read-only directories
    /// do not block their own content; one entry per path, the last layer's.
    dir_modes: Vec<(PathBuf, u32, u64)>,
    dir_index: HashMap<PathBuf, usize>,
    /// Merged: the paths the current layer created or went through; what is
    /// not in here came from the layers below.
    touched: HashSet<String>,
    /// Paths below the root known to be real directories (made or checked);
    /// forgotten on every removal.
    known_dirs: HashSet<String>,
    digests: FileDigests,
    buf: Vec<u8>,
    /// Workers writing small files, started with the first one.
    writers: Option<Writers>,
    /// Paths handed to a worker and not settled yet.
    pending: HashSet<String>,
}

impl<'a> Extractor<'a> {
    /// An extractor of one layer in overlayfs form into `root`.
    pub(crate) fn layer(root: &'a Path, what: &str) -> Self {
        Extractor::new(root, what, false)
    }

    /// An extractor of several layers, lowest first, merged into `root`;
    /// call [`Extractor::begin_layer`] before each.
    pub(crate) fn merged(root: &'a Path) -> Self {
        Extractor::new(root, "", true)
    }

    fn new(root: &'a Path, what: &str, merged: bool) -> Self {
        Extractor {
            root,
            what: what.to_owned(),
            as_root: crate::fsutil::is_root(),
            merged,
            meta: LayerMeta {
                overlay_ready: true,
                ..LayerMeta::default()
            },
            dir_modes: Vec::new(),
            dir_index: HashMap::new(),
            touched: HashSet::new(),
            known_dirs: HashSet::new(),
            digests: FileDigests::new(),
            buf: Vec::new(),
            writers: None,
            pending: HashSet::new(),
        }
    }

    /// Starts the next layer of a merged tree (`what` names it in errors).
    pub(crate) fn begin_layer(&mut self, what: &str) {
        self.what = what.to_owned();
        self.touched.clear();
    }

    /// Extracts one tar stream; every file of it is written when this returns.
    pub(crate) fn run(&mut self, r: impl Read) -> Result<()> {
        let parsed = self.parse(r);
        let settled = self.settle();
        parsed.and(settled)
    }

    fn parse(&mut self, r: impl Read) -> Result<()> {
        let mut ar = tar::Archive::new(r);
        let what = self.what.clone();
        let ctx = || format!("reading the tar stream of {what}");
        for entry in ar.entries().context(ctx)? {
            let mut entry = entry.context(ctx)?;
            self.entry(&mut entry)?;
        }
        Ok(())
    }

    /// Waits for the files handed to the workers, records their hashes,
    /// and writes those a directory was in the way of; the first failure
    /// is the error.
    fn settle(&mut self) -> Result<()> {
        let Some(writers) = self.writers.as_mut() else {
            return Ok(());
        };
        if self.pending.is_empty() {
            return Ok(());
        }
        let outcomes = writers.settle();
        self.pending.clear();
        let mut first = Ok(());
        for d in outcomes {
            let r = match d {
                Done::Written(key, hash) => {
                    self.digests.insert(key, hash);
                    Ok(())
                }
                Done::DirInTheWay(job) => self.write_here(job),
                Done::Failed(rel, e) => {
                    Err(Error::io(format!("unpacking `{rel}` of {}", self.what), e))
                }
            };
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Settles first if a worker owns `rel`, so it can be touched.
    fn wait_for(&mut self, rel: &str) -> Result<()> {
        if self.pending.contains(rel) {
            self.settle()?;
        }
        Ok(())
    }

    /// A job a worker handed back, written here after removing what is in the way.
    fn write_here(&mut self, job: FileJob) -> Result<()> {
        self.remove(&job.path)?;
        let what = &self.what;
        let ctx = || format!("unpacking `{}` of {what}", job.rel);
        let mut f = create_new(&job.path).context(ctx)?;
        let hash = *blake3::hash(&job.data).as_bytes();
        f.write_all(&job.data).context(ctx)?;
        let key = finish_file(&f, job.meta).context(ctx)?;
        self.digests.insert(key, hash);
        Ok(())
    }

    /// Applies the directory modes and returns what was found and the
    /// digests of the files written.
    pub(crate) fn finish(mut self) -> (LayerMeta, FileDigests) {
        // `run` settled already unless it failed; the tree is not used then.
        let _ = self.settle();
        for (dir, mode, mtime) in self.dir_modes.iter().rev() {
            // A later layer may have replaced the directory by something else.
            if !fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(*mode));
            set_mtime(dir, *mtime);
        }
        self.meta.whiteouts.sort();
        self.meta.opaque_dirs.sort();
        (self.meta, self.digests)
    }

    fn remove(&mut self, path: &Path) -> Result<()> {
        // A removed tree may hold files a worker is writing.
        self.settle()?;
        self.known_dirs.clear();
        remove_existing(path)
    }

    /// Makes sure every parent of `parts` is a real directory below the
    /// root, creating missing ones, and returns the entry's full path. A
    /// parent that is a symlink or not a directory is an error, except, when
    /// merging, one a lower layer made: this layer's directory replaces it,
    /// as it does in overlayfs (nothing is ever followed).
    fn parents(&mut self, parts: &[String]) -> Result<PathBuf> {
        let (last, parents) = parts.split_last().expect("parents needs a non-empty path");
        let mut cur = self.root.to_path_buf();
        let mut rel = String::new();
        for (i, p) in parents.iter().enumerate() {
            cur.push(p);
            if i > 0 {
                rel.push('/');
            }
            rel.push_str(p);
            let from_below =
                self.merged && !self.touched.contains(&rel) && self.touched.insert(rel.clone());
            if self.known_dirs.contains(&rel) {
                continue;
            }
            self.wait_for(&rel)?;
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                Ok(_) if from_below => {
                    self.remove(&cur)?;
                    fs::create_dir(&cur).context(|| format!("creating {}", cur.display()))?;
                }
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(unsafe_entry(
                        &self.what,
                        &parts.join("/"),
                        &format!("goes through the symlink `{}`", parts[..=i].join("/")),
                    ))
                }
                Ok(_) => {
                    return Err(Error::Image {
                        reference: self.what.clone(),
                        message: format!(
                        "entry `{}` is below `{}`, which is not a directory; the archive is broken",
                        parts.join("/"),
                        parts[..=i].join("/")
                    ),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&cur).context(|| format!("creating {}", cur.display()))?;
                }
                Err(e) => return Err(Error::io(format!("inspecting {}", cur.display()), e)),
            }
            self.known_dirs.insert(rel.clone());
        }
        cur.push(last);
        Ok(cur)
    }

    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw = e.path_bytes().into_owned();
        let parts = clean(&raw, &self.what)?;
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
            return self.whiteout(&parts[..parts.len() - 1], target);
        }
        let dst = self.parents(&parts)?;
        self.wait_for(&rel)?;
        if self.merged {
            self.touched.insert(rel.clone());
        }
        let what = self.what.clone();
        let io_ctx = || format!("unpacking `{rel}` of {what}");

        if kind.is_dir() {
            if !fs::symlink_metadata(&dst).is_ok_and(|m| m.is_dir()) {
                self.remove(&dst)?;
                fs::create_dir(&dst).context(io_ctx)?;
            }
            self.chown(&dst, uid, gid);
            let mode = if self.as_root { mode } else { mode | 0o700 };
            // Writable until the end, whatever the archive says.
            fs::set_permissions(&dst, fs::Permissions::from_mode(0o700 | mode)).context(io_ctx)?;
            self.push_dir_mode(dst, mode, mtime);
            self.known_dirs.insert(rel);
            return Ok(());
        }
        if kind.is_file() || kind == tar::EntryType::Continuous || kind.is_gnu_sparse() {
            let meta = FileMeta {
                mode: if self.as_root { mode } else { mode | 0o400 },
                owner: match (u32::try_from(uid), u32::try_from(gid)) {
                    (Ok(u), Ok(g)) if self.as_root => Some((u, g)),
                    _ => None,
                },
                mtime,
            };
            // A sparse entry's size is not its length, and a directory in
            // the way goes first (entries below it may follow): written here.
            if e.size() <= JOB_MAX && !kind.is_gnu_sparse() && !self.known_dirs.contains(&rel) {
                let mut data = Vec::with_capacity(e.size() as usize);
                e.read_to_end(&mut data).context(io_ctx)?;
                let job = FileJob {
                    path: dst,
                    rel: rel.clone(),
                    data,
                    meta,
                };
                if self.writers.is_none() {
                    self.writers = Writers::start(worker_count()).ok();
                }
                let handed = match self.writers.as_mut() {
                    Some(w) => w.submit(job),
                    None => Err(job),
                };
                return match handed {
                    Ok(()) => {
                        self.pending.insert(rel);
                        Ok(())
                    }
                    Err(job) => self.write_here(job),
                };
            }
            let mut f = match create_new(&dst) {
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                    self.remove(&dst)?;
                    create_new(&dst)
                }
                other => other,
            }
            .context(io_ctx)?;
            let digest = self.write_file(e, &mut f).context(io_ctx)?;
            let key = finish_file(&f, meta).context(io_ctx)?;
            self.digests.insert(key, digest);
            return Ok(());
        }
        if fs::symlink_metadata(&dst).is_ok() {
            self.remove(&dst)?;
        }
        if kind.is_symlink() {
            let target = e.link_name_bytes().unwrap_or_default().into_owned();
            let target = PathBuf::from(String::from_utf8_lossy(&target).into_owned());
            std::os::unix::fs::symlink(&target, &dst).context(io_ctx)?;
            self.chown(&dst, uid, gid);
            set_mtime(&dst, mtime);
        } else if kind.is_hard_link() {
            self.hard_link(e, &rel, &dst)?;
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

    /// Writes an entry's bytes to `f` in large writes, hashing them.
    fn write_file(&mut self, r: &mut impl Read, f: &mut File) -> io::Result<FileHash> {
        if self.buf.len() < FILE_BUF {
            self.buf.resize(FILE_BUF, 0);
        }
        let mut h = blake3::Hasher::new();
        loop {
            let filled = read_full(r, &mut self.buf)?;
            if filled == 0 {
                return Ok(*h.finalize().as_bytes());
            }
            h.update(&self.buf[..filled]);
            f.write_all(&self.buf[..filled])?;
            if filled < self.buf.len() {
                return Ok(*h.finalize().as_bytes());
            }
        }
    }

    /// A hard link must point at a file this layer put there earlier.
    fn hard_link<R: Read>(&mut self, e: &tar::Entry<'_, R>, rel: &str, dst: &Path) -> Result<()> {
        let target_raw = e.link_name_bytes().unwrap_or_default().into_owned();
        let tparts = clean(&target_raw, &self.what).map_err(|_| {
            unsafe_entry(
                &self.what,
                rel,
                &format!(
                    "is a hard link to `{}`, outside the image",
                    String::from_utf8_lossy(&target_raw)
                ),
            )
        })?;
        let target = tparts.join("/");
        // A file a worker is writing is linked once it is there.
        self.wait_for(&target)?;
        let refuse = |why: String| unsafe_entry(&self.what, rel, &why);
        let this_layer = !self.merged || self.touched.contains(&target);
        let src = lookup(self.root, &tparts)
            .filter(|p| this_layer && fs::symlink_metadata(p).is_ok_and(|m| !m.is_dir()))
            .ok_or_else(|| {
                refuse(format!(
                    "is a hard link to `{}`, which is not a file earlier in the same layer",
                    tparts.join("/")
                ))
            })?;
        fs::hard_link(&src, dst).context(|| format!("unpacking `{rel}` of {}", self.what))?;
        Ok(())
    }

    fn push_dir_mode(&mut self, dir: PathBuf, mode: u32, mtime: u64) {
        match self.dir_index.get(&dir) {
            Some(&i) => self.dir_modes[i] = (dir, mode, mtime),
            None => {
                self.dir_index.insert(dir.clone(), self.dir_modes.len());
                self.dir_modes.push((dir, mode, mtime));
            }
        }
    }

    fn whiteout(&mut self, parent: &[String], target: &str) -> Result<()> {
        let rel_parent = parent.join("/");
        let dir = if parent.is_empty() {
            self.root.to_path_buf()
        } else {
            let mut probe = parent.to_vec();
            probe.push("whiteout".into()); // only its parents are made
            let p = self.parents(&probe)?;
            p.parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| self.root.to_path_buf())
        };
        if target == ".wh..opq" {
            if self.merged {
                return self.remove_lower(&dir, &rel_parent);
            }
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
        clean(rel.as_bytes(), &self.what)?;
        if target.is_empty() || target.contains('/') {
            return Err(unsafe_entry(&self.what, &rel, "is a malformed whiteout"));
        }
        let dst = dir.join(target);
        if self.merged {
            return match fs::symlink_metadata(&dst) {
                Err(_) => Ok(()),
                Ok(_) if !self.touched.contains(&rel) => self.remove(&dst),
                Ok(m) if m.is_dir() => self.remove_lower(&dst, &rel),
                Ok(_) => Ok(()),
            };
        }
        self.meta.whiteouts.push(rel);
        self.remove(&dst)?;
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

    /// Merged: removes everything below `dir` that the current layer did not put there.
    fn remove_lower(&mut self, dir: &Path, rel: &str) -> Result<()> {
        for name in crate::fsutil::sorted_names(dir)? {
            let name = name.to_string_lossy();
            let child_rel = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            let path = dir.join(&*name);
            if !self.touched.contains(&child_rel) {
                self.remove(&path)?;
            } else if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                self.remove_lower(&path, &child_rel)?;
            }
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

/// Workers for the small files: one per core, at most 4.
fn worker_count() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(4))
}

fn set_xattr(path: &Path, name: &str) -> bool {
    rustix::fs::lsetxattr(path, name, b"y", rustix::fs::XattrFlags::empty()).is_ok()
}

/// Sets access and modification time of `path` (not following a symlink).
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
