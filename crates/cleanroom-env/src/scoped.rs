//! The engine's named sandboxes held by this process and gone with it: the
//! backend's own per-process sandboxes under names, for callers whose
//! services must not outlive them (the test runner: a killed `cleanroom
//! test` leaves nothing behind) and for backends with no named sandboxes
//! (`local`, a caller's custom backend). The engine runs the same over it
//! as over a backend's named sandboxes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cleanroom::{
    Availability, Backend, Cmd, DetachOptions, Detached, Enforcement, Error, ExecStdio, LogOptions,
    OutputChunk, OutputSink, Prepared, Result, RunResult, Sandbox, SandboxInfo, SandboxSpec,
    SandboxState, Stats, Stream,
};

/// The sandboxes held here, by name.
type Held = Arc<Mutex<BTreeMap<String, Handle>>>;

/// `inner`, with every named sandbox made as one of its per-process
/// sandboxes and held here.
pub struct Scoped {
    inner: Arc<dyn Backend>,
    held: Held,
}

impl Scoped {
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Scoped {
            inner,
            held: Held::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl Backend for Scoped {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn availability(&self) -> Availability {
        self.inner.availability().await
    }

    async fn can_honour(&self, spec: &SandboxSpec) -> std::result::Result<(), String> {
        self.inner.can_honour(spec).await
    }

    fn enforcement(&self, spec: &SandboxSpec) -> Enforcement {
        self.inner.enforcement(spec)
    }

    async fn run_prepared(
        &self,
        spec: &SandboxSpec,
        cmd: Cmd,
        sink: Option<OutputSink>,
        prepared: Prepared,
    ) -> Result<RunResult> {
        self.inner.run_prepared(spec, cmd, sink, prepared).await
    }

    async fn create_prepared(
        &self,
        spec: &SandboxSpec,
        main: Option<Cmd>,
        prepared: Prepared,
    ) -> Result<Box<dyn Sandbox>> {
        self.inner.create_prepared(spec, main, prepared).await
    }

    async fn create_detached_prepared(
        &self,
        spec: &SandboxSpec,
        main: Option<Cmd>,
        options: DetachOptions,
        prepared: Prepared,
    ) -> Result<Box<dyn Detached>> {
        if lock(&self.held).contains_key(&options.name) {
            return Err(Error::InvalidSpec(format!(
                "a sandbox named `{}` already exists",
                options.name
            )));
        }
        let command = main
            .as_ref()
            .map(|c| {
                std::iter::once(c.program.clone())
                    .chain(c.args.clone())
                    .collect()
            })
            .unwrap_or_default();
        let sandbox: Arc<dyn Sandbox> =
            Arc::from(self.inner.create_prepared(spec, main, prepared).await?);
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let handle = Handle {
            info: SandboxInfo {
                name: options.name.clone(),
                backend: self.inner.name().to_string(),
                image: spec.rootfs.to_string(),
                state: SandboxState::Running,
                created,
                command,
                labels: options.labels,
                id: sandbox.id().to_string(),
            },
            sandbox,
            held: self.held.clone(),
        };
        lock(&self.held).insert(options.name, handle.clone());
        Ok(Box::new(handle))
    }

    async fn list(&self, all: bool) -> Result<Vec<SandboxInfo>> {
        Ok(lock(&self.held)
            .values()
            .filter(|h| all || h.info.state == SandboxState::Running)
            .map(|h| h.info.clone())
            .collect())
    }

    async fn attach(&self, name: &str) -> Result<Option<Box<dyn Detached>>> {
        let held = lock(&self.held).get(name).cloned();
        Ok(held.map(|h| Box::new(h) as Box<dyn Detached>))
    }

    async fn remove_session(&self) -> Result<Vec<String>> {
        self.inner.remove_session().await
    }

    async fn gc(&self) -> Result<Vec<cleanroom::Removed>> {
        self.inner.gc().await
    }
}

/// One sandbox held by [`Scoped`]: the backend's own, under a name.
#[derive(Clone)]
struct Handle {
    info: SandboxInfo,
    sandbox: Arc<dyn Sandbox>,
    held: Held,
}

#[async_trait]
impl Detached for Handle {
    fn info(&self) -> &SandboxInfo {
        &self.info
    }

    async fn exec(&self, cmd: Cmd, sink: Option<OutputSink>) -> Result<RunResult> {
        self.sandbox.exec_streaming(cmd, sink).await
    }

    async fn exec_attached(&self, _cmd: Cmd, _stdio: ExecStdio) -> Result<i32> {
        Err(Error::Unsupported {
            backend: self.info.backend.clone(),
            what: "attaching a terminal to a service held by this process".to_string(),
        })
    }

    async fn copy_in(&self, host_path: &Path, sandbox_path: &Path) -> Result<()> {
        self.sandbox.copy_in(host_path, sandbox_path).await
    }

    async fn copy_out(&self, sandbox_path: &Path, host_path: &Path) -> Result<()> {
        self.sandbox.copy_out(sandbox_path, host_path).await
    }

    /// What the main process wrote so far (stdout, then stderr: the backend
    /// keeps them apart); `follow` is not available here.
    async fn logs(&self, options: LogOptions, sink: OutputSink) -> Result<()> {
        let logs = self.sandbox.logs().await?;
        let mut text = logs.stdout;
        text.extend_from_slice(&logs.stderr);
        let bytes = match options.tail {
            Some(n) => tail_lines(&text, n).to_vec(),
            None => text,
        };
        let _ = sink
            .send(OutputChunk {
                stream: Stream::Stdout,
                bytes,
            })
            .await;
        Ok(())
    }

    async fn stop(&self, _grace: Duration) -> Result<()> {
        self.sandbox.stop().await?;
        if let Some(h) = lock(&self.held).get_mut(&self.info.name) {
            h.info.state = SandboxState::Exited { code: 137 };
        }
        Ok(())
    }

    async fn remove(&self, _force: bool) -> Result<()> {
        lock(&self.held).remove(&self.info.name);
        self.sandbox.remove().await
    }

    async fn stats(&self) -> Result<Stats> {
        Ok(Stats {
            name: self.info.name.clone(),
            unavailable: Some(format!(
                "the {} backend's sandboxes have no cgroup to read",
                self.info.backend
            )),
            ..Stats::default()
        })
    }
}

/// The last `n` lines of `text`.
fn tail_lines(text: &[u8], n: usize) -> &[u8] {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut start = body.len();
    for _ in 0..n {
        match body[..start].iter().rposition(|&b| b == b'\n') {
            Some(i) => start = i,
            None => return text,
        }
    }
    &text[start + 1..]
}

#[cfg(test)]
mod tests {
    use super::tail_lines;

    #[test]
    fn tails_lines() {
        assert_eq!(tail_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail_lines(b"a\nb\nc", 2), b"b\nc");
        assert_eq!(tail_lines(b"a\nb\n", 5), b"a\nb\n");
        assert_eq!(tail_lines(b"", 1), b"");
    }
}
