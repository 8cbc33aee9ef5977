//! One-shot runs send their command to the container's waiting main
//! process as one shell line: every byte of the arguments and environment
//! arrives as it was, output keeps its last bytes (no newline needed), a
//! missing working directory is an error that names it, and a command with
//! stdin (which goes through an exec) still gets it — fresh and pooled, on
//! both engines.

use std::time::Duration;

use cleanroom_core::{Backend, Cmd, Error, RootFs, SandboxSpec};
use cleanroom_docker::{DockerBackend, EngineBackend, PodmanBackend, DEFAULT_IMAGE};

fn backends() -> Vec<EngineBackend> {
    vec![
        DockerBackend::new(DEFAULT_IMAGE),
        DockerBackend::new(DEFAULT_IMAGE).with_warm_pool(1),
        PodmanBackend::new(DEFAULT_IMAGE),
        PodmanBackend::new(DEFAULT_IMAGE).with_warm_pool(1),
    ]
}

fn spec() -> SandboxSpec {
    SandboxSpec::with_rootfs(RootFs::Image(DEFAULT_IMAGE.into()))
}

fn label(b: &EngineBackend) -> String {
    format!("{} (pool {})", b.name(), b.warm_pool_size())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_and_environment_arrive_byte_for_byte() {
    let awkward = [
        "it's",
        "two\nlines",
        "trailing newline\n",
        "$HOME `id` $(id) \\n \\ \"q\"",
        "",
        "  spaces  ",
        "ünïcödé ✓",
        "'",
        "-n",
    ];
    for b in backends() {
        for _ in 0..2 {
            let cmd = Cmd::new("sh")
                .args([
                    "-c",
                    "for a; do printf '[%s]' \"$a\"; done; printf '{%s}' \"$V\"",
                    "sh",
                ])
                .args(awkward)
                .env("V", "a'b\nc$d");
            let r = b.run(&spec(), cmd).await.unwrap();
            let want: String =
                awkward.iter().map(|a| format!("[{a}]")).collect::<String>() + "{a'b\nc$d}";
            assert_eq!(
                r.stdout_lossy(),
                want,
                "{}: {}",
                label(&b),
                r.stderr_lossy()
            );
            assert!(r.success(), "{}: {r:?}", label(&b));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_without_a_final_newline_and_the_exit_code_arrive() {
    for b in backends() {
        let r = b
            .run(
                &spec(),
                Cmd::shell("printf out; printf err >&2; sleep 0.2; printf ' more'; exit 7"),
            )
            .await
            .unwrap();
        assert_eq!(r.stdout, b"out more", "{}", label(&b));
        assert_eq!(r.stderr, b"err", "{}", label(&b));
        assert_eq!(r.exit_code, 7, "{}", label(&b));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_working_directory_is_an_error_naming_it() {
    for b in backends() {
        let err = b
            .run(&spec(), Cmd::new("true").workdir("/no/such/dir"))
            .await
            .expect_err("a run in a missing directory succeeded");
        assert!(
            matches!(err, Error::Backend { .. }) && err.to_string().contains("/no/such/dir"),
            "{}: {err}",
            label(&b)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_and_timeouts_still_work() {
    for b in backends() {
        let r = b
            .run(&spec(), Cmd::new("cat").stdin(b"fed\n".to_vec()))
            .await
            .unwrap();
        assert_eq!(r.stdout, b"fed\n", "{}", label(&b));
        let started = std::time::Instant::now();
        let r = b
            .run(
                &spec(),
                Cmd::shell("echo before; sleep 100").timeout(Duration::from_millis(1500)),
            )
            .await
            .unwrap();
        assert!(r.timed_out, "{}: {r:?}", label(&b));
        assert_eq!(r.stdout, b"before\n", "{}", label(&b));
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}: the timeout took {:?}",
            label(&b),
            started.elapsed()
        );
    }
}
