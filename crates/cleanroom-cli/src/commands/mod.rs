//! One module per command; each exposes `main(args) -> Result<ExitCode>`.

pub mod bench;
pub mod completions;
pub mod config;
pub mod doctor;
pub mod env;
pub mod gc;
pub mod images;
pub mod init;
pub mod run;
pub mod sandboxes;
pub mod self_test;
pub mod test;
pub mod validate;
pub mod vm;
pub mod workspace;

use std::path::Path;

use cleanroom::fields::Field;
use cleanroom::{Config, Error, Layer, Result};

/// The effective configuration seen from `dir`, with the flags on top.
pub fn load_config(flags: &[(&Field, String)], dir: &Path) -> Result<Config> {
    let mut layer = Layer::default();
    for (field, raw) in flags {
        layer.field_flag(field, raw)?;
    }
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
