//! A named sandbox is a pod any later process of its owner can join by its
//! id (the environments of `cleanroom up` rely on it), and no pod at all
//! once removed.

use std::time::Duration;

use cleanroom_core::{Backend, Cmd, DetachOptions, Network, SandboxSpec};
use cleanroom_native::NativeBackend;

/// An HTTP GET with bash's /dev/tcp (busybox wget crashes on Debian 12).
fn fetch() -> Cmd {
    Cmd::new("bash").arg("-c").arg(
        "exec 3<>/dev/tcp/127.0.0.1/8081 && printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' >&3 && timeout 5 cat <&3 | tail -n1",
    )
}

/// Kills the sandbox's init and removes its state if the test fails
/// half-way (a named sandbox outlives the test process by design).
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(bytes) = std::fs::read(self.0.join("record.json")) else {
            return;
        };
        let record: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        if let Some(pid) = record["init_pid"].as_u64() {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
        std::thread::sleep(Duration::from_millis(200));
        for c in record["cgroup"].as_array().into_iter().flatten() {
            let _ = std::fs::remove_dir(c.as_str().unwrap_or_default());
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_named_sandbox_is_a_pod_any_process_joins_by_id() {
    let backend = NativeBackend::new();
    let name = format!("t{}-pod", std::process::id());
    let server = backend
        .create_detached(
            &SandboxSpec::default(),
            Some(Cmd::shell(
                "echo pod-hello > index.html && exec busybox httpd -f -p 127.0.0.1:8081 -h /workdir",
            )),
            DetachOptions {
                name: name.clone(),
                labels: Default::default(),
            },
        )
        .await
        .expect("creating the named server sandbox");
    let id = server.info().id.clone();
    let dir = std::path::PathBuf::from(&id);
    let _cleanup = Cleanup(dir.clone());
    let member = SandboxSpec {
        network: Network::Pod(id.clone()),
        ..SandboxSpec::default()
    };

    // This process never made the server's namespaces: it joins by id.
    let mut got = String::new();
    for _ in 0..50 {
        let r = backend.run(&member, fetch()).await.expect("run a member");
        got = r.stdout_lossy().into_owned();
        if got == "pod-hello\n" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got, "pod-hello\n", "a member reaches the named server");

    // From another process too, and as an unprivileged caller (the
    // rootless check runs this binary again as one).
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "helper_member_fetches",
            "--nocapture",
        ])
        .env("CLEANROOM_TEST_POD", &id)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FETCHED=[pod-hello\n]"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Once removed it is no pod at all, and the error says where to look.
    server.remove(true).await.expect("removing the server");
    let err = backend
        .run(&member, Cmd::new("true"))
        .await
        .expect_err("joining a removed sandbox")
        .to_string();
    assert!(err.contains("no live native sandbox has id"), "{err}");
}

/// Run by the test above in a new process: a member of the pod named by
/// `CLEANROOM_TEST_POD` fetches the server's page.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by a_named_sandbox_is_a_pod_any_process_joins_by_id"]
async fn helper_member_fetches() {
    let member = SandboxSpec {
        network: Network::Pod(std::env::var("CLEANROOM_TEST_POD").unwrap()),
        ..SandboxSpec::default()
    };
    let r = NativeBackend::new()
        .run(&member, fetch())
        .await
        .expect("run a member");
    println!("FETCHED=[{}]", r.stdout_lossy());
}
