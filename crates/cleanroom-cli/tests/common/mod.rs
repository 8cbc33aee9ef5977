//! The `cleanroom` binary as the tests of clnrm compatibility and hostile
//! input start it: in a directory, with no configuration from the
//! environment.

use std::path::Path;
use std::process::Command;

/// `cleanroom ARGS` in `dir`, without the `CLEANROOM_*` settings of the
/// environment the tests run in.
pub fn cleanroom_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cleanroom"));
    c.args(args).current_dir(dir);
    for var in [
        "CLEANROOM_BACKEND",
        "CLEANROOM_IMAGE",
        "CLEANROOM_TIMEOUT_MS",
        "CLEANROOM_CONFIG",
        "CLEANROOM_STRICT",
    ] {
        c.env_remove(var);
    }
    c
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
