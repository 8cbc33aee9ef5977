//! The escape class "the guest kernel is separate": PID 1 inside is our
//! agent, and loading a module or rebooting from a sandbox touches only the
//! guest (here it is refused there; the host's modules and boot are
//! checked unchanged either way). Every probe is harmless on a broken
//! sandbox: a module load without a module file, and a reboot that is at
//! worst the guest's.

mod vm_common;

use cleanroom_core::{Backend, Cmd, SandboxSpec, User};
use cleanroom_vm::VmBackend;

fn run(spec: &SandboxSpec, script: &str) -> cleanroom_core::RunResult {
    vm_common::setup();
    let r = vm_common::block_on(VmBackend::new().run(spec, Cmd::shell(script)))
        .unwrap_or_else(|e| panic!("`{script}` on vm: {e}"));
    assert_eq!(r.backend, "vm");
    r
}

fn host(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn pid1_is_our_agent_and_the_boot_is_the_guests() {
    let r = run(
        &SandboxSpec::default(),
        "tr '\\0' ' ' </proc/1/cmdline; echo; cat /proc/sys/kernel/random/boot_id; uname -r",
    );
    assert!(r.success(), "{r:?}");
    let out = r.stdout_lossy();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first().map(|l| l.trim()), Some("/init"), "{out}");
    assert_ne!(
        lines.get(1).map(|l| l.trim()),
        Some(host("/proc/sys/kernel/random/boot_id").trim()),
        "the guest reports the host's boot id"
    );
    assert_ne!(
        lines.get(2).map(|l| l.trim()),
        Some(rustix::system::uname().release().to_string_lossy().as_ref())
    );
}

#[test]
fn module_load_and_reboot_stay_in_the_guest() {
    // (A host kernel without module support has no /proc/modules.)
    let modules = || std::fs::read_to_string("/proc/modules").ok();
    let modules_before = modules();
    let boot_before = host("/proc/sys/kernel/random/boot_id");
    // As uid 0 inside: still no capability, so both are refused; even if
    // they were not, they would reach only the guest kernel.
    let spec = SandboxSpec {
        user: User { uid: 0, gid: 0 },
        ..SandboxSpec::default()
    };
    let r = run(
        &spec,
        "head -c 64 /dev/zero >/tmp/x.ko; insmod /tmp/x.ko 2>&1; echo insmod=$?; \
         reboot -f 2>&1; echo reboot=$?; echo alive",
    );
    let out = r.stdout_lossy();
    assert!(out.contains("alive"), "{r:?}");
    assert!(!out.contains("insmod=0"), "a module loaded inside: {out}");
    assert!(!out.contains("reboot=0"), "reboot succeeded inside: {out}");
    assert_eq!(modules(), modules_before, "the host's modules changed");
    assert_eq!(
        host("/proc/sys/kernel/random/boot_id"),
        boot_before,
        "the host rebooted"
    );
}
