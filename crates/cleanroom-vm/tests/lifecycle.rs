//! A VM dies with its caller: SIGKILL the caller and no QEMU and no file
//! is left; `gc` removes the files of a caller killed while its VM booted.

mod vm_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cleanroom_core::{Backend, Cmd, SandboxSpec};
use cleanroom_vm::VmBackend;

const ROLE: &str = "CLEANROOM_VM_TEST_CALLER";

/// Not a test on its own: the caller process `sigkill_leaves_no_qemu`
/// starts (with ROLE set) and kills while its VM runs.
#[test]
fn caller_role() {
    if std::env::var_os(ROLE).is_none() {
        return;
    }
    vm_common::setup();
    let r = vm_common::block_on(
        VmBackend::new().run(&SandboxSpec::default(), Cmd::new("sleep").arg("600")),
    );
    panic!("the caller's run ended before it was killed: {r:?}");
}

/// QEMU processes whose command line names `dir`.
fn qemus_in(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            cmdline.contains("qemu-system") && cmdline.contains(&needle)
        })
        .collect()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sigkill_leaves_no_qemu() {
    vm_common::setup();
    let mut caller = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "caller_role", "--nocapture"])
        .env(ROLE, "1")
        .env(
            "CLEANROOM_VM_AGENT",
            std::env::var_os("CLEANROOM_VM_AGENT").unwrap(),
        )
        .spawn()
        .unwrap();
    let dir: PathBuf = cleanroom_vm::vm::runs_root().join(format!("{}-0", caller.id()));
    // Its run directory goes once QEMU has connected to the agent socket
    // (QEMU keeps its files open); from then on nothing but QEMU is left.
    wait_for(
        "the caller's QEMU to start",
        Duration::from_secs(300),
        || !qemus_in(&dir).is_empty(),
    );
    wait_for("QEMU to connect", Duration::from_secs(300), || {
        !dir.exists()
    });
    let qemus = qemus_in(&dir);
    assert!(!qemus.is_empty(), "QEMU ended before its caller was killed");
    caller.kill().unwrap(); // SIGKILL
    caller.wait().unwrap();
    wait_for(
        "QEMU to die with its caller",
        Duration::from_secs(10),
        || {
            qemus
                .iter()
                .all(|p| !Path::new(&format!("/proc/{p}")).exists() || is_zombie(*p))
        },
    );
}

/// A VM's files exist only until QEMU connects; a caller killed then
/// leaves them, and `gc` removes them (never a live owner's).
#[test]
fn gc_removes_a_dead_owners_vm_files() {
    let root = cleanroom_vm::vm::runs_root();
    std::fs::create_dir_all(&root).unwrap();
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let dead_dir = root.join(format!("{dead}-0"));
    let live_dir = root.join(format!("{}-999999", std::process::id()));
    for (dir, owner) in [(&dead_dir, dead), (&live_dir, std::process::id())] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(cleanroom_vm::vm::OWNER_FILE), owner.to_string()).unwrap();
        std::fs::write(dir.join("console.log"), "boot").unwrap();
    }
    let removed = vm_common::block_on(VmBackend::new().gc()).unwrap();
    assert!(!dead_dir.exists(), "gc left {}", dead_dir.display());
    assert!(live_dir.exists(), "gc removed a live owner's files");
    assert!(
        removed
            .iter()
            .any(|r| r.to_string().contains(&*dead_dir.to_string_lossy())),
        "{removed:?}"
    );
    std::fs::remove_dir_all(&live_dir).unwrap();
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

/// A long-lived sandbox in its own VM: its main process's logs, state kept
/// between execs, copies both ways, stop and remove (after which it is gone).
#[test]
fn long_lived_sandbox_in_a_vm() {
    vm_common::setup();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in.txt"), b"copied-in").unwrap();
    vm_common::block_on(async {
        let sb = VmBackend::new()
            .create(
                &SandboxSpec::default(),
                Some(Cmd::shell("echo main-up; exec sleep 1000")),
            )
            .await
            .unwrap();
        assert_eq!(sb.backend(), "vm");
        let r = sb
            .exec(Cmd::shell("echo kept > state; uname -r"))
            .await
            .unwrap();
        assert!(r.success(), "{r:?}");
        let r = sb.exec(Cmd::new("cat").arg("state")).await.unwrap();
        assert_eq!(r.stdout, b"kept\n");
        sb.copy_in(
            &host.path().join("in.txt"),
            std::path::Path::new("/workdir/in.txt"),
        )
        .await
        .unwrap();
        let r = sb
            .exec(Cmd::shell("cat in.txt; printf made > out.txt"))
            .await
            .unwrap();
        assert_eq!(r.stdout, b"copied-in");
        let out = host.path().join("out.txt");
        sb.copy_out(std::path::Path::new("/workdir/out.txt"), &out)
            .await
            .unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"made");
        let logs = sb.logs().await.unwrap();
        assert_eq!(logs.stdout, b"main-up\n");
        sb.stop().await.unwrap();
        sb.remove().await.unwrap();
        sb.remove().await.unwrap();
        assert!(sb.exec(Cmd::new("true")).await.is_err());
    });
}
