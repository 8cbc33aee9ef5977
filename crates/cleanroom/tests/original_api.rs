//! The original synchronous API (`cleanroom::backend`, `cleanroom::error`)
//! against the real engines and the local backend: what each handle does,
//! what its errors say, and how a two-method backend behaves behind the
//! async traits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cleanroom::backend::{
    AutoBackend, Backend, Cmd, DockerBackend, LocalBackend, PodmanBackend, RunResult,
};
use cleanroom::error::{BackendError, Result};
use cleanroom::{Constraint, Error, SandboxSpec, Status};

const IMAGE: &str = cleanroom::DEFAULT_ENGINE_IMAGE;
/// On the project's loopback registry, never pushed: a pull must fail there
/// without reaching any other address.
const ABSENT: &str = "127.0.0.1:5000/cleanroom/never-pushed:absent";

/// Code written against the trait takes built-in and own backends alike.
fn hello(b: &dyn Backend) -> String {
    let r = b.run_cmd(Cmd::from(["echo", "hello"])).unwrap();
    format!("{}:{}", b.name(), r.stdout_lossy().trim())
}

#[test]
fn docker_and_podman_handles_run_in_the_image_with_the_real_report() {
    let docker = DockerBackend::new(IMAGE);
    let podman = PodmanBackend::new(IMAGE);
    assert!(docker.is_available(), "docker is not available");
    assert!(podman.is_available(), "podman is not available");
    docker.ensure_image().unwrap();
    podman.ensure_image().unwrap();
    assert_eq!(hello(&docker), "docker:hello");
    assert_eq!(hello(&podman), "podman:hello");

    for (name, r) in [
        ("docker", docker.run_cmd(["id", "-u"]).unwrap()),
        (
            "podman",
            podman
                .run_cmd(vec!["id".to_string(), "-u".to_string()])
                .unwrap(),
        ),
    ] {
        assert_eq!(r.backend, name);
        assert_eq!(r.stdout_lossy(), "1000\n");
        assert!(r.enforcement.is_enforced(Constraint::FilesystemIsolation));
        assert!(r.enforcement.unknowns().is_empty());
    }
    // The async face is the real engine backend, not an adapter.
    let engine = docker.into_async();
    assert_eq!(engine.name(), "docker");
    assert!(engine
        .enforcement(&SandboxSpec::default())
        .is_enforced(Constraint::NetworkIsolation));
}

#[test]
fn ensure_image_of_an_image_nobody_can_pull_says_what_to_do_in_one_line() {
    for (engine, err) in [
        (
            "docker",
            DockerBackend::new(ABSENT).ensure_image().unwrap_err(),
        ),
        (
            "podman",
            PodmanBackend::new(ABSENT).ensure_image().unwrap_err(),
        ),
    ] {
        let text = err.to_string();
        eprintln!("{engine}: {text}");
        assert!(matches!(err, Error::Image { .. }), "{engine}: {err:?}");
        assert!(!text.contains('\n'), "{engine}: not one line: {text}");
        assert!(text.starts_with(&format!("image `{ABSENT}`")), "{text}");
        assert!(
            text.contains(&format!("{engine} load -i ARCHIVE.tar")),
            "{text}"
        );
        assert!(text.contains("cleanroom import"), "{text}");
    }
}

#[test]
fn docker_bin_names_the_cli_whose_context_finds_the_engine() {
    let found = DockerBackend::new(IMAGE).docker_bin("docker".to_string());
    assert!(found.is_available());
    assert_eq!(
        found.run_cmd(["echo", "via context"]).unwrap().stdout,
        b"via context\n"
    );

    let missing = DockerBackend::new(IMAGE).docker_bin("/nonexistent/docker".to_string());
    if std::env::var_os("DOCKER_HOST").is_some() {
        // DOCKER_HOST names the engine itself, so the CLI is never asked.
        assert!(missing.is_available());
    } else {
        assert!(!missing.is_available());
        let err = missing.run_cmd(["true"]).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/docker context inspect"), "{err}");
    }
}

