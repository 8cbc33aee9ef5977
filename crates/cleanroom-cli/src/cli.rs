//! The command line: every command, flag and its help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use crate::field_flags::{SandboxArgs, TestSettingArgs};
pub use crate::sandbox_args::{
    CpArgs, CreateArgs, ExecArgs, LogsArgs, NameArgs, PsArgs, RmArgs, SpecArgs, StatsArgs, StopArgs,
};

const ABOUT: &str = "Run commands and tests hermetically.

Cleanroom runs a command in a sandbox: its own filesystem view (read-only
root, fresh /tmp and /workdir), no network, an unprivileged user, no
capabilities, limits and a timeout. The same sandbox specification runs on
four backends: native (Linux namespaces, no daemon), podman, docker and
local (a plain process, which warns about all it cannot enforce).";

const AFTER_HELP: &str = "Examples:
  cleanroom run -- echo hello
  cleanroom create --name dev && cleanroom exec -it dev -- sh
  cleanroom run --backend native --memory 256M --timeout 10s -- sh -c 'make test'
  cleanroom run --mount ./src:/workdir/src -- ls /workdir/src
  cleanroom doctor          which backends work here, and what each enforces
  cleanroom config          the effective settings and where each came from

Settings come from flags, then CLEANROOM_* variables, then cleanroom.toml,
then [package.metadata.cleanroom] in Cargo.toml, then defaults.";

#[derive(Debug, Parser)]
#[command(name = "cleanroom", version, about = ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    /// More log output on stderr (-v: backend choice, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one command in a fresh sandbox and exit with its exit code.
    #[command(after_help = RUN_AFTER_HELP)]
    Run(RunArgs),
    /// Start a named sandbox that outlives this command (it idles until
    /// stopped) and print its name; work in it with `exec`.
    Create(CreateArgs),
    /// Run a command in a running named sandbox and exit with its exit code.
    Exec(ExecArgs),
    /// List named sandboxes: NAME BACKEND IMAGE STATUS CREATED COMMAND.
    Ps(PsArgs),
    /// Print the output of a named sandbox's main process.
    Logs(LogsArgs),
    /// Stop named sandboxes: SIGTERM, then SIGKILL after the grace period.
    Stop(StopArgs),
    /// Remove named sandboxes and everything they hold.
    Rm(RmArgs),
    /// Copy files or directories between the host and a named sandbox
    /// (NAME:/PATH on one side); modes kept, symlinks copied as symlinks.
    Cp(CpArgs),
    /// CPU, memory and pids of named sandboxes.
    Stats(StatsArgs),
    /// Show which backends work on this machine, why not, and what each enforces.
    Doctor(DoctorArgs),
    /// Show the effective configuration and where each value came from.
    Config(ConfigArgs),
    /// Remove sandboxes, containers, mounts, cgroups and temporary
    /// directories that crashed callers left behind (never a live caller's).
    Gc(GcArgs),
    /// List the images in the store (`images verify [--repair]` checks every blob).
    Images(ImagesArgs),
    /// Import an image: a `docker save` archive, an OCI layout (dir or tar),
    /// tar://ROOTFS.tar[.gz|.zst] or file://ROOTFS_DIR.
    Import(ImportArgs),
    /// Pull an image from a registry: docker://HOST[:PORT]/NAME:TAG (opt-in network use;
    /// credentials from CLEANROOM_REGISTRY_USER/PASSWORD or CLEANROOM_REGISTRY_TOKEN).
    Pull(PullArgs),
    /// Remove images from the store and free what nothing else uses.
    Rmi(RmiArgs),
    /// Measure a backend's start-up beside its anchor (bubblewrap, `docker run`), medians.
    Bench(BenchArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Run *.clnrm.toml test files, each in a fresh sandbox with its services beside it.
    #[command(after_help = TEST_AFTER_HELP)]
    Test(TestArgs),
    /// Scaffold cleanroom.toml and tests/example.clnrm.toml (never overwrites).
    Init(InitArgs),
    /// Check test files without running them; every problem at file:line:column.
    #[command(after_help = VALIDATE_AFTER_HELP)]
    Validate(ValidateArgs),
    /// Run the built-in conformance checks against the selected backend.
    SelfTest(SelfTestArgs),
    /// The microVM backend: `vm setup` fetches the guest kernel into the
    /// user's cache and builds the initramfs.
    #[command(subcommand)]
    Vm(VmCommand),
    /// Start an environment's services in dependency order (compose files
    /// or cleanroom.toml [services.*]); -d returns once they are up.
    Up(crate::commands::env::args::UpArgs),
    /// Show how `up` would start an environment: levels, wiring, enforcement.
    Plan(crate::commands::env::args::PlanArgs),
    /// Remove an environment's sandboxes (-v: its named volumes too).
    Down(crate::commands::env::args::DownArgs),
    /// Print a compose file's services as cleanroom.toml [services.*] tables.
    Convert(crate::commands::env::args::ConvertArgs),
    /// An environment's services by name: ps, logs, exec, stop, restart.
    Env(crate::commands::env::args::EnvArgs),
    /// A live dashboard of environments: state, health, CPU, memory, pids, logs.
    Top(crate::commands::env::args::TopArgs),
    /// Work on an isolated copy of a project: untrusted commands change it,
    /// every change is recorded, `sync` applies them without overwriting yours.
    #[command(visible_alias = "ws")]
    Workspace(crate::commands::workspace::WorkspaceArgs),
}

#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Fetch Debian's kernel (apt-get download, into the user's cache, never
    /// /boot), build the initramfs with the agent, and choose the
    /// accelerator (KVM when a probe guest boots, else TCG).
    Setup,
}

