//! The two traits every backend implements: [`Backend`] runs and creates
//! sandboxes, [`Sandbox`] is one long-lived sandbox.

use std::path::Path;

use async_trait::async_trait;
use serde::Serialize;

use crate::cmd::Cmd;
use crate::detached::{DetachOptions, Detached, SandboxInfo};
use crate::enforcement::Enforcement;
use crate::error::Result;
use crate::output::OutputSink;
use crate::preamble::{self, Prepared, Warnings};
use crate::result::RunResult;
use crate::spec::SandboxSpec;

/// Whether a backend can run here, and if not, why and what to change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Availability {
    pub available: bool,
    /// Why it is or is not available, in a sentence.
    pub reason: String,
    /// What to do to make it available, when it is not.
    pub hint: Option<String>,
}

impl Availability {
    pub fn yes(reason: impl Into<String>) -> Self {
        Availability {
            available: true,
            reason: reason.into(),
            hint: None,
        }
    }

    pub fn no(reason: impl Into<String>, hint: impl Into<String>) -> Self {
        Availability {
            available: false,
            reason: reason.into(),
            hint: Some(hint.into()),
        }
    }
}

/// A way of running sandboxes: native, podman, docker, local or vm.
#[async_trait]
pub trait Backend: Send + Sync {
    /// `native`, `podman`, `docker` or `local`.
    fn name(&self) -> &str;

    /// Probes the machine (cheaply) for what this backend needs.
    async fn availability(&self) -> Availability;

    async fn is_available(&self) -> bool {
        self.availability().await.available
    }

    /// Whether this backend can run `spec` here as it stands — it has the
    /// image, or can use that kind of root filesystem at all — and if not,
    /// why, in a sentence. `auto` passes over a backend that cannot. Cheap:
    /// a local lookup, never a download.
    async fn can_honour(&self, spec: &SandboxSpec) -> std::result::Result<(), String> {
        let _ = spec;
        Ok(())
    }

    /// What this backend would enforce for `spec`, one entry per constraint
    /// the spec requests. Computed before running; the run's result carries it.
    fn enforcement(&self, spec: &SandboxSpec) -> Enforcement;

    /// The run preamble, once for every run and every new sandbox: checks
    /// `spec` and `cmd`, computes [`Backend::enforcement`], refuses in strict
    /// mode, and reports the warnings to `warnings`. [`Backend::run_streaming`]
    /// and [`Backend::create`] call it; a caller that shows the warnings
    /// itself calls it with [`Warnings::Caller`] and then
    /// [`Backend::run_prepared`]. Backends do not override it.
    fn prepare(
        &self,
        spec: &SandboxSpec,
        cmd: Option<&Cmd>,
        warnings: Warnings,
    ) -> Result<Prepared> {
        preamble::prepare(spec, cmd, |s| self.enforcement(s), warnings)
    }

    /// Runs one command in a fresh sandbox that is gone when this returns.
    async fn run(&self, spec: &SandboxSpec, cmd: Cmd) -> Result<RunResult> {
        self.run_streaming(spec, cmd, None).await
    }

    /// Like [`Backend::run`], also sending output to `sink` while it runs.
    /// The result still holds output up to the spec's output limit.
    /// Backends do not override it: it is the preamble, then
    /// [`Backend::run_prepared`].
    async fn run_streaming(
        &self,
        spec: &SandboxSpec,
        cmd: Cmd,
        sink: Option<OutputSink>,
    ) -> Result<RunResult> {
        let prepared = self.prepare(spec, Some(&cmd), Warnings::Log)?;
        self.run_prepared(spec, cmd, sink, prepared).await
    }

    /// The backend's own part of [`Backend::run_streaming`], after the
    /// preamble: `prepared` proves it ran and holds the report for the result.
    async fn run_prepared(
        &self,
        spec: &SandboxSpec,
        cmd: Cmd,
        sink: Option<OutputSink>,
        prepared: Prepared,
    ) -> Result<RunResult>;

    /// Starts a long-lived sandbox. With `main`, that command is its main
    /// process and [`Sandbox::logs`] holds its output; without, it idles
    /// until stopped. Backends do not override it: it is the preamble, then
    /// [`Backend::create_prepared`].
    async fn create(&self, spec: &SandboxSpec, main: Option<Cmd>) -> Result<Box<dyn Sandbox>> {
        let prepared = self.prepare(spec, main.as_ref(), Warnings::Log)?;
        self.create_prepared(spec, main, prepared).await
    }

