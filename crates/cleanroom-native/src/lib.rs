//! placeholder
pub mod rlimits;
pub mod seccomp;
