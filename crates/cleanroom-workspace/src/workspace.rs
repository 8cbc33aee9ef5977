//! [`Workspace`]: a project snapshot, its shadow history and the named
//! sandbox that works on it, as one handle (the shape Safe Coder's
//! `IsolationBackend` expects). Everything but `exec` and `stop` works
//! from the files alone, so a stopped workspace can still be diffed and
//! synced.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cleanroom::detached::{DetachOptions, Detached, ExecStdio};
use cleanroom::{
    Backend, BackendChoice, Cmd, Mount, OutputSink, RootFs, RunResult, SandboxSpec, User,
};

use crate::changes::{self, ChangeSummary};
use crate::error::{input, io, Result};
use crate::excludes::Excludes;
use crate::history::{self, History, LogEntry};
use crate::layout::{self, Layout, Meta};
use crate::one_shot;
use crate::snapshot::{snapshot, SnapshotReport};
use crate::sync::{self, SyncOptions, SyncReport};

/// Where the workspace appears inside the sandbox (and its working directory).
pub const MOUNT_POINT: &str = "/workspace";

/// The label on a workspace's sandbox naming its workspace (`cleanroom ps`
/// shows it).
pub const WORKSPACE_LABEL: &str = "workspace";

/// How `start` names the workspace, what it leaves out and where it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StartOptions {
    /// The workspace's (and its sandbox's) name; one is made when `None`.
    pub name: Option<String>,
    /// Gitignore-style patterns left out of the snapshot, on top of the
    /// project's `.cleanroomignore`.
    pub excludes: Vec<String>,
    pub backend: BackendChoice,
}

/// What an `exec` did.
#[derive(Clone, Debug)]
pub struct ExecOutcome {
    pub exit_code: i32,
    /// The captured result; `None` for [`Workspace::exec_attached`], whose
    /// output went straight to the caller's streams.
    pub result: Option<RunResult>,
    /// The commit recording what the command changed, if it changed anything.
    pub commit: Option<String>,
}

/// One workspace.
pub struct Workspace {
    layout: Layout,
    meta: Meta,
    backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace")
            .field("meta", &self.meta)
            .finish()
    }
}

impl Workspace {
    /// Snapshots `project` and starts its sandbox made to `spec` (plus the
    /// workspace read-write at `/workspace`, its working directory).
    pub async fn start(project: &Path, spec: &SandboxSpec) -> Result<Workspace> {
        Workspace::start_with(project, spec, StartOptions::default())
            .await
            .map(|(ws, _)| ws)
    }