    /// The backend's own part of [`Backend::create`], after the preamble.
    async fn create_prepared(
        &self,
        spec: &SandboxSpec,
        main: Option<Cmd>,
        prepared: Prepared,
    ) -> Result<Box<dyn Sandbox>>;

    /// Starts a named sandbox that outlives this process (`cleanroom
    /// create`, `run -d`): with `main`, that command is its main process and
    /// the sandbox is `exited` when it ends; without, its init idles until
    /// stopped. Backends do not override it: it is the preamble, then
    /// [`Backend::create_detached_prepared`].
    async fn create_detached(
        &self,
        spec: &SandboxSpec,
        main: Option<Cmd>,
        options: DetachOptions,
    ) -> Result<Box<dyn Detached>> {
        crate::detached::validate_name(&options.name)?;
        let prepared = self.prepare(spec, main.as_ref(), Warnings::Log)?;
        self.create_detached_prepared(spec, main, options, prepared)
            .await
    }

    /// The backend's own part of [`Backend::create_detached`]. A backend
    /// that cannot hold a sandbox without a process of ours keeps this
    /// default, which refuses and names the backends that can.
    async fn create_detached_prepared(
        &self,
        spec: &SandboxSpec,
        main: Option<Cmd>,
        options: DetachOptions,
        prepared: Prepared,
    ) -> Result<Box<dyn Detached>> {
        let _ = (spec, main, options, prepared);
        Err(crate::detached::unsupported(self.name()))
    }

    /// The named sandboxes this backend holds for this user: running ones,
    /// and with `all` also exited and dead ones.
    async fn list(&self, all: bool) -> Result<Vec<SandboxInfo>> {
        let _ = all;
        Ok(Vec::new())
    }

    /// A handle on the named sandbox, or `None` when this backend holds
    /// none by that name.
    async fn attach(&self, name: &str) -> Result<Option<Box<dyn Detached>>> {
        let _ = name;
        Ok(None)
    }

    /// Removes every sandbox this process created on this backend, running
    /// or not, and says what it removed: for a caller's SIGINT/SIGTERM
    /// handler, just before it exits. Backends whose sandboxes die with
    /// their caller have nothing to do.
    async fn remove_session(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    /// Removes what callers that died without cleaning up left behind
    /// (containers, mounts, cgroups, temporary directories) and says what
    /// it removed, one entry per item with its kind. Never touches a live
    /// caller's sandboxes.
    async fn gc(&self) -> Result<Vec<crate::Removed>> {
        Ok(Vec::new())
    }
}

/// Whether the process `pid` still exists (as any user).
pub fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The main process's output so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Logs {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// One long-lived sandbox. Dropping it, or the caller dying, removes it and
/// everything in it.
#[async_trait]
pub trait Sandbox: Send + Sync {
    /// Unique among live sandboxes; usable as `Network::Pod(id)` by others.
    fn id(&self) -> &str;

    /// The backend it runs on.
    fn backend(&self) -> &str;

    /// What is enforced for it.
    fn enforcement(&self) -> &Enforcement;

    /// Runs a command inside; a timeout kills that command's whole process tree.
    async fn exec(&self, cmd: Cmd) -> Result<RunResult> {
        self.exec_streaming(cmd, None).await
    }

    async fn exec_streaming(&self, cmd: Cmd, sink: Option<OutputSink>) -> Result<RunResult>;

    /// Copies a host file or directory to `sandbox_path` (its parent must exist).
    async fn copy_in(&self, host_path: &Path, sandbox_path: &Path) -> Result<()>;

    /// Copies a file or directory from inside to `host_path`.
    async fn copy_out(&self, sandbox_path: &Path, host_path: &Path) -> Result<()>;

    /// Output of the main process so far (bounded by the output limit).
    async fn logs(&self) -> Result<Logs>;

    /// The host port on 127.0.0.1 where `sandbox_port` is published, if it is.
    fn published_port(&self, sandbox_port: u16) -> Option<u16> {
        let _ = sandbox_port;
        None
    }

    /// Stops every process inside; the sandbox can still be removed.
    async fn stop(&self) -> Result<()>;

    /// Stops and deletes the sandbox. Idempotent.
    async fn remove(&self) -> Result<()>;
}
