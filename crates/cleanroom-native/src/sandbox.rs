//! A long-lived native sandbox: its init serves execs, copies and stop
//! requests until removed; dropping it or the caller dying ends it.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use cleanroom_core::{
    output_channel, Cmd, Enforcement, Error, Logs, OutputSink, Result, RunResult, Sandbox,
    SandboxSpec, Stream,
};

use crate::client::Instance;
use crate::exec;
use crate::protocol::{Msg, CHUNK};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A live sandbox's namespaces and user, as a pod others can join.
struct PodEntry {
    namespaces: Weak<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)>,
    uid: u32,
    gid: u32,
}

/// Live sandboxes by id, for `Network::Pod`.
fn pods() -> &'static Mutex<HashMap<String, PodEntry>> {
    static PODS: std::sync::OnceLock<Mutex<HashMap<String, PodEntry>>> = std::sync::OnceLock::new();
    PODS.get_or_init(Mutex::default)
}

/// What joining the live sandbox `id`'s network takes (descriptors duplicated).
pub fn pod(id: &str) -> Option<crate::plan::Pod> {
    let mut map = lock(pods());
    map.retain(|_, p| p.namespaces.strong_count() > 0);
    let entry = map.get(id)?;
    let ns = entry.namespaces.upgrade()?;
    Some(crate::plan::Pod {
        net: ns.0.try_clone().ok()?,
        user: ns.1.try_clone().ok()?,
        uid: entry.uid,
        gid: entry.gid,
    })
}

/// See the module docs.
pub struct NativeSandbox {
    id: String,
    spec: SandboxSpec,
    enforcement: Enforcement,
    inst: Arc<Instance>,
    logs: Arc<Mutex<Logs>>,
    pub(crate) published: Vec<(u16, u16)>,
    pub(crate) proxies: Vec<tokio::task::JoinHandle<()>>,
    /// Where execs start unless they name a directory (the image's WorkingDir).
    pub(crate) start_dir: Option<std::path::PathBuf>,
}

impl NativeSandbox {
    pub(crate) async fn start(
        id: String,
        spec: SandboxSpec,
        enforcement: Enforcement,
        inst: Instance,
        main: Option<Cmd>,
    ) -> Result<Self> {
        if let Some(ns) = &inst.namespaces {
            lock(pods()).insert(
                id.clone(),
                PodEntry {
                    namespaces: Arc::downgrade(ns),
                    uid: spec.user.uid,
                    gid: spec.user.gid,
                },
            );
        }
        let inst = Arc::new(inst);
        let (published, proxies) = crate::publish::publish(&inst, &spec.publish).await?;
        let sb = NativeSandbox {
            id,
            spec,
            enforcement,
            inst,
            logs: Arc::default(),
            published,
            proxies,
            start_dir: None,
        };
        if let Some(main) = main {
            sb.start_main(main).await?;
        }
        Ok(sb)
    }

    async fn start_main(&self, main: Cmd) -> Result<()> {
        let (tx, mut rx) = output_channel(64);
        let started = exec::start(&self.inst, &self.spec, &main, Some(tx)).await?;
        let logs = self.logs.clone();
        let limit = self.spec.output_limit as usize;
        tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                let mut logs = lock(&logs);
                let buf = match chunk.stream {
                    Stream::Stdout => &mut logs.stdout,
                    Stream::Stderr => &mut logs.stderr,
                };
                let room = limit.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk.bytes[..chunk.bytes.len().min(room)]);
            }
        });
        // The main process's status is not part of the contract; only its
        // output is (the logs).
        tokio::spawn(started.detach());
        Ok(())
    }

    fn check_running(&self) -> Result<()> {
        if self.inst.is_running() {
            Ok(())
        } else {
            Err(Error::SandboxGone {
                id: self.id.clone(),
            })
        }
    }

    /// A sandbox path as the init understands it (relative to the workdir).
    fn inside(&self, p: &Path) -> PathBuf {
        self.spec.workdir.join(p)
    }
}

