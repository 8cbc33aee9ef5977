//! A project like the acceptance scenario's, and a workspace of it made
//! without a sandbox (the sandbox's edits are made to its files directly).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cleanroom_workspace::excludes::Excludes;
use cleanroom_workspace::{prepare_files, Layout, Meta};

pub struct Fixture {
    /// Holds everything; removed on drop.
    pub tmp: tempfile::TempDir,
    pub project: PathBuf,
    pub layout: Layout,
    pub meta: Meta,
}

impl Fixture {
    /// The project (text files, a binary, a symlink, an executable script,
    /// a nested directory, its own `.git`) and its workspace.
    pub fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let project = tmp.path().join("project");
        make_project(&project);
        let layout = Layout::new(&tmp.path().join("workspaces"), "demo").unwrap();
        let project = fs::canonicalize(&project).unwrap();
        let (meta, _) = prepare_files(
            &layout,
            &project,
            &Excludes::none(),
            Vec::new(),
            "native",
            None,
            None,
        )
        .unwrap();
        Fixture {
            tmp,
            project,
            layout,
            meta,
        }
    }

    /// The workspace's copy of `rel` (what the sandbox sees at /workspace/rel).
    pub fn ws(&self, rel: &str) -> PathBuf {
        self.layout.tree().join(rel)
    }

    pub fn host(&self, rel: &str) -> PathBuf {
        self.project.join(rel)
    }
}

/// Every file under `dir` (symlinks as `-> target`), by relative path.
pub fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let t = e.file_type().unwrap();
            if t.is_symlink() {
                let target = fs::read_link(&p).unwrap();
                out.insert(rel, format!("-> {}", target.display()).into_bytes());
            } else if t.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// What the acceptance scenario's first command does.
pub fn sandbox_edits(f: &Fixture) {
    fs::write(
        f.ws("src/main.rs"),
        "fn main() {\n    println!(\"hello\");\n    println!(\"two\");\n}\n",
    )
    .unwrap();
    fs::write(f.ws("src/new.txt"), "new\n").unwrap();
    fs::remove_file(f.ws("src/lib.rs")).unwrap();
    fs::set_permissions(f.ws("tool.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(f.ws("out.bin"), [0u8, 159, 146, 150, 0, 1, 2]).unwrap();
    fs::rename(f.ws("src/old_name.txt"), f.ws("src/renamed.txt")).unwrap();
    fs::remove_file(f.ws("main-link")).unwrap();
    std::os::unix::fs::symlink("README.md", f.ws("main-link")).unwrap();
}

/// The acceptance scenario's project: text files, a binary, a symlink, an
/// executable script, a nested directory and its own `.git`.
pub fn make_project(project: &Path) {
    fs::create_dir_all(project.join("src/nested/deep")).unwrap();
    fs::write(project.join("README.md"), "# demo\nline two\n").unwrap();
    fs::write(
        project.join("src/main.rs"),
        "fn main() {\n    println!(\"hi\");\n}\n",
    )
    .unwrap();
    fs::write(project.join("src/lib.rs"), "pub fn f() {}\n").unwrap();
    fs::write(project.join("src/nested/deep/notes.txt"), "a\nb\nc\n").unwrap();
    fs::write(
        project.join("src/old_name.txt"),
        "this file will be renamed by the sandbox, content kept\n",
    )
    .unwrap();
    fs::write(
        project.join("logo.bin"),
        (0..=255u8).cycle().take(3000).collect::<Vec<_>>(),
    )
    .unwrap();
    fs::write(project.join("build.sh"), "#!/bin/sh\necho build\n").unwrap();
    fs::set_permissions(project.join("build.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(project.join("tool.sh"), "#!/bin/sh\n").unwrap();
    std::os::unix::fs::symlink("src/main.rs", project.join("main-link")).unwrap();
    fs::create_dir_all(project.join(".git/hooks")).unwrap();
    fs::write(project.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    fs::write(project.join(".git/config"), "[core]\n").unwrap();
    fs::write(project.join(".git/hooks/pre-commit"), "#!/bin/sh\n").unwrap();
}
