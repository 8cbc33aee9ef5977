//! Where something in an environment file is, and what is wrong there:
//! every warning and error names `file:line`.

use std::fmt;
use std::path::{Path, PathBuf};

/// A place in an environment file (lines count from 1; 0 means the whole file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
}

impl Location {
    pub fn new(file: &Path, line: usize) -> Self {
        Location {
            file: file.to_path_buf(),
            line,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}", self.file.display(), self.line)
        }
    }
}

/// Whether a problem stops the environment from being used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found reading or planning an environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub at: Location,
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}: {kind}: {}", self.at, self.message)
    }
}

/// The problems found so far; reading goes on after an error so that a
/// user sees every problem of a file at once.
#[derive(Clone, Debug, Default)]
pub struct Problems {
    pub list: Vec<Problem>,
    /// `--strict`: what would be a warning is an error.
    pub strict: bool,
}

impl Problems {
    pub fn error(&mut self, at: Location, message: impl Into<String>) {
        self.list.push(Problem {
            at,
            severity: Severity::Error,
            message: message.into(),
        });
    }

    pub fn warn(&mut self, at: Location, message: impl Into<String>) {
        let severity = if self.strict {
            Severity::Error
        } else {
            Severity::Warning
        };
        self.list.push(Problem {
            at,
            severity,
            message: message.into(),
        });
    }

    pub fn has_errors(&self) -> bool {
        self.list.iter().any(|p| p.severity == Severity::Error)
    }

    /// The errors as one [`crate::EnvError`], or the warnings back when
    /// there is none.
    pub fn finish(self) -> Result<Vec<Problem>, crate::EnvError> {
        if self.has_errors() {
            Err(crate::EnvError::Problems(self.list))
        } else {
            Ok(self.list)
        }
    }
}
