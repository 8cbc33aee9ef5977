//! [`Problem`]: one thing wrong with a test file, at a file, line and column.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

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
    pub text: &'a str,
    pub list: Vec<Problem>,
}

impl<'a> Problems<'a> {
    pub fn new(file: &'a Path, text: &'a str) -> Self {
        Problems {
            file,
            text,
            list: Vec::new(),
        }
    }

    pub fn loc(&self, span: &Range<usize>) -> Location {
        Location::at(self.file, self.text, span.start)
    }

    pub fn add(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let location = self.loc(span);
        self.list.push(Problem {
            location,
            message: message.into(),
        });
    }
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
