//! Execution edge cases on the local backend (available everywhere):
//! test timeouts, readiness failures with service logs, honest warnings.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cleanroom_runner::{run_suite_blocking, RunOptions, Status, SuiteReport};

fn run(dir: &Path, name: &str, text: &str) -> SuiteReport {
    std::fs::write(dir.join(name), text).unwrap();
    let options = RunOptions {
        backend: Some(Arc::new(cleanroom::LocalBackend::new())),
        base_spec: Some(cleanroom::SandboxSpec::default()),
        ..RunOptions::default()
    };
    run_suite_blocking(&[dir.join(name)], &options).unwrap()
}

#[test]
fn a_test_past_its_timeout_is_stopped_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let r = run(
        dir.path(),
        "slow.clnrm.toml",
        "[test.metadata]\ntimeout = \"300ms\"\n[[files]]\npath = \"x\"\ncontent = \"\"\n[[steps]]\ncommand = [\"sleep\", \"30\"]\n",
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    let t = &r.tests[0];
    assert_eq!(t.status, Status::Failed);
    let msg = &t.failure.as_ref().unwrap().message;
    assert!(msg.contains("ran past its timeout of 0.3s"), "{msg}");
}

#[test]
fn a_service_that_never_gets_ready_fails_with_its_logs() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        dir.path(),
        "svc.clnrm.toml",
        "[services.stuck]\ncommand = [\"sh\", \"-c\", \"echo booting; echo still booting; exec sleep 30\"]\nwait_for = { log = \"^ready$\", timeout = \"400ms\" }\n[[steps]]\ncommand = [\"true\"]\n",
    );
    let f = r.tests[0].failure.as_ref().unwrap();
    assert!(
        f.message.starts_with(
            "service `stuck` not ready after 0.4s: its output never matched /^ready$/"
        ),
        "{}",
        f.message
    );
    assert_eq!(
        f.location
            .as_deref()
            .map(|l| l.ends_with("svc.clnrm.toml:1:11")),
        Some(true)
    );
    assert_eq!(f.service_logs[0].service, "stuck");
    assert_eq!(f.service_logs[0].lines, ["booting", "still booting"]);
}

#[test]
fn freeze_clock_is_reported_as_not_enforceable() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        dir.path(),
        "clock.clnrm.toml",
        "[determinism]\nfreeze_clock = true\nseed = 3\n[[steps]]\ncommand = [\"sh\", \"-c\", \"echo $CLEANROOM_SEED\"]\nexpected_output = \"3\"\n",
    );
    let t = &r.tests[0];
    assert_eq!(t.status, Status::Passed, "{t:#?}");
    assert!(
        t.warnings
            .iter()
            .any(|w| w.starts_with("WARN: ")
                && w.contains("clock.clnrm.toml:2:1: freeze_clock: the local backend cannot freeze the wall clock")),
        "{:?}",
        t.warnings
    );
}

/// `run_suite_blocking` from async code, on either kind of runtime: it
/// waits through the bridge instead of nesting a runtime (which panicked).
fn passes_inside_a_runtime(rt: tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let r = rt.block_on(async {
        run(
            dir.path(),
            "echo.clnrm.toml",
            "[test.metadata]\nname = \"echo\"\n[[steps]]\ncommand = [\"echo\", \"hi\"]\nexpected_output_regex = \"hi\"\n",
        )
    });
    assert_eq!(
        r.tests[0].status,
        Status::Passed,
        "{:?}",
        r.tests[0].failure
    );
}

#[test]
fn run_suite_blocking_works_inside_a_current_thread_runtime() {
    passes_inside_a_runtime(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    );
}

#[test]
fn run_suite_blocking_works_inside_a_multi_thread_runtime() {
    passes_inside_a_runtime(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap(),
    );
}
