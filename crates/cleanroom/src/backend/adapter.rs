//! [`AsyncAdapter`]: a two-method [`Backend`] behind the async
//! [`crate::Backend`] and [`crate::Sandbox`] traits, each command a
//! `run_cmd` call on a blocking thread, its enforcement reported unknown.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use cleanroom_core::{
    Availability, Cmd, Constraint, Enforcement, Error, Logs, OutputChunk, OutputSink, Prepared,
    Result, RunResult, SandboxSpec, Stream,
};

use super::Backend;

/// A backend of one's own, made usable wherever an async backend is (see
/// [`Backend::into_async`]).
///
/// Cleanroom sees only `run_cmd`, so it cannot tell what is isolated or
/// limited: the report marks every constraint the spec asks for as
/// unknown, and strict mode refuses to run. The command gets the spec's
/// environment under its own and the spec's timeout unless it has one;
/// honouring them is up to the backend. A sandbox from
/// [`crate::Backend::create`] runs each exec as one more `run_cmd` call; it
/// cannot copy files or keep a main command (a service) running.
pub struct AsyncAdapter<B> {
    backend: Arc<B>,
}

impl<B: Backend + Send + Sync + 'static> AsyncAdapter<B> {
    pub fn new(backend: B) -> Self {
        AsyncAdapter {
            backend: Arc::new(backend),
        }
    }

    /// The backend it adapts.
    pub fn get(&self) -> &B {
        &self.backend
    }
}

/// Every constraint `spec` asks for, marked unknown for the backend `name`.
fn unknown_report(name: &str, spec: &SandboxSpec) -> Enforcement {
    let mut e = Enforcement::new(name);
    let why = format!(
        "`{name}` is a backend of its own behind the two-method `run_cmd` trait, which cannot \
         say what it enforces"
    );
    for c in Constraint::requested_by(spec) {
        e.unknown(c, why.clone());
    }
    e
}

/// Runs `cmd` made to `spec` through `backend.run_cmd` on a blocking thread;
/// `enforcement` is the report from the preamble.
async fn run_on<B: Backend + Send + Sync + 'static>(
    backend: &Arc<B>,
    spec: &SandboxSpec,
    mut cmd: Cmd,
    sink: Option<OutputSink>,
    enforcement: Enforcement,
) -> Result<RunResult> {
    let name = backend.name().to_string();
    for (k, v) in &spec.env {
        cmd.env.entry(k.clone()).or_insert_with(|| v.clone());
    }
    cmd.timeout = cmd.timeout.or(spec.timeout);
    let started = Instant::now();
    let b = backend.clone();
    let joined = tokio::task::spawn_blocking(move || b.run_cmd(cmd)).await;
    let mut result = match joined {
        Ok(r) => r?,
        Err(e) if e.is_panic() => {
            let panic = e.into_panic();
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-text panic".into());
            return Err(Error::backend(name, format!("run_cmd panicked: {what}")));
        }
        Err(e) => return Err(Error::backend(name, format!("run_cmd did not finish: {e}"))),
    };
    if result.duration.is_zero() {
        result.duration = started.elapsed();
    }
    result.backend = name;
    result.enforcement = enforcement;
    if let Some(sink) = sink {
        // Nothing streamed while it ran: the whole output arrives at the end.
        for (stream, bytes) in [
            (Stream::Stdout, &result.stdout),
            (Stream::Stderr, &result.stderr),
        ] {
            if !bytes.is_empty() {
                let chunk = OutputChunk {
                    stream,
                    bytes: bytes.clone(),
                };
                // A reader that went away does not want the rest either.
                let _ = sink.send(chunk).await;
            }
        }
    }
    Ok(result)
}

#[async_trait]
impl<B: Backend + Send + Sync + 'static> crate::Backend for AsyncAdapter<B> {
    fn name(&self) -> &str {
        self.backend.name()
    }

    async fn availability(&self) -> Availability {
        Availability::yes(format!(
            "`{}` is a backend of its own; cleanroom cannot probe it",
            self.backend.name()
        ))
    }

    fn enforcement(&self, spec: &SandboxSpec) -> Enforcement {
        unknown_report(self.backend.name(), spec)
    }

    async fn run_prepared(
        &self,
        spec: &SandboxSpec,
        cmd: Cmd,
        sink: Option<OutputSink>,
        prepared: Prepared,
    ) -> Result<RunResult> {
        run_on(&self.backend, spec, cmd, sink, prepared.into_enforcement()).await
    }

    async fn create_prepared(
        &self,
        spec: &SandboxSpec,
        main: Option<Cmd>,
        prepared: Prepared,
    ) -> Result<Box<dyn crate::Sandbox>> {
        let name = self.backend.name().to_string();
        if let Some(main) = main {
            return Err(Error::Unsupported {
                backend: name,
                what: format!(
                    "a main command that keeps running (`{}`, a service): a two-method \
                     backend runs one command at a time",
                    main.display()
                ),
            });
        }
        let enforcement = prepared.into_enforcement();
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Ok(Box::new(AsyncAdapterSandbox {
            id: format!(
                "{name}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
            backend: self.backend.clone(),
            spec: spec.clone(),
            enforcement,
            stopped: AtomicBool::new(false),
        }))
    }
}

/// A "sandbox" of an [`AsyncAdapter`]: each exec is one `run_cmd` call, made
/// to the spec it was created with; what one exec leaves behind is the
/// backend's business.
pub struct AsyncAdapterSandbox<B> {
    id: String,
    backend: Arc<B>,
    spec: SandboxSpec,
    enforcement: Enforcement,
    stopped: AtomicBool,
}

impl<B: Backend + Send + Sync + 'static> AsyncAdapterSandbox<B> {
    fn unsupported(&self, what: &str) -> Error {
        Error::Unsupported {
            backend: self.backend.name().to_string(),
            what: format!("{what}: a two-method backend only runs commands"),
        }
    }
}

#[async_trait]
impl<B: Backend + Send + Sync + 'static> crate::Sandbox for AsyncAdapterSandbox<B> {
    fn id(&self) -> &str {
        &self.id
    }

    fn backend(&self) -> &str {
        self.backend.name()
    }

    fn enforcement(&self) -> &Enforcement {
        &self.enforcement
    }

    async fn exec_streaming(&self, cmd: Cmd, sink: Option<OutputSink>) -> Result<RunResult> {
        if self.stopped.load(Ordering::SeqCst) {
            return Err(Error::SandboxGone {
                id: self.id.clone(),
            });
        }
        cmd.validate()?;
        let enforcement = self.enforcement.clone();
        run_on(&self.backend, &self.spec, cmd, sink, enforcement).await
    }

    async fn copy_in(&self, _host_path: &Path, sandbox_path: &Path) -> Result<()> {
        Err(self.unsupported(&format!("copying files in ({})", sandbox_path.display())))
    }

    async fn copy_out(&self, sandbox_path: &Path, _host_path: &Path) -> Result<()> {
        Err(self.unsupported(&format!("copying files out ({})", sandbox_path.display())))
    }

    async fn logs(&self) -> Result<Logs> {
        // It never has a main command, so there is nothing to show.
        Ok(Logs::default())
    }

    async fn stop(&self) -> Result<()> {
        self.stopped.store(true, Ordering::SeqCst);
        Ok(())
    }

    async fn remove(&self) -> Result<()> {
        self.stopped.store(true, Ordering::SeqCst);
        Ok(())
    }
}
