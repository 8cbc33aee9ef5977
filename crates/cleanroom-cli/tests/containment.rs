//! `cleanroom run` under resource limits, as a user runs it: an OOM kill is
//! a result (JSON, exit 137), tmpfs sizes follow the flags and the report.

use std::path::Path;
use std::process::Output;

mod common;

use common::cleanroom;

/// `cleanroom run --backend native ARGS`.
fn run_native(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["run", "--backend", "native"];
    all.extend_from_slice(args);
    cleanroom(dir, &all)
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): status {:?} stdout={:?} stderr={:?}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn memory_enforced(v: &serde_json::Value) -> bool {
    v["enforcement"]["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["constraint"] == "memory_limit" && e["status"] == "enforced")
}

#[test]
fn native_oom_in_a_tmpfs_is_json_with_oom_killed_and_exit_137() {
    let dir = tempfile::tempdir().unwrap();
    let dd = "dd if=/dev/zero of=/workdir/big bs=1M count=200";
    let out = run_native(
        dir.path(),
        &["--memory", "64m", "--json", "--", "sh", "-c", dd],
    );
    let v = json(&out);
    if !memory_enforced(&v) {
        // Rootless without a delegated cgroup: the report says why.
        eprintln!("memory limit not enforced here: {}", v["enforcement"]);
        assert!(v["enforcement"]["entries"].to_string().contains("reason"));
        return;
    }
    assert_eq!(v["oom_killed"], true, "{v}");
    assert_eq!(v["exit_code"], 137, "{v}");
    assert_eq!(out.status.code(), Some(137), "{v}");
}

#[test]
fn tmpfs_size_flag_sizes_every_tmpfs_and_is_in_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--tmpfs-size", "32M", "--json", "--", "cat", "/proc/mounts"];
    let out = run_native(dir.path(), &args);
    let v = json(&out);
    assert_eq!(out.status.code(), Some(0), "{v}");
    let mounts = v["stdout"].as_str().unwrap_or_default().to_string();
    for target in ["/tmp", "/workdir", "/dev/shm"] {
        let line = mounts
            .lines()
            .rfind(|l| l.split(' ').nth(1) == Some(target))
            .unwrap_or_else(|| panic!("no mount at {target}: {mounts}"));
        assert!(line.contains("size=32768k"), "{target}: {line}");
    }
    let report = &v["enforcement"]["tmpfs"];
    assert_eq!(
        report.as_array().map(Vec::len),
        Some(3),
        "the report lists the three tmpfs: {report}"
    );
    assert!(
        report
            .as_array()
            .into_iter()
            .flatten()
            .all(|t| t["size"] == 32 << 20),
        "{report}"
    );
    assert_refused(dir.path(), "--tmpfs-size", "lots");
}

/// `run` with `flag value` is a one-line error naming the flag, exit 125.
fn assert_refused(dir: &Path, flag: &str, value: &str) {
    let out = run_native(dir, &[flag, value, "--", "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(err.contains(flag) && err.lines().count() == 1, "{err}");
}

#[test]
fn user_0_is_not_host_root_unless_the_identity_mapping_is_asked_for() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let caller = std::fs::metadata(dir.path()).unwrap().uid();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::set_permissions(&out_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mount = format!("{}:/out:rw", out_dir.display());
    let run = |extra: &[&str]| {
        let mut args = vec!["--user", "0", "--json"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--mount", &mount, "--", "sh", "-c"]);
        args.push("cat /proc/self/uid_map; touch /out/file");
        let out = run_native(dir.path(), &args);
        let v = json(&out);
        assert_eq!(out.status.code(), Some(0), "{v}");
        let host: u32 = v["stdout"]
            .as_str()
            .and_then(|s| s.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no uid_map in {v}"));
        let words = v["enforcement"]["user_mapping"]
            .as_str()
            .unwrap_or_else(|| panic!("no user_mapping in the report: {v}"))
            .to_string();
        (host, words)
    };
    let (host, words) = run(&[]);
    if caller == 0 {
        assert_ne!(host, 0, "{words}");
    } else {
        assert_eq!(host, caller, "{words}");
    }
    if words.contains("mounts idmapped") || caller != 0 {
        let owner = std::fs::metadata(out_dir.join("file")).unwrap().uid();
        assert_eq!(owner, caller, "{words}");
    }
    let (host, words) = run(&["--userns", "identity"]);
    assert_eq!(host, caller, "{words}");
    assert_refused(dir.path(), "--userns", "root");
}
