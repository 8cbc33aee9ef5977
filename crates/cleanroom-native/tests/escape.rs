//! Escape attempts against the native sandbox, each of which must fail.
//!
//! Every probe is harmless if the sandbox is broken: the script first checks
//! a canary (hostname `cleanroom`, PID 1 is our `cleanroom-init`) and exits
//! 99 without probing when it does not hold. Probes never write /proc/sys or
//! /sys, never set the clock, never send traffic from the host, and only
//! signal with signal 0 (an existence check).

use std::hash::{Hash, Hasher};
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::time::Duration;

use cleanroom_core::{Backend, Cmd, RunResult, SandboxSpec, User};
use cleanroom_native::NativeBackend;

const CANARY: &str = r#"if [ "$(cat /proc/sys/kernel/hostname)" != cleanroom ] || [ "$(cat /proc/1/comm)" != cleanroom-init ]; then echo CANARY-FAILED; exit 99; fi"#;

async fn probe(spec: &SandboxSpec, script: &str) -> RunResult {
    let cmd = Cmd::shell(format!("{CANARY}\n{script}")).timeout(Duration::from_secs(30));
    let r = NativeBackend::new()
        .run(spec, cmd)
        .await
        .unwrap_or_else(|e| panic!("running the probe failed: {e}"));
    assert!(
        r.exit_code != 99 && !r.stdout_lossy().contains("CANARY-FAILED"),
        "canary failed (not our sandbox), nothing probed: {} {} {}",
        r.status_line(),
        r.stdout_lossy(),
        r.stderr_lossy()
    );
    assert!(!r.timed_out, "probe timed out: {}", r.stderr_lossy());
    r
}

fn root() -> SandboxSpec {
    SandboxSpec {
        user: User::ROOT,
        ..SandboxSpec::default()
    }
}