    /// [`Workspace::start`] with a name, excludes and backend; also says
    /// what the snapshot copied and left out.
    pub async fn start_with(
        project: &Path,
        spec: &SandboxSpec,
        options: StartOptions,
    ) -> Result<(Workspace, SnapshotReport)> {
        let project = check_project(project)?;
        let root = layout::root()?;
        let name = match &options.name {
            Some(n) => n.clone(),
            None => cleanroom::detached::generate_name().replacen("cr-", "ws-", 1),
        };
        let layout = Layout::new(&root, &name)?;
        if layout.dir.exists() {
            return Err(input(
                format!("workspace name `{name}`"),
                format!("is in use; pick another --name, or remove it with `cleanroom workspace rm {name}`"),
            ));
        }
        let excludes = Excludes::load(&project, &options.excludes)?;
        let image = match &spec.rootfs {
            RootFs::Image(reference) => Some(reference.clone()),
            _ => None,
        };
        let auto = cleanroom::AutoBackend::select(options.backend, image.as_deref()).await?;
        let backend = auto.inner();
        let one_shot = one_shot::is_one_shot(backend.name());
        if one_shot {
            // Refuse what local cannot run before copying anything.
            backend
                .can_honour(spec)
                .await
                .map_err(|why| input(format!("workspace `{name}` on local"), why))?;
            tracing::warn!("{}", one_shot::warning(&name));
        }
        let made = {
            let (layout, project, excludes, patterns) = (
                layout.clone(),
                project.clone(),
                excludes,
                options.excludes.clone(),
            );
            let backend_name = backend.name().to_string();
            let image = image.clone();
            let owner = tree_owner(&backend_name, spec)?;
            tokio::task::spawn_blocking(move || {
                prepare_files(
                    &layout,
                    &project,
                    &excludes,
                    patterns,
                    &backend_name,
                    image,
                    owner,
                )
            })
            .await
            .expect("the snapshot task does not panic")
        };
        let (mut meta, report) = match made {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&layout.dir);
                return Err(e);
            }
        };
        let started = if one_shot {
            meta.one_shot_spec = Some(spec.clone());
            layout.write_meta(&meta)
        } else {
            Ok(())
        };
        let ws = Workspace {
            layout,
            meta,
            backend,
        };
        let started = match started {
            Ok(()) if !one_shot => ws.create_sandbox(spec).await.map(drop),
            other => other,
        };
        if let Err(e) = started {
            let _ = std::fs::remove_dir_all(&ws.layout.dir);
            return Err(e);
        }
        Ok((ws, report))
    }

    async fn create_sandbox(&self, spec: &SandboxSpec) -> Result<Box<dyn Detached>> {
        let mut spec = spec.clone();
        spec.mounts.push(Mount {
            source: self.layout.tree(),
            target: PathBuf::from(MOUNT_POINT),
            read_only: false,
        });
        spec.workdir = PathBuf::from(MOUNT_POINT);
        // A user-namespace key: the engines reserve `io.cleanroom.*` for
        // the sandbox record itself.
        let mut labels = std::collections::BTreeMap::new();
        labels.insert(WORKSPACE_LABEL.to_string(), self.meta.name.clone());
        self.backend
            .create_detached(
                &spec,
                None,
                DetachOptions {
                    name: self.meta.sandbox.clone(),
                    labels,
                },
            )
            .await
    }

    /// The workspace called `name`.
    pub fn open(name: &str) -> Result<Workspace> {
        let layout = Layout::new(&layout::root()?, name)?;
        let meta = layout.read_meta()?;
        let choice = BackendChoice::parse(&meta.backend, &format!("{}", layout.meta().display()))?;
        let backend = cleanroom::backend_for(choice, meta.image.as_deref())?;
        Ok(Workspace {
            layout,
            meta,
            backend,
        })
    }

    /// Every workspace.
    pub fn list() -> Result<Vec<Meta>> {
        layout::list(&layout::root()?)
    }

    pub fn name(&self) -> &str {
        &self.meta.name
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The project this workspace syncs back to.
    pub fn project(&self) -> &Path {
        &self.meta.project
    }

    /// The workspace's files on the host (what the sandbox sees at `/workspace`).
    pub fn sandbox_dir(&self) -> PathBuf {
        self.layout.tree()
    }

    pub fn backend_name(&self) -> &str {
        &self.meta.backend
    }

    /// What the caller must be told about this workspace's isolation, if
    /// anything: on local, that its commands see the whole host.
    pub fn isolation_warning(&self) -> Option<String> {
        self.meta
            .one_shot_spec
            .is_some()
            .then(|| one_shot::warning(&self.meta.name))
    }

    async fn sandbox(&self) -> Result<Box<dyn Detached>> {
        self.backend
            .attach(&self.meta.sandbox)
            .await?
            .ok_or_else(|| {
                input(
                    format!("workspace `{}`", self.meta.name),
                    format!(
                        "its sandbox is gone from the {} backend; diff, log, sync and export still work",
                        self.meta.backend
                    ),
                )
            })
    }

    /// Runs `cmd` in the sandbox (in `/workspace` unless it says
    /// otherwise), output captured and sent to `sink` as it comes; then
    /// records a commit if anything changed.
    pub async fn exec(&self, cmd: Cmd, sink: Option<OutputSink>) -> Result<ExecOutcome> {
        let line = cmd.display();
        let result = match &self.meta.one_shot_spec {
            Some(spec) => {
                tracing::warn!("{}", one_shot::warning(&self.meta.name));
                one_shot::run(&*self.backend, spec, &self.layout.tree(), cmd, sink).await?
            }
            None => self.sandbox().await?.exec(cmd, sink).await?,
        };
        let code = result.exit_code;
        let commit = self.record(history::exec_message(&line, code)).await?;
        Ok(ExecOutcome {
            exit_code: code,
            result: Some(result),
            commit,
        })
    }

    /// Runs `cmd` on the caller's own streams (or terminal), then records
    /// a commit if anything changed.
    pub async fn exec_attached(&self, cmd: Cmd, stdio: ExecStdio) -> Result<ExecOutcome> {
        let line = cmd.display();
        let code = match &self.meta.one_shot_spec {
            Some(spec) => {
                tracing::warn!("{}", one_shot::warning(&self.meta.name));
                one_shot::run_on_caller_streams(
                    &*self.backend,
                    spec,
                    &self.layout.tree(),
                    cmd,
                    stdio,
                )
                .await?
            }
            None => self.sandbox().await?.exec_attached(cmd, stdio).await?,
        };
        let commit = self.record(history::exec_message(&line, code)).await?;
        Ok(ExecOutcome {
            exit_code: code,
            result: None,
            commit,
        })
    }

    async fn record(&self, message: String) -> Result<Option<String>> {
        let layout = self.layout.clone();
        tokio::task::spawn_blocking(move || commit(&layout, &message))
            .await
            .expect("the commit task does not panic")
    }

    /// Records the workspace as it is now with `message`; `None` when
    /// nothing changed since the last commit.
    pub fn commit_changes(&self, message: &str) -> Result<Option<String>> {
        commit(&self.layout, message)
    }

    /// Everything that changed since the snapshot.
    pub fn changes(&self) -> Result<ChangeSummary> {
        self.diff(&[], false).map(|(summary, _)| summary)
    }

    /// The change since the snapshot under `paths` (all when empty), with
    /// the unified diff when `patch`.
    pub fn diff(&self, paths: &[PathBuf], patch: bool) -> Result<(ChangeSummary, Option<Vec<u8>>)> {
        let _lock = crate::hostfs::lock(&self.layout.lock_file())?;
        let history = self.history()?;
        changes::changes(&history, history.base()?, paths, patch)
    }

    /// The recorded commits, newest first.
    pub fn log(&self) -> Result<Vec<LogEntry>> {
        self.history()?.log()
    }

    /// Applies the workspace's changes to the project; see [`crate::sync`].
    pub fn sync_back(&self, options: SyncOptions) -> Result<SyncReport> {
        sync::sync(&self.layout, &self.meta, &options)
    }

    /// Writes the shadow history to a new git repository at `dir`.
    pub fn export(&self, dir: &Path) -> Result<()> {
        self.history()?.export(dir)
    }

    /// Stops the sandbox (its files and history stay). A one-shot
    /// workspace has nothing running between execs: nothing to do.
    pub async fn stop(&self) -> Result<()> {
        if self.meta.one_shot_spec.is_some() {
            return Ok(());
        }
        self.sandbox().await?.stop(Duration::from_secs(5)).await
    }

    /// Removes the sandbox (killing it if it runs), the workspace's files
    /// and its history. The project is not touched.
    pub async fn remove(self) -> Result<()> {
        if self.meta.one_shot_spec.is_none() {
            if let Some(sandbox) = self.backend.attach(&self.meta.sandbox).await? {
                sandbox.remove(true).await?;
            }
        }
        let dir = self.layout.dir.clone();
        tokio::task::spawn_blocking(move || remove_tree(&dir))
            .await
            .expect("the removal task does not panic")
    }

    fn history(&self) -> Result<History> {
        History::open(
            &self.layout.history(),
            &self.layout.tree(),
            &self.layout.stat_cache(),
        )
    }
}

