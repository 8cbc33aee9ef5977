//! Runs every `tests/data/*.clnrm.toml` through the runner as part of
//! `cargo test`: the pattern to copy for running test files in your crate.
//!
//! In your `Cargo.toml`:
//!
//! ```toml
//! [[test]]
//! name = "clnrm_files"
//! harness = false
//!
//! [dev-dependencies]
//! cleanroom-runner = "..."
//! ```
//!
//! and a `tests/clnrm_files.rs` like this one. `cargo test` then runs the
//! files and fails when one does; `cargo test --test clnrm_files -- NAME`
//! runs only the tests whose name or path contains NAME.
//!
//! Here the backend is `local` (it works on every machine) unless
//! `CLEANROOM_BACKEND` names another; drop the `backend` line to use the
//! configured one (`cleanroom.toml`, `CLEANROOM_BACKEND`, ...).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use cleanroom_runner::{report, run_suite_blocking, RunOptions};

fn main() -> ExitCode {
    // The files directly in tests/data (tests/data/clnrm/ holds clnrm's own
    // corpus, which only validates here; tests/clnrm_corpus.rs checks it).
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let files: Vec<PathBuf> = match std::fs::read_dir(&data) {
        Ok(dir) => {
            let mut files: Vec<PathBuf> = dir
                .flatten()
                .map(|e| e.path())
                .filter(|p| cleanroom_runner::is_test_file(p))
                .collect();
            files.sort();
            files
        }
        Err(e) => {
            eprintln!("error: listing {}: {e}", data.display());
            return ExitCode::FAILURE;
        }
    };
    // libtest-style arguments: flags are ignored, a free argument filters.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let backend: Option<Arc<dyn cleanroom::Backend>> = match std::env::var("CLEANROOM_BACKEND") {
        Ok(b) if !b.is_empty() => None,
        _ => Some(Arc::new(cleanroom::LocalBackend::new())),
    };
    let options = RunOptions {
        backend,
        filter,
        ..RunOptions::default()
    };
    match run_suite_blocking(&files, &options) {
        Ok(r) => {
            for t in &r.tests {
                println!("{}", report::human::line(t));
            }
            print!("{}", report::human::render(&r));
            if r.success() && r.passed > 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
