//! The environment commands: `up`, `plan`, `down`, `convert` and
//! `env ps|logs|exec|stop|restart`. Services are addressed by name within
//! one environment (`-p NAME`, else the current directory's); each runs as
//! the named sandbox `ENV-SERVICE`, which the sandbox verbs reach too.

pub mod args;
mod ops;
mod top;
mod up;

use std::process::ExitCode;
use std::sync::Arc;

use cleanroom::{AutoBackend, Backend, SandboxSpec};
use cleanroom_env::{EnvError, Environment, LoadOptions};

pub use ops::env_main;
pub use top::top;
pub use up::{convert, down, plan, up};

use crate::cli::SandboxArgs;
use args::EnvFileArgs;

/// Prints an environment error and says which exit code it is: 1 for what
/// is wrong with the files or the services, 125 for Cleanroom's own.
fn report(e: EnvError) -> ExitCode {
    eprintln!("cleanroom: error: {e}");
    match e {
        EnvError::Cleanroom(_) => ExitCode::from(crate::EXIT_CLEANROOM_ERROR),
        _ => ExitCode::from(1),
    }
}

/// Reads the environment and prints its warnings; `strict` makes them errors.
fn load(args: &EnvFileArgs, strict: bool) -> Result<Environment, EnvError> {
    let env = cleanroom_env::load(&LoadOptions {
        dir: super::current_dir()?,
        files: args.files.clone(),
        project_name: args.project_name.clone(),
        profiles: args.profiles.clone(),
        strict,
    })?;
    for w in &env.warnings {
        eprintln!("{w}");
    }
    Ok(env)
}

/// The environment's name: `-p`, else the name its file gives, without
/// reading more than needed.
fn env_name(
    files: &[std::path::PathBuf],
    project_name: &Option<String>,
) -> Result<String, EnvError> {
    if let Some(n) = project_name {
        return Ok(n.clone());
    }
    let env = cleanroom_env::load(&LoadOptions {
        dir: super::current_dir()?,
        files: files.to_vec(),
        ..LoadOptions::default()
    })?;
    Ok(env.name)
}

/// The configured backend and the spec every service starts from.
async fn backend_and_spec(
    sandbox: &SandboxArgs,
) -> Result<(Arc<dyn Backend>, SandboxSpec), EnvError> {
    let cwd = super::current_dir()?;
    let config = super::load_config(&sandbox.given, &cwd)?;
    let spec = config.spec()?;
    let backend = AutoBackend::select(config.backend.value, config.image.value.as_deref()).await?;
    tracing::info!("backend {}: {}", backend.chosen(), backend.reason());
    Ok((backend.inner(), spec))
}
