//! A step that prints 1 GiB must not exhaust memory: capture is bounded by
//! the spec's output limit and the rest is drained, not stored. Alone in
//! its own test binary so the process's peak RSS is this test's.

use std::path::Path;
use std::sync::Arc;

use cleanroom_runner::{run_suite_blocking, RunOptions};

/// Peak resident memory of this process, in KiB.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn one_gib_of_output_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        Path::new(dir.path()).join("big.clnrm.toml"),
        "[[steps]]\nname = \"a gigabyte\"\ncommand = [\"head\", \"-c\", \"1G\", \"/dev/zero\"]\n\n[[steps]]\ncommand = [\"sh\", \"-c\", \"head -c 1G /dev/zero | tr '\\\\0' x\"]\nexpected_output_regex = \"^x\"\n",
    )
    .unwrap();
    let before = vm_hwm_kib();
    let options = RunOptions {
        backend: Some(Arc::new(cleanroom::LocalBackend::new())),
        base_spec: Some(cleanroom::SandboxSpec::default()),
        ..RunOptions::default()
    };
    let r = run_suite_blocking(&[dir.path().to_path_buf()], &options).unwrap();
    assert_eq!(r.summary_line(), "1 passed, 0 failed, 0 skipped", "{r:#?}");
    assert!(r.tests[0].steps[0].stdout_truncated);
    let after = vm_hwm_kib();
    eprintln!("VmHWM before {before} KiB, after {after} KiB for 2 GiB of output");
    // The default capture limit is 16 MiB per stream; allow generous slack.
    assert!(after < 256 * 1024, "peak RSS {after} KiB");
}