/// Makes a workspace's files without its sandbox: the snapshot of
/// `project` (canonical) into `layout` (owned by `owner` when given), the
/// shadow history with its base commit, and `meta.json` naming `backend`.
/// [`Workspace::start_with`] then starts the sandbox; tests of diff and
/// sync use it alone.
pub fn prepare_files(
    layout: &Layout,
    project: &Path,
    excludes: &Excludes,
    patterns: Vec<String>,
    backend: &str,
    image: Option<String>,
    owner: Option<User>,
) -> Result<(Meta, SnapshotReport)> {
    std::fs::create_dir_all(&layout.dir)
        .map_err(|e| io(format!("creating {}", layout.dir.display()), e))?;
    let history = History::init(&layout.history(), &layout.tree(), &layout.stat_cache())?;
    let snapshot = snapshot(
        project,
        &layout.tree(),
        excludes,
        owner,
        &history.objects_dir(),
    )?;
    let report = snapshot.report.clone();
    let base = history.record_base(snapshot)?;
    let meta = Meta {
        name: layout.name.clone(),
        project: project.to_path_buf(),
        backend: backend.to_string(),
        sandbox: layout.name.clone(),
        image,
        created: cleanroom::detached::now_secs(),
        excludes: patterns,
        base: base.to_string(),
        one_shot_spec: None,
    };
    layout.write_meta(&meta)?;
    Ok((meta, report))
}

