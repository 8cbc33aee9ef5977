//! TAP version 13: `ok`/`not ok` per test, failures as YAML blocks.

use std::fmt::Write as _;

use super::{Status, SuiteReport};

pub fn render(report: &SuiteReport) -> String {
    let mut s = String::from("TAP version 13\n");
    let _ = writeln!(s, "1..{}", report.tests.len());
    for (i, t) in report.tests.iter().enumerate() {
        let n = i + 1;
        let name = t.name.replace('#', "\\#");
        match t.status {
            Status::Passed => {
                let _ = writeln!(s, "ok {n} - {name}");
            }
            Status::Skipped => {
                let why = t
                    .failure
                    .as_ref()
                    .map(|f| f.message.clone())
                    .unwrap_or_else(|| "not run".into());
                let _ = writeln!(s, "ok {n} - {name} # SKIP {}", one_line(&why));
            }
            Status::Failed => {
                let _ = writeln!(s, "not ok {n} - {name}");
                s.push_str("  ---\n");
                let _ = writeln!(s, "  file: {}", yaml(&t.path.display().to_string()));
                if let Some(f) = &t.failure {
                    let _ = writeln!(s, "  message: {}", yaml(&f.message));
                    if let Some(step) = &f.step {
                        let _ = writeln!(s, "  step: {}", yaml(step));
                    }
                    if let Some(c) = &f.command {
                        let _ = writeln!(s, "  command: {}", yaml(c));
                    }
                    if let Some(at) = &f.location {
                        let _ = writeln!(s, "  at: {}", yaml(at));
                    }
                    if let Some(e) = &f.expected {
                        let _ = writeln!(s, "  expected: {}", yaml(e));
                    }
                    if let Some(a) = &f.actual {
                        let _ = writeln!(s, "  actual: {}", yaml(a));
                    }
                }
                s.push_str("  ...\n");
            }
        }
    }
    s
}

fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// A YAML scalar: JSON strings are valid YAML and escape everything.
fn yaml(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}
