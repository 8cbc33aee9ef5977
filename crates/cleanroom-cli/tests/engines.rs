//! The CLI on the engine backends: Ctrl-C leaves no container behind, and
//! `auto` picks podman, then docker, when they hold the configured image.
//! The engines are started by scripts/setup.d/40-engines.sh; without them
//! these tests fail, as every engine test does.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const IMAGE: &str = "cleanroom-busybox:latest";

fn containers(engine: &str, label: &str) -> Vec<String> {
    let out = Command::new(engine)
        .args(["ps", "-a", "-q", "--filter", &format!("label={label}")])
        .output()
        .unwrap_or_else(|e| panic!("running `{engine} ps`: {e}"));
    assert!(out.status.success(), "`{engine} ps` failed");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn sigint_removes_the_container(engine: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cleanroom"))
        .args([
            "run",
            "-q",
            "--backend",
            engine,
            "--image",
            IMAGE,
            "--",
            "sleep",
            "100",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let label = format!("cleanroom.pid={}", child.id());
    let deadline = Instant::now() + Duration::from_secs(60);
    while containers(engine, &label).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no {engine} container with {label} appeared within 60 s"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "cleanroom exited early"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        containers(engine, &label).is_empty(),
        "{engine} still has a container labelled {label} after Ctrl-C"
    );
}

#[test]
fn ctrl_c_removes_the_docker_container() {
    sigint_removes_the_container("docker");
}

#[test]
fn ctrl_c_removes_the_podman_container() {
    sigint_removes_the_container("podman");
}

#[test]
fn auto_picks_podman_first_when_it_has_the_image() {
    let out = Command::new(env!("CARGO_BIN_EXE_cleanroom"))
        .args(["doctor", "--json", "--image", IMAGE])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let chosen: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["chosen_by_auto"] == true)
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(chosen, ["podman"], "{v:#}");

    // An image no engine has: auto passes over both and says why.
    let out = Command::new(env!("CARGO_BIN_EXE_cleanroom"))
        .args(["doctor", "--json", "--image", "cleanroom-absent:never"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for b in v.as_array().unwrap().iter().take(2) {
        assert_eq!(b["chosen_by_auto"], false, "{b:#}");
        assert!(
            b["reason"].as_str().unwrap().contains("not in the"),
            "{b:#}"
        );
    }
}

#[test]
fn doctor_probe_runs_a_container_on_each_engine() {
    let out = Command::new(env!("CARGO_BIN_EXE_cleanroom"))
        .args(["doctor", "--json", "--probe", "--image", IMAGE])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for b in v.as_array().unwrap().iter().take(2) {
        assert_eq!(b["available"], true, "a probe run failed: {b:#}");
    }
}
