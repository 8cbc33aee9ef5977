//! A clnrm project walks in: its own `cleanroom.toml` beside its test
//! files, unknown keys, the v1.0 format and templates, through the real
//! `cleanroom` binary.

mod common;

use std::path::Path;
use std::process::Output;

use common::{command, text};

fn cleanroom(dir: &Path, args: &[&str]) -> Output {
    command(dir, args)
        .output()
        .expect("running the cleanroom binary")
}

/// clnrm's project file as `clnrm init` writes it, trimmed.
fn clnrm_project(default_image: Option<&str>) -> String {
    let image = default_image
        .map(|i| format!("default_image = \"{i}\"\n"))
        .unwrap_or_default();
    format!(
        r#"[project]
name = "demo"
version = "0.3.0"

[cli]
parallel = true
jobs = 2
output_format = "human"

[containers]
reuse_enabled = true
{image}startup_timeout = "60s"

[observability]
enable_tracing = true
log_level = "info"

[test_execution]
default_timeout = "120s"
step_timeout = "30s"

[security]
security_level = "medium"
"#
    )
}

const TEST_FILE: &str = r#"[test.metadata]
name = "echo in the project's image"
author = "someone"

[[steps]]
name = "hello"
command = ["sh", "-c", "echo hello; cat /etc/os-release >/dev/null"]
expected_output_regex = "hello"
description = "clnrm ignores this key; we warn"
"#;

#[test]
fn clnrm_project_file_test_passes_with_one_config_warning() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("cleanroom.toml"), clnrm_project(Some("host"))).unwrap();
    std::fs::write(d.join("echo.clnrm.toml"), TEST_FILE).unwrap();

    let out = cleanroom(d, &["test", "--backend", "native"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{}\n{stderr}", text(&out.stdout));
    let config_warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("is clnrm's project file"))
        .collect();
    assert_eq!(config_warnings.len(), 1, "{stderr}");
    let w = config_warnings[0];
    assert!(w.contains("[containers] default_image"), "{w}");
    assert!(
        w.contains("[project]") && w.contains("[observability]"),
        "{w}"
    );
    // The test file's unknown keys are warnings in the report, not failures.
    let stdout = text(&out.stdout);
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");
    assert!(stdout.contains("unknown key `description`"), "{stdout}");

    // `config` shows what was taken and from where.
    let out = cleanroom(d, &["config"]);
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let row = |key: &str| {
        shown
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row("image").contains("cleanroom.toml:12"), "{shown}");
    assert!(row("timeout_ms").contains("30000"), "{shown}");
    assert!(row("jobs").contains('2'), "{shown}");
    assert!(row("test_timeout_ms").contains("120000"), "{shown}");
}

#[test]
fn run_and_config_work_beside_clnrm_s_project_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("cleanroom.toml"), clnrm_project(Some("host"))).unwrap();
    let out = cleanroom(d, &["run", "--backend", "native", "--", "echo", "hi"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(text(&out.stdout), "hi\n");
    assert_eq!(
        stderr.matches("is clnrm's project file").count(),
        1,
        "{stderr}"
    );
    let out = cleanroom(d, &["config", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["image"]["value"], "host");
    assert_eq!(v["warnings"].as_array().map(Vec::len), Some(1));
}

#[test]
fn clnrm_default_image_is_named_when_it_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("cleanroom.toml"), clnrm_project(None)).unwrap();
    std::fs::write(d.join("echo.clnrm.toml"), TEST_FILE).unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = command(d, &["test", "--backend", "native"])
        .env("CLEANROOM_HOME", home.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(all.contains("alpine:latest"), "{all}");
    assert!(all.contains("no such image"), "{all}");
}

#[test]
fn unknown_keys_warn_typos_fail_and_strict_fails() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("w.clnrm.toml"), TEST_FILE).unwrap();
    let out = cleanroom(d, &["validate", "w.clnrm.toml"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("w.clnrm.toml:3:1: warning: unknown key `author` in [test.metadata]"),
        "{stderr}"
    );
    assert!(
        stderr.contains("w.clnrm.toml:9:1: warning: unknown key `description`"),
        "{stderr}"
    );

    let out = cleanroom(d, &["validate", "--strict", "w.clnrm.toml"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("error: unknown key `author`"));

    // One edit away from a known key: an error even without --strict.
    std::fs::write(
        d.join("typo.clnrm.toml"),
        "[[steps]]\nname = \"x\"\ncommand = [\"true\"]\nexpected_exit_cod = 0\n",
    )
    .unwrap();
    let out = cleanroom(d, &["validate", "typo.clnrm.toml"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("typo.clnrm.toml:4:1: error: unknown key `expected_exit_cod` in [[steps]]; did you mean `expected_exit_code`?"),
        "{stderr}"
    );
}

#[test]
fn v1_template_with_frozen_clock_runs_and_reports_what_is_not_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("v1.clnrm.toml"),
        r#"[meta]
name = "{{ vars.svc }}-v1"
version = "1.0"

[vars]
svc = "clock"

[determinism]
freeze_clock = "2025-01-01T00:00:00Z"

[service.idle]
plugin = "generic_container"
args = ["sleep", "30"]

[[scenario]]
name = "epoch"
run = "sh -c 'echo $SOURCE_DATE_EPOCH {{ now_rfc3339() }} {{ env(name='CLNRM_COMPAT_PROBE') }}'"

[[scenario]]
name = "in the service"
service = "idle"
run = "true"

[[steps]]
name = "may fail"
command = ["false"]
continue_on_failure = true

[[steps]]
name = "never matches"
command = ["echo", "ok"]
expected_output_regex_not = "ERROR"

[otel]
exporter = "stdout"
"#,
    )
    .unwrap();
    let out = command(
        d,
        &[
            "test",
            "--backend",
            "native",
            "--format",
            "json",
            "v1.clnrm.toml",
        ],
    )
    .env("CLNRM_COMPAT_PROBE", "probed")
    .output()
    .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let t = &report["tests"][0];
    assert_eq!(t["name"], "clock-v1");
    let steps = t["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4, "{stdout}");
    let epoch = steps.iter().find(|s| s["name"] == "epoch").unwrap();
    assert_eq!(
        epoch["stdout"].as_str().unwrap().trim(),
        "1735689600 2025-01-01T00:00:00Z probed"
    );
    let warnings = t["warnings"].to_string();
    assert!(
        warnings.contains("freeze_clock = 2025-01-01T00:00:00Z"),
        "{warnings}"
    );
    assert!(
        warnings.contains("cannot freeze the wall clock"),
        "{warnings}"
    );
    assert!(warnings.contains("continue_on_failure"), "{warnings}");
    assert!(warnings.contains("`otel`"), "{warnings}");
}
