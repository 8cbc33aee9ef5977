//! placeholder
pub mod cgroups;
pub mod rlimits;
pub mod seccomp;
