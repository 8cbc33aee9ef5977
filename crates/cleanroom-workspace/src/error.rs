//! The workspace's errors are Cleanroom's, plus conversions from git's.

pub use cleanroom::{Error, Result};

/// A shadow-history failure, with what was being done.
pub(crate) fn git(context: impl std::fmt::Display, e: git2::Error) -> Error {
    Error::Config {
        origin: "workspace history".into(),
        message: format!("{context}: {}", e.message()),
    }
}

/// An I/O failure, with what was being done and on which path.
pub(crate) fn io(context: impl Into<String>, e: std::io::Error) -> Error {
    Error::io(context, e)
}

/// Bad input from the user, naming it and the next step.
pub(crate) fn input(origin: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Config {
        origin: origin.into(),
        message: message.into(),
    }
}
