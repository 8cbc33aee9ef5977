//! What the vm tests share: the agent this build made, the kernel fetched
//! once, and a loud failure (never a skip) when QEMU is missing.

#![allow(dead_code)]

use std::sync::OnceLock;

/// Points the backend at this build's agent and runs the setup once.
pub fn setup() -> &'static cleanroom_vm::SetupReport {
    static DONE: OnceLock<cleanroom_vm::SetupReport> = OnceLock::new();
    DONE.get_or_init(|| {
        std::env::set_var(
            "CLEANROOM_VM_AGENT",
            env!("CARGO_BIN_EXE_cleanroom-vm-agent"),
        );
        cleanroom_vm::setup().unwrap_or_else(|e| {
            panic!("vm setup failed (scripts/setup.d/45-vm.sh installs QEMU): {e}")
        })
    })
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}