#[test]
fn local_handle_and_auto_detect_run_synchronously() {
    let local = LocalBackend::new();
    assert_eq!(hello(&local), "local:hello");
    let auto = AutoBackend::detect().unwrap();
    assert!(hello(&auto).ends_with(":hello"));
    assert_eq!(local.into_async().name(), "local");
}

/// A two-method backend that runs commands on the host and records them.
#[derive(Clone, Default)]
struct Recording(Arc<Seen>);

#[derive(Default)]
struct Seen {
    cmds: Mutex<Vec<Cmd>>,
    calls: AtomicUsize,
}

impl Backend for Recording {
    fn run_cmd(&self, cmd: Cmd) -> Result<RunResult> {
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        self.0.cmds.lock().unwrap().push(cmd.clone());
        if cmd.program == "panic" {
            panic!("asked to panic");
        }
        let out = std::process::Command::new(&cmd.program)
            .args(&cmd.args)
            .output()
            .map_err(|e| BackendError::io(format!("starting `{}`", cmd.display()), e))?;
        Ok(RunResult::from(out))
    }

    fn name(&self) -> &str {
        "recording"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_own_backend_behind_the_async_traits() {
    let own = Recording::default();
    assert_eq!(hello(&own), "recording:hello");
    let backend = own.clone().into_async();
    let spec = SandboxSpec {
        env: [("FROM_SPEC".to_string(), "1".to_string())].into(),
        timeout: Some(Duration::from_secs(30)),
        memory: Some(64 << 20),
        ..SandboxSpec::default()
    };

    // A run: spec environment under the command's, the spec's timeout,
    // every requested constraint unknown, with a warning each.
    let r = backend
        .run(
            &spec,
            Cmd::from(["sh", "-c", "exit 4"]).env("FROM_SPEC", "cmd"),
        )
        .await
        .unwrap();
    assert_eq!((r.exit_code, r.backend.as_str()), (4, "recording"));
    let seen = own.0.cmds.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen.env["FROM_SPEC"], "cmd");
    assert_eq!(seen.timeout, Some(Duration::from_secs(30)));
    for c in Constraint::requested_by(&spec) {
        assert!(
            matches!(r.enforcement.status(c), Some(Status::Unknown { .. })),
            "{c}: {:?}",
            r.enforcement.status(c)
        );
    }
    assert!(r.enforcement.status(Constraint::MemoryLimit).is_some());
    assert_eq!(
        r.enforcement.warnings().len(),
        Constraint::requested_by(&spec).len()
    );

    // A sandbox: each exec is one more call; no copies, no services.
    let sb = backend.create(&spec, None).await.unwrap();
    assert_eq!(
        sb.exec(Cmd::from(["echo", "x"])).await.unwrap().stdout,
        b"x\n"
    );
    let err = sb
        .copy_in(
            std::path::Path::new("/etc/hostname"),
            std::path::Path::new("/workdir/h"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    sb.remove().await.unwrap();
    assert!(matches!(
        sb.exec(Cmd::from(["true"])).await.unwrap_err(),
        Error::SandboxGone { .. }
    ));
    let err = backend
        .create(&spec, Some(Cmd::from(["sleep", "100"])))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("a service"), "{err}");

    // A panic in run_cmd is the run's error, not the caller's panic.
    let err = backend.run(&spec, Cmd::new("panic")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "recording backend: run_cmd panicked: asked to panic"
    );

    // Strict mode refuses before calling the backend.
    let before = own.0.calls.load(Ordering::SeqCst);
    let strict = SandboxSpec {
        strict: true,
        ..spec
    };
    let err = backend.run(&strict, Cmd::new("true")).await.unwrap_err();
    assert!(matches!(err, Error::NotEnforceable { .. }), "{err}");
    assert_eq!(own.0.calls.load(Ordering::SeqCst), before);
}
