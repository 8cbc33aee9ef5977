//! The contract every Cleanroom backend implements.
//!
//! This crate holds what all the others agree on and nothing that runs a
//! sandbox: the [`SandboxSpec`] a user asks for, the [`Cmd`] to run, the
//! [`RunResult`] that comes back with its [`Enforcement`] report, the
//! [`Backend`] and [`Sandbox`] traits, the [`Error`] type, configuration, and
//! the [`conformance`] suite that proves a backend keeps the contract. Two
//! rule sets every backend shares live here as data: how an image's own
//! config applies under a spec ([`image_config`]) and the one syscall
//! policy ([`seccomp_policy`]).

pub mod backend;
pub mod bridge;
pub mod choice;
pub mod clnrm_project;
pub mod cmd;
pub mod config;
pub mod conformance;
pub mod detached;
pub mod enforcement;
pub mod error;
pub mod fields;
pub mod hash;
pub mod image_config;
pub mod input_file;
pub mod line_index;
pub mod output;
pub mod owner;
pub mod paths;
pub mod preamble;
pub mod ranges;
pub mod removed;
pub mod result;
pub mod scratch;
pub mod seccomp_policy;
pub mod spec;
pub mod terminal;
pub mod time;

pub use backend::{process_alive, Availability, Backend, Logs, Sandbox};
pub use choice::BackendChoice;
pub use cmd::Cmd;
pub use config::{Config, Layer, Origin, Setting};
pub use detached::{
    DetachOptions, Detached, ExecStdio, LogOptions, SandboxInfo, SandboxState, Stats,
};
pub use enforcement::{Constraint, Enforcement, Entry, Status};
pub use error::{Error, IoContext, Result};
pub use image_config::{ImageConfig, ImageRun};
pub use output::{
    collect_pump, output_channel, pump, Captured, OutputChunk, OutputSink, Stream, PIPE_GRACE,
};
pub use preamble::{Prepared, Warnings};
pub use removed::{count_by_kind, Removed};
pub use result::{exit_code_and_signal, signal_exit_code, RunResult};
pub use spec::{
    base_environment, parse_duration, parse_size, Mount, Network, PortPublish, RootFs, SandboxSpec,
    Tmpfs, User, UserNs,
};

/// Re-exported so backends implement the traits with the same macro.
pub use async_trait::async_trait;