const VALIDATE_AFTER_HELP: &str = "Exit status: 0 when every file is valid (warnings \
included), 1 when one is not or none was found, 125 when Cleanroom itself failed. \
Each problem and warning is one line on stderr: FILE:LINE:COLUMN: error|warning: MESSAGE.";

const RUN_AFTER_HELP: &str = "Exit status: the command's own exit code; 128+N when a signal N \
killed it; 124 when it timed out; 125 when Cleanroom itself failed (bad \
flag value, backend not available, strict mode refused, stdout not writable); \
130/143 after SIGINT/SIGTERM (the sandbox is removed first).

Warnings (WARN: ...) on stderr name each requested protection the backend \
cannot enforce; --strict turns them into an error before anything runs.";

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub spec: SpecArgs,

    /// Detach: start a named sandbox with COMMAND as its main process, print
    /// its name and return; it stops when COMMAND exits and keeps its logs
    /// and exit status until `cleanroom rm`.
    #[arg(short, long, conflicts_with = "json")]
    pub detach: bool,

    #[command(flatten)]
    pub named: NameArgs,

    /// Print the result (exit code, output, enforcement report) as JSON instead of passing output through.
    #[arg(long)]
    pub json: bool,

    /// Do not print WARN lines for protections the backend cannot enforce.
    #[arg(short, long)]
    pub quiet: bool,

    /// The command and its arguments, after `--`. Without one, an image runs
    /// its own Entrypoint and Cmd; a command given replaces Cmd and keeps
    /// Entrypoint, as `docker run IMAGE CMD` does.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,

    /// The image engine backends would use [env: CLEANROOM_IMAGE].
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,

    /// Also start one real container on each engine that answers: an engine
    /// can answer and still fail to run anything (Podman without
    /// CAP_SYS_RESOURCE); the report then says how to fix it.
    #[arg(long)]
    pub probe: bool,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub sandbox: SandboxArgs,

    /// Print the configuration as JSON.
    #[arg(long)]
    pub json: bool,

    /// Look for cleanroom.toml and Cargo.toml from this directory upwards.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write completions for.
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Also say which backends were skipped because they are not available.
    #[arg(long = "show-skipped")]
    pub verbose_skip: bool,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The backend to measure: native, podman, docker or local.
    #[arg(long, default_value = "native")]
    pub backend: String,

    /// Image for the engine backends (native and local use a busybox rootfs built on the spot).
    #[arg(long, default_value = "cleanroom-busybox:latest")]
    pub image: String,

    /// Measured runs per number (after one warm-up run).
    #[arg(long, default_value_t = 50)]
    pub runs: usize,

    /// Print the table as JSON.
    #[arg(long)]
    pub json: bool,
}

const TEST_AFTER_HELP: &str = "Examples:
  cleanroom test                         every *.clnrm.toml under the current directory
  cleanroom test examples/ --backend native -j 2
  cleanroom test tests/ --junit report.xml --shard 2/8
  cleanroom test --filter redis --repeat 5   flags tests whose output differs between runs

Exit status: 0 when every test passed, 1 when one failed (or none was
found), 130 after SIGINT (Ctrl-C) and 143 after SIGTERM (every sandbox and
service is torn down first), 125 when Cleanroom itself failed. The last line of the report is always
`N passed, N failed, N skipped`.";

/// How `cleanroom test` writes its report on stdout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Failures explained, then `N passed, N failed, N skipped`.
    #[default]
    Human,
    Json,
    Junit,
    Tap,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub sandbox: SandboxArgs,

    /// Test files or directories searched for *.clnrm.toml (default: the current directory).
    #[arg(value_name = "PATHS")]
    pub paths: Vec<PathBuf>,

    /// Run only tests whose name or path contains this.
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,

    /// Run shard I of N (1-based); the N shards together run every test exactly once.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,

    #[command(flatten)]
    pub settings: TestSettingArgs,

    /// Start no more tests after the first failure.
    #[arg(long)]
    pub fail_fast: bool,

    /// Run every test N times and fail those whose output differs between runs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub repeat: usize,

    /// Report format on stdout.
    #[arg(long, value_enum, default_value_t = ReportFormat::Human)]
    pub format: ReportFormat,

    /// Also write a JUnit XML report to this file.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to create the files (default: the current directory).
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Test files, or directories searched for *.clnrm.toml.
    #[arg(value_name = "FILES", required = true)]
    pub files: Vec<PathBuf>,

    /// Print only problems, not a line per valid file.
    #[arg(short, long)]
    pub quiet: bool,

    /// Unknown keys and what cannot be honoured are errors, not warnings.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct SelfTestArgs {
    #[command(flatten)]
    pub sandbox: SandboxArgs,

    /// Run only the checks whose name contains this.
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    #[command(subcommand)]
    pub action: Option<ImagesAction>,

    /// Print the list as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImagesAction {
    /// Re-hash every blob and check every image has what it needs.
    Verify {
        /// Delete corrupt blobs and the references of broken images (then re-import them).
        #[arg(long)]
        repair: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The archive, layout, tar://FILE or file://DIR to import.
    pub source: String,

    /// Name the image NAME:TAG (an archive's own tags are kept too).
    #[arg(long, short)]
    pub tag: Option<String>,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// docker://HOST[:PORT]/NAME:TAG or NAME@sha256:...
    pub reference: String,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Image references, digests or ID prefixes.
    #[arg(required = true)]
    pub references: Vec<String>,
}
