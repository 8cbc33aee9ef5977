//! The blocking API from plain tests and from inside a tokio runtime.

use cleanroom::blocking;
use cleanroom::{BackendChoice, Cmd, SandboxSpec};

#[test]
fn blocking_run_from_a_plain_test() {
    let r = blocking::AutoBackend::select(BackendChoice::Local, None)
        .unwrap()
        .run_cmd(["echo", "hello"])
        .unwrap();
    assert_eq!(r.stdout_lossy(), "hello\n");
    assert_eq!(r.backend, "local");
}

#[tokio::test(flavor = "current_thread")]
async fn blocking_run_inside_a_current_thread_runtime_does_not_panic() {
    let b = blocking::AutoBackend::select(BackendChoice::Local, None).unwrap();
    let r = b
        .run(&SandboxSpec::default(), Cmd::shell("exit 4"))
        .unwrap();
    assert_eq!(r.exit_code, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_sandbox_inside_a_multi_thread_runtime() {
    let b = blocking::AutoBackend::select(BackendChoice::Local, None).unwrap();
    let sb = b
        .create(
            &SandboxSpec::default(),
            Some(Cmd::shell("echo up; exec sleep 100")),
        )
        .unwrap();
    let r = sb.exec(Cmd::shell("echo x > f; cat f")).unwrap();
    assert_eq!(r.stdout, b"x\n");
    drop(sb);
}

#[test]
fn unknown_backend_from_env_names_the_variable() {
    let e = cleanroom::BackendChoice::parse("nonsense", "CLEANROOM_BACKEND")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("nonsense") && e.contains("CLEANROOM_BACKEND"),
        "{e}"
    );
}

#[tokio::test]
async fn auto_picks_an_available_backend_and_says_why() {
    let a = cleanroom::AutoBackend::select(BackendChoice::Auto, None)
        .await
        .unwrap();
    assert!(!a.reason().is_empty());
    let reports = cleanroom::doctor(None).await.unwrap();
    let names: Vec<_> = reports.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["podman", "docker", "native", "local", "vm"]);
    assert_eq!(reports.iter().filter(|r| r.chosen_by_auto).count(), 1);
    assert!(!reports[4].chosen_by_auto, "auto never picks vm");
    let chosen = reports.iter().find(|r| r.chosen_by_auto).unwrap();
    assert_eq!(chosen.name, a.chosen());
}

#[tokio::test]
async fn gc_removes_a_dead_owners_workdir_and_keeps_live_ones() {
    use cleanroom::Backend;
    // A pid that cannot be alive: above the kernel's maximum.
    let dead = std::env::temp_dir().join("cleanroom-local-4194305-gctest");
    std::fs::create_dir_all(dead.join("sub")).unwrap();
    let live = tempfile::Builder::new()
        .prefix(&format!("cleanroom-local-{}-", std::process::id()))
        .tempdir()
        .unwrap();
    let removed = cleanroom::LocalBackend::new().gc().await.unwrap();
    assert!(!dead.exists(), "dead owner's directory survived gc");
    assert!(live.path().exists(), "gc removed a live owner's directory");
    assert!(
        removed
            .iter()
            .any(|r| r.kind == cleanroom::Removed::TEMP && r.what.contains("4194305")),
        "{removed:?}"
    );
}
