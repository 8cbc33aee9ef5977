//! `cleanroom workspace …` (alias `ws`): untrusted commands work on a copy
//! of a project, every change is recorded, and `sync` brings the changes
//! back without overwriting the user's own edits.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use cleanroom::bridge::wait;
use cleanroom::detached::ExecStdio;
use cleanroom::{Cmd, Result};
use cleanroom_workspace::{StartOptions, SyncOptions, Workspace};

use crate::cli::SandboxArgs;
use crate::output;

const AFTER_HELP: &str = "A workspace is a snapshot of PATH (all but .git, and what --exclude or \
a .cleanroomignore leaves out) mounted read-write at /workspace in a long-lived sandbox, \
with a shadow git history outside it: the base is the snapshot, then one commit per exec \
that changed something.

  cleanroom ws start . --name agent --backend native
  cleanroom ws exec agent -- sh -c 'make fmt'
  cleanroom ws diff agent --stat
  cleanroom ws sync agent --dry-run
  cleanroom ws sync agent            # conflicts: applies nothing, exits 1
  cleanroom ws rm agent

Exit status: exec passes the command's code through; sync exits 1 on conflicts \
(nothing applied); 125 when Cleanroom itself failed.";

#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub struct WorkspaceArgs {
    #[command(subcommand)]
    pub command: WorkspaceCommand,
}

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Snapshot PATH and start its sandbox; prints the workspace's name.
    Start(StartArgs),
    /// Run a command in the workspace (in /workspace); records a commit if it changed anything.
    Exec(ExecArgs),
    /// Record the workspace as it is now.
    Commit(CommitArgs),
    /// What changed since the snapshot (all of it: binary files too).
    Diff(DiffArgs),
    /// The recorded commits, newest first, one line each.
    Log(LogArgs),
    /// Apply the workspace's changes to the project, three-way against the snapshot.
    Sync(SyncArgs),
    /// List the workspaces.
    Ls(LsArgs),
    /// Stop the workspace's sandbox (diff, log, sync and export still work).
    Stop(NameArg),
    /// Remove the workspace: its sandbox, copy and history (the project is not touched).
    Rm(NameArg),
    /// Write the shadow history to a new git repository.
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The project directory to snapshot.
    pub path: PathBuf,
    /// The workspace's name (also its sandbox's); one is made when not given.
    #[arg(long)]
    pub name: Option<String>,
    /// Leave paths matching this gitignore-style pattern out of the snapshot (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// Set a variable inside the sandbox (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Bind another host path: SRC:DST, read-only unless SRC:DST:rw (repeatable).
    #[arg(short, long = "mount", value_name = "SRC:DST[:ro|rw]")]
    pub mount: Vec<String>,
    /// Print what the snapshot copied and skipped as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct NameArg {
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    pub name: String,
    /// Connect this terminal's stdin to the command.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the command a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CommitArgs {
    pub name: String,
    /// The commit message.
    #[arg(short, long)]
    pub message: String,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    pub name: String,
    /// One line per file with lines added and removed (binary: sizes).
    #[arg(long)]
    pub stat: bool,
    /// The change summary as JSON.
    #[arg(long, conflicts_with = "stat")]
    pub json: bool,
    /// Only these paths (relative to the project).
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    pub name: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    pub name: String,
    /// Print exactly what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Where both the sandbox and the user changed a file, the sandbox's version wins.
    #[arg(long)]
    pub force: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Only these paths (relative to the project).
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    pub name: String,
    /// The new repository's directory (must not exist, or be empty).
    #[arg(long = "git", value_name = "DIR")]
    pub git: PathBuf,
}

