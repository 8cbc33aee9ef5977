//! The acceptance scenario, the same on every isolating backend: a
//! sandboxed command edits the workspace while the user edits the project;
//! the diff lists exactly the sandbox's changes, the log one commit per
//! changing exec, sync stops on the one conflict, `--force` applies the
//! plan, the user's unrelated edit and the project's `.git` survive, and
//! hostile commands never make sync write outside the project or into `.git`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::OnceLock;

use cleanroom::bridge::wait;
use cleanroom::{BackendChoice, Cmd, RootFs, SandboxSpec};
use cleanroom_workspace::blocking::Workspace;
use cleanroom_workspace::sync::SyncOptions;
use cleanroom_workspace::{ChangeKind, StartOptions};
use common::{contents, make_project};

/// One directory for every test's workspaces (the variable is process-wide).
fn workspace_root() -> &'static Path {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = ROOT.get_or_init(|| tempfile::tempdir().unwrap());
    std::env::set_var("CLEANROOM_WORKSPACE_DIR", dir.path());
    dir.path()
}

/// The spec for `choice`, or `None` (said on stderr) when it is not
/// available here; under `CI=true` a missing backend fails instead.
fn spec_for(choice: BackendChoice) -> Option<SandboxSpec> {
    let image = matches!(choice, BackendChoice::Docker | BackendChoice::Podman)
        .then_some(cleanroom::DEFAULT_ENGINE_IMAGE);
    let backend = cleanroom::backend_for(choice, image).unwrap();
    let a = wait(backend.availability());
    if !a.available {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{choice} is not available under CI=true: {}",
            a.reason
        );
        eprintln!("skipping the {choice} workspace scenario: {}", a.reason);
        return None;
    }
    let mut spec = SandboxSpec::default();
    if let Some(image) = image {
        spec.rootfs = RootFs::Image(image.to_string());
    }
    Some(spec)
}

fn sh(script: &str) -> Cmd {
    Cmd::from(["sh", "-c", script])
}

