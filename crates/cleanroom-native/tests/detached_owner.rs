//! Only the user who created a named sandbox can reach it (issue #13,
//! point 7), tested with two real users: root and an unprivileged one
//! (`cleanroom-rootless`, as the rootless check phases use, or
//! `$CLEANROOM_TEST_OTHER_USER`). Root's sandbox sits in a 0700 directory
//! the other user cannot enter; the user's sandbox's init refuses root's
//! connection by its peer credentials (root is not mapped inside it).
//!
//! Needs root (to act as the other user); as any other user it says so and
//! does nothing. The helpers marked `#[ignore]` run as the other user.

use std::path::{Path, PathBuf};
use std::process::Command;

use cleanroom_core::{Backend, Cmd, DetachOptions, SandboxSpec};
use cleanroom_native::client::Channel;
use cleanroom_native::NativeBackend;

fn options(name: &str) -> DetachOptions {
    DetachOptions {
        name: name.into(),
        labels: Default::default(),
    }
}

struct OtherUser {
    uid: String,
    gid: String,
    home: String,
    /// A world-readable copy of this test binary.
    bin: PathBuf,
    _dir: tempfile::TempDir,
}

fn id(flag: &str, user: &str) -> Option<String> {
    let out = Command::new("id").args([flag, user]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn other_user() -> OtherUser {
    let user =
        std::env::var("CLEANROOM_TEST_OTHER_USER").unwrap_or_else(|_| "cleanroom-rootless".into());
    if id("-u", &user).is_none() {
        // The same account the rootless check phases create.
        let home = format!("/var/lib/{user}");
        let made = Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--create-home",
                "--home-dir",
                &home,
            ])
            .args(["--shell", "/usr/sbin/nologin", &user])
            .status()
            .expect("running useradd");
        assert!(made.success(), "could not create the test user {user}");
    }
    let passwd = Command::new("getent")
        .args(["passwd", &user])
        .output()
        .unwrap();
    let home = String::from_utf8_lossy(&passwd.stdout)
        .trim()
        .split(':')
        .nth(5)
        .unwrap_or("/")
        .to_string();
    let dir = tempfile::Builder::new()
        .prefix("cleanroom-owner-test-")
        .tempdir()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("detached_owner");
    std::fs::copy(std::env::current_exe().unwrap(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    OtherUser {
        uid: id("-u", &user).unwrap(),
        gid: id("-g", &user).unwrap(),
        home,
        bin,
        _dir: dir,
    }
}

impl OtherUser {
    /// Runs helper `helper` of this binary as the other user.
    fn run(&self, helper: &str, env: &[(&str, &str)]) -> String {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid", &self.uid, "--regid", &self.gid, "--clear-groups"])
            .args([
                "--inh-caps=-all",
                "env",
                "-i",
                "PATH=/usr/local/bin:/usr/bin:/bin",
            ])
            .arg(format!("HOME={}", self.home))
            .arg("TMPDIR=/tmp");
        for (k, v) in env {
            cmd.arg(format!("{k}={v}"));
        }
        cmd.arg(&self.bin)
            .args([
                "--ignored",
                "--exact",
                helper,
                "--nocapture",
                "--test-threads=1",
            ])
            .current_dir("/");
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "{helper} as uid {} failed:\n{text}",
            self.uid
        );
        text
    }
}

/// The value after `KEY=` on a line of `text`.
fn value<'a>(text: &'a str, key: &str) -> &'a str {
    // The test harness may print its "test NAME ... " before it.
    text.lines()
        .find_map(|l| l.split_once(&format!("{key}=")).map(|(_, v)| v))
        .unwrap_or_else(|| panic!("no {key}= in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_owner_reaches_a_sandbox() {
    if !rustix::process::geteuid().is_root() {
        eprintln!(
            "only_the_owner_reaches_a_sandbox: needs root to act as two users; nothing tested"
        );
        return;
    }
    let other = other_user();
    let name = format!("owner-{}", std::process::id());

    // Root's sandbox: the other user can neither find it by name nor
    // reach its socket or logs by path.
    let mine = NativeBackend::new()
        .create_detached(&SandboxSpec::default(), None, options(&name))
        .await
        .unwrap();
    let dir = PathBuf::from(&mine.info().id);
    let text = other.run(
        "helper_reach_foreign",
        &[
            ("CLEANROOM_TEST_SANDBOX", &name),
            ("CLEANROOM_TEST_DIR", dir.to_str().unwrap()),
        ],
    );
    assert_eq!(value(&text, "ATTACH"), "none", "{text}");
    assert!(
        value(&text, "CONNECT").contains("ermission denied"),
        "{text}"
    );
    assert!(value(&text, "LOG").contains("ermission denied"), "{text}");
    // Untouched: it still runs and answers its owner.
    let r = mine.exec(Cmd::new("true"), None).await.unwrap();
    assert_eq!(r.exit_code, 0);
    mine.remove(true).await.unwrap();

    // The other user's sandbox outlives the process that made it, and its
    // init refuses root: root is not the uid it serves.
    let text = other.run("helper_create_own", &[("CLEANROOM_TEST_SANDBOX", &name)]);
    let socket = value(&text, "SOCKET").to_string();
    assert!(Path::new(&socket).exists(), "{text}");
    let e = Channel::connect_path(Path::new(&socket), &name)
        .await
        .err()
        .expect("root's connection is refused")
        .to_string();
    assert!(e.contains("belongs to another user"), "{e}");
    // Root's own namespace of names does not hold it.
    assert!(NativeBackend::new().attach(&name).await.unwrap().is_none());
    let text = other.run("helper_remove_own", &[("CLEANROOM_TEST_SANDBOX", &name)]);
    assert_eq!(value(&text, "REMOVED"), "yes", "{text}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by only_the_owner_reaches_a_sandbox as the other user"]
async fn helper_reach_foreign() {
    let name = std::env::var("CLEANROOM_TEST_SANDBOX").unwrap();
    let dir = PathBuf::from(std::env::var("CLEANROOM_TEST_DIR").unwrap());
    let attached = NativeBackend::new().attach(&name).await.unwrap();
    println!(
        "ATTACH={}",
        if attached.is_some() { "found" } else { "none" }
    );
    let connect = Channel::connect_path(&dir.join("control.sock"), &name).await;
    println!(
        "CONNECT={}",
        connect.err().map_or("connected".into(), |e| e.to_string())
    );
    let log = std::fs::read(dir.join("log.0"));
    println!("LOG={}", log.err().map_or("read".into(), |e| e.to_string()));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by only_the_owner_reaches_a_sandbox as the other user"]
async fn helper_create_own() {
    let name = std::env::var("CLEANROOM_TEST_SANDBOX").unwrap();
    let sb = NativeBackend::new()
        .create_detached(&SandboxSpec::default(), None, options(&name))
        .await
        .unwrap();
    let r = sb.exec(Cmd::new("true"), None).await.unwrap();
    assert_eq!(r.exit_code, 0);
    println!("SOCKET={}/control.sock", sb.info().id);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by only_the_owner_reaches_a_sandbox as the other user"]
async fn helper_remove_own() {
    let name = std::env::var("CLEANROOM_TEST_SANDBOX").unwrap();
    let sb = NativeBackend::new()
        .attach(&name)
        .await
        .unwrap()
        .expect("attach");
    // Still running after its creator exited.
    let r = sb.exec(Cmd::new("true"), None).await.unwrap();
    assert_eq!(r.exit_code, 0);
    sb.remove(true).await.unwrap();
    let gone = NativeBackend::new().attach(&name).await.unwrap().is_none();
    println!("REMOVED={}", if gone { "yes" } else { "no" });
}