fn assert_none(r: &RunResult, markers: &[&str]) {
    let out = r.stdout_lossy();
    for m in markers {
        assert!(
            !out.contains(m),
            "escape marker {m} printed: stdout={out:?} stderr={:?}",
            r.stderr_lossy()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn host_files_are_unreadable() {
    let dir = std::env::temp_dir().join(format!("cleanroom-escape-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret.txt");
    std::fs::write(&secret, "escape-secret-7f3a").unwrap();
    std::env::set_var("CLEANROOM_ESCAPE_CANARY", "escape-env-secret-91c2");
    for spec in [SandboxSpec::default(), root()] {
        let r = probe(
            &spec,
            &format!(
                "cat /etc/shadow && echo READ-SHADOW
                 ls /root && echo LISTED-ROOT
                 cat {} && echo READ-TMP
                 cat /proc/1/environ && echo READ-INIT-ENV
                 cat /proc/1/root/etc/hostname
                 ls /oldroot /newroot && echo SAW-OLD-ROOT
                 exit 0",
                secret.display()
            ),
        )
        .await;
        assert_none(
            &r,
            &[
                "READ-SHADOW",
                "LISTED-ROOT",
                "READ-TMP",
                "READ-INIT-ENV",
                "escape-secret-7f3a",
                "escape-env-secret-91c2",
                "SAW-OLD-ROOT",
            ],
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_outside_mounts_fail() {
    let name = format!("cleanroom-escape-write-{}", std::process::id());
    let r = probe(
        &root(),
        &format!(
            "for p in /usr/{name} /usr/bin/{name} /etc/{name} /lib/{name} /{name} /dev/{name}; do
                 echo x > $p 2>/dev/null && echo WROTE $p
             done
             touch /etc/passwd && echo TOUCHED
             exit 0"
        ),
    )
    .await;
    assert_none(&r, &["WROTE", "TOUCHED"]);
    for dir in ["/usr", "/usr/bin", "/etc", "/lib", "/", "/dev"] {
        assert!(
            !Path::new(dir).join(&name).exists(),
            "{dir}/{name} appeared on the host"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn host_processes_are_invisible_and_unsignalable() {
    let me = std::process::id();
    let r = probe(
        &root(),
        &format!(
            "kill -0 {me} 2>/dev/null && echo SIGNALLED
             test -e /proc/{me} && echo SAW-HOST-PID
             ls /proc | grep -c '^[0-9]'"
        ),
    )
    .await;
    assert_none(&r, &["SIGNALLED", "SAW-HOST-PID"]);
    let count: u32 = r.stdout_lossy().trim().parse().unwrap_or(u32::MAX);
    assert!(count < 10, "{count} processes visible inside");
}

#[tokio::test(flavor = "multi_thread")]
async fn mounting_fails() {
    let r = probe(
        &root(),
        "mkdir -p /tmp/m
         mount -t tmpfs none /tmp/m 2>/dev/null && echo MOUNTED-TMPFS
         mount --bind /usr /tmp/m 2>/dev/null && echo MOUNTED-BIND
         mount -o remount,rw / 2>/dev/null && echo REMOUNTED-ROOT
         busybox mount -t proc proc /tmp/m 2>/dev/null && echo MOUNTED-PROC
         exit 0",
    )
    .await;
    assert_none(
        &r,
        &[
            "MOUNTED-TMPFS",
            "MOUNTED-BIND",
            "REMOUNTED-ROOT",
            "MOUNTED-PROC",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn loading_a_module_fails() {
    assert!(
        Path::new("/usr/bin/busybox").exists() || Path::new("/bin/busybox").exists(),
        "busybox is needed for insmod (scripts/setup.d installs busybox-static)"
    );
    let r = probe(
        &root(),
        "busybox insmod /dev/null; echo rc=$?
         exit 0",
    )
    .await;
    let out = r.stdout_lossy();
    assert!(
        out.contains("rc=") && !out.contains("rc=0"),
        "insmod: {out} {}",
        r.stderr_lossy()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn new_user_namespaces_fail() {
    for spec in [SandboxSpec::default(), root()] {
        let r = probe(
            &spec,
            "unshare -U true 2>/dev/null && echo UNSHARED-USER
             unshare -Ur id -u 2>/dev/null && echo UNSHARED-ROOT
             unshare -m true 2>/dev/null && echo UNSHARED-MOUNT
             exit 0",
        )
        .await;
        assert_none(&r, &["UNSHARED-USER", "UNSHARED-ROOT", "UNSHARED-MOUNT"]);
    }
}

/// The host's own non-loopback address, found without sending anything
/// (connecting a UDP socket only picks a route).
fn host_address() -> Option<std::net::IpAddr> {
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("10.255.255.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test(flavor = "multi_thread")]
async fn only_loopback_is_reachable() {
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut targets = vec!["10.255.255.1/80".to_string()];
    if let Some(ip) = host_address() {
        targets.push(format!("{ip}/{port}"));
    }
    let mut script = String::new();
    for t in &targets {
        script.push_str(&format!(
            "timeout 5 bash -c 'echo hi > /dev/tcp/{t}' 2>/dev/null && echo CONNECTED {t}\n"
        ));
    }
    // Loopback inside works (the sandbox's own, not the host's).
    script.push_str(&format!(
        "timeout 5 bash -c 'echo hi > /dev/tcp/127.0.0.1/{port}' 2>/dev/null && echo CONNECTED-HOST-LOOPBACK\nexit 0"
    ));
    let r = probe(&SandboxSpec::default(), &script).await;
    assert_none(&r, &["CONNECTED"]);
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the host listener got a connection from the sandbox: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn setuid_binaries_gain_nothing() {
    let r = probe(
        &SandboxSpec::default(),
        "su root -c 'echo ROOTED' </dev/null 2>/dev/null
         mount -t tmpfs none /tmp 2>/dev/null && echo MOUNTED
         passwd --status root </dev/null 2>/dev/null && echo PASSWD-RAN-AS-ROOT
         grep -E '^Cap(Eff|Prm)' /proc/self/status
         exit 0",
    )
    .await;
    assert_none(&r, &["ROOTED", "MOUNTED", "PASSWD-RAN-AS-ROOT"]);
    for line in r.stdout_lossy().lines() {
        let v = line.split_whitespace().nth(1).unwrap_or("");
        assert!(v.chars().all(|c| c == '0'), "capability line {line}");
    }
}

fn fingerprint(p: &Path) -> (u64, u64) {
    let bytes = std::fs::read(p).unwrap();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    (bytes.len() as u64, h.finish())
}

#[tokio::test(flavor = "multi_thread")]
async fn proc_exe_cannot_reach_the_host_binary() {
    let exe = std::env::current_exe().unwrap();
    let before = fingerprint(&exe);
    for spec in [SandboxSpec::default(), root()] {
        let r = probe(
            &spec,
            "echo x > /proc/1/exe 2>/dev/null && echo OVERWROTE-INIT-EXE
             echo x >> /proc/self/exe 2>/dev/null && echo OVERWROTE-SELF-EXE
             cat /proc/1/exe > /dev/null 2>&1 && echo READ-INIT-EXE
             cat /proc/1/maps > /dev/null 2>&1 && echo READ-INIT-MAPS
             exit 0",
        )
        .await;
        assert_none(
            &r,
            &[
                "OVERWROTE-INIT-EXE",
                "OVERWROTE-SELF-EXE",
                "READ-INIT-EXE",
                "READ-INIT-MAPS",
            ],
        );
    }
    assert_eq!(fingerprint(&exe), before, "the host binary changed");
}