fn scenario(choice: BackendChoice) {
    let Some(spec) = spec_for(choice) else {
        return;
    };
    workspace_root();
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("project");
    make_project(&project);
    // A root caller syncs into someone else's project: what sync writes
    // must stay that someone's, not become root's.
    let owner = if rustix::process::geteuid().is_root() {
        give_tree(&project, PROJECT_OWNER);
        PROJECT_OWNER
    } else {
        (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        )
    };
    let git_before = contents(&project.join(".git"));
    let name = format!("scenario-{choice}-{}", std::process::id());
    let (ws, _) = Workspace::start_with(
        &project,
        &spec,
        StartOptions {
            name: Some(name.clone()),
            backend: choice,
            ..StartOptions::default()
        },
    )
    .unwrap();
    assert_eq!(ws.backend_name(), choice.as_str());
    let local = choice == BackendChoice::Local;
    let warning = ws.isolation_warning();
    assert_eq!(
        warning
            .as_ref()
            .is_some_and(|w| w.contains("see the whole host")),
        local,
        "{warning:?}"
    );

    let again = Workspace::start_with(
        &project,
        &spec,
        StartOptions {
            name: Some(name.clone()),
            backend: choice,
            ..StartOptions::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(again.contains("in use"), "{again}");

    let edit = ws
        .exec(sh(
            "echo changed >> src/main.rs && echo new > src/new.txt && rm src/lib.rs \
                  && chmod +x tool.sh && printf '\\000\\001\\377' > out.bin \
                  && mkdir -p gen/deep && echo g > gen/deep/g.txt",
        ))
        .unwrap();
    assert_eq!(edit.exit_code, 0, "{:?}", edit.result);
    assert!(edit.commit.is_some());
    let failed = ws.exec(sh("echo partial > partial.txt; exit 3")).unwrap();
    assert_eq!(failed.exit_code, 3);
    assert!(
        failed.commit.is_some(),
        "a failing command's writes are recorded too"
    );
    let nothing = ws.exec(sh("cat README.md")).unwrap();
    assert_eq!(nothing.commit, None, "no commit when nothing changed");

    // The user's own edits meanwhile.
    fs::write(project.join("README.md"), "# the user's readme\n").unwrap();
    fs::write(project.join("src/main.rs"), "fn main() { /* user */ }\n").unwrap();

    let changes = ws.changes().unwrap();
    let got: BTreeSet<(String, ChangeKind)> = changes
        .files
        .iter()
        .map(|f| (f.path.clone(), f.status))
        .collect();
    let want: BTreeSet<(String, ChangeKind)> = [
        ("gen/deep/g.txt", ChangeKind::Added),
        ("out.bin", ChangeKind::Added),
        ("partial.txt", ChangeKind::Added),
        ("src/lib.rs", ChangeKind::Deleted),
        ("src/main.rs", ChangeKind::Modified),
        ("src/new.txt", ChangeKind::Added),
        ("tool.sh", ChangeKind::ModeChanged),
    ]
    .into_iter()
    .map(|(p, k)| (p.to_string(), k))
    .collect();
    assert_eq!(got, want);
    assert!(changes
        .files
        .iter()
        .any(|f| f.path == "out.bin" && f.binary && f.new_size == Some(3)));
    let log = ws.log().unwrap();
    assert_eq!(log.len(), 3, "{log:#?}");
    assert!(log[0].message.contains("exit 3"), "{log:#?}");

    let host_before = contents(&project);
    let blocked = ws.sync_back(SyncOptions::default()).unwrap();
    assert_eq!(blocked.conflicts.len(), 1);
    assert_eq!(blocked.conflicts[0].path, "src/main.rs");
    assert_eq!(contents(&project), host_before);
    let plan = ws
        .sync_back(SyncOptions {
            force: true,
            dry_run: true,
            ..SyncOptions::default()
        })
        .unwrap();
    assert_eq!(plan.applied.len(), 7, "{plan:#?}");
    assert_eq!(contents(&project), host_before);
    ws.sync_back(SyncOptions {
        force: true,
        ..SyncOptions::default()
    })
    .unwrap();
    assert_eq!(fs::read(project.join("out.bin")).unwrap(), [0, 1, 255]);
    assert_eq!(
        fs::read(project.join("README.md")).unwrap(),
        b"# the user's readme\n"
    );
    assert!(fs::read_to_string(project.join("src/main.rs"))
        .unwrap()
        .ends_with("changed\n"));
    assert!(!project.join("src/lib.rs").exists());
    assert_eq!(fs::read(project.join("gen/deep/g.txt")).unwrap(), b"g\n");
    assert_eq!(
        fs::metadata(project.join("tool.sh")).unwrap().mode() & 0o777,
        0o755
    );
    assert_eq!(
        owners(&project),
        BTreeSet::from([owner]),
        "sync keeps the project's owner"
    );
    assert_eq!(contents(&project.join(".git")), git_before);

    // Hostile commands: none of this may reach the project or beyond.
    // Not on local: it isolates nothing, its commands would reach the host.
    if !local {
        hostile(&ws, &project, &git_before);
    }

    // A stopped workspace still diffs and syncs: it reads files, not the sandbox.
    ws.stop().unwrap();
    ws.changes().unwrap();
    ws.sync_back(SyncOptions::default()).unwrap();
    ws.remove().unwrap();
    assert!(!workspace_root().join(&name).exists());
}

fn hostile(ws: &Workspace, project: &Path, git_before: &BTreeMap<String, Vec<u8>>) {
    let _ = ws.exec(sh(
        "echo x > /etc/cleanroom-escape; echo x > ../escape; \
                        ln -s /etc/passwd x; echo pwned >> x; \
                        mkdir -p .git/hooks && echo 'rm -rf ~' > .git/hooks/post-commit; \
                        cd / && mv /workspace /workspace.old; ln -sfn / /workspace; true",
    ));
    let hostile = ws.sync_back(SyncOptions::default()).unwrap();
    let skipped: Vec<&str> = hostile.skipped.iter().map(|s| s.path.as_str()).collect();
    assert!(
        skipped.contains(&"x") && skipped.contains(&".git"),
        "{hostile:#?}"
    );
    assert!(hostile.applied.is_empty(), "{hostile:#?}");
    assert!(!project.join("x").exists() && fs::symlink_metadata(project.join("x")).is_err());
    assert!(!project.join(".git/hooks/post-commit").exists());
    assert!(!project.parent().unwrap().join("escape").exists());
    assert_eq!(&contents(&project.join(".git")), git_before);
}

/// Who owns the project when a root caller runs the scenario.
const PROJECT_OWNER: (u32, u32) = (4321, 4321);

/// Gives everything under `dir` (symlinks themselves) to `(uid, gid)`.
fn give_tree(dir: &Path, (uid, gid): (u32, u32)) {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).unwrap();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            give_tree(&e.path(), (uid, gid));
        } else {
            std::os::unix::fs::lchown(e.path(), Some(uid), Some(gid)).unwrap();
        }
    }
}

/// Every owner (uid, gid) under `dir`, `dir` included.
fn owners(dir: &Path) -> BTreeSet<(u32, u32)> {
    let m = fs::symlink_metadata(dir).unwrap();
    let mut out = BTreeSet::from([(m.uid(), m.gid())]);
    if m.is_dir() {
        for e in fs::read_dir(dir).unwrap() {
            out.extend(owners(&e.unwrap().path()));
        }
    }
    out
}

#[test]
fn scenario_native() {
    scenario(BackendChoice::Native);
}

#[test]
fn scenario_docker() {
    scenario(BackendChoice::Docker);
}

#[test]
fn scenario_podman() {
    scenario(BackendChoice::Podman);
}

/// Local has no named sandboxes: each exec runs once in the copy, with a
/// warning; everything else is the same.
#[test]
fn scenario_local() {
    scenario(BackendChoice::Local);
}

#[test]
fn bad_input_is_named() {
    workspace_root();
    let tmp = tempfile::tempdir().unwrap();
    let spec = SandboxSpec::default();
    let e = Workspace::start(&tmp.path().join("missing"), &spec)
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not exist"), "{e}");
    fs::write(tmp.path().join("file"), "x").unwrap();
    let e = Workspace::start(&tmp.path().join("file"), &spec)
        .unwrap_err()
        .to_string();
    assert!(e.contains("is a file"), "{e}");
    let e = Workspace::start(Path::new("/"), &spec)
        .unwrap_err()
        .to_string();
    assert!(e.contains("root directory"), "{e}");
    let e = Workspace::open("no-such-workspace")
        .unwrap_err()
        .to_string();
    assert!(e.contains("no such workspace"), "{e}");
}
