//! Where a workspace lives on the host, and the record of what it was made
//! from (`meta.json`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{input, io, Result};

/// The directory holding every workspace: `$CLEANROOM_WORKSPACE_DIR`, else
/// `workspaces/` under the per-user state directory. The override exists so
/// a big project can live on a disk (and a file system that can reflink)
/// rather than in `$XDG_RUNTIME_DIR`'s memory.
pub fn root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CLEANROOM_WORKSPACE_DIR").filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| io(format!("creating workspace directory {}", dir.display()), e))?;
        return Ok(dir);
    }
    let dir = cleanroom::detached::state_dir()?.join("workspaces");
    std::fs::create_dir_all(&dir)
        .map_err(|e| io(format!("creating workspace directory {}", dir.display()), e))?;
    Ok(dir)
}

/// The paths of one workspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub name: String,
    /// `<root>/<name>`.
    pub dir: PathBuf,
}

impl Layout {
    /// The layout of workspace `name` under `root`, after checking the name
    /// (the same rules as sandbox names).
    pub fn new(root: &Path, name: &str) -> Result<Layout> {
        cleanroom::detached::validate_name(name).map_err(|_| {
            input(
                format!("workspace name `{name}`"),
                "is not valid: use a letter or digit, then letters, digits, `_`, `.` or `-` (at most 64)",
            )
        })?;
        Ok(Layout {
            name: name.to_string(),
            dir: root.join(name),
        })
    }

    /// The snapshot the sandbox sees at `/workspace`.
    pub fn tree(&self) -> PathBuf {
        self.dir.join("tree")
    }

    /// The shadow history's bare repository.
    pub fn history(&self) -> PathBuf {
        self.dir.join("history.git")
    }

    pub fn meta(&self) -> PathBuf {
        self.dir.join("meta.json")
    }

    /// Hashes of unchanged files, keyed by their stat data.
    pub fn stat_cache(&self) -> PathBuf {
        self.dir.join("stat-cache.json")
    }

    /// Present only while a sync runs (or after one was interrupted).
    pub fn journal(&self) -> PathBuf {
        self.dir.join("sync.journal")
    }

    /// Held (flock) by whoever changes the history or syncs.
    pub fn lock_file(&self) -> PathBuf {
        self.dir.join("lock")
    }

    pub fn exists(&self) -> bool {
        self.meta().exists()
    }

    /// Reads `meta.json`, or says the workspace does not exist.
    pub fn read_meta(&self) -> Result<Meta> {
        let path = self.meta();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(input(
                    format!("workspace `{}`", self.name),
                    "no such workspace; `cleanroom workspace ls` lists them",
                ))
            }
            Err(e) => return Err(io(format!("reading {}", path.display()), e)),
        };
        serde_json::from_str(&text).map_err(|e| {
            input(
                path.display().to_string(),
                format!("is not a workspace record ({e}); remove the workspace with `cleanroom workspace rm {}`", self.name),
            )
        })
    }

    /// Writes `meta.json` atomically.
    pub fn write_meta(&self, meta: &Meta) -> Result<()> {
        let text = serde_json::to_string_pretty(meta).expect("Meta serialises");
        crate::hostfs::write_atomic(&self.meta(), text.as_bytes())
    }
}

/// What a workspace was made from, kept in `meta.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub name: String,
    /// The project, canonical: where `sync` writes.
    pub project: PathBuf,
    /// The backend holding the sandbox (`native`, `docker`, `podman`, `local`).
    pub backend: String,
    /// The named sandbox's name (the workspace's own name).
    pub sandbox: String,
    /// The image the sandbox runs, for engines that need one.
    pub image: Option<String>,
    /// Seconds since the Unix epoch.
    pub created: u64,
    /// The `--exclude` patterns the snapshot used (`.cleanroomignore` is
    /// read from the project itself).
    pub excludes: Vec<String>,
    /// The shadow history's base commit: the snapshot.
    pub base: String,
    /// On a backend without long-lived sandboxes (local), the spec each
    /// exec runs with as a one-shot; `None` where a named sandbox keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_shot_spec: Option<cleanroom::SandboxSpec>,
}

/// Every workspace under `root`, by name.
pub fn list(root: &Path) -> Result<Vec<Meta>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(format!("listing {}", root.display()), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io(format!("listing {}", root.display()), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Ok(layout) = Layout::new(root, &name) {
            if let Ok(meta) = layout.read_meta() {
                out.push(meta);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
