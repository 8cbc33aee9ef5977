//! Errors that say what went wrong and what to do next.

use std::path::PathBuf;

/// Every error Cleanroom returns. Messages name the value at fault and,
/// where there is one, the next step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("unknown backend `{name}` (from {origin}); choose one of: auto, native, podman, docker, local, vm")]
    UnknownBackend { name: String, origin: String },

    #[error("backend `{backend}` is not available: {reason}{}", hint.as_deref().map(|h| format!("; {h}")).unwrap_or_default())]
    Unavailable {
        backend: String,
        reason: String,
        hint: Option<String>,
    },

    #[error("no backend can run this here: {0}; run `cleanroom doctor` to see why each backend is unavailable")]
    NoBackend(String),

    #[error("strict mode: the {backend} backend cannot enforce {}; drop --strict or pick a backend that can (see `cleanroom doctor`)", unenforced.join(", "))]
    NotEnforceable {
        backend: String,
        unenforced: Vec<String>,
    },

    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),

    #[error("{origin}: {message}")]
    Config { origin: String, message: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("path `{}` is outside every mount of the sandbox; mount its directory or copy it in", path.display())]
    OutsideMount { path: PathBuf },

    #[error("image `{reference}`: {message}")]
    Image { reference: String, message: String },

    #[error("{backend} backend: {message}")]
    Backend { backend: String, message: String },

    #[error("sandbox {id} is no longer running; create a new one")]
    SandboxGone { id: String },

    #[error("the {backend} backend does not support {what}")]
    Unsupported { backend: String, what: String },
}

/// `Result` with Cleanroom's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error with what was being done when it happened.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A backend's own failure.
    pub fn backend(backend: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Backend {
            backend: backend.into(),
            message: message.into(),
        }
    }
}

/// Adds context to `std::io::Result`s.
pub trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
}
