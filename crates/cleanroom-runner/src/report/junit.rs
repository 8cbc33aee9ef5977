//! JUnit XML, as CI systems read it: one `<testsuite>` per directory of
//! test files, one `<testcase>` per test, `<failure>` and `<skipped>`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Status, SuiteReport, TestReport};

/// The report as a JUnit XML document.
pub fn render(report: &SuiteReport) -> String {
    let mut suites: BTreeMap<String, Vec<&TestReport>> = BTreeMap::new();
    for t in &report.tests {
        suites.entry(suite_name(t)).or_default().push(t);
    }
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        s,
        "<testsuites name=\"cleanroom\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{}\">",
        report.tests.len(),
        report.failed,
        report.skipped,
        secs(report.duration_ms)
    );
    for (name, tests) in &suites {
        let count = |st: Status| tests.iter().filter(|t| t.status == st).count();
        let time: u64 = tests.iter().map(|t| t.duration_ms).sum();
        let _ = writeln!(
            s,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{}\">",
            esc(name),
            tests.len(),
            count(Status::Failed),
            count(Status::Skipped),
            secs(time)
        );
        let _ = writeln!(
            s,
            "    <properties><property name=\"backend\" value=\"{}\"/></properties>",
            esc(&report.backend)
        );
        for t in tests {
            testcase(&mut s, name, t);
        }
        s.push_str("  </testsuite>\n");
    }
    s.push_str("</testsuites>\n");
    s
}

fn testcase(s: &mut String, suite: &str, t: &TestReport) {
    let _ = write!(
        s,
        "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" time=\"{}\"",
        esc(&t.name),
        esc(suite),
        esc(&t.path.display().to_string()),
        secs(t.duration_ms)
    );
    let message = t.failure.as_ref().map(|f| f.message.as_str()).unwrap_or("");
    match t.status {
        Status::Passed => s.push_str("/>\n"),
        Status::Skipped => {
            let _ = writeln!(
                s,
                ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                esc(message)
            );
        }
        Status::Failed => {
            let first = message.lines().next().unwrap_or("failed");
            let _ = writeln!(
                s,
                ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>",
                esc(first),
                if t.steps.is_empty() { "error" } else { "step" },
                esc(&super::human::failure_text(t))
            );
            let out: String = t
                .steps
                .iter()
                .map(|st| format!("$ {}\n{}", st.command, st.stdout))
                .collect();
            if !out.is_empty() {
                let _ = writeln!(s, "      <system-out>{}</system-out>", esc(&out));
            }
            s.push_str("    </testcase>\n");
        }
    }
}

/// Test files in `tests/api/` form the suite `tests.api`.
fn suite_name(t: &TestReport) -> String {
    let dir = t
        .path
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let dotted = dir.trim_matches('/').replace('/', ".");
    if dotted.is_empty() {
        "cleanroom".into()
    } else {
        dotted
    }
}

fn secs(ms: u64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

/// Escapes text for XML attributes and content, dropping characters XML 1.0 forbids.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}
