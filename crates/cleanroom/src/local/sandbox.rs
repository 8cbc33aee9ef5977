//! A long-lived local sandbox: one temporary working directory that every
//! exec shares, an optional main process whose output is the logs, and the
//! process groups to kill when it stops.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cleanroom_core::{
    output_channel, Cmd, Enforcement, Error, Logs, OutputSink, Result, RunResult, Sandbox,
    SandboxSpec, Stream,
};
use rustix::process::Pid;

use super::process::{self, kill_group, Launch};
use super::{environment, fresh_workdir, host_path};

/// See the module docs. Dropping it kills everything it started and
/// deletes its directory.
pub struct LocalSandbox {
    id: String,
    spec: SandboxSpec,
    root: PathBuf,
    dir: Mutex<Option<tempfile::TempDir>>,
    enforcement: Enforcement,
    groups: Arc<Mutex<Vec<Pid>>>,
    logs: Arc<Mutex<Logs>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind, so
    // the data is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LocalSandbox {
    /// A new sandbox for `spec`, which passed the preamble with the report
    /// `enforcement`.
    pub(crate) fn start(
        spec: SandboxSpec,
        main: Option<Cmd>,
        enforcement: Enforcement,
    ) -> Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = fresh_workdir()?;
        let sandbox = LocalSandbox {
            id: format!(
                "local-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
            root: dir.path().to_path_buf(),
            dir: Mutex::new(Some(dir)),
            enforcement,
            groups: Arc::default(),
            logs: Arc::default(),
            spec,
        };
        if let Some(main) = main {
            sandbox.start_main(main)?;
        }
        Ok(sandbox)
    }

    fn start_main(&self, main: Cmd) -> Result<()> {
        let (tx, mut rx) = output_channel(64);
        let started = self.launch(main, Some(tx))?;
        let logs = self.logs.clone();
        let limit = self.spec.output_limit;
        tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                let mut logs = lock(&logs);
                let buf = match chunk.stream {
                    Stream::Stdout => &mut logs.stdout,
                    Stream::Stderr => &mut logs.stderr,
                };
                let room = (limit as usize).saturating_sub(buf.len());
                buf.extend_from_slice(&chunk.bytes[..chunk.bytes.len().min(room)]);
            }
        });
        let groups = self.groups.clone();
        let enforcement = self.enforcement.clone();
        tokio::spawn(async move {
            let pgid = started.pgid;
            let _ = started.finish(None, enforcement).await;
            forget_group(&groups, pgid);
        });
        Ok(())
    }

    fn launch(&self, cmd: Cmd, sink: Option<OutputSink>) -> Result<process::Started> {
        if lock(&self.dir).is_none() {
            return Err(Error::SandboxGone {
                id: self.id.clone(),
            });
        }
        let cwd = match &cmd.workdir {
            Some(w) => host_path(&self.spec, &self.root, w),
            None => self.root.clone(),
        };
        let env = environment(&self.spec, &cmd, &self.root);
        let started = process::start(
            Launch {
                cmd,
                env,
                cwd: &cwd,
                output_limit: self.spec.output_limit,
            },
            sink,
        )?;
        if let Some(pgid) = started.pgid {
            lock(&self.groups).push(pgid);
        }
        Ok(started)
    }

    /// The host path for a path inside; only the working directory exists here.
    fn resolve(&self, sandbox_path: &Path) -> Result<PathBuf> {
        let p = host_path(&self.spec, &self.root, sandbox_path);
        if p.starts_with(&self.root) && !sandbox_path.components().any(|c| c.as_os_str() == "..") {
            Ok(p)
        } else {
            Err(Error::OutsideMount {
                path: sandbox_path.to_path_buf(),
            })
        }
    }

    fn kill_all(&self) {
        for pgid in lock(&self.groups).drain(..) {
            kill_group(pgid);
        }
    }
}

fn forget_group(groups: &Mutex<Vec<Pid>>, pgid: Option<Pid>) {
    if let Some(pgid) = pgid {
        lock(groups).retain(|g| *g != pgid);
    }
}

/// Copies a file or a directory tree.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    if meta.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)
    } else {
        std::fs::copy(from, to).map(|_| ())
    }
}

async fn copy(from: PathBuf, to: PathBuf) -> Result<()> {
    let what = format!("copying {} to {}", from.display(), to.display());
    tokio::task::spawn_blocking(move || copy_tree(&from, &to))
        .await
        .map_err(|e| Error::backend("local", format!("{what}: {e}")))?
        .map_err(|e| Error::io(what, e))
}

#[async_trait]
impl Sandbox for LocalSandbox {
    fn id(&self) -> &str {
        &self.id
    }

    fn backend(&self) -> &str {
        "local"
    }

    fn enforcement(&self) -> &Enforcement {
        &self.enforcement
    }

    async fn exec_streaming(&self, cmd: Cmd, sink: Option<OutputSink>) -> Result<RunResult> {
        cmd.validate()?;
        let timeout = cmd.timeout.or(self.spec.timeout);
        let started = self.launch(cmd, sink)?;
        let pgid = started.pgid;
        let result = started.finish(timeout, self.enforcement.clone()).await;
        forget_group(&self.groups, pgid);
        result
    }

    async fn copy_in(&self, host_path: &Path, sandbox_path: &Path) -> Result<()> {
        let to = self.resolve(sandbox_path)?;
        copy(host_path.to_path_buf(), to).await
    }

    async fn copy_out(&self, sandbox_path: &Path, host_path: &Path) -> Result<()> {
        let from = self.resolve(sandbox_path)?;
        copy(from, host_path.to_path_buf()).await
    }

    async fn logs(&self) -> Result<Logs> {
        Ok(lock(&self.logs).clone())
    }

    async fn stop(&self) -> Result<()> {
        self.kill_all();
        Ok(())
    }

    async fn remove(&self) -> Result<()> {
        self.kill_all();
        let dir = lock(&self.dir).take();
        if let Some(dir) = dir {
            let path = dir.path().to_path_buf();
            dir.close()
                .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
        }
        Ok(())
    }
}

impl Drop for LocalSandbox {
    fn drop(&mut self) {
        self.kill_all();
    }
}
