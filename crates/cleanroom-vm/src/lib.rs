//! The microVM backend: each sandbox gets its own Linux kernel in a QEMU
//! `microvm` (KVM when it works here, software emulation when it does not),
//! whose PID 1 is our agent running the native backend, so everything the
//! native backend enforces holds inside and the kernel is not the host's.
//!
//! [`setup`] fetches the guest kernel ([`assets`]) and builds the
//! initramfs ([`initramfs`], [`cpio`]); [`vm`] boots QEMU and talks to the
//! agent ([`agent`], set up by [`guest`]) over virtio-serial with the [`protocol`];
//! [`VmBackend`] is the backend itself; [`named`] holds the VMs that
//! outlive their creator (`create`, `run -d`, `ps`).

pub mod agent;
pub mod assets;
pub mod copy;
pub mod cpio;
pub mod guest;
pub mod initramfs;
pub mod named;
pub mod protocol;
pub mod vm;

mod accel;
mod backend;
mod gc;
mod sandbox;

pub use accel::{accelerator, AccelProbe};
pub use backend::VmBackend;
pub use sandbox::VmSandbox;

use std::path::PathBuf;

use cleanroom_core::{Error, Result};

/// The backend's name, as `--backend` spells it.
pub const NAME: &str = "vm";

/// The agent binary's file name.
pub const AGENT_BIN: &str = "cleanroom-vm-agent";

/// The agent binary: `CLEANROOM_VM_AGENT`, else `cleanroom-vm-agent` beside
/// this program or one directory up (a test binary in `target/*/deps`).
pub fn agent_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("CLEANROOM_VM_AGENT").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::backend(
                NAME,
                format!("CLEANROOM_VM_AGENT={} is not a file", p.display()),
            ))
        };
    }
    let exe = std::env::current_exe().map_err(|e| Error::io("finding this program", e))?;
    let mut dir = exe.parent();
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let candidate = d.join(AGENT_BIN);
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent();
    }
    Err(Error::backend(
        NAME,
        format!(
            "the guest agent `{AGENT_BIN}` is not beside {}: build it (`cargo build -p cleanroom-vm \
             --bin {AGENT_BIN}`) or set CLEANROOM_VM_AGENT to its path",
            exe.display()
        ),
    ))
}

/// QEMU's path, or an error saying how to install it.
pub fn qemu_binary() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(vm::QEMU))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::backend(
                NAME,
                format!(
                    "{} is not installed: install it (`apt-get install qemu-system-x86`, or \
                     scripts/setup.d/45-vm.sh)",
                    vm::QEMU
                ),
            )
        })
}

/// What [`setup`] did.
#[derive(Clone, Debug)]
pub struct SetupReport {
    pub kernel: assets::Kernel,
    /// The kernel was downloaded now (not found in the cache).
    pub fetched: bool,
    pub initramfs: PathBuf,
    pub agent: PathBuf,
}

/// Everything a VM needs before it boots: QEMU present, the guest kernel
/// fetched into the cache (once), and the initramfs for this agent built.
pub fn setup() -> Result<SetupReport> {
    qemu_binary()?;
    let (kernel, fetched) = assets::fetch_kernel()?;
    let agent = agent_binary()?;
    let initramfs = initramfs::ensure(&agent, &kernel)?;
    Ok(SetupReport {
        kernel,
        fetched,
        initramfs,
        agent,
    })
}

/// The kernel and initramfs to boot, without fetching anything: for runs,
/// which tell the user to run `cleanroom vm setup` when the kernel is missing.
pub fn boot_files() -> Result<(assets::Kernel, PathBuf)> {
    qemu_binary()?;
    let kernel = assets::Kernel::installed()?;
    let initramfs = initramfs::ensure(&agent_binary()?, &kernel)?;
    Ok((kernel, initramfs))
}
