//! Registry pulls against a real registry: Debian's docker-registry on
//! 127.0.0.1:5000 (started by scripts/setup.d/30-registry.sh), fed by
//! skopeo from a busybox archive built here.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use cleanroom_image::Store;
use common::{busybox_rootfs, docker_save_old, tar_dir, tar_of};

const REGISTRY: &str = "127.0.0.1:5000";

/// Fails (never skips) when the registry or skopeo is missing.
fn require_registry() {
    let hint = "run `sudo scripts/setup.d/30-registry.sh` (installs docker-registry and skopeo, starts a registry on 127.0.0.1:5000)";
    let ok = std::net::TcpStream::connect(REGISTRY).and_then(|mut s| {
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
        s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut r = String::new();
        s.read_to_string(&mut r)?;
        Ok(r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200"))
    });
    assert!(
        matches!(ok, Ok(true)),
        "no OCI registry answers on http://{REGISTRY}/v2/ ({ok:?}); {hint}"
    );
    assert!(
        Command::new("skopeo")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "skopeo is not installed; {hint}"
    );
}

fn unique(prefix: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{t}", std::process::id())
}

/// Builds a busybox image archive (with `marker` in /etc/marker) and pushes it as `repo:tag`
/// to the shared registry.
fn push_busybox(tmp: &Path, repo: &str, tag: &str, marker: &str) -> PathBuf {
    push_busybox_to(tmp, REGISTRY, None, repo, tag, marker)
}

/// [`push_busybox`] to the registry at `addr`, logging in with `creds`
/// (`user:password`) when given.
fn push_busybox_to(
    tmp: &Path,
    addr: &str,
    creds: Option<&str>,
    repo: &str,
    tag: &str,
    marker: &str,
) -> PathBuf {
    let rootfs = tmp.join(format!("rootfs-{tag}"));
    busybox_rootfs(&rootfs);
    fs::write(rootfs.join("etc/marker"), marker).unwrap();
    let layer = tar_dir(&rootfs);
    let archive = tmp.join(format!("{tag}.tar"));
    fs::write(
        &archive,
        tar_of(&docker_save_old(&[layer], &[&format!("{repo}:{tag}")])),
    )
    .unwrap();
    let mut skopeo = Command::new("skopeo");
    skopeo.args([
        "--insecure-policy",
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
    ]);
    if let Some(creds) = creds {
        skopeo.args(["--dest-creds", creds]);
    }
    let out = skopeo
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(format!("docker://{addr}/{repo}:{tag}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    rootfs
}

#[test]
fn pull_from_the_local_registry() {
    require_registry();
    let tmp = tempfile::tempdir().unwrap();
    let tag = unique("pull");
    let rootfs = push_busybox(tmp.path(), "cleanroom-test/busybox", &tag, &tag);
    let store = Store::open(tmp.path().join("store")).unwrap();
    let reference = format!("{REGISTRY}/cleanroom-test/busybox:{tag}");
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let info = store
        .pull(&reference, &|_p| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .unwrap();
    assert_eq!(info.reference, reference);
    assert!(calls.into_inner() > 0, "progress was reported");
    let img = store.resolve(&reference).unwrap();
    let root = store.rootfs_dir(&img).unwrap();
    assert_eq!(fs::read(root.join("etc/marker")).unwrap(), tag.as_bytes());
    assert_eq!(
        fs::read(root.join("bin/busybox")).unwrap(),
        fs::read(rootfs.join("bin/busybox")).unwrap()
    );
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let out = Command::new(root.join("bin/busybox"))
        .args(["cat"])
        .arg(root.join("etc/os-release"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), common::OS_RELEASE);

    // Pinned by digest, a second pull stores under a digest-derived name and shares every blob.
    let pinned = format!("docker://{REGISTRY}/cleanroom-test/busybox@{}", info.digest);
    let again = store.import(&pinned, None).unwrap();
    assert_eq!(again.digest, info.digest);
    assert!(again.reference.contains("sha256-"), "{}", again.reference);
    assert!(store.verify(false).unwrap().is_ok());
}

#[test]
fn pulls_that_fail_store_nothing() {
    require_registry();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let blobs = || {
        store
            .root()
            .join("blobs/sha256")
            .read_dir()
            .unwrap()
            .count()
    };

    // An unknown tag and an unknown digest: the registry refuses.
    let e = store
        .pull(
            &format!("{REGISTRY}/cleanroom-test/none:{}", unique("missing")),
            &|_| {},
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("refused or failed") && e.contains(REGISTRY),
        "{e}"
    );
    let tag = unique("wrongdigest");
    push_busybox(tmp.path(), "cleanroom-test/busybox", &tag, &tag);
    let bogus = cleanroom_image::Digest::of(b"not this manifest");
    let e = store
        .pull(
            &format!("{REGISTRY}/cleanroom-test/busybox@{bogus}"),
            &|_| {},
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&bogus.to_string()) || e.contains("refused"),
        "{e}"
    );
    assert!(store.list().unwrap().is_empty());
    assert_eq!(blobs(), 0);
}

#[test]
fn a_blob_that_does_not_match_its_digest_fails_the_pull_and_stores_nothing() {
    require_registry();
    let storage = PathBuf::from(
        std::env::var("CLEANROOM_TEST_REGISTRY_STORAGE")
            .unwrap_or_else(|_| "/var/tmp/cleanroom-registry/data".into()),
    );
    let blob_root = storage.join("docker/registry/v2/blobs/sha256");
    let tmp = tempfile::tempdir().unwrap();
    let tag = unique("corrupt");
    push_busybox(tmp.path(), "cleanroom-test/corrupt", &tag, &tag);
    assert!(
        blob_root.is_dir(),
        "the registry's storage is not at {} (set CLEANROOM_TEST_REGISTRY_STORAGE to the filesystem root of the registry on {REGISTRY})",
        blob_root.display()
    );
    // Find the layer blob the registry holds for this push: the manifest names it.
    let store = Store::open(tmp.path().join("probe")).unwrap();
    let reference = format!("{REGISTRY}/cleanroom-test/corrupt:{tag}");
    store.pull(&reference, &|_| {}).unwrap();
    let layer = store.resolve(&reference).unwrap().layers[0].digest.clone();
    let data = blob_root
        .join(&layer.hex()[..2])
        .join(layer.hex())
        .join("data");
    let mut bytes = fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&data, &bytes).unwrap();

    let fresh = Store::open(tmp.path().join("fresh")).unwrap();
    let e = fresh.pull(&reference, &|_| {}).unwrap_err().to_string();
    // Put the blob back for anyone else pulling it.
    bytes[mid] ^= 0xff;
    fs::write(&data, &bytes).unwrap();
    assert!(
        e.contains(&layer.to_string()) || e.to_lowercase().contains("digest"),
        "{e}"
    );
    assert!(fresh.list().unwrap().is_empty());
    assert_eq!(
        fresh
            .root()
            .join("blobs/sha256")
            .read_dir()
            .unwrap()
            .count(),
        0,
        "nothing stored"
    );
}

/// A registry of this test's own that demands a password (htpasswd).
struct AuthRegistry {
    child: std::process::Child,
    addr: String,
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_auth_registry(dir: &Path, user: &str, password: &str) -> AuthRegistry {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let hash = bcrypt::hash(password, 5).unwrap();
    fs::write(dir.join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {data}\nhttp:\n  addr: {addr}\nauth:\n  htpasswd:\n    realm: cleanroom-test\n    path: {ht}\n",
        data = dir.join("data").display(),
        ht = dir.join("htpasswd").display()
    );
    fs::write(dir.join("config.yml"), config).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(dir.join("registry.log")).unwrap())
        .spawn()
        .expect("docker-registry is not installed; run scripts/setup.d/30-registry.sh");
    let reg = AuthRegistry { child, addr };
    for _ in 0..100 {
        if std::net::TcpStream::connect(&reg.addr).is_ok() {
            return reg;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!(
        "the password-protected registry did not start: {}",
        fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
    );
}

#[test]
fn basic_auth_registry_needs_the_right_credentials() {
    require_registry();
    let tmp = tempfile::tempdir().unwrap();
    let reg_dir = tmp.path().join("reg");
    fs::create_dir(&reg_dir).unwrap();
    let reg = start_auth_registry(&reg_dir, "tester", "s3cret");
    let tag = unique("auth");
    push_busybox_to(
        tmp.path(),
        &reg.addr,
        Some("tester:s3cret"),
        "auth/busybox",
        &tag,
        "auth",
    );

    let store = Store::open(tmp.path().join("store")).unwrap();
    let reference = format!("{}/auth/busybox:{tag}", reg.addr);
    let e = store
        .pull_with(
            &reference,
            &cleanroom_image::Credentials::Anonymous,
            &|_| {},
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("refused or failed"), "{e}");
    let wrong = cleanroom_image::Credentials::Basic {
        user: "tester".into(),
        password: "nope".into(),
    };
    assert!(store.pull_with(&reference, &wrong, &|_| {}).is_err());
    assert!(store.list().unwrap().is_empty());
    let right = cleanroom_image::Credentials::Basic {
        user: "tester".into(),
        password: "s3cret".into(),
    };
    let info = store.pull_with(&reference, &right, &|_| {}).unwrap();
    let root = store
        .rootfs_dir(&store.resolve(&info.reference).unwrap())
        .unwrap();
    assert_eq!(
        fs::read_to_string(root.join("etc/os-release")).unwrap(),
        common::OS_RELEASE
    );
}
