//! The same bytes on every isolating backend: the conformance probe
//! (environment, hostname, umask, ids, working directory and its mode,
//! nofile/nproc) run on native, docker and podman, outputs compared.
//! A missing engine fails the test under CI=true and is named otherwise.

use cleanroom::conformance::{expected_probe, probe_cmd};
use cleanroom::{
    Backend, DockerBackend, NativeBackend, PodmanBackend, RootFs, SandboxSpec, User,
    DEFAULT_ENGINE_IMAGE,
};

/// Each backend with the spec it runs the probe under: the same spec but
/// for the root filesystem (native: the host's; engines: the busybox image).
fn backends(base: &SandboxSpec) -> Vec<(Box<dyn Backend>, SandboxSpec)> {
    let on_image = SandboxSpec {
        rootfs: RootFs::Image(DEFAULT_ENGINE_IMAGE.into()),
        ..base.clone()
    };
    vec![
        (Box::new(NativeBackend::new()), base.clone()),
        (
            Box::new(DockerBackend::new(DEFAULT_ENGINE_IMAGE)),
            on_image.clone(),
        ),
        (Box::new(PodmanBackend::new(DEFAULT_ENGINE_IMAGE)), on_image),
    ]
}

/// The probe's output on every backend, by name; `None` when a backend is
/// missing outside CI (said on stderr).
async fn probe_everywhere(base: &SandboxSpec) -> Option<Vec<(String, String)>> {
    let mut outputs = Vec::new();
    for (backend, spec) in backends(base) {
        let a = backend.availability().await;
        if !a.available {
            let msg = format!(
                "backend `{}` is not available: {} ({})",
                backend.name(),
                a.reason,
                a.hint.unwrap_or_default()
            );
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true: {msg}"
            );
            eprintln!("SKIPPED (not under CI): {msg}");
            return None;
        }
        let r = backend
            .run(&spec, probe_cmd())
            .await
            .unwrap_or_else(|e| panic!("the probe on {}: {e}", backend.name()));
        assert_eq!(
            r.exit_code,
            0,
            "the probe failed on {}: {}",
            backend.name(),
            r.stderr_lossy()
        );
        outputs.push((backend.name().to_string(), r.stdout_lossy().into_owned()));
    }
    Some(outputs)
}

/// Fails with every differing line, backend against backend.
fn assert_all_equal(outputs: &[(String, String)], want: &str) {
    let mut problems = Vec::new();
    for (name, got) in outputs {
        for (w, g) in want
            .lines()
            .zip(got.lines().chain(std::iter::repeat("<missing>")))
        {
            if w != g {
                problems.push(format!("{name}: `{g}` where the contract says `{w}`"));
            }
        }
        if got.lines().count() > want.lines().count() {
            problems.push(format!("{name}: extra lines in {got:?}"));
        }
    }
    for pair in outputs.windows(2) {
        if pair[0].1 != pair[1].1 {
            problems.push(format!(
                "{} and {} print different bytes",
                pair[0].0, pair[1].0
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_prints_the_same_bytes_on_native_docker_and_podman() {
    let base = SandboxSpec::default();
    if let Some(outputs) = probe_everywhere(&base).await {
        assert_all_equal(&outputs, &expected_probe(&base));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_and_variables_print_the_same_bytes_everywhere() {
    let mut base = SandboxSpec {
        user: User {
            uid: 2000,
            gid: 3000,
        },
        hostname: "probe-host".into(),
        ..SandboxSpec::default()
    };
    base.env
        .insert("PROBE_VAR".into(), "a value with spaces".into());
    base.env.insert("PATH".into(), "/bin:/usr/bin".into());
    if let Some(outputs) = probe_everywhere(&base).await {
        assert_all_equal(&outputs, &expected_probe(&base));
    }
}
