//! Sync back, three-way against the base, on a workspace whose files are
//! edited directly (what a sandbox's command would do to them) while the
//! test edits the project as its user would.

mod common;

use std::fs;
use std::path::Path;

use cleanroom_workspace::sync::{sync, Action, SyncOptions};
use common::{contents, sandbox_edits, Fixture};

fn run(f: &Fixture, force: bool, dry_run: bool) -> cleanroom_workspace::SyncReport {
    sync(
        &f.layout,
        &f.meta,
        &SyncOptions {
            force,
            dry_run,
            paths: Vec::new(),
        },
    )
    .unwrap()
}

#[test]
fn a_change_on_both_sides_blocks_everything_until_forced() {
    let f = Fixture::new();
    let git_before = contents(&f.host(".git"));
    sandbox_edits(&f);
    // The user's own edits meanwhile: one unrelated, one the sandbox changed too.
    fs::write(f.host("README.md"), "# demo\nthe user's line\n").unwrap();
    fs::write(f.host("src/main.rs"), "fn main() { /* user */ }\n").unwrap();
    let host_before = contents(&f.project);

    let blocked = run(&f, false, false);
    assert_eq!(blocked.conflicts.len(), 1, "{blocked:#?}");
    assert_eq!(blocked.conflicts[0].path, "src/main.rs");
    assert!(blocked.applied.is_empty() && blocked.blocked());
    assert_eq!(
        contents(&f.project),
        host_before,
        "a blocked sync changes nothing"
    );

    let plan = run(&f, true, true);
    assert!(plan.dry_run);
    let mut planned: Vec<(&str, Action)> = plan
        .applied
        .iter()
        .map(|p| (p.path.as_str(), p.action))
        .collect();
    planned.sort_by_key(|(p, _)| *p);
    assert_eq!(
        planned,
        [
            ("main-link", Action::Symlink),
            ("out.bin", Action::Write),
            ("src/lib.rs", Action::Delete),
            ("src/main.rs", Action::Write),
            ("src/new.txt", Action::Write),
            ("src/old_name.txt", Action::Delete),
            ("src/renamed.txt", Action::Write),
            ("tool.sh", Action::Write),
        ]
    );
    assert!(plan
        .applied
        .iter()
        .any(|p| p.path == "src/main.rs" && p.overwrites_user_change));
    assert_eq!(
        contents(&f.project),
        host_before,
        "a dry run changes nothing"
    );

    let done = run(&f, true, false);
    assert_eq!(done.applied.len(), 8);
    let ws = contents(&f.layout.tree());
    let host = contents(&f.project);
    for (path, bytes) in &ws {
        if path != "README.md" {
            assert_eq!(host.get(path), Some(bytes), "{path}");
        }
    }
    assert_eq!(
        fs::read(f.host("README.md")).unwrap(),
        b"# demo\nthe user's line\n",
        "the user's unrelated edit survives"
    );
    assert!(!f.host("src/lib.rs").exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(f.host("tool.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o111,
        0o111
    );
    assert_eq!(
        contents(&f.host(".git")),
        git_before,
        "the project's .git is untouched"
    );

    // Nothing left to do; a later change to a synced file is no conflict.
    let again = run(&f, false, false);
    assert!(
        again.applied.is_empty() && again.conflicts.is_empty(),
        "{again:#?}"
    );
    fs::write(f.ws("src/new.txt"), "newer\n").unwrap();
    let later = run(&f, false, false);
    assert_eq!(later.applied.len(), 1, "{later:#?}");
    assert_eq!(fs::read(f.host("src/new.txt")).unwrap(), b"newer\n");
}

#[test]
fn user_only_changes_are_left_alone_and_paths_filter() {
    let f = Fixture::new();
    fs::write(f.host("src/lib.rs"), "pub fn user() {}\n").unwrap();
    fs::write(f.ws("src/main.rs"), "fn main() {}\n").unwrap();
    fs::write(f.ws("README.md"), "sandbox readme\n").unwrap();
    let only = sync(
        &f.layout,
        &f.meta,
        &SyncOptions {
            paths: vec!["README.md".into()],
            ..SyncOptions::default()
        },
    )
    .unwrap();
    assert_eq!(only.applied.len(), 1);
    assert_eq!(
        fs::read(f.host("src/main.rs")).unwrap(),
        b"fn main() {\n    println!(\"hi\");\n}\n"
    );
    let rest = run(&f, false, false);
    assert_eq!(rest.applied.len(), 1, "{rest:#?}");
    assert_eq!(fs::read(f.host("src/main.rs")).unwrap(), b"fn main() {}\n");
    assert_eq!(
        fs::read(f.host("src/lib.rs")).unwrap(),
        b"pub fn user() {}\n"
    );
}

#[test]
fn hostile_workspace_contents_never_write_outside_or_into_git() {
    let f = Fixture::new();
    let outside = f.tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    // A directory symlink the user has on the host (copied as a symlink).
    std::os::unix::fs::symlink("../outside", f.host("shared")).unwrap();
    // The sandbox plants an escaping symlink, a git hook, a climbing
    // relative link, and a real directory where the host has the symlink.
    std::os::unix::fs::symlink("/etc/passwd", f.ws("x")).unwrap();
    std::os::unix::fs::symlink("../../../etc/shadow", f.ws("src/climb")).unwrap();
    std::os::unix::fs::symlink("nested/deep/notes.txt", f.ws("src/inside")).unwrap();
    fs::create_dir_all(f.ws(".git/hooks")).unwrap();
    fs::write(f.ws(".git/hooks/post-commit"), "#!/bin/sh\necho pwned\n").unwrap();
    fs::create_dir(f.ws("shared")).unwrap();
    fs::write(f.ws("shared/pwned"), "x").unwrap();

    let report = run(&f, true, false);
    let skipped: Vec<(&str, &str)> = report
        .skipped
        .iter()
        .map(|s| (s.path.as_str(), s.reason.as_str()))
        .collect();
    let reason = |p: &str| {
        skipped
            .iter()
            .find(|(q, _)| *q == p)
            .map(|(_, r)| *r)
            .unwrap_or_else(|| panic!("{p} not skipped: {skipped:?}"))
    };
    assert!(reason("x").contains("outside the project"));
    assert!(reason("src/climb").contains("outside the project"));
    assert!(reason(".git").contains(".git"));
    assert!(reason("shared/pwned").contains("symlink"));
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written outside"
    );
    assert!(!f.host("x").exists() && fs::symlink_metadata(f.host("x")).is_err());
    assert!(!f.host(".git/hooks/post-commit").exists());
    assert_eq!(
        fs::read_link(f.host("src/inside")).unwrap(),
        Path::new("nested/deep/notes.txt")
    );
}

#[test]
fn sync_works_from_the_files_alone_and_reports_already_synced_paths() {
    let f = Fixture::new();
    fs::write(f.ws("same.txt"), "both\n").unwrap();
    fs::write(f.host("same.txt"), "both\n").unwrap();
    let r = run(&f, false, false);
    assert_eq!(
        (r.applied.len(), r.already_in_sync, r.conflicts.len()),
        (0, 1, 0),
        "{r:#?}"
    );
}

/// A sync or commit killed while libgit2 updated a ref leaves its lock
/// file; the next sync (holding the workspace lock) clears it and works.
#[test]
fn a_ref_lock_left_by_a_killed_update_does_not_wedge_the_workspace() {
    let f = Fixture::new();
    sandbox_edits(&f);
    let history = f.layout.history();
    fs::create_dir_all(history.join("refs/cleanroom")).unwrap();
    fs::write(history.join("refs/cleanroom/synced.lock"), "").unwrap();
    fs::write(history.join("refs/heads/main.lock"), "").unwrap();
    let report = run(&f, true, false);
    assert!(!report.applied.is_empty(), "{report:#?}");
    assert!(!history.join("refs/cleanroom/synced.lock").exists());
    assert!(!history.join("refs/heads/main.lock").exists());
}
