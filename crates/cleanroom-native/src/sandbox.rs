//! A long-lived native sandbox: its init serves execs, copies and stop
//! requests until removed; dropping it or the caller dying ends it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use cleanroom_core::{
    output_channel, Cmd, Enforcement, Error, Logs, OutputSink, Result, RunResult, Sandbox,
    SandboxSpec, Stream,
};

use crate::client::Instance;
use crate::exec;
use crate::protocol::Message;

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
        crate::copy::copy_in(&self.inst, host_path, &self.inside(sandbox_path)).await
    }

    async fn copy_out(&self, sandbox_path: &Path, host_path: &Path) -> Result<()> {
        self.check_running()?;
        crate::copy::copy_out(&self.inst, &self.inside(sandbox_path), host_path)
            .await
            .map_err(|e| match e {
                Error::SandboxGone { .. } => Error::SandboxGone {
                    id: self.id.clone(),
                },
                e => e,
            })
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
            .call(
                |id| Message::Stop { id, grace_ms: 0 },
                "stopping the sandbox",
            )
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
