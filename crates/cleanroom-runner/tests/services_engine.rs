//! A test file's `[services.*]` come up through cleanroom-env's engine, as
//! `cleanroom up` brings an environment up: `depends_on` conditions wait
//! for health checks, each service gets `D_HOST`/`D_PORT` for its
//! dependencies and resolves their names through the environment's
//! `/etc/hosts`, and everything is removed after the test. Native backend,
//! host root filesystem (works as root and rootless).

use std::path::Path;
use std::sync::Arc;

use cleanroom::{Backend, NativeBackend};
use cleanroom_runner::{run_suite_blocking, RunOptions, Status, SuiteReport};

/// The native backend, or `None` (a note; a failure under `CI=true`).
fn native() -> Option<NativeBackend> {
    let native = NativeBackend::new();
    let available = block_on(native.availability());
    if available.available {
        return Some(native);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but the native backend is not available: {}",
        available.reason
    );
    eprintln!("NOTE: native backend not available: {}", available.reason);
    None
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn run(dir: &Path, name: &str, text: &str, backend: NativeBackend) -> SuiteReport {
    std::fs::write(dir.join(name), text).unwrap();
    let options = RunOptions {
        backend: Some(Arc::new(backend)),
        base_spec: Some(cleanroom::SandboxSpec::default()),
        ..RunOptions::default()
    };
    run_suite_blocking(&[dir.join(name)], &options).unwrap()
}

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(marker) {
                found.push(cmdline);
            }
        }
    }
    found
}

/// `a` writes the time it is about to become healthy, then serves it over
/// HTTP; its health check passes once the server answers. `b` waits for
/// `a` to be healthy and writes the time it started.
const HEALTH_GATED: &str = r#"
[test.metadata]
name = "b starts once a is healthy, and reaches it by name"

[services.a]
command = ["sh", "-c", "sleep 0.4; date +%s%N > /tmp/ready; exec busybox httpd -f -p 8401 -h /tmp"]
ports = [8401]
healthcheck = { test = ["CMD-SHELL", "busybox wget -qO- http://127.0.0.1:8401/ready"], interval = "100ms", retries = 100 }

[services.b]
command = ["sh", "-c", "date +%s%N > /tmp/started; exec sleep 30171"]
depends_on = { a = { condition = "service_healthy" } }

[[steps]]
name = "b sees A_HOST and A_PORT and reaches a by its name"
service = "b"
command = ["sh", "-c", "echo $A_HOST:$A_PORT; busybox wget -qO- http://$A_HOST:$A_PORT/ready > /tmp/a-ready && echo reached"]
expected_output = "a:8401\nreached"

[[steps]]
name = "b started only after a was healthy"
service = "b"
command = ["sh", "-c", "test $(cat /tmp/started) -gt $(cat /tmp/a-ready) && echo after"]
expected_output = "after"

[[steps]]
name = "the names resolve through the environment's /etc/hosts"
service = "b"
command = ["getent", "hosts", "a"]
expected_output_regex = '^127\.0\.0\.1\s'

[[steps]]
name = "the test's own sandbox is in the pod, wired to every service"
command = ["sh", "-c", "echo $A_HOST:$A_PORT $B_HOST; busybox wget -qO- http://a:8401/ready > /dev/null && echo reached"]
expected_output = "a:8401 b\nreached"
"#;

#[test]
fn services_start_through_the_engine_in_dependency_order() {
    let Some(backend) = native() else { return };
    let dir = tempfile::tempdir().unwrap();
    let report = run(dir.path(), "gated.clnrm.toml", HEALTH_GATED, backend);
    let t = &report.tests[0];
    assert_eq!(t.status, Status::Passed, "{:#?}", t.failure);
    let left = processes_with("sleep 30171");
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_dependency_that_never_gets_healthy_names_itself_and_is_removed() {
    let Some(backend) = native() else { return };
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
[services.sick]
command = ["sh", "-c", "echo warming up; exec sleep 30172"]
healthcheck = { test = ["CMD-SHELL", "echo not yet; exit 1"], interval = "100ms", retries = 3 }

[services.app]
command = ["sleep", "300"]
depends_on = { sick = { condition = "service_healthy" } }

[[steps]]
command = ["true"]
"#;
    let report = run(dir.path(), "sick.clnrm.toml", text, backend);
    let t = &report.tests[0];
    assert_eq!(t.status, Status::Failed);
    let f = t.failure.as_ref().unwrap();
    assert!(
        f.message.starts_with(
            "service `app` is blocked: dependency `sick` did not reach service_healthy: failed 3 health probes in a row"
        ) && f.message.contains("last health probe output: not yet"),
        "{}",
        f.message
    );
    assert!(
        f.location
            .as_deref()
            .is_some_and(|l| l.ends_with("sick.clnrm.toml:2:11")),
        "{:?}",
        f.location
    );
    assert_eq!(f.service_logs[0].service, "sick");
    assert_eq!(f.service_logs[0].lines, ["warming up"]);
    let left = processes_with("sleep 30172");
    assert!(left.is_empty(), "left behind: {left:?}");
}