pub fn main(args: WorkspaceArgs) -> Result<ExitCode> {
    match args.command {
        WorkspaceCommand::Start(a) => start(a),
        WorkspaceCommand::Exec(a) => exec(a),
        WorkspaceCommand::Commit(a) => {
            match Workspace::open(&a.name)?.commit_changes(&a.message)? {
                Some(id) => say!("{}", &id[..12]),
                None => eprintln!("nothing changed since the last commit; nothing recorded"),
            }
            Ok(ExitCode::SUCCESS)
        }
        WorkspaceCommand::Diff(a) => diff(a),
        WorkspaceCommand::Log(a) => log(a),
        WorkspaceCommand::Sync(a) => sync(a),
        WorkspaceCommand::Ls(a) => ls(a),
        WorkspaceCommand::Stop(a) => {
            wait(Workspace::open(&a.name)?.stop())?;
            Ok(ExitCode::SUCCESS)
        }
        WorkspaceCommand::Rm(a) => {
            wait(Workspace::open(&a.name)?.remove())?;
            Ok(ExitCode::SUCCESS)
        }
        WorkspaceCommand::Export(a) => {
            Workspace::open(&a.name)?.export(&a.git)?;
            eprintln!("exported to {} (branch main)", a.git.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn start(args: StartArgs) -> Result<ExitCode> {
    let cwd = super::current_dir()?;
    let config = super::load_config(&args.sandbox.given, &cwd)?;
    let mut spec = config.spec()?;
    for pair in &args.env {
        let (key, value) = super::run::env_pair(pair)?;
        spec.env.insert(key, value);
    }
    for m in &args.mount {
        spec.mounts.push(super::run::mount_from(m, &cwd)?);
    }
    let options = StartOptions {
        name: args.name,
        excludes: args.exclude,
        backend: config.backend.value,
    };
    let (ws, report) = wait(Workspace::start_with(&args.path, &spec, options))?;
    if let Some(warning) = ws.isolation_warning() {
        eprintln!("WARN: {warning}");
    }
    if args.json {
        output::json(&report)?;
    } else {
        for (path, why) in &report.skipped {
            eprintln!("skipped {}: {why}", path.display());
        }
        say!("{}", ws.name());
    }
    Ok(ExitCode::SUCCESS)
}

fn exec(args: ExecArgs) -> Result<ExitCode> {
    let ws = Workspace::open(&args.name)?;
    if let Some(warning) = ws.isolation_warning() {
        eprintln!("WARN: {warning}");
    }
    let stdio = ExecStdio {
        stdin: args.interactive,
        tty: args.tty,
    };
    let outcome = wait(ws.exec_attached(Cmd::from(args.command), stdio))?;
    if let Some(id) = &outcome.commit {
        tracing::info!("recorded commit {id}");
    }
    Ok(ExitCode::from(outcome.exit_code.clamp(0, 255) as u8))
}

fn diff(args: DiffArgs) -> Result<ExitCode> {
    let ws = Workspace::open(&args.name)?;
    let patch = !args.stat && !args.json;
    let (summary, text) = ws.diff(&args.paths, patch)?;
    if args.json {
        output::json(&summary)?;
    } else if args.stat {
        output::print_bytes(summary.stat().as_bytes());
    } else {
        if let Some(text) = text {
            output::print_bytes(&text);
        }
        for s in &summary.skipped {
            eprintln!("skipped {}: {}", s.path, s.reason);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn log(args: LogArgs) -> Result<ExitCode> {
    let entries = Workspace::open(&args.name)?.log()?;
    if args.json {
        output::json(&entries)?;
    } else {
        for e in &entries {
            let first = e.message.lines().next().unwrap_or_default();
            say!("{} {}", &e.id[..12], first);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn sync(args: SyncArgs) -> Result<ExitCode> {
    let ws = Workspace::open(&args.name)?;
    let report = ws.sync_back(SyncOptions {
        force: args.force,
        dry_run: args.dry_run,
        paths: args.paths,
    })?;
    if args.json {
        output::json(&report)?;
    } else {
        if report.resumed > 0 {
            say!(
                "finished {} change(s) of an interrupted sync",
                report.resumed
            );
        }
        for c in &report.conflicts {
            let verb = if args.force {
                "overwriting"
            } else {
                "conflict"
            };
            say!(
                "{verb}: {} ({}; the sandbox changed it too)",
                c.path,
                c.host
            );
        }
        let lead = if args.dry_run { "would " } else { "" };
        for p in &report.applied {
            let what = match p.action {
                cleanroom_workspace::sync::Action::Write => "write",
                cleanroom_workspace::sync::Action::Symlink => "link",
                cleanroom_workspace::sync::Action::Delete => "delete",
            };
            say!("{lead}{what} {}", p.path);
        }
        for s in &report.skipped {
            say!("skipped {}: {}", s.path, s.reason);
        }
        if report.blocked() {
            eprintln!(
                "{} conflict(s): nothing was applied; resolve them, or `sync --force` to let the sandbox's versions win",
                report.conflicts.len()
            );
        }
    }
    Ok(if report.blocked() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn ls(args: LsArgs) -> Result<ExitCode> {
    let all = Workspace::list()?;
    if args.json {
        return output::json(&all).map(|_| ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|m| {
            vec![
                m.name.clone(),
                m.backend.clone(),
                m.project.display().to_string(),
            ]
        })
        .collect();
    output::table(&["NAME", "BACKEND", "PROJECT"], &rows);
    Ok(ExitCode::SUCCESS)
}
