//! [`Problem`]: one thing wrong with a test file, at a file, line and column.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use cleanroom::line_index::LineIndex;
use serde::Serialize;

/// A place in a test file, 1-based.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// The location of byte offset `at` in `text`.
    pub fn at(file: &Path, text: &str, at: usize) -> Location {
        let (line, column) = cleanroom::config::line_column(text, at);
        Location {
            file: file.to_path_buf(),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One problem in a test file: where, and what to change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub location: Location,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Collects problems of one file as it is read.
pub(crate) struct Problems<'a> {
    pub file: &'a Path,
    /// Built once per file: locating each value is a binary search.
    lines: LineIndex<'a>,
    pub list: Vec<Problem>,
    /// What is worth knowing but does not stop the file (unknown keys
    /// unless strict): each message once, with how often it recurred.
    pub warnings: Vec<(Problem, usize)>,
    /// Warnings are problems (`--strict`).
    pub strict: bool,
}

impl<'a> Problems<'a> {
    pub fn new(file: &'a Path, text: &'a str) -> Self {
        Problems {
            file,
            lines: LineIndex::new(text),
            list: Vec::new(),
            warnings: Vec::new(),
            strict: false,
        }
    }

    pub fn loc(&self, span: &Range<usize>) -> Location {
        let (line, column) = self.lines.line_column(span.start);
        Location {
            file: self.file.to_path_buf(),
            line,
            column,
        }
    }

    pub fn add(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let location = self.loc(span);
        self.list.push(Problem {
            location,
            message: message.into(),
        });
    }

    /// A warning, or a problem when strict. The same message again (the
    /// same unknown key in every step) is counted, not repeated.
    pub fn warn(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let message = message.into();
        if self.strict {
            self.add(span, format!("{message} (an error under --strict)"));
            return;
        }
        if let Some((_, count)) = self.warnings.iter_mut().find(|(w, _)| w.message == message) {
            *count += 1;
            return;
        }
        let location = self.loc(span);
        self.warnings.push((Problem { location, message }, 1));
    }

    /// The warnings, each once, saying how often it recurred.
    pub fn take_warnings(&mut self) -> Vec<Problem> {
        self.warnings
            .drain(..)
            .map(|(mut w, count)| {
                if count > 1 {
                    w.message = format!("{} ({count} times)", w.message);
                }
                w
            })
            .collect()
    }
}

/// Whether an unknown key is a slip of a known one (one edit away: a
/// character added, dropped, changed, or two neighbours swapped), which is
/// an error even when unknown keys are only warned about.
pub(crate) fn is_typo(key: &str, known: &[&str]) -> bool {
    known.iter().any(|k| typo_distance(key, k) <= 1)
}

/// Edit distance counting a swap of neighbours as one edit (optimal string
/// alignment), as people mistype.
fn typo_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// `unknown key `x`` with the closest known key when one is close.
pub(crate) fn unknown_key(what: &str, key: &str, known: &[&str]) -> String {
    let closest = known
        .iter()
        .map(|k| (cleanroom::config::edit_distance(key, k), *k))
        .min()
        .filter(|(d, k)| *d <= 2.max(k.len() / 3));
    match closest {
        Some((_, k)) => format!("unknown key `{key}` in {what}; did you mean `{k}`?"),
        None => format!(
            "unknown key `{key}` in {what}; known keys: {}",
            known.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_is_one_edit_or_one_swap() {
        assert!(is_typo("nmae", &["name"]));
        assert!(is_typo("imag", &["image"]));
        assert!(is_typo("expected_outptu_regex", &["expected_output_regex"]));
        assert!(!is_typo("description", &["name", "command"]));
        assert!(!is_typo("retry", &["env"]));
    }

    #[test]
    fn did_you_mean_picks_the_closest_key() {
        let m = unknown_key(
            "[[steps]]",
            "expected_outptu_regex",
            &["name", "expected_output_regex"],
        );
        assert!(m.ends_with("did you mean `expected_output_regex`?"), "{m}");
        let m = unknown_key("[x]", "zzzzzz", &["name"]);
        assert!(m.contains("known keys: name"), "{m}");
    }
}
