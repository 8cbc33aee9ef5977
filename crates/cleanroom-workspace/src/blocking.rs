//! [`Workspace`](crate::Workspace) for callers outside async code: the
//! same calls, each waiting through Cleanroom's one sync-to-async bridge.

use std::path::{Path, PathBuf};

use cleanroom::bridge::wait;
use cleanroom::{Cmd, SandboxSpec};

use crate::changes::ChangeSummary;
use crate::error::Result;
use crate::history::LogEntry;
use crate::snapshot::SnapshotReport;
use crate::sync::{SyncOptions, SyncReport};
use crate::workspace::{ExecOutcome, StartOptions};

/// A blocking handle on one workspace.
#[derive(Debug)]
pub struct Workspace {
    inner: crate::Workspace,
}

impl Workspace {
    pub fn start(project: &Path, spec: &SandboxSpec) -> Result<Workspace> {
        wait(crate::Workspace::start(project, spec)).map(|inner| Workspace { inner })
    }

    pub fn start_with(
        project: &Path,
        spec: &SandboxSpec,
        options: StartOptions,
    ) -> Result<(Workspace, SnapshotReport)> {
        wait(crate::Workspace::start_with(project, spec, options))
            .map(|(inner, r)| (Workspace { inner }, r))
    }

    pub fn open(name: &str) -> Result<Workspace> {
        crate::Workspace::open(name).map(|inner| Workspace { inner })
    }

    /// The async handle underneath.
    pub fn inner(&self) -> &crate::Workspace {
        &self.inner
    }

    pub fn name(&self) -> &str {
        self.inner.name()
    }

    pub fn sandbox_dir(&self) -> PathBuf {
        self.inner.sandbox_dir()
    }

    pub fn backend_name(&self) -> &str {
        self.inner.backend_name()
    }

    /// See [`crate::Workspace::isolation_warning`].
    pub fn isolation_warning(&self) -> Option<String> {
        self.inner.isolation_warning()
    }

    pub fn exec(&self, cmd: impl Into<Cmd>) -> Result<ExecOutcome> {
        let cmd = cmd.into();
        wait(self.inner.exec(cmd, None))
    }

    pub fn commit_changes(&self, message: &str) -> Result<Option<String>> {
        self.inner.commit_changes(message)
    }

    pub fn changes(&self) -> Result<ChangeSummary> {
        self.inner.changes()
    }

    pub fn log(&self) -> Result<Vec<LogEntry>> {
        self.inner.log()
    }

    pub fn sync_back(&self, options: SyncOptions) -> Result<SyncReport> {
        self.inner.sync_back(options)
    }

    pub fn export(&self, dir: &Path) -> Result<()> {
        self.inner.export(dir)
    }

    pub fn stop(&self) -> Result<()> {
        wait(self.inner.stop())
    }

    pub fn remove(self) -> Result<()> {
        wait(self.inner.remove())
    }
}
