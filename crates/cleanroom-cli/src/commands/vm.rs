//! `cleanroom vm setup`: everything the vm backend needs before its first
//! run, said step by step.

use std::process::ExitCode;

use crate::cli::VmCommand;

pub fn main(cmd: VmCommand) -> cleanroom::Result<ExitCode> {
    match cmd {
        VmCommand::Setup => setup(),
    }
}

fn setup() -> cleanroom::Result<ExitCode> {
    let r = cleanroom::vm::setup()?;
    say!(
        "guest kernel: {} ({}) in {}",
        r.kernel.release,
        if r.fetched {
            "fetched now"
        } else {
            "already fetched"
        },
        r.kernel.vmlinuz.display()
    );
    say!(
        "initramfs: {} (agent {})",
        r.initramfs.display(),
        r.agent.display()
    );
    let probe = cleanroom::vm::accelerator()?;
    say!("accelerator: {} ({})", probe.accel.name(), probe.why);
    Ok(ExitCode::SUCCESS)
}
