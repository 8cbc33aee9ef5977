//! Root filesystems: a directory, a tarball (unpacked once into the cache)
//! and an image from the store, read-only by default and writable (with
//! changes discarded) on request.

mod native_common;

use std::path::PathBuf;
use std::sync::OnceLock;

use cleanroom_core::{Backend, Cmd, RootFs, SandboxSpec, User};
use cleanroom_native::NativeBackend;
use native_common::{busybox_rootfs, busybox_tarball};

/// One CLEANROOM_HOME for the whole test process (image store, tar cache).
fn home() -> &'static PathBuf {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let h = std::env::temp_dir().join(format!("cleanroom-native-home-{}", std::process::id()));
        std::fs::create_dir_all(&h).unwrap();
        std::env::set_var("CLEANROOM_HOME", &h);
        h
    })
}

async fn check_busybox_root(rootfs: RootFs) {
    home();
    let spec = SandboxSpec::with_rootfs(rootfs.clone());
    let r = NativeBackend::new()
        .run(
            &spec,
            Cmd::shell("cat /etc/marker; id -u; test -e /usr/bin/env && echo HOST-USR; touch /x"),
        )
        .await
        .unwrap_or_else(|e| panic!("{rootfs}: {e}"));
    assert_eq!(
        r.stdout_lossy(),
        "busybox-rootfs\n1000\n",
        "{rootfs}: {}",
        r.stderr_lossy()
    );
    assert!(
        r.stderr_lossy().contains("Read-only file system"),
        "{rootfs}: root not read-only: {}",
        r.stderr_lossy()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn directory_rootfs() {
    check_busybox_root(RootFs::Dir(busybox_rootfs().to_path_buf())).await;
}

/// A plain and a zstd-compressed tarball each run, and each is unpacked
/// once (one test, so that no other test adds to the cache meanwhile).
#[tokio::test(flavor = "multi_thread")]
async fn tarball_rootfs_is_unpacked_once() {
    let tar = busybox_tarball();
    check_busybox_root(RootFs::Tar(tar.clone())).await;
    check_busybox_root(RootFs::Tar(tar.clone())).await;
    let zst = tar.with_file_name("root.tar.zst");
    let packed = zstd::encode_all(std::fs::File::open(&tar).unwrap(), 3).unwrap();
    std::fs::write(&zst, packed).unwrap();
    check_busybox_root(RootFs::Tar(zst.clone())).await;
    check_busybox_root(RootFs::Tar(zst)).await;
    let cache = home().join("cache/native-tar");
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        entries.len(),
        2,
        "one cache entry per tarball expected: {entries:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn image_rootfs_from_the_store() {
    home();
    let store = cleanroom_image::Store::open_default().unwrap();
    store
        .import(
            &format!("file://{}", busybox_rootfs().display()),
            Some("cleanroom-native-test/busybox:1"),
        )
        .unwrap();
    check_busybox_root(RootFs::Image("cleanroom-native-test/busybox:1".into())).await;
    let r = NativeBackend::new()
        .run(
            &SandboxSpec::with_rootfs(RootFs::Image("no-such-image:1".into())),
            Cmd::new("true"),
        )
        .await;
    assert!(r.is_err(), "a missing image must be an error");
}

#[tokio::test(flavor = "multi_thread")]
async fn writable_rootfs_changes_are_discarded() {
    let root = busybox_rootfs();
    let spec = SandboxSpec {
        read_only_root: false,
        user: User::ROOT,
        ..SandboxSpec::with_rootfs(RootFs::Dir(root.to_path_buf()))
    };
    let r = NativeBackend::new()
        .run(
            &spec,
            Cmd::shell("echo changed > /etc/marker && echo new > /etc/new && cat /etc/marker /etc/new && rm /bin/cat && echo removed"),
        )
        .await
        .unwrap();
    assert_eq!(
        r.stdout_lossy(),
        "changed\nnew\nremoved\n",
        "{}",
        r.stderr_lossy()
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/marker")).unwrap(),
        "busybox-rootfs\n"
    );
    assert!(!root.join("etc/new").exists());
    assert!(root.join("bin/cat").symlink_metadata().is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_targets_resolve_inside_the_root() {
    let root = busybox_rootfs();
    // Symlinks in the rootfs: an absolute one resolves inside the new
    // root; one climbing above the root is refused.
    let inside = root.join("abs-link");
    let outside = root.join("escape-link");
    let _ = std::os::unix::fs::symlink("/etc", &inside);
    let _ = std::os::unix::fs::symlink("../../../../../../etc", &outside);
    let data = std::env::temp_dir().join(format!("cleanroom-native-mnt-{}", std::process::id()));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("f"), "mounted\n").unwrap();
    let backend = NativeBackend::new();

    let mut spec = SandboxSpec::with_rootfs(RootFs::Dir(root.to_path_buf()));
    spec.mounts
        .push(cleanroom_core::Mount::read_only(&data, "/abs-link/inside"));
    let r = backend
        .run(&spec, Cmd::shell("cat /etc/inside/f"))
        .await
        .unwrap();
    assert_eq!(r.stdout_lossy(), "mounted\n", "{}", r.stderr_lossy());
    assert!(
        !std::path::Path::new("/etc/inside").exists(),
        "mounted on the host's /etc"
    );

    spec.mounts[0].target = "/escape-link/inside".into();
    let err = backend
        .run(&spec, Cmd::new("true"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("escapes"), "{err}");

    let _ = std::fs::remove_file(&inside);
    let _ = std::fs::remove_file(&outside);
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread")]
async fn host_rootfs_has_os_release() {
    // Test files (clnrm's among them) read /etc/os-release to learn what
    // they run on: the host rootfs's generated /etc carries the host's.
    let host = ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_else(|| "NAME=Linux\nID=linux\nPRETTY_NAME=\"Linux\"\n".to_string());
    let r = NativeBackend::new()
        .run(
            &SandboxSpec::with_rootfs(RootFs::Host),
            Cmd::from(["cat", "/etc/os-release"]),
        )
        .await
        .unwrap();
    assert_eq!(r.exit_code, 0, "{}", r.stderr_lossy());
    assert_eq!(r.stdout_lossy(), host);
}

/// A read-only root that has every mount point the sandbox needs is bound
/// read-only as it is, without the overlay and its tmpfs layer; one that
/// lacks a mount point (here a mount's target) still gets the layer. Either
/// way the root stays read-only and the host directory unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn read_only_root_with_its_mount_points_is_bound_as_it_is() {
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    for d in ["bin", "etc", "proc", "dev", "tmp", "workdir"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(
        busybox_rootfs().join("bin/busybox"),
        root.join("bin/busybox"),
    )
    .unwrap();
    for applet in ["sh", "awk", "touch", "cat"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let listing = |dir: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = listing(&root);
    // The root's filesystem type, a write to it, and one to the workdir.
    let probe = Cmd::shell(
        "awk '$5 == \"/\" { for (i = 6; i <= NF; i++) if ($i == \"-\") print $(i + 1) }' \
         /proc/self/mountinfo; touch /x; echo ok > /workdir/f && cat /workdir/f",
    );
    let spec = SandboxSpec::with_rootfs(RootFs::Dir(root.clone()));
    let r = NativeBackend::new()
        .run(&spec, probe.clone())
        .await
        .unwrap();
    let out = r.stdout_lossy();
    let mut lines = out.lines();
    let fs = lines.next().unwrap_or_default().to_string();
    assert!(!fs.is_empty() && fs != "overlay", "root fs {fs:?}: {out}");
    assert_eq!(lines.collect::<Vec<_>>(), ["ok"], "{}", r.stderr_lossy());
    assert!(r.stderr_lossy().contains("Read-only file system"));

    let data = tempfile::tempdir().unwrap();
    let mut spec = spec;
    spec.mounts
        .push(cleanroom_core::Mount::read_only(data.path(), "/data"));
    let r = NativeBackend::new().run(&spec, probe).await.unwrap();
    assert_eq!(
        r.stdout_lossy(),
        "overlay\nok\n",
        "a missing mount point needs the layer: {}",
        r.stderr_lossy()
    );
    assert!(r.stderr_lossy().contains("Read-only file system"));
    assert_eq!(listing(&root), before, "the host directory changed");
}
