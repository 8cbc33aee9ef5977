//! `cleanroom init`: the files a new project starts from, which pass as
//! generated on the default backend.

use std::path::{Path, PathBuf};

use cleanroom::{Error, Result};

/// The configuration file `cleanroom init` writes.
pub const CONFIG: &str = r#"# Cleanroom's settings for this project. Command-line flags and
# CLEANROOM_* environment variables override them.

# auto picks podman, docker, native, then local: the first that works here.
backend = "auto"
# Kill any one command after this long.
timeout = "60s"
# image = "busybox:latest"   # run in an image instead of the host's own /usr
# memory = "512M"
# pids = 256
"#;

/// The example test `cleanroom init` writes.
pub const EXAMPLE_TEST: &str = r#"# A Cleanroom test. Run it with `cleanroom test`.
#
# The test gets a fresh sandbox: read-only root, an empty /workdir, no
# network, an unprivileged user. Its steps run in order inside it, and
# everything is removed afterwards, pass or fail.

[test.metadata]
name = "example"
description = "What a test file can check"
timeout = "60s"

# Copied into the sandbox before the first step (relative to /workdir).
[[files]]
path = "greeting.txt"
content = "hello from a file\n"

[[steps]]
name = "echo prints its arguments"
command = ["echo", "hello", "cleanroom"]
expected_output = "hello cleanroom"

[[steps]]
name = "copied files are in the working directory"
command = ["cat", "greeting.txt"]
expected_output_regex = "^hello from a file$"

[[steps]]
name = "exit codes and stderr are checked"
command = ["sh", "-c", "echo oops >&2; exit 3"]
expected_exit_code = 3
expected_stderr_regex = "oops"

[[steps]]
name = "the environment is only what the test sets"
command = ["sh", "-c", "echo \"$GREETING $TZ\""]
env = { GREETING = "hi" }
expected_output = "hi UTC"
"#;

/// Writes `cleanroom.toml` and `tests/example.clnrm.toml` under `dir`,
/// refusing (before writing anything) if either exists. Returns the paths written.
pub fn init(dir: &Path) -> Result<Vec<PathBuf>> {
    let files = [
        (dir.join("cleanroom.toml"), CONFIG),
        (dir.join("tests").join("example.clnrm.toml"), EXAMPLE_TEST),
    ];
    for (path, _) in &files {
        if path.exists() {
            return Err(Error::Config {
                origin: path.display().to_string(),
                message: "already exists; `cleanroom init` never overwrites files (move it away to start over)".into(),
            });
        }
    }
    let mut written = Vec::new();
    for (path, text) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        std::fs::write(&path, text)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaffold_parses_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let written = init(dir.path()).unwrap();
        assert_eq!(written.len(), 2);
        crate::parse_file(&written[1]).unwrap();
        cleanroom::config::Layer::from_config_file(&written[0], CONFIG).unwrap();
        let e = init(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("cleanroom.toml") && e.contains("never overwrites"),
            "{e}"
        );
    }
}
