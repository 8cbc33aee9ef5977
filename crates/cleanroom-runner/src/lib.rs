//! Cleanroom's test runner: reads `*.clnrm.toml` test files, runs each test
//! in a fresh sandbox with its services beside it in one pod, and reports
//! the results for terminals and CI (JSON, JUnit XML, TAP).
//!
//! From Rust, [`run_suite`] (or [`run_suite_blocking`]) runs the test files
//! under some paths and returns a [`SuiteReport`]:
//!
//! ```no_run
//! use cleanroom_runner::{run_suite_blocking, RunOptions};
//!
//! let report = run_suite_blocking(&["tests".into()], &RunOptions::default())?;
//! print!("{}", cleanroom_runner::report::human::render(&report));
//! assert!(report.success());
//! # Ok::<(), cleanroom::Error>(())
//! ```
//!
//! To run them as part of `cargo test`, add a test target with
//! `harness = false` whose `main` does the above and exits non-zero on
//! failure; this crate's own `tests/clnrm_files.rs` is such a target.

mod clnrm_v1;
pub mod discover;
mod environment;
mod exec;
mod expect;
mod fields;
pub mod model;
mod parse;
pub mod pattern;
mod preambles;
pub mod problem;
pub mod report;
mod sandbox_table;
pub mod scaffold;
mod services;
mod suite;
mod template;
mod tree;

pub use discover::{discover, Shard};
pub use model::TestFile;
pub use parse::{parse_file, parse_file_with, parse_str, parse_str_with, ParseOptions, SUFFIX};
pub use problem::{Location, Problem};
pub use report::{Failure, Status, StepReport, SuiteReport, TestReport};
pub use suite::{
    effective_jobs, is_test_file, run_suite, run_suite_blocking, Event, EventSink, RunOptions,
    DEFAULT_TEST_TIMEOUT,
};
pub use tokio_util::sync::CancellationToken;

#[cfg(test)]
mod parse_tests;
