//! clnrm's own test files (tests/data/clnrm/, copied from its repository:
//! see the README there) as a clnrm user brings them: every file clnrm's
//! parser accepts validates here, and those that need no image we lack run
//! and pass on the native backend.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cleanroom::Backend;
use cleanroom_runner::{parse_file, run_suite_blocking, RunOptions, Status};

/// Files in clnrm's repository (`tests/`, `examples/`, `crates/*/tests`,
/// `crates/*/examples`, `validation_tests/`: `*.clnrm.toml` and test `*.toml`).
const FOUND: usize = 142;
/// Of those, the files clnrm's own readers accept: all copied here.
const ACCEPTED: usize = 81;

/// The accepted files that need no image beyond the host rootfs and whose
/// commands exist here (the others need alpine, postgres, surreal, curl
/// endpoints, ...; see the README).
const RUN_HERE: [&str; 10] = [
    "examples/optimus-prime-platform/tests/basic-health-check.clnrm.toml",
    "examples/optimus-prime-platform/tests/jtbd/child-surface/jtbd-001-achievement-sharing.clnrm.toml",
    "examples/optimus-prime-platform/tests/jtbd/child-surface/jtbd-002-virtue-tracking.clnrm.toml",
    "examples/optimus-prime-platform/tests/jtbd/executive-surface/jtbd-005-kpi-query.clnrm.toml",
    "examples/surrealdb-integration-demo.clnrm.toml",
    "tests/fuzz/corpus/fuzz_toml_parser/edge_empty_name.toml",
    "tests/fuzz/corpus/fuzz_toml_parser/edge_nested_quotes.toml",
    "tests/fuzz/corpus/fuzz_toml_parser/edge_unicode.toml",
    "tests/fuzz/corpus/fuzz_toml_parser/valid_basic.toml",
    "tests/surrealdb/toml-managed.clnrm.toml",
];

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/clnrm")
}

fn test_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            test_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "toml")
            && p.file_name().is_some_and(|n| n != "cleanroom.toml")
        {
            out.push(p);
        }
    }
}

#[test]
fn every_file_clnrm_accepts_validates_here() {
    let mut files = Vec::new();
    test_files(&corpus(), &mut files);
    files.sort();
    assert_eq!(
        files.len(),
        ACCEPTED,
        "the corpus holds clnrm's accepted files"
    );
    const { assert!(ACCEPTED <= FOUND) };
    let mut invalid = Vec::new();
    let mut warned = 0;
    for f in &files {
        match parse_file(f) {
            Ok(t) => warned += usize::from(!t.warnings.is_empty()),
            Err(problems) => invalid.extend(problems.iter().map(|p| p.to_string())),
        }
    }
    assert!(
        invalid.is_empty(),
        "{} problems:\n{}",
        invalid.len(),
        invalid.join("\n")
    );
    // clnrm ignores keys it does not know; so do we, but we say so.
    assert!(warned > 0);
    println!("{ACCEPTED} of {FOUND} clnrm files accepted by clnrm; {ACCEPTED} validate here");
}

#[test]
fn clnrm_files_that_need_no_missing_image_pass_on_native() {
    let native = cleanroom::NativeBackend::new();
    let available = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(native.availability());
    if !available.available {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but the native backend is not available: {}",
            available.reason
        );
        eprintln!(
            "NOTE: native backend not available here: {}",
            available.reason
        );
        return;
    }
    // clnrm reads `.toml` files too; `cleanroom test` finds `*.clnrm.toml`,
    // so the files are given by path.
    let files: Vec<PathBuf> = RUN_HERE.iter().map(|f| corpus().join(f)).collect();
    let options = RunOptions {
        backend: Some(Arc::new(native)),
        base_spec: Some(cleanroom::SandboxSpec::default()),
        jobs: 2,
        ..RunOptions::default()
    };
    let report = run_suite_blocking(&files, &options).unwrap();
    let failed: Vec<String> = report
        .tests
        .iter()
        .filter(|t| t.status != Status::Passed)
        .map(|t| format!("{}: {:?}", t.path.display(), t.failure))
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert_eq!(report.passed, RUN_HERE.len());
}
