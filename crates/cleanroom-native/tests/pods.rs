//! Pods: sandboxes sharing one network namespace reach each other over
//! 127.0.0.1, and a port inside is published on the host's 127.0.0.1.

use std::time::Duration;

use cleanroom_core::{Backend, Cmd, Network, PortPublish, SandboxSpec};
use cleanroom_native::NativeBackend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTP GET with bash's /dev/tcp (busybox wget crashes on Debian 12).
const FETCH: &str = "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' >&3 && timeout 5 cat <&3 | tail -n1";

fn fetch() -> Cmd {
    Cmd::new("bash").arg("-c").arg(FETCH)
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_members_share_loopback_and_ports_are_published() {
    assert!(
        std::path::Path::new("/usr/bin/busybox").exists()
            || std::path::Path::new("/bin/busybox").exists(),
        "busybox is needed for httpd (scripts/setup.d installs busybox-static)"
    );
    let backend = NativeBackend::new();
    let spec = SandboxSpec {
        publish: vec![PortPublish {
            sandbox_port: 8080,
            host_port: 0,
        }],
        ..SandboxSpec::default()
    };
    let server = backend
        .create(
            &spec,
            Some(Cmd::shell(
                "echo pod-hello > index.html && exec busybox httpd -f -p 127.0.0.1:8080 -h /workdir",
            )),
        )
        .await
        .expect("creating the server sandbox");

    // The server answers on its own loopback.
    let mut up = false;
    for _ in 0..50 {
        let r = server.exec(fetch()).await.expect("exec");
        if r.stdout == b"pod-hello\n" {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the server never answered inside its own sandbox");

    // A member of the pod reaches it over 127.0.0.1.
    let member = SandboxSpec {
        network: Network::Pod(server.id().to_string()),
        ..SandboxSpec::default()
    };
    let r = backend.run(&member, fetch()).await.expect("run");
    assert_eq!(
        r.stdout_lossy(),
        "pod-hello\n",
        "pod member: {}",
        r.stderr_lossy()
    );

    // A sandbox outside the pod does not.
    let r = backend
        .run(&SandboxSpec::default(), fetch())
        .await
        .expect("run");
    assert!(
        !r.success() && r.stdout.is_empty(),
        "outsider reached the pod"
    );

    // Published on the host's loopback.
    let port = server.published_port(8080).expect("port 8080 published");
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connecting to the published port");
    conn.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_string(&mut answer))
        .await
        .expect("published port answered in time")
        .expect("reading the published port");
    assert!(
        answer.contains("pod-hello"),
        "published port gave {answer:?}"
    );

    server.remove().await.expect("remove");
    let r = backend.run(&member, Cmd::new("true")).await;
    assert!(r.is_err(), "joining a removed sandbox's pod must fail");
}
