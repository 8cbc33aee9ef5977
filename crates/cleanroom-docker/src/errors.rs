//! Turning the engine client's errors into Cleanroom errors that say what
//! was being done and where.

use bollard::errors::Error as EngineError;
use cleanroom_core::Error;

/// An error from `doing` in `container`: a vanished or stopped container
/// is [`Error::SandboxGone`], anything else a backend error naming both.
pub fn engine_error(engine: &str, container: &str, doing: &str, e: EngineError) -> Error {
    match e {
        EngineError::DockerResponseServerError {
            status_code: 404, ..
        } if !container.is_empty() => Error::SandboxGone {
            id: container.to_string(),
        },
        // Docker: 409 "... is not running"; Podman: 500 "... container state improper".
        EngineError::DockerResponseServerError {
            status_code: 409 | 500,
            ref message,
        } if !container.is_empty()
            && (message.contains("not running") || message.contains("state improper")) =>
        {
            Error::SandboxGone {
                id: container.to_string(),
            }
        }
        e => Error::backend(engine, format!("{doing} in container {container}: {e}")),
    }
}

/// Whether `e` is the engine saying "no such ..." (HTTP 404).
pub fn is_not_found(e: &EngineError) -> bool {
    matches!(
        e,
        EngineError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Whether `e` says the container is not there: a 404, or Podman's 500
/// "no such container" for one removed while it was being looked at.
pub fn is_gone(e: &EngineError) -> bool {
    is_not_found(e)
        || matches!(
            e,
            EngineError::DockerResponseServerError {
                status_code: 500,
                message,
            } if message.contains("no such container")
        )
}
