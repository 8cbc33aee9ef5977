//! `cleanroom test`, `init`, `validate` and `self-test` end to end, as a
//! user runs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{cleanroom, command as cmd, native_available, text};

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn init_then_test_passes_on_the_default_backend() {
    let dir = tempfile::tempdir().unwrap();
    let out = cleanroom(dir.path(), &["init"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(dir.path().join("tests/example.clnrm.toml").is_file());
    let out = cleanroom(dir.path(), &["test"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert_eq!(stdout.lines().last(), Some("1 passed, 0 failed, 0 skipped"));
    // A second init refuses and leaves the files alone.
    let out = cleanroom(dir.path(), &["init"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("never overwrites"));
}

#[test]
fn broken_files_give_file_line_column_and_fail() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "t/a_toml.clnrm.toml", "[test.metadata]\nname = \n");
    write(
        d,
        "t/b_key.clnrm.toml",
        // One edit from a known key: an error (two edits away is a warning).
        "[[steps]]\ncommand = [\"echo\"]\nexpected_exit_cod = 0\n",
    );
    write(
        d,
        "t/c_regex.clnrm.toml",
        "[[steps]]\ncommand = [\"echo\"]\nexpected_output_regex = \"a(\"\n",
    );
    write(
        d,
        "t/d_service.clnrm.toml",
        "[[steps]]\ncommand = [\"echo\"]\nservice = \"db\"\n",
    );
    write(
        d,
        "t/e_cycle.clnrm.toml",
        "[services.a]\ndepends_on = [\"b\"]\n[services.b]\ndepends_on = [\"a\"]\n[[steps]]\ncommand = [\"true\"]\n",
    );
    let out = cleanroom(d, &["validate", "t"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for want in [
        "t/a_toml.clnrm.toml:2:8: error: invalid TOML",
        "t/b_key.clnrm.toml:3:1: error: unknown key `expected_exit_cod` in [[steps]]; did you mean `expected_exit_code`?",
        "t/c_regex.clnrm.toml:3:25: error: `expected_output_regex` is not a valid regex",
        "t/d_service.clnrm.toml:3:11: error: step refers to service `db`, but the test defines no [services]",
        "t/e_cycle.clnrm.toml:4:15: error: cyclic depends_on: a -> b -> a",
        "5 of 5 files invalid",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
    let out = cleanroom(d, &["test", "t", "--backend", "local"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("t/b_key.clnrm.toml:3:1: unknown key"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().last(), Some("0 passed, 5 failed, 0 skipped"));
}

#[test]
fn a_missing_image_is_reported_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    if !native_available(d) {
        return;
    }
    write(
        d,
        "img.clnrm.toml",
        "[sandbox]\nimage = \"no-such-image-cleanroom:404\"\n[[steps]]\ncommand = [\"true\"]\n",
    );
    let out = cleanroom(d, &["test", "--backend", "native"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("at:       img.clnrm.toml:2:9"), "{stdout}");
    assert!(stdout.contains("no-such-image-cleanroom"), "{stdout}");
}

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(marker) {
                found.push(format!("{name}: {cmdline}"));
            }
        }
    }
    found
}

fn sigint_mid_run(backend: &str, with_service: bool, tag: u32) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Distinct sleep lengths mark this run's processes (tests run in parallel).
    let salt = std::process::id() % 100_000;
    let (svc, step) = (format!("7{salt:05}{tag}1"), format!("7{salt:05}{tag}2"));
    // With a service the test is long-lived sandboxes; without, one step
    // runs as a one-shot run. Both must be torn down.
    let service = if with_service {
        format!("[services.bg]\ncommand = [\"sleep\", \"{svc}\"]\n\n")
    } else {
        String::new()
    };
    write(
        d,
        "long.clnrm.toml",
        &format!("{service}[[steps]]\ncommand = [\"sleep\", \"{step}\"]\n"),
    );
    let mut child = cmd(d, &["test", "--backend", backend])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while processes_with(&format!("sleep {step}")).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the step never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    if with_service {
        assert!(
            !processes_with(&format!("sleep {svc}")).is_empty(),
            "service runs"
        );
    }
    let pid = child.id().to_string();
    let status = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(status.success());
    let t0 = Instant::now();
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "cleanroom did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        code,
        Some(130),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).ends_with("0 passed, 0 failed, 1 skipped\n"));
    // Give a killed process's parent a moment to reap it.
    let t0 = Instant::now();
    loop {
        let left: Vec<String> = [&svc, &step]
            .iter()
            .flat_map(|m| processes_with(&format!("sleep {m}")))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "left running: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let prefix = format!("cleanroom-local-{pid}-");
    let dirs: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(dirs.is_empty(), "left behind: {dirs:?}");
}

#[test]
fn ctrl_c_tears_down_every_sandbox_and_service_on_local() {
    sigint_mid_run("local", true, 1);
    sigint_mid_run("local", false, 2);
}

#[test]
fn ctrl_c_tears_down_every_sandbox_and_service_on_native() {
    let dir = tempfile::tempdir().unwrap();
    if native_available(dir.path()) {
        sigint_mid_run("native", true, 3);
        sigint_mid_run("native", false, 4);
    }
}

fn json_paths(out: &Output) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    v["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["path"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn shards_together_run_every_test_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for i in 0..12 {
        write(
            d,
            &format!("s/t{i}.clnrm.toml"),
            "[[steps]]\ncommand = [\"true\"]\n",
        );
    }
    let mut all = Vec::new();
    for i in 1..=3 {
        let shard = format!("{i}/3");
        let out = cleanroom(
            d,
            &[
                "test",
                "s",
                "--backend",
                "local",
                "--shard",
                &shard,
                "--format",
                "json",
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        all.extend(json_paths(&out));
    }
    all.sort();
    let mut unique = all.clone();
    unique.dedup();
    assert_eq!(all.len(), 12, "{all:?}");
    assert_eq!(unique.len(), 12, "{all:?}");
}

#[test]
fn repeat_flags_tests_whose_output_differs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "stable.clnrm.toml",
        "[[steps]]\ncommand = [\"echo\", \"same\"]\n",
    );
    write(
        d,
        "random.clnrm.toml",
        "[[steps]]\nname = \"uuid\"\ncommand = [\"cat\", \"/proc/sys/kernel/random/uuid\"]\n",
    );
    let out = cleanroom(
        d,
        &["test", "--backend", "local", "--repeat", "3", "-j", "2"],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("non-deterministic: the stdout of step `uuid` differed between the 3 runs"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().last(), Some("1 passed, 1 failed, 0 skipped"));
}

#[test]
fn reports_go_to_files_and_formats() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "ok.clnrm.toml",
        "[[steps]]\ncommand = [\"echo\", \"fine\"]\nexpected_output = \"fine\"\n",
    );
    let out = cleanroom(
        d,
        &[
            "test",
            "--backend",
            "local",
            "--format",
            "tap",
            "--junit",
            "out/report.xml",
            "--filter",
            "ok",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "TAP version 13\n1..1\nok 1 - ok\n");
    assert!(text(&out.stderr).contains("1 passed, 0 failed, 0 skipped"));
    let xml = std::fs::read_to_string(d.join("out/report.xml")).unwrap();
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(xml.contains("<testcase name=\"ok\""), "{xml}");
    // Nothing matches the filter: not an error.
    let out = cleanroom(
        d,
        &["test", "--backend", "local", "--filter", "nothing-matches"],
    );
    assert!(out.status.success());
    // No test files at all is an error that says what to do.
    let empty = tempfile::tempdir().unwrap();
    let out = cleanroom(empty.path(), &["test", "--backend", "local"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cleanroom init"));
}

#[test]
fn self_test_reports_each_check() {
    let dir = tempfile::tempdir().unwrap();
    let out = cleanroom(
        dir.path(),
        &["self-test", "--backend", "local", "--filter", "exit_codes"],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("PASS exit_codes"), "{stdout}");
    assert_eq!(stdout.lines().last(), Some("1 passed, 0 failed"));
}
