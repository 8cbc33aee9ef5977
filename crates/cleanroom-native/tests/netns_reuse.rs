//! One-shot sandboxes run back to back share network namespaces through the
//! process's pool, and a test can still not see what an earlier one did in
//! there: sockets (TCP, UDP, abstract unix) are gone with its processes, a
//! namespace that carried a packet is never handed on, and the sandbox has
//! no capability over the namespace it was lent.
//!
//! The probes run this test binary inside the sandbox (mounted read-only
//! at /probe) in the mode named by `CLEANROOM_NETNS_PROBE`: see [`probe`].

use cleanroom_core::{Backend, Cmd, Mount, SandboxSpec};
use cleanroom_native::NativeBackend;

/// The abstract unix socket name and the port the probes occupy and claim.
const ABSTRACT: &[u8] = b"cleanroom-netns-reuse-probe";
const PORT: u16 = 47_123;
const MODE: &str = "CLEANROOM_NETNS_PROBE";

fn spec() -> SandboxSpec {
    let exe = std::env::current_exe().expect("the test binary's path");
    SandboxSpec {
        mounts: vec![Mount::read_only(exe, "/probe")],
        ..SandboxSpec::default()
    }
}

/// Runs the probe `mode` in a fresh one-shot sandbox; returns its `key=value`
/// lines.
async fn run(backend: &NativeBackend, mode: &str) -> Vec<(String, String)> {
    let cmd = Cmd::new("/probe")
        .args([
            "probe",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MODE, mode);
    let r = backend.run(&spec(), cmd).await.expect("running the probe");
    let out = String::from_utf8_lossy(&r.stdout).into_owned();
    assert!(
        r.success(),
        "probe {mode}: {}\nstdout: {out}\nstderr: {}",
        r.status_line(),
        r.stderr_lossy()
    );
    let lines: Vec<(String, String)> = out
        .lines()
        // libtest writes `test probe ... ` before the first line.
        .filter_map(|l| l.split_once("probe: ").map(|(_, kv)| kv))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    eprintln!("probe {mode}: {lines:?}");
    lines
}

fn get<'a>(lines: &'a [(String, String)], key: &str) -> &'a str {
    lines
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("the probe printed no {key}: {lines:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reused_network_namespace_shows_nothing_of_the_test_before() {
    let backend = NativeBackend::new();
    // The first sandbox of a process makes its own namespace; the pool is
    // used by sandboxes that follow one another.
    run(&backend, "look").await;

    // A test occupies a port (TCP and UDP) and an abstract unix socket,
    // with a background process holding them when it ends; the next test
    // in the same namespace finds all three free and sees no socket.
    let first = run(&backend, "occupy").await;
    assert_eq!(get(&first, "occupied"), "yes");
    let second = run(&backend, "claim").await;
    assert_eq!(
        get(&first, "cookie"),
        get(&second, "cookie"),
        "the second sandbox did not get the first one's network namespace: the pool is not \
         in use, so this test proves nothing"
    );
    assert_eq!(get(&second, "claimed"), "yes", "{second:?}");
    assert_eq!(get(&second, "sockets_before"), "0", "{second:?}");
    assert_eq!(get(&second, "lo_packets"), "0", "{second:?}");

    // A test that moved one packet (to a closed UDP port, over loopback)
    // leaves its namespace to the kernel: the next one gets a new one.
    let sent = run(&backend, "send").await;
    assert_eq!(get(&sent, "sent"), "yes");
    let after = run(&backend, "look").await;
    assert_ne!(get(&sent, "cookie"), get(&after, "cookie"));
    assert_eq!(get(&after, "lo_packets"), "0", "{after:?}");
    assert_eq!(get(&after, "sockets_before"), "0", "{after:?}");
    // Nothing inside may change the namespace it was lent.
    assert_eq!(get(&after, "lo_down"), "refused", "{after:?}");

    // Namespaces made while other sandboxes run: their holders keep no
    // copy of those sandboxes' output pipes, whose readers would otherwise
    // wait for an end that never comes.
    let runs: Vec<_> = (0..8)
        .map(|i| {
            let backend = backend.clone();
            tokio::spawn(async move {
                let t = std::time::Instant::now();
                let r = backend
                    .run(
                        &SandboxSpec::default(),
                        Cmd::new("echo").arg(format!("run {i}")),
                    )
                    .await
                    .expect("running echo");
                (i, r, t.elapsed())
            })
        })
        .collect();
    for run in runs {
        let (i, r, took) = run.await.expect("the run's task");
        // Such a wait ends only with the output's grace period (2 s); an
        // echo takes a few milliseconds.
        assert!(
            took < cleanroom_core::PIPE_GRACE * 3 / 4,
            "run {i} took {took:?}: something waited for a pipe's end"
        );
        // Truncated: the output's reader gave up waiting for its end.
        assert!(
            !r.stdout_truncated && !r.stderr_truncated,
            "run {i}: its output never ended"
        );
        assert_eq!(
            r.stdout_lossy(),
            format!("run {i}\n"),
            "{}",
            r.status_line()
        );
    }
}

