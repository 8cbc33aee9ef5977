//! Regular files of a tar stream written on worker threads. Creating an
//! inode and copying a file's bytes into the page cache is most of an
//! unpack's time and `tar -x` does it on one core; here the extractor
//! (`crate::extract`) parses the stream and decides every path on its
//! thread, and hands each small file to a worker. It hands one over only
//! for a path whose parents it checked to be real directories and that no
//! job in flight owns, and it waits for the jobs in flight
//! ([`Writers::settle`]) before it removes, replaces or links anything, so
//! the tree comes out as a one-thread unpack would leave it.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crate::tree::FileHash;

/// Files up to this size go to a worker whole; larger ones are streamed by
/// the extractor itself, so memory in flight stays bounded.
pub(crate) const JOB_MAX: u64 = 1 << 20;
/// Jobs queued per worker.
const QUEUE: usize = 16;

/// How a file's metadata is set once its bytes are written.
#[derive(Clone, Copy)]
pub(crate) struct FileMeta {
    pub(crate) mode: u32,
    /// Owner to set (as root only).
    pub(crate) owner: Option<(u32, u32)>,
    pub(crate) mtime: u64,
}

/// One file to write.
pub(crate) struct FileJob {
    pub(crate) path: PathBuf,
    /// The entry's path in the archive, for messages.
    pub(crate) rel: String,
    pub(crate) data: Vec<u8>,
    pub(crate) meta: FileMeta,
}

/// What became of a job.
pub(crate) enum Done {
    /// Written: the file's (device, inode) and hash.
    Written((u64, u64), FileHash),
    /// A directory is in the way: the extractor removes it and writes the
    /// file itself (a worker never removes a tree).
    DirInTheWay(FileJob),
    Failed(String, io::Error),
}

/// The worker threads of one extractor.
pub(crate) struct Writers {
    jobs: Option<SyncSender<FileJob>>,
    done: Receiver<Done>,
    threads: Vec<JoinHandle<()>>,
    in_flight: usize,
}

impl Writers {
    /// Starts `n` workers.
    pub(crate) fn start(n: usize) -> io::Result<Writers> {
        let (jobs, rx) = sync_channel::<FileJob>(QUEUE * n);
        let rx = Arc::new(Mutex::new(rx));
        let (done_tx, done) = channel();
        let mut threads = Vec::with_capacity(n);
        for _ in 0..n {
            let rx = Arc::clone(&rx);
            let done_tx: Sender<Done> = done_tx.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("file-writer".into())
                    .spawn(move || loop {
                        let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        let Ok(job) = job else { return };
                        if done_tx.send(write_job(job)).is_err() {
                            return;
                        }
                    })?,
            );
        }
        Ok(Writers {
            jobs: Some(jobs),
            done,
            threads,
            in_flight: 0,
        })
    }

    /// Queues `job`; hands it back if the workers are gone.
    pub(crate) fn submit(&mut self, job: FileJob) -> Result<(), FileJob> {
        let Some(jobs) = &self.jobs else {
            return Err(job);
        };
        jobs.send(job).map_err(|e| e.0)?;
        self.in_flight += 1;
        Ok(())
    }

    /// Waits for every job queued so far and returns what became of them.
    pub(crate) fn settle(&mut self) -> Vec<Done> {
        let mut out = Vec::with_capacity(self.in_flight);
        while self.in_flight > 0 {
            match self.done.recv() {
                Ok(d) => out.push(d),
                Err(_) => break, // every worker is gone; nothing more comes
            }
            self.in_flight -= 1;
        }
        self.in_flight = 0;
        out
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn write_job(job: FileJob) -> Done {
    let made = match create_new(&job.path) {
        // A file or symlink a lower layer (or an earlier entry) left there
        // is replaced, as the extractor would; a directory is left to it.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            match fs::symlink_metadata(&job.path) {
                Ok(m) if m.is_dir() => return Done::DirInTheWay(job),
                _ => fs::remove_file(&job.path).and_then(|()| create_new(&job.path)),
            }
        }
        other => other,
    };
    let result = made.and_then(|mut f| {
        let hash = *blake3::hash(&job.data).as_bytes();
        f.write_all(&job.data)?;
        Ok((finish_file(&f, job.meta)?, hash))
    });
    match result {
        Ok((key, hash)) => Done::Written(key, hash),
        Err(e) => Done::Failed(job.rel, e),
    }
}

/// A new file only its owner can touch until its mode is set.
pub(crate) fn create_new(path: &Path) -> io::Result<File> {
    File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Sets owner, mode and times of a written file; returns its (device, inode).
pub(crate) fn finish_file(f: &File, meta: FileMeta) -> io::Result<(u64, u64)> {
    if let Some((uid, gid)) = meta.owner {
        let _ = std::os::unix::fs::fchown(f, Some(uid), Some(gid));
    }
    // After chown, which clears set-id bits.
    f.set_permissions(fs::Permissions::from_mode(meta.mode))?;
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(meta.mtime);
    let _ = f.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t));
    let m = f.metadata()?;
    Ok((m.dev(), m.ino()))
}
