//! One module per command; each exposes `main(args) -> Result<ExitCode>`.

pub mod bench;
pub mod completions;
pub mod config;
pub mod doctor;
pub mod gc;
pub mod images;
pub mod init;
pub mod run;
pub mod self_test;
pub mod test;
pub mod validate;

use std::path::Path;

use cleanroom::{Config, Error, Layer, Result};

use crate::cli::SandboxArgs;

/// The effective configuration seen from `dir`, with the flags on top.
pub fn load_config(flags: &SandboxArgs, dir: &Path) -> Result<Config> {
    let mut layer = Layer::default();
    let timeout_ms = match &flags.timeout {
        Some(t) => Some(
            cleanroom::parse_duration(t)
                .map_err(|e| Error::Config {
                    origin: "flag --timeout".into(),
                    message: e.to_string(),
                })?
                .as_millis()
                .to_string(),
        ),
        None => None,
    };
    layer
        .flag("backend", "--backend", flags.backend.as_deref())
        .flag("image", "--image", flags.image.as_deref())
        .flag("timeout_ms", "--timeout", timeout_ms)
        .flag("memory", "--memory", flags.memory.as_deref())
        .flag("cpus", "--cpus", flags.cpus.as_deref())
        .flag("pids", "--pids", flags.pids.as_deref())
        .flag("network", "--network", flags.network.as_deref())
        .flag("user", "--user", flags.user.as_deref())
        .flag("workdir", "--workdir", flags.workdir.as_deref())
        .flag("strict", "--strict", flags.strict.then_some("true"))
        .flag("tmpfs_size", "--tmpfs-size", flags.tmpfs_size.as_deref())
        .flag("userns", "--userns", flags.userns.as_deref());
    let config = Config::load(dir, layer)?;
    // What reading the files skipped (a clnrm project file), said once.
    for w in &config.warnings {
        eprintln!("{w}");
    }
    Ok(config)
}

/// The directory configuration is looked up from.
pub fn current_dir() -> Result<std::path::PathBuf> {
    std::env::current_dir().map_err(|e| Error::io("reading the current directory", e))
}
