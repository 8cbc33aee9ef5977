//! The conformance suite's core sections (result, environment, filesystem,
//! user, limits) on the vm backend, host rootfs. Every run boots a VM, so
//! under software emulation this is CI's slow phase: `cargo test` skips
//! this target (`test = false` in Cargo.toml) and
//! scripts/check.d/70-vm-conformance.sh runs it by name. The backend keeps
//! a spare VM booting ahead of each run, as a suite should: the checks that
//! bound a run's wall time then measure the sandbox, not a cold boot.

mod vm_common;

fn harness() -> cleanroom_core::conformance::Harness {
    static WARM: std::sync::Once = std::sync::Once::new();
    vm_common::setup();
    let backend = cleanroom_vm::VmBackend::new().with_spare();
    // One VM is booted before the first check starts its clock.
    WARM.call_once(|| {
        backend
            .warm_spare(&cleanroom_core::SandboxSpec::default())
            .unwrap_or_else(|e| panic!("warming a spare VM: {e}"))
    });
    cleanroom_core::conformance::Harness::new(backend, cleanroom_core::SandboxSpec::default())
}

/// One `#[test]` per named check (the core sections, not the whole list
/// `conformance_tests!` insists on: images are not on vm yet).
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
    // result
    exit_codes,
    command_not_found,
    signal_exit,
    timeout_kills_tree,
    background_processes_die,
    stdout_stderr_separate,
    non_utf8_output,
    large_output_no_deadlock,
    output_truncation,
    stdin_bytes,
    empty_stdin,
    // environment
    env_isolation,
    hostname,
    umask,
    // filesystem
    workdir,
    filesystem_isolation,
    read_only_root,
    writable_root_discarded,
    mounts,
    tmpfs_sizes,
    // user
    user,
    capabilities,
    no_new_privs,
    seccomp,
    pid_namespace,
    network_none,
    // limits
    pids_limit,
    memory_limit,
    // lifecycle
    long_lived,
    // the report
    strict_mode,
    enforcement_report,
    streaming,
);
