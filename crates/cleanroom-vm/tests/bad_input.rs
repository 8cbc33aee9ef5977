//! Bad input gets one line that says what to do: no QEMU, no kernel
//! fetched, a guest that does not boot in time. One test (its own binary),
//! since it changes the process's environment between cases.

mod vm_common;

use cleanroom_core::{Backend, Cmd, SandboxSpec};
use cleanroom_vm::VmBackend;

fn run_error() -> String {
    let e = vm_common::block_on(VmBackend::new().run(&SandboxSpec::default(), Cmd::new("true")))
        .expect_err("the run should fail")
        .to_string();
    assert!(!e.contains('\n'), "not one line: {e}");
    e
}

#[test]
fn missing_qemu_missing_kernel_and_slow_boot_say_what_to_do() {
    vm_common::setup();
    std::env::set_var("CLEANROOM_VM_ACCEL", "tcg");

    let path = std::env::var_os("PATH").unwrap();
    std::env::set_var("PATH", "/nonexistent");
    let e = run_error();
    std::env::set_var("PATH", &path);
    assert!(e.contains("qemu-system-x86_64 is not installed"), "{e}");
    assert!(e.contains("apt-get install qemu-system-x86"), "{e}");

    let empty = tempfile::tempdir().unwrap();
    std::env::set_var("CLEANROOM_HOME", empty.path());
    let e = run_error();
    std::env::remove_var("CLEANROOM_HOME");
    assert!(e.contains("no guest kernel has been fetched"), "{e}");
    assert!(e.contains("run `cleanroom vm setup`"), "{e}");

    std::env::set_var("CLEANROOM_VM_BOOT_TIMEOUT_MS", "300");
    let e = run_error();
    std::env::remove_var("CLEANROOM_VM_BOOT_TIMEOUT_MS");
    assert!(e.contains("did not boot to its agent within 300ms"), "{e}");
    assert!(e.contains("raise CLEANROOM_VM_BOOT_TIMEOUT_MS"), "{e}");
}
