//! The contract every Cleanroom backend implements.
//!
//! This crate holds what all the others agree on and nothing that runs a
//! sandbox: the [`SandboxSpec`] a user asks for, the [`Cmd`] to run, the
//! [`RunResult`] that comes back with its [`Enforcement`] report, the
//! [`Backend`] and [`Sandbox`] traits, the [`Error`] type, configuration, and
//! the [`conformance`] suite that proves a backend keeps the contract.

pub mod backend;
pub mod bridge;
pub mod choice;
pub mod cmd;
pub mod config;
pub mod conformance;
pub mod enforcement;
pub mod error;
pub mod hash;
pub mod output;
pub mod paths;
pub mod preamble;
pub mod result;
pub mod spec;

pub use backend::{process_alive, Availability, Backend, Logs, Sandbox};
pub use choice::BackendChoice;
pub use cmd::Cmd;
pub use config::{Config, Layer, Origin, Setting};
pub use enforcement::{Constraint, Enforcement, Entry, Status};
pub use error::{Error, IoContext, Result};
pub use output::{
    collect_pump, output_channel, pump, Captured, OutputChunk, OutputSink, Stream, PIPE_GRACE,
};
pub use preamble::{Prepared, Warnings};
pub use result::{exit_code_and_signal, signal_exit_code, RunResult};
pub use spec::{
    base_environment, parse_duration, parse_size, Mount, Network, PortPublish, RootFs, SandboxSpec,
    Tmpfs, User,
};

/// Re-exported so backends implement the traits with the same macro.
pub use async_trait::async_trait;
