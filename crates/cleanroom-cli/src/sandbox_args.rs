//! The flags of the commands for named sandboxes (`create`, `exec`, `ps`,
//! `logs`, `stop`, `rm`, `cp`, `stats`), and the spec flags `run` and
//! `create` share, as docker spells them.

use clap::Args;

use crate::field_flags::SandboxArgs;

/// What makes a sandbox's spec: the settings table's flags plus `run`'s own.
#[derive(Debug, Args)]
pub struct SpecArgs {
    #[command(flatten)]
    pub sandbox: SandboxArgs,

    /// Set a variable inside the sandbox (repeatable). Nothing of the host's environment is passed.
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Bind a host path: SRC:DST, read-only unless SRC:DST:rw (repeatable).
    #[arg(short, long = "mount", value_name = "SRC:DST[:ro|rw]")]
    pub mount: Vec<String>,

    /// Make the root filesystem writable (changes are thrown away afterwards).
    #[arg(long)]
    pub writable_root: bool,
}

/// How a named sandbox is called and labelled.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The sandbox's name (a letter or digit, then letters, digits, `_`,
    /// `.` or `-`); without one, a short unique name is made up.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// A label, shown by `ps --json` and matched by `ps --filter label=K=V` (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub label: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub spec: SpecArgs,

    #[command(flatten)]
    pub named: NameArgs,

    /// Do not print WARN lines for protections the backend cannot enforce.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `--backend` of the commands that find a sandbox by name.
#[derive(Debug, Args)]
pub struct LookupArgs {
    /// Look the name up on this backend only (native, docker or podman);
    /// by default native, then docker, then podman.
    #[arg(long, value_name = "BACKEND")]
    pub backend: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Pass this process's stdin to the command.
    #[arg(short, long)]
    pub interactive: bool,

    /// Give the command a pseudo-terminal (an interactive shell needs `-i -t`).
    #[arg(short, long)]
    pub tty: bool,

    /// Set a variable for this command (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// The directory the command starts in.
    #[arg(short, long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,

    /// Kill the command (and everything it started) after this long: 500ms, 30s, 2m.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,

    #[command(flatten)]
    pub lookup: LookupArgs,

    /// The sandbox.
    pub name: String,

    /// The command and its arguments, after `--`.
    #[arg(last = true, value_name = "COMMAND", required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Also list exited and dead sandboxes.
    #[arg(short, long)]
    pub all: bool,

    /// Print the list as JSON (with labels and each backend's id).
    #[arg(long)]
    pub json: bool,

    /// Only sandboxes with this label: `label=KEY=VALUE` or `label=KEY` (repeatable).
    #[arg(long, value_name = "label=KEY[=VALUE]")]
    pub filter: Vec<String>,

    #[command(flatten)]
    pub lookup: LookupArgs,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing what the main process writes, until it exits.
    #[arg(short, long)]
    pub follow: bool,

    /// Only the last N lines recorded so far.
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,

    #[command(flatten)]
    pub lookup: LookupArgs,

    pub name: String,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds between SIGTERM and SIGKILL.
    #[arg(short = 't', long = "time", value_name = "SECS", default_value_t = 10)]
    pub time: u64,

    #[command(flatten)]
    pub lookup: LookupArgs,

    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Remove running sandboxes too (they are killed first).
    #[arg(short, long)]
    pub force: bool,

    #[command(flatten)]
    pub lookup: LookupArgs,

    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CpArgs {
    #[command(flatten)]
    pub lookup: LookupArgs,

    /// NAME:/PATH or a host path.
    pub source: String,

    /// NAME:/PATH or a host path (exactly one side names a sandbox).
    pub destination: String,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print one reading and exit.
    #[arg(long)]
    pub no_stream: bool,

    /// Print readings as JSON (one array per reading).
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub lookup: LookupArgs,

    /// The sandboxes (default: every running one).
    pub names: Vec<String>,
}