/// Who must own the workspace's files on the host for the sandbox's user
/// to write them. Native maps the sandbox's ids onto the caller's (a
/// rootless caller's user namespace, a root caller's idmapped mount), and
/// local runs as the caller: `None`. The engines' containers use host ids
/// as they are, so the copy goes to the sandbox's user, which only root
/// can arrange for another user's ids.
fn tree_owner(backend: &str, spec: &SandboxSpec) -> Result<Option<User>> {
    if !matches!(backend, "docker" | "podman") {
        return Ok(None);
    }
    let caller = rustix::process::geteuid().as_raw();
    if caller == spec.user.uid {
        return Ok(None);
    }
    if caller == 0 {
        return Ok(Some(spec.user));
    }
    Err(input(
        format!("--user {}", spec.user),
        format!(
            "a {backend} sandbox writes /workspace as uid {} but you are uid {caller}, and only root can give it the files; \
             run it as yourself with `--user {caller}:{}`, or use `--backend native`",
            spec.user.uid,
            rustix::process::getegid().as_raw()
        ),
    ))
}

fn commit(layout: &Layout, message: &str) -> Result<Option<String>> {
    let _lock = crate::hostfs::lock(&layout.lock_file())?;
    let history = History::open(&layout.history(), &layout.tree(), &layout.stat_cache())?;
    history.remove_stale_locks()?;
    Ok(history.commit(message)?.map(|id| id.to_string()))
}

/// Removes `dir`, first making directories the sandbox made read-only
/// writable again.
fn remove_tree(dir: &Path) -> Result<()> {
    if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
        return Ok(());
    }
    fn open_up(dir: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    open_up(&e.path());
                }
            }
        }
    }
    open_up(dir);
    std::fs::remove_dir_all(dir).map_err(|e| io(format!("removing workspace {}", dir.display()), e))
}

/// The project, canonical, after checking it is a directory and not `/`.
pub fn check_project(project: &Path) -> Result<PathBuf> {
    let shown = project.display().to_string();
    let canonical = match std::fs::canonicalize(project) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(input(
                shown,
                "does not exist; give the project directory to snapshot",
            ))
        }
        Err(e) => return Err(io(format!("reading project {shown}"), e)),
    };
    if !canonical.is_dir() {
        return Err(input(
            shown,
            "is a file, not a directory; give the project directory to snapshot",
        ));
    }
    if canonical == Path::new("/") {
        return Err(input(
            shown,
            "is the root directory; give a project directory, not the whole file system",
        ));
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_projects_are_named_with_a_next_step() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = check_project(&tmp.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("nope") && missing.contains("does not exist"),
            "{missing}"
        );
        let file = tmp.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let e = check_project(&file).unwrap_err().to_string();
        assert!(e.contains("is a file"), "{e}");
        let e = check_project(Path::new("/")).unwrap_err().to_string();
        assert!(e.contains("root directory"), "{e}");
    }
}
