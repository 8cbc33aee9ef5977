//! Booting a guest: the kernel is Debian's, not the host's, and PID 1 is
//! our agent.

mod vm_common;

use cleanroom_core::{Backend, Cmd, SandboxSpec};
use cleanroom_vm::VmBackend;

#[test]
fn guest_runs_its_own_kernel() {
    let report = vm_common::setup();
    let host = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let started = std::time::Instant::now();
    let r = vm_common::block_on(
        VmBackend::new().run(&SandboxSpec::default(), Cmd::new("uname").arg("-r")),
    )
    .unwrap();
    eprintln!(
        "one-shot `uname -r` took {:?}; report: {:?}",
        started.elapsed(),
        r.enforcement.notes
    );
    assert!(r.success(), "{r:?}");
    let guest = r.stdout_lossy().trim().to_string();
    assert_eq!(guest, report.kernel.release);
    assert_ne!(guest, host, "the guest must not run the host's kernel");
    assert_eq!(r.backend, "vm");
    assert_eq!(r.enforcement.backend, "vm");
    assert!(
        r.enforcement
            .notes
            .iter()
            .any(|n| n.contains("accelerator")),
        "{:?}",
        r.enforcement.notes
    );
}
