//! The user mapping: a root caller's sandbox is never host root unless the
//! identity mapping is asked for by name; what it writes through a
//! read-write mount lands owned by the caller; the report says which
//! mapping a run had. As an unprivileged caller, the sandbox is the caller.

mod native_common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use cleanroom_core::{Backend, Cmd, Mount, RootFs, RunResult, SandboxSpec, User, UserNs};
use cleanroom_native::NativeBackend;

fn caller() -> (u32, u32) {
    (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    )
}

async fn run(spec: &SandboxSpec, script: &str) -> RunResult {
    let r = NativeBackend::new()
        .run(spec, Cmd::shell(script).timeout(Duration::from_secs(30)))
        .await
        .unwrap_or_else(|e| panic!("`{script}`: {e}"));
    assert_eq!(
        r.exit_code,
        0,
        "`{script}`: {} stdout={:?} stderr={:?}",
        r.status_line(),
        r.stdout_lossy(),
        r.stderr_lossy()
    );
    r
}

/// The host id the first line of a `/proc/self/uid_map` maps inside id 0
/// (or the sandbox's only id) to.
fn mapped_host_id(map: &str) -> u64 {
    map.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable map {map:?}"))
}

fn report(r: &RunResult) -> String {
    r.enforcement
        .user_mapping
        .clone()
        .expect("the report says which user mapping the run had")
}

#[tokio::test(flavor = "multi_thread")]
async fn uid_0_inside_is_not_host_root_and_rw_mounts_land_as_the_caller() {
    let (uid, gid) = caller();
    // A host directory only its owner (the caller) may enter.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let spec = SandboxSpec {
        user: User::ROOT,
        mounts: vec![Mount::read_write(dir.path(), "/out")],
        ..SandboxSpec::default()
    };
    let r = run(
        &spec,
        "cat /proc/self/uid_map; echo written > /out/file; id -u",
    )
    .await;
    let out = r.stdout_lossy();
    let host = mapped_host_id(&out);
    let words = report(&r);
    if uid == 0 {
        assert_ne!(host, 0, "uid 0 inside is host root: {out} ({words})");
        assert!(!words.contains("identity"), "{words}");
    } else {
        assert_eq!(
            host,
            u64::from(uid),
            "rootless: the caller's own uid: {out}"
        );
    }
    let meta = std::fs::metadata(dir.path().join("file")).unwrap();
    if uid != 0 || words.contains("mounts idmapped") {
        assert_eq!(
            (meta.uid(), meta.gid()),
            (uid, gid),
            "a file written through a read-write mount is the caller's: {words}"
        );
    } else {
        // No idmapped mounts here: the report says so, and the file is the
        // sandbox's unprivileged host user's, never root's.
        assert!(words.contains("not idmapped"), "{words}");
        assert_ne!(meta.uid(), 0, "{words}");
    }
    eprintln!("mapping: {words}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_identity_mapping_only_when_asked_for_by_name() {
    let (uid, _) = caller();
    let spec = SandboxSpec {
        user: User::ROOT,
        userns: UserNs::Identity,
        ..SandboxSpec::default()
    };
    let r = run(&spec, "cat /proc/self/uid_map").await;
    let out = r.stdout_lossy();
    assert_eq!(mapped_host_id(&out), u64::from(uid), "{out}");
    let words = report(&r);
    if uid != 0 {
        // Rootless, both are the caller's own ids.
        return;
    }
    assert!(words.contains("host root (identity mapping"), "{words}");
    let auto = run(
        &SandboxSpec {
            user: User::ROOT,
            ..SandboxSpec::default()
        },
        "cat /proc/self/uid_map",
    )
    .await;
    assert_ne!(report(&auto), words, "auto and identity read differently");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_rootfs_keeps_its_owners_and_stays_readable() {
    let (uid, _) = caller();
    // The rootfs sits below a directory only the caller may enter, as an
    // image store in a root-owned 0700 $CLEANROOM_HOME does.
    let private = tempfile::tempdir().unwrap();
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let rootfs = private.path().join("root");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(native_common::busybox_rootfs())
        .arg(&rootfs)
        .status()
        .unwrap();
    assert!(copied.success());
    let spec = SandboxSpec {
        user: User::ROOT,
        ..SandboxSpec::with_rootfs(RootFs::Dir(rootfs))
    };
    let r = run(&spec, "cat /etc/marker; stat -c %u /bin/busybox").await;
    let out = r.stdout_lossy();
    assert!(out.starts_with("busybox-rootfs\n"), "{out}");
    let words = report(&r);
    if uid == 0 && !words.contains("not idmapped") {
        // Files the caller owns on disk show as the image's root inside.
        assert_eq!(out.lines().nth(1), Some("0"), "{out} ({words})");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_outside_the_subordinate_range_is_refused_before_running() {
    let words = NativeBackend::new()
        .enforcement(&SandboxSpec::default())
        .user_mapping
        .unwrap_or_default();
    if !words.contains("subordinate ids") {
        eprintln!("no subordinate range here: {words}");
        return;
    }
    let spec = SandboxSpec {
        user: User {
            uid: 70000,
            gid: 70000,
        },
        ..SandboxSpec::default()
    };
    let err = NativeBackend::new()
        .run(&spec, Cmd::new("true"))
        .await
        .expect_err("uid 70000 cannot be mapped");
    assert!(err.to_string().contains("--userns identity"), "{err}");
}
