//! Named VMs across processes: a VM made by a process that then exits
//! still runs and answers a later process; killing its QEMU makes it dead
//! in `list(all)`, and `gc` removes its files; `remove` kills QEMU. Boots
//! one VM, so it runs in CI's slow phase (scripts/check.d/70-vm-conformance.sh).

mod vm_common;

use std::time::Duration;

use cleanroom_core::{Backend, Cmd, DetachOptions, SandboxSpec, SandboxState};
use cleanroom_vm::VmBackend;

const HELPER_VAR: &str = "CLEANROOM_VM_TEST_CREATE";
const FLOOD_VAR: &str = "CLEANROOM_VM_TEST_FLOOD";

/// Run by [`outlives_its_creator`] in a child process that it kills while
/// the VM still sends this command's output.
#[test]
fn helper_flood() {
    let Ok(name) = std::env::var(FLOOD_VAR) else {
        return;
    };
    vm_common::setup();
    vm_common::block_on(async {
        let sb = VmBackend::new().attach(&name).await.unwrap().unwrap();
        let _ = sb
            .exec(
                Cmd::new("sh")
                    .arg("-c")
                    .arg("yes 0123456789 | head -c 300000000"),
                None,
            )
            .await;
    });
}

/// Run by [`outlives_its_creator`] in a child process: creates the VM
/// named in the variable, then the process exits.
#[test]
fn helper_create() {
    let Ok(name) = std::env::var(HELPER_VAR) else {
        return;
    };
    vm_common::setup();
    vm_common::block_on(async {
        let sb = VmBackend::new()
            .create_detached(
                &SandboxSpec::default(),
                None,
                DetachOptions {
                    name,
                    labels: Default::default(),
                },
            )
            .await
            .unwrap_or_else(|e| panic!("create: {e}"));
        let r = sb
            .exec(Cmd::new("sh").arg("-c").arg("echo kept > /tmp/mark"), None)
            .await
            .unwrap();
        assert!(r.success(), "{r:?}");
    });
}

fn qemu_pid(id: &str) -> u32 {
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{id}/record.json")).unwrap()).unwrap();
    record["qemu_pid"].as_u64().unwrap() as u32
}

#[test]
fn outlives_its_creator() {
    vm_common::setup();
    let name = format!("vmtest-{}", std::process::id());
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper_create", "--nocapture"])
        .env(HELPER_VAR, &name)
        .status()
        .unwrap();
    assert!(status.success(), "the creating process failed: {status}");
    let backend = VmBackend::new();
    vm_common::block_on(async {
        let sb = backend
            .attach(&name)
            .await
            .unwrap()
            .expect("a later process finds the VM");
        let r = sb
            .exec(Cmd::new("cat").arg("/tmp/mark"), None)
            .await
            .unwrap();
        assert_eq!(r.stdout, b"kept\n", "{r:?}");
        let listed = backend.list(false).await.unwrap();
        let me = listed.iter().find(|i| i.name == name).expect("listed");
        assert_eq!(me.state, SandboxState::Running);
        assert_eq!(me.backend, "vm");

        // Killed from outside: dead, and gc removes what is left.
        let pid = qemu_pid(&me.id);
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).unwrap(),
            rustix::process::Signal::KILL,
        )
        .unwrap();
        let mut state = None;
        for _ in 0..100 {
            let all = backend.list(true).await.unwrap();
            state = all.into_iter().find(|i| i.name == name).map(|i| i.state);
            if matches!(state, Some(SandboxState::Dead { .. })) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            matches!(state, Some(SandboxState::Dead { .. })),
            "after QEMU was killed: {state:?}"
        );
        let refused = sb.exec(Cmd::new("true"), None).await;
        assert!(refused.is_err(), "exec into a dead VM: {refused:?}");
        let removed = backend.gc().await.unwrap();
        assert!(
            removed.iter().any(|r| format!("{r:?}").contains(&name)),
            "gc: {removed:?}"
        );
        assert!(!std::path::Path::new(&me.id).exists(), "gc left {}", me.id);
        assert!(backend.attach(&name).await.unwrap().is_none());
    });
}

#[test]
fn remove_kills_qemu() {
    vm_common::setup();
    let name = format!("vmrm-{}", std::process::id());
    let backend = VmBackend::new();
    vm_common::block_on(async {
        let sb = backend
            .create_detached(
                &SandboxSpec::default(),
                None,
                DetachOptions {
                    name: name.clone(),
                    labels: Default::default(),
                },
            )
            .await
            .unwrap();
        let pid = qemu_pid(&sb.info().id);
        let refused = sb.remove(false).await.unwrap_err().to_string();
        assert!(refused.contains("is running"), "{refused}");
        sb.remove(true).await.unwrap();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty()
                || stat
                    .rsplit_once(')')
                    .unwrap()
                    .1
                    .trim_start()
                    .starts_with('Z'),
            "QEMU {pid} still runs after remove: {stat}"
        );
        assert!(!std::path::Path::new(&sb.info().id).exists());
    });
}
