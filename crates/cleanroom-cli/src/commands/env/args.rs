//! The flags of the environment commands (`up`, `plan`, `down`, `convert`,
//! `env ps|logs|exec|stop|restart`).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::cli::SandboxArgs;

/// Which environment: its file(s) and name.
#[derive(Debug, Args, Clone)]
/// `--strict` (of the sandbox flags, or `strict = true` in the
/// configuration) also makes unknown keys in the files errors.
pub struct EnvFileArgs {
    /// An environment file: a compose file or a TOML file with
    /// [services.NAME] tables; several compose files merge in order.
    /// Default: cleanroom.toml's [services], else compose.yaml,
    /// compose.yml, docker-compose.yml, docker-compose.yaml.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The environment's name (default: the directory's name).
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub project_name: Option<String>,
    /// Enable services of this compose profile (also COMPOSE_PROFILES).
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub env: EnvFileArgs,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// Return once every service is up to its conditions (healthy where it
    /// has a health check) and leave the environment running.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Only these services (and what they depend on).
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub env: EnvFileArgs,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// Only these services (and what they depend on).
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub env: EnvFileArgs,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// Also remove the environment's named volumes (long form only: `-v`
    /// is --verbose everywhere).
    #[arg(long)]
    pub volumes: bool,
    /// Seconds each service gets to exit after SIGTERM before it is killed.
    #[arg(long = "grace", value_name = "SECONDS", default_value_t = 10)]
    pub grace: u64,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The compose (or TOML) file(s) to convert; several merge in order.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Enable services of this compose profile.
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
    /// Unknown keys are errors, not warnings.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    #[command(subcommand)]
    pub command: EnvCommand,
}

/// The services of one environment, addressed by service name (`-p NAME`
/// or the directory's environment); each is also the named sandbox
/// `ENV-SERVICE` that `cleanroom ps` lists.
#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// List environments and their services' sandboxes, grouped by environment.
    Ps(EnvPsArgs),
    /// Show the services' logs, each line prefixed with its service.
    Logs(EnvLogsArgs),
    /// Run a command in a running service.
    Exec(EnvExecArgs),
    /// Stop services (all of them, and the pod, when none is named).
    Stop(EnvStopArgs),
    /// Replace a service's sandbox with a fresh one, in the running environment.
    Restart(EnvRestartArgs),
}

#[derive(Debug, Args)]
pub struct EnvPsArgs {
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// Only this environment (default: all of them).
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub project_name: Option<String>,
    /// Stopped services too.
    #[arg(short = 'a', long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct EnvLogsArgs {
    /// The environment's file (long form only: `-f` is --follow here, as in compose).
    #[arg(long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The environment's name (default: the directory's environment).
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub project_name: Option<String>,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// Keep printing new output.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only these services (default: all).
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EnvExecArgs {
    #[command(flatten)]
    pub env: EnvFileArgs,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// Connect stdin.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the command a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    pub service: String,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EnvStopArgs {
    #[command(flatten)]
    pub env: EnvFileArgs,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    pub services: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EnvRestartArgs {
    #[command(flatten)]
    pub env: EnvFileArgs,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    pub service: String,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// Only this environment (default: all of them).
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub project_name: Option<String>,
    /// How often to read the sandboxes, in milliseconds.
    #[arg(long = "interval", value_name = "MS", default_value_t = 1000)]
    pub interval_ms: u64,
}