/// Not a test on its own: what the sandbox runs (see the module docs).
#[test]
#[ignore = "run inside a sandbox by a_reused_network_namespace_shows_nothing_of_the_test_before"]
fn probe() {
    let Ok(mode) = std::env::var(MODE) else {
        return;
    };
    // Read before this probe opens any socket of its own.
    println!("probe: sockets_before={}", sockets_in_use());
    println!("probe: lo_packets={}", lo_packets());
    println!("probe: cookie={}", netns_cookie());
    match mode.as_str() {
        "look" => println!("probe: lo_down={}", lo_down()),
        "occupy" => {
            let held = occupy();
            // A child that keeps the sockets open after this process ends:
            // the sandbox's end must take them down with it.
            let keeper = std::process::Command::new("/bin/sleep")
                .arg("60")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("starting a process that keeps the sockets");
            std::mem::forget(keeper);
            std::mem::forget(held);
            println!("probe: occupied=yes");
        }
        "claim" => {
            let held = occupy();
            drop(held);
            println!("probe: claimed=yes");
        }
        "send" => {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("binding a UDP socket");
            s.send_to(b"x", ("127.0.0.1", PORT + 1))
                .expect("sending one datagram");
            println!("probe: sent=yes");
        }
        other => panic!("unknown probe mode {other}"),
    }
}

/// Binds the probes' TCP port (listening), UDP port and abstract unix
/// socket, all inheritable, and returns them.
fn occupy() -> Vec<std::os::fd::OwnedFd> {
    use std::os::linux::net::SocketAddrExt;
    let tcp = std::net::TcpListener::bind(("127.0.0.1", PORT)).expect("binding the TCP port");
    let udp = std::net::UdpSocket::bind(("127.0.0.1", PORT)).expect("binding the UDP port");
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(ABSTRACT).expect("an address");
    let unix =
        std::os::unix::net::UnixListener::bind_addr(&addr).expect("binding the abstract socket");
    let fds: Vec<std::os::fd::OwnedFd> = vec![tcp.into(), udp.into(), unix.into()];
    for fd in &fds {
        // Inherited by the keeper.
        keep_across_exec(fd);
    }
    fds
}

fn keep_across_exec(fd: &std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    // SAFETY: F_SETFD on an open descriptor of ours, with plain flags.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) };
}

/// `sockets: used N` of this network namespace.
fn sockets_in_use() -> String {
    let text = std::fs::read_to_string("/proc/net/sockstat").expect("reading sockstat");
    let line = text.lines().next().unwrap_or_default();
    line.rsplit(' ').next().unwrap_or_default().to_string()
}

/// Packets received and sent on `lo`, added.
fn lo_packets() -> u64 {
    let text = std::fs::read_to_string("/proc/net/dev").expect("reading /proc/net/dev");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("lo:"))
        .expect("no lo in /proc/net/dev");
    let n: Vec<u64> = line
        .split_once(':')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    // Fields: rx bytes, rx packets, ... (8 of them), tx bytes, tx packets.
    n[1] + n[9]
}

/// The network namespace's cookie (`SO_NETNS_COOKIE`): unique for the
/// machine's uptime, never reused, unlike the namespace's inode number.
fn netns_cookie() -> u64 {
    use std::os::fd::AsRawFd;
    const SO_NETNS_COOKIE: libc::c_int = 71;
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("a socket for the cookie");
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cookie`.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    assert_eq!(
        rc,
        0,
        "SO_NETNS_COOKIE: {}",
        std::io::Error::last_os_error()
    );
    cookie
}

/// Tries to take `lo` down: `refused` unless the sandbox has power over its
/// network namespace (harmless even then: this sandbox's own namespace).
fn lo_down() -> &'static str {
    use std::os::fd::AsRawFd;
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("a socket for ioctl");
    // SAFETY: `ifreq` is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, b) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *b as libc::c_char;
    }
    // SAFETY: SIOCSIFFLAGS reads `req`, which lives for the call; flags 0
    // would take the interface down.
    let rc = unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
    if rc == 0 {
        "done"
    } else {
        "refused"
    }
}
