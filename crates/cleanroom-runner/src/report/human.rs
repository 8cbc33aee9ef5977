//! The terminal report: live progress while tests run (a status line on a
//! terminal, plain lines otherwise), then each failure explained, then the
//! `N passed, N failed, N skipped` line.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use super::{Status, SuiteReport, TestReport};
use crate::suite::Event;

/// Writes progress to stderr as events arrive.
pub struct Progress {
    tty: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    planned: usize,
    done: usize,
    running: BTreeMap<PathBuf, String>,
    status_shown: bool,
}

impl Progress {
    /// A live status line when stderr is a terminal, plain lines when not.
    pub fn new() -> Self {
        Progress::with_tty(std::io::stderr().is_terminal())
    }

    pub fn with_tty(tty: bool) -> Self {
        Progress {
            tty,
            state: Mutex::default(),
        }
    }

    /// Handles one event.
    pub fn event(&self, event: &Event) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut err = std::io::stderr().lock();
        if self.tty && st.status_shown {
            let _ = write!(err, "\r\x1b[K");
            st.status_shown = false;
        }
        match event {
            Event::Planned { tests } => st.planned = *tests,
            Event::Started { name, path } => {
                st.running.insert(path.clone(), name.clone());
            }
            Event::Finished(report) => {
                st.running.remove(&report.path);
                st.done += 1;
                let _ = writeln!(err, "{}", line(report));
            }
        }
        if self.tty && !st.running.is_empty() {
            let names: Vec<&str> = st.running.values().map(String::as_str).collect();
            let mut status = format!("[{}/{}] running: {}", st.done, st.planned, names.join(", "));
            let width = terminal_width();
            if status.chars().count() > width {
                status = status
                    .chars()
                    .take(width.saturating_sub(3))
                    .collect::<String>()
                    + "...";
            }
            let _ = write!(err, "{status}");
            st.status_shown = true;
        }
        let _ = err.flush();
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100)
}

/// `PASS name (0.12s)`, one line per finished test.
pub fn line(t: &TestReport) -> String {
    let word = match t.status {
        Status::Passed => "PASS",
        Status::Failed => "FAIL",
        Status::Skipped => "SKIP",
    };
    let runs = if t.runs > 1 {
        format!(", {} runs", t.runs)
    } else {
        String::new()
    };
    format!(
        "{word} {} ({:.2}s{runs}) {}",
        t.name,
        t.duration_ms as f64 / 1000.0,
        t.path.display()
    )
}

/// The full text of a finished run: every failure explained, warnings
/// once, and the summary as the last line.
pub fn render(report: &SuiteReport) -> String {
    let mut s = String::new();
    let failed: Vec<&TestReport> = report
        .tests
        .iter()
        .filter(|t| t.status == Status::Failed)
        .collect();
    for t in &failed {
        s.push_str(&failure_text(t));
        s.push('\n');
    }
    let mut warnings: Vec<&String> = report.tests.iter().flat_map(|t| &t.warnings).collect();
    warnings.sort();
    warnings.dedup();
    for w in warnings {
        let _ = writeln!(s, "{w}");
    }
    if report.interrupted {
        s.push_str("interrupted: every sandbox and service was torn down\n");
    }
    let _ = writeln!(
        s,
        "backend {}, {:.2}s",
        report.backend,
        report.duration_ms as f64 / 1000.0
    );
    s.push_str(&report.summary_line());
    s.push('\n');
    s
}

/// One failed test, explained.
pub fn failure_text(t: &TestReport) -> String {
    let mut s = format!("--- FAIL {} ({})\n", t.name, t.path.display());
    let Some(f) = &t.failure else {
        return s;
    };
    if let Some(step) = &f.step {
        let _ = writeln!(s, "step:     {step}");
    }
    if let Some(cmd) = &f.command {
        let _ = writeln!(s, "command:  {cmd}");
    }
    if let Some(at) = &f.location {
        let _ = writeln!(s, "at:       {at}");
    }
    let _ = writeln!(s, "error:    {}", f.message);
    if let Some(e) = &f.expected {
        let _ = writeln!(s, "expected: {}", indent(e));
    }
    if let Some(a) = &f.actual {
        let _ = writeln!(s, "actual:   {}", indent(a));
    }
    if let Some(d) = &f.diff {
        let _ = writeln!(s, "diff:\n{}", d.trim_end());
    }
    for log in &f.service_logs {
        let _ = writeln!(
            s,
            "service `{}`, last {} lines of output:",
            log.service,
            log.lines.len()
        );
        for l in &log.lines {
            let _ = writeln!(s, "  | {l}");
        }
    }
    s
}

/// Continuation lines lined up under the first.
fn indent(text: &str) -> String {
    text.trim_end().replace('\n', "\n          ")
}