/// Whether `rel` (from the sandbox) is a plain relative path.
fn plain_relative(rel: &Path) -> bool {
    rel.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Refuses to write through a symlink created on the host side.
fn no_symlink_between(base: &Path, rel: &Path) -> Result<()> {
    let mut p = base.to_path_buf();
    for c in rel.parent().into_iter().flat_map(|p| p.components()) {
        p.push(c);
        if std::fs::symlink_metadata(&p)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
        {
            return Err(Error::backend(
                "native",
                format!(
                    "copy_out: {} is a symlink; refusing to write through it",
                    p.display()
                ),
            ));
        }
    }
    Ok(())
}

#[async_trait]
impl Sandbox for NativeSandbox {
    fn id(&self) -> &str {
        &self.id
    }

    fn backend(&self) -> &str {
        "native"
    }

    fn enforcement(&self) -> &Enforcement {
        &self.enforcement
    }

    async fn exec_streaming(&self, cmd: Cmd, sink: Option<OutputSink>) -> Result<RunResult> {
        self.check_running()?;
        let cmd = cleanroom_core::image_config::starting_in(cmd, self.start_dir.as_deref());
        let mut e = exec::start(&self.inst, &self.spec, &cmd, sink).await?;
        let exit = match e.wait(&self.inst).await {
            Ok(x) => x,
            Err(err) => {
                e.abort();
                return Err(err);
            }
        };
        let oom = self.inst.oom_killed();
        Ok(e.finish(exit, self.enforcement.clone(), oom).await)
    }

    async fn copy_in(&self, host_path: &Path, sandbox_path: &Path) -> Result<()> {
        self.check_running()?;
        let mut stack = vec![(host_path.to_path_buf(), self.inside(sandbox_path))];
        while let Some((from, to)) = stack.pop() {
            let meta = std::fs::symlink_metadata(&from)
                .map_err(|e| Error::io(format!("copy_in: reading {}", from.display()), e))?;
            let to_b = to.as_os_str().as_bytes().to_vec();
            let what = format!("copy_in to {}", to.display());
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&from)
                    .map_err(|e| Error::io(format!("copy_in: reading {}", from.display()), e))?;
                let t = target.as_os_str().as_bytes().to_vec();
                self.inst
                    .call(|id| Msg::new("symlink").num(id).push(t).push(to_b), &what)
                    .await?;
            } else if meta.is_dir() {
                let mode = meta.permissions().mode() as u64 & 0o7777;
                self.inst
                    .call(|id| Msg::new("mkdir").num(id).push(to_b).num(mode), &what)
                    .await?;
                let mut names: Vec<_> = std::fs::read_dir(&from)
                    .map_err(|e| Error::io(format!("copy_in: listing {}", from.display()), e))?
                    .flatten()
                    .map(|e| e.file_name())
                    .collect();
                names.sort();
                for n in names.into_iter().rev() {
                    stack.push((from.join(&n), to.join(&n)));
                }
            } else if meta.is_file() {
                let data = tokio::fs::read(&from)
                    .await
                    .map_err(|e| Error::io(format!("copy_in: reading {}", from.display()), e))?;
                let mode = meta.permissions().mode() as u64 & 0o7777;
                let mut chunks = data.chunks(CHUNK);
                let first = chunks.next().unwrap_or(&[]).to_vec();
                let p = to_b.clone();
                self.inst
                    .call(
                        |id| Msg::new("create").num(id).push(p).num(mode).push(first),
                        &what,
                    )
                    .await?;
                for c in chunks {
                    let p = to_b.clone();
                    let c = c.to_vec();
                    self.inst
                        .call(
                            |id| Msg::new("append").num(id).push(p).num(mode).push(c),
                            &what,
                        )
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn copy_out(&self, sandbox_path: &Path, host_path: &Path) -> Result<()> {
        self.check_running()?;
        let src = self.inside(sandbox_path).as_os_str().as_bytes().to_vec();
        let (id, mut rx) = self
            .inst
            .request(|id| Msg::new("get").num(id).push(src), &[])
            .await?;
        let result = async {
            let mut current: Option<std::fs::File> = None;
            loop {
                let Some((m, _)) = rx.recv().await else {
                    return Err(Error::SandboxGone {
                        id: self.id.clone(),
                    });
                };
                let rel = Path::new(std::ffi::OsStr::from_bytes(m.field(2))).to_path_buf();
                if !plain_relative(&rel) {
                    return Err(Error::backend(
                        "native",
                        format!(
                            "copy_out: the sandbox sent the unsafe path {}",
                            rel.display()
                        ),
                    ));
                }
                let dst = if rel.as_os_str().is_empty() {
                    host_path.to_path_buf()
                } else {
                    no_symlink_between(host_path, &rel)?;
                    host_path.join(&rel)
                };
                let io = |e: std::io::Error| {
                    Error::io(format!("copy_out: writing {}", dst.display()), e)
                };
                match m.tag() {
                    b"dir" => {
                        // Never through a symlink an earlier entry created.
                        if std::fs::symlink_metadata(&dst).is_ok_and(|m| m.file_type().is_symlink())
                        {
                            return Err(Error::backend(
                                "native",
                                format!(
                                    "copy_out: {} is a symlink; refusing to write through it",
                                    dst.display()
                                ),
                            ));
                        }
                        std::fs::create_dir_all(&dst).map_err(io)?;
                        let mode = m.num_at(3) as u32 & 0o777;
                        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode))
                            .map_err(io)?;
                    }
                    b"file" => {
                        let mut f = std::fs::OpenOptions::new()
                            .write(true)
                            .create(true)
                            .truncate(true)
                            .custom_flags(libc::O_NOFOLLOW)
                            .mode(m.num_at(3) as u32 & 0o777)
                            .open(&dst)
                            .map_err(io)?;
                        std::io::Write::write_all(&mut f, m.field(4)).map_err(io)?;
                        current = Some(f);
                    }
                    b"more" => {
                        if let Some(f) = current.as_mut() {
                            std::io::Write::write_all(f, m.field(4)).map_err(io)?;
                        }
                    }
                    b"link" => {
                        std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(m.field(3)), &dst)
                            .map_err(io)?;
                    }
                    b"done" => return Ok(()),
                    _ => {
                        return Err(Error::backend(
                            "native",
                            format!("copy_out of {}: {}", sandbox_path.display(), m.text(2)),
                        ))
                    }
                }
            }
        }
        .await;
        self.inst.done(id);
        result
    }

    async fn logs(&self) -> Result<Logs> {
        Ok(lock(&self.logs).clone())
    }

    fn published_port(&self, sandbox_port: u16) -> Option<u16> {
        self.published
            .iter()
            .find(|(s, _)| *s == sandbox_port)
            .map(|(_, h)| *h)
    }

    async fn stop(&self) -> Result<()> {
        if !self.inst.is_running() {
            return Ok(());
        }
        self.inst
            .call(|id| Msg::new("stop").num(id), "stopping the sandbox")
            .await
    }

    async fn remove(&self) -> Result<()> {
        for p in &self.proxies {
            p.abort();
        }
        lock(pods()).remove(&self.id);
        self.inst.shutdown().await;
        Ok(())
    }
}

impl Drop for NativeSandbox {
    fn drop(&mut self) {
        for p in &self.proxies {
            p.abort();
        }
        lock(pods()).remove(&self.id);
    }
}
