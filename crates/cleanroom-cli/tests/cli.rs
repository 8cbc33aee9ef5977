//! The `cleanroom` binary end to end, as a user runs it.

mod common;

use common::{cleanroom, text};

#[test]
fn run_passes_output_through_and_exits_with_the_commands_code() {
    let dir = tempfile::tempdir().unwrap();
    let out = cleanroom(
        dir.path(),
        &[
            "run",
            "--backend",
            "local",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stdout), "out\n");
    let err = text(&out.stderr);
    assert!(err.contains("err\n"), "{err}");
    assert!(
        err.contains("WARN: local backend cannot enforce read-only filesystem"),
        "{err}"
    );
}

#[test]
fn run_reports_timeouts_with_124() {
    let dir = tempfile::tempdir().unwrap();
    let out = cleanroom(
        dir.path(),
        &[
            "run",
            "--backend",
            "local",
            "-q",
            "--timeout",
            "200ms",
            "--",
            "sleep",
            "30",
        ],
    );
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("timed out after 200ms"));
}

#[test]
fn run_json_is_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let out = cleanroom(
        dir.path(),
        &[
            "run",
            "--backend",
            "local",
            "--json",
            "-q",
            "--env",
            "A=b",
            "--",
            "sh",
            "-c",
            "echo $A",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stdout"], "b\n");
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["backend"], "local");
    assert!(v["enforcement"]["entries"].as_array().unwrap().len() > 3);
}

#[test]
fn strict_refuses_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let script = format!("touch {}", marker.display());
    let out = cleanroom(
        dir.path(),
        &[
            "run",
            "--backend",
            "local",
            "--strict",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("strict mode"),
        "{}",
        text(&out.stderr)
    );
    assert!(!marker.exists(), "strict mode ran the command anyway");
}

#[test]
fn unknown_backend_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = cleanroom(dir.path(), &["run", "--backend", "nonsense", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--backend") && err.contains("nonsense"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// A named backend that is not there fails before anything runs, in one
/// line that says why and what to do.
#[test]
fn a_named_backend_that_is_not_there_says_why_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::command(dir.path(), &["run", "--backend", "docker", "--", "true"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .expect("running the cleanroom binary");
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("backend `docker` is not available")
            && err.contains("/nonexistent/docker.sock")
            && err.contains("; "),
        "no reason or hint: {err}"
    );
}

#[test]
fn malformed_config_is_a_one_line_error_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cleanroom.toml"),
        "backend = \"local\"\ntimout_ms = 5\n",
    )
    .unwrap();
    let out = cleanroom(dir.path(), &["run", "--", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cleanroom.toml:2"), "{err}");
    assert!(err.contains("did you mean `timeout_ms`"), "{err}");

    std::fs::write(dir.path().join("cleanroom.toml"), "backend = [\n").unwrap();
    let out = cleanroom(dir.path(), &["config"]);
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cleanroom.toml:") && err.contains("invalid TOML"),
        "{err}"
    );
}

#[test]
fn config_shows_values_and_origins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[package]\nname = \"x\"\nversion = \"0.1.0\"\n\n[package.metadata.cleanroom]\nbackend = \"local\"\ntimeout_ms = 30000\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("cleanroom.toml"), "timeout_ms = 5000\n").unwrap();
    let out = cleanroom(dir.path(), &["config", "--json", "--memory", "64M"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["backend"]["value"], "local");
    assert_eq!(v["backend"]["origin"]["kind"], "cargo_toml");
    assert_eq!(v["timeout"]["value"], 5000);
    assert_eq!(v["timeout"]["origin"]["kind"], "file");
    assert_eq!(v["memory"]["value"], 64 << 20);
    assert_eq!(v["memory"]["origin"]["flag"], "--memory");
}

#[test]
fn doctor_json_lists_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    let out = cleanroom(dir.path(), &["doctor", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["podman", "docker", "native", "local", "vm"]);
    for b in v.as_array().unwrap() {
        assert!(b["available"].is_boolean());
        assert!(!b["reason"].as_str().unwrap().is_empty());
    }
}

#[test]
fn completions_are_generated() {
    let dir = tempfile::tempdir().unwrap();
    let out = cleanroom(dir.path(), &["completions", "bash"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("cleanroom"));
}
