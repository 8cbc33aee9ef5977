//! Checking a step's result against its expectations, and explaining a
//! mismatch with the expected value, the actual one and a diff.

use cleanroom::RunResult;

use crate::model::Expectations;
use crate::report::Failure;

/// Lines of actual output shown in a failure.
const SHOWN_LINES: usize = 40;

/// `None` when `result` meets `expect`, else what is wrong.
pub fn check(expect: &Expectations, result: &RunResult) -> Option<Failure> {
    let stdout = result.stdout_lossy();
    let stderr = result.stderr_lossy();
    if result.timed_out {
        return Some(Failure {
            message: format!("timed out ({})", result.status_line()),
            actual: Some(tail_both(&stdout, &stderr)),
            ..Failure::default()
        });
    }
    if result.exit_code != expect.exit_code {
        return Some(Failure {
            message: format!(
                "exit code {} where {} was expected ({})",
                result.exit_code,
                expect.exit_code,
                result.status_line()
            ),
            expected: Some(format!("exit code {}", expect.exit_code)),
            actual: Some(tail_both(&stdout, &stderr)),
            ..Failure::default()
        });
    }
    if let Some(want) = &expect.output {
        if trim_newline(want) != trim_newline(&stdout) {
            return Some(Failure {
                message: "stdout differs from expected_output".into(),
                expected: Some(want.clone()),
                actual: Some(tail(&stdout)),
                // The comparison ignores one trailing newline; so does the diff.
                diff: Some(diff(
                    &format!("{}\n", trim_newline(want)),
                    &format!("{}\n", trim_newline(&stdout)),
                )),
                ..Failure::default()
            });
        }
    }
    if let Some(p) = &expect.output_regex {
        let re = match p.regex() {
            Ok(re) => re,
            Err(e) => return Some(uncompilable("expected_output_regex", p, &e)),
        };
        if !re.is_match(&stdout) {
            return Some(Failure {
                message: format!("stdout does not match expected_output_regex `{re}`"),
                expected: Some(format!("a match for /{re}/")),
                actual: Some(tail(&stdout)),
                ..Failure::default()
            });
        }
    }
    if let Some(p) = &expect.output_not_regex {
        let re = match p.regex() {
            Ok(re) => re,
            Err(e) => return Some(uncompilable("expected_output_not_regex", p, &e)),
        };
        if let Some(m) = re.find(&stdout) {
            return Some(Failure {
                message: format!(
                    "stdout matches expected_output_not_regex `{re}` (at `{}`)",
                    m.as_str()
                ),
                expected: Some(format!("no match for /{re}/")),
                actual: Some(tail(&stdout)),
                ..Failure::default()
            });
        }
    }
    if let Some(p) = &expect.stderr_regex {
        let re = match p.regex() {
            Ok(re) => re,
            Err(e) => return Some(uncompilable("expected_stderr_regex", p, &e)),
        };
        if !re.is_match(&stderr) {
            return Some(Failure {
                message: format!("stderr does not match expected_stderr_regex `{re}`"),
                expected: Some(format!("a match for /{re}/")),
                actual: Some(tail(&stderr)),
                ..Failure::default()
            });
        }
    }
    None
}

/// A regex whose syntax was fine but which cannot be compiled (too large).
fn uncompilable(key: &str, p: &crate::pattern::Pattern, why: &str) -> Failure {
    Failure {
        message: format!("{key} `{p}` cannot be compiled: {why}"),
        ..Failure::default()
    }
}

fn trim_newline(s: &str) -> &str {
    s.strip_suffix('\n').unwrap_or(s)
}

/// The last lines of `s`, noting how many were left out.
pub fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    if lines.len() <= SHOWN_LINES {
        return s.to_string();
    }
    let skipped = lines.len() - SHOWN_LINES;
    format!(
        "[... {skipped} earlier lines ...]\n{}\n",
        lines[skipped..].join("\n")
    )
}

fn tail_both(stdout: &str, stderr: &str) -> String {
    let mut s = String::new();
    if !stdout.is_empty() {
        s.push_str("stdout:\n");
        s.push_str(&tail(stdout));
    }
    if !stderr.is_empty() {
        if !s.is_empty() && !s.ends_with('\n') {
            s.push('\n');
        }
        s.push_str("stderr:\n");
        s.push_str(&tail(stderr));
    }
    if s.is_empty() {
        s.push_str("(no output)");
    }
    s
}

/// A unified line diff, `-` expected and `+` actual.
pub fn diff(expected: &str, actual: &str) -> String {
    let d = similar::TextDiff::from_lines(expected, actual);
    d.unified_diff()
        .context_radius(3)
        .header("expected", "actual")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_marks_expected_and_actual_lines() {
        let d = diff("a\nb\nc\n", "a\nB\nc\n");
        assert!(d.contains("-b\n") && d.contains("+B\n"), "{d}");
        assert!(d.starts_with("--- expected\n+++ actual\n"), "{d}");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let many: String = (0..100).map(|i| format!("{i}\n")).collect();
        let t = tail(&many);
        assert!(t.starts_with("[... 60 earlier lines ...]"), "{t}");
        assert!(t.ends_with("99\n"));
    }
}
