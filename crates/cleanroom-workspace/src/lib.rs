//! Workspaces: untrusted code changes an isolated copy of a project, every
//! step is recorded, and the changes go back to the project without ever
//! overwriting the user's own edits.
//!
//! A workspace is a directory under the state directory holding
//!
//! - `tree/`, the snapshot of the project (everything but `.git` and what
//!   the user excludes), mounted read-write at `/workspace` in a named,
//!   long-lived sandbox;
//! - `history.git/`, a shadow git repository *outside* that mount: its
//!   first commit is the snapshot (the base), then one commit per `exec`
//!   that changed something, so the code inside cannot rewrite it;
//! - `meta.json`, what the workspace was made from, and `sync.journal`
//!   while a sync runs.
//!
//! On the local backend, which has no long-lived sandboxes, each exec runs
//! once in the copy (with a warning that it sees the whole host).
//!
//! [`Workspace`] is the library API (async, with a [`blocking`] twin);
//! [`changes`] summarises base → now, and [`sync`] applies the change to
//! the project three-way against the base.

pub mod blocking;
pub mod changes;
mod error;
pub mod excludes;
pub mod history;
mod hostfs;
mod journal;
pub mod layout;
mod objects;
mod one_shot;
pub mod snapshot;
mod statcache;
pub mod sync;
mod tree;
mod workspace;

pub use changes::{ChangeKind, ChangeSummary, FileChange};
pub use error::{Error, Result};
pub use layout::{Layout, Meta};
pub use sync::{SyncOptions, SyncReport};
pub use workspace::{
    check_project, prepare_files, ExecOutcome, StartOptions, Workspace, MOUNT_POINT,
};
