//! `cleanroom::error`: the errors of the original API, which are Cleanroom's
//! own [`Error`] under the names its users import.
//!
//! There is one error type. [`BackendError`] is another name for it, so a
//! backend of one's own (see [`crate::backend`]) returns any of its
//! variants, built with [`Error::backend`] or [`Error::io`], and `?` needs
//! no conversion:
//!
//! ```
//! use cleanroom::error::{BackendError, Result};
//!
//! fn start_vm(name: &str) -> Result<()> {
//!     Err(BackendError::backend("firecracker", format!("no VM image for `{name}`; build one with `make vm`")))
//! }
//! let err = start_vm("ci").unwrap_err();
//! assert_eq!(err.to_string(), "firecracker backend: no VM image for `ci`; build one with `make vm`");
//! ```

pub use cleanroom_core::error::{Error, IoContext, Result};

/// The error a backend returns: the same type as [`Error`], under the name
/// the original API used for it.
pub type BackendError = Error;
