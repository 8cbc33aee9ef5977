//! `cleanroom workspace` (alias `ws`) end to end: bad input is named with
//! a next step, and on native the whole cycle (start, exec, diff, log,
//! sync with a conflict, --force, export, rm) works from the command line.

mod common;

use std::fs;
use std::path::Path;
use std::process::Output;

use common::{command, native_available, text};

fn ws(dir: &Path, root: &Path, args: &[&str]) -> Output {
    let mut full = vec!["ws"];
    full.extend_from_slice(args);
    command(dir, &full)
        .env("CLEANROOM_WORKSPACE_DIR", root)
        .output()
        .expect("running the cleanroom binary")
}

#[test]
fn bad_paths_and_names_are_named_with_a_next_step() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("ws");
    fs::write(tmp.path().join("file"), "x").unwrap();
    for (args, want) in [
        (vec!["start", "missing"], "does not exist"),
        (vec!["start", "file"], "is a file"),
        (vec!["start", "/"], "root directory"),
        (vec!["diff", "nope"], "no such workspace"),
        (vec!["sync", "nope"], "no such workspace"),
        (vec!["start", ".", "--name", "bad/name"], "is not valid"),
    ] {
        let out = ws(tmp.path(), &root, &args);
        assert_eq!(
            out.status.code(),
            Some(125),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(want),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = ws(tmp.path(), &root, &["ls"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn the_whole_cycle_on_native() {
    let tmp = tempfile::tempdir().unwrap();
    if !native_available(tmp.path()) {
        return;
    }
    let root = tmp.path().join("ws");
    let project = tmp.path().join("project");
    fs::create_dir_all(project.join(".git")).unwrap();
    fs::write(project.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    fs::write(project.join("a.txt"), "a\n").unwrap();
    fs::write(project.join("b.txt"), "b\n").unwrap();
    let name = format!("cli-{}", std::process::id());
    let out = ws(
        tmp.path(),
        &root,
        &["start", "project", "--name", &name, "--backend", "native"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), name);

    let out = ws(
        tmp.path(),
        &root,
        &[
            "exec",
            &name,
            "--",
            "sh",
            "-c",
            "echo sandbox > a.txt; echo new > c.txt; exit 4",
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let out = ws(tmp.path(), &root, &["diff", &name, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let paths: Vec<&str> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["a.txt", "c.txt"]);
    let out = ws(tmp.path(), &root, &["log", &name]);
    assert_eq!(
        text(&out.stdout).lines().count(),
        2,
        "{}",
        text(&out.stdout)
    );
    assert!(text(&out.stdout).contains("(exit 4)"));

    fs::write(project.join("a.txt"), "user\n").unwrap();
    let out = ws(tmp.path(), &root, &["sync", &name]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("conflict: a.txt"),
        "{}",
        text(&out.stdout)
    );
    assert!(!project.join("c.txt").exists());
    let out = ws(tmp.path(), &root, &["sync", &name, "--dry-run", "--force"]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("would write c.txt"),
        "{}",
        text(&out.stdout)
    );
    let out = ws(tmp.path(), &root, &["sync", &name, "--force"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(fs::read(project.join("a.txt")).unwrap(), b"sandbox\n");
    assert_eq!(fs::read(project.join("c.txt")).unwrap(), b"new\n");

    let out = ws(tmp.path(), &root, &["export", &name, "--git", "exported"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(tmp.path().join("exported/.git").is_dir());
    let out = ws(tmp.path(), &root, &["rm", &name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!root.join(&name).exists());
}

/// Local has no long-lived sandboxes: each exec runs once in the copy, and
/// start and every exec say that the commands see the whole host.
#[test]
fn local_workspaces_warn_and_run_each_exec_in_the_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("ws");
    let project = tmp.path().join("project");
    fs::create_dir_all(&project).unwrap();
    fs::write(project.join("a.txt"), "a\n").unwrap();
    let name = format!("local-{}", std::process::id());
    let out = ws(
        tmp.path(),
        &root,
        &["start", "project", "--name", &name, "--backend", "local"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("WARN: the local backend does not isolate"),
        "{}",
        text(&out.stderr)
    );
    let out = ws(
        tmp.path(),
        &root,
        &[
            "exec",
            &name,
            "--",
            "sh",
            "-c",
            "pwd; echo local > a.txt; exit 2",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("see the whole host"));
    assert!(
        text(&out.stdout)
            .trim_end()
            .ends_with(&format!("{name}/tree")),
        "runs in the copy: {}",
        text(&out.stdout)
    );
    assert_eq!(fs::read(project.join("a.txt")).unwrap(), b"a\n");
    let out = ws(tmp.path(), &root, &["exec", &name, "-t", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("--backend native, docker or podman"),
        "{}",
        text(&out.stderr)
    );
    let out = ws(tmp.path(), &root, &["sync", &name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(fs::read(project.join("a.txt")).unwrap(), b"local\n");
    let out = ws(tmp.path(), &root, &["stop", &name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = ws(tmp.path(), &root, &["rm", &name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!root.join(&name).exists());
}
