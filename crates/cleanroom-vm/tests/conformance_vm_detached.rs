//! The conformance suite's detached section on the vm backend: named VMs
//! that outlive their handle (create, exec, copy, ps, stop, rm), 16
//! parallel execs into one VM, and 8 racing creates of one name. Each check
//! boots one VM (the race boots one for its winner), so this runs in CI's
//! slow phase (scripts/check.d/70-vm-conformance.sh), not in `cargo test`.

mod vm_common;

fn harness() -> cleanroom_core::conformance::Harness {
    vm_common::setup();
    cleanroom_core::conformance::Harness::new(
        cleanroom_vm::VmBackend::new(),
        cleanroom_core::SandboxSpec::default(),
    )
}

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                cleanroom_core::conformance::run_check_blocking(stringify!($name), harness);
            }
        )*
    };
}

checks!(
    detached_lifecycle,
    detached_main_exits,
    detached_parallel_execs,
    detached_name_race,
);
